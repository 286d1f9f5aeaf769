#!/usr/bin/env python
"""Make a trained checkpoint the shipped default model, with measured test metrics.

Re-evaluates CHECKPOINT on the writer-disjoint test split recorded in it
(the same split `strokes train` held out), stores val and test metrics in a
slim copy (no optimizer state) at ``strokes/data/default_model.pt``, and writes
the ``## Default model (issue 4)`` section of ``benchmarks/RESULTS.md`` with the
training command and the figures.

Usage::

    .venv/bin/python benchmarks/ship_model.py runs/vgg_gap_e20/best.pt \\
        --train-command "strokes train ../shared/data/crohme --model vgg_gap --epochs 20 --out runs/vgg_gap_e20"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crohme"
SECTION = "## Default model (issue 4)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="best.pt of a strokes train run")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the data it was trained on")
    p.add_argument("--train-command", required=True, help="the exact command that trained it (recorded)")
    p.add_argument("--out", default=str(ROOT / "strokes" / "data" / "default_model.pt"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    p.add_argument("--note", default="", help="extra remark for RESULTS.md")
    p.add_argument("--baseline", default=None, help="best.pt of a baseline run on the same data, for comparison")
    p.add_argument("--baseline-command", default="", help="the command that trained the baseline (recorded)")
    args = p.parse_args(argv)

    import strokes
    from strokes.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from strokes.training.evaluate import evaluate, format_report
    from strokes.training.train import checkpoint_split

    ckpt = read_checkpoint(args.checkpoint)
    loaded = load_checkpoint(ckpt)
    ds = strokes.load(args.data, progress=False)
    info = ckpt["train"]["split_info"]
    sp = checkpoint_split(ckpt, ds)
    t0 = time.perf_counter()
    test = evaluate(loaded, ds.subset(sp.test))
    val = evaluate(loaded, ds.subset(sp.val))
    seconds = time.perf_counter() - t0
    history = ckpt.get("history", [])
    best_epoch = max(history, key=lambda h: (h["val_top1"], h["val_top5"]))["epoch"] if history else None
    metrics = dict(ckpt.get("metrics", {}))
    metrics.update(
        {
            "val": {k: val[k] for k in ("top1", "top5", "macro_recall", "loss")},
            "test": {k: test[k] for k in ("top1", "top5", "macro_recall", "loss")},
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "split": info,
            "most_confused_test": test["most_confused"][:20],
        }
    )
    ckpt["metrics"] = metrics
    out = save_checkpoint(ckpt, args.out, slim=True)
    size_mb = out.stat().st_size / 2**20
    n_params = sum(v.numel() for v in ckpt["state_dict"].values())
    print(format_report(test, top=10))

    baseline = ""
    if args.baseline:
        base = load_checkpoint(args.baseline)
        if checkpoint_split(base.checkpoint, ds).test.tolist() != sp.test.tolist():
            raise SystemExit("the baseline was trained on a different split")
        b = evaluate(base, ds.subset(sp.test))
        n_base = sum(p.numel() for p in base.model.parameters())
        baseline = f"""
Baseline on the same split, for the calibration question (a plain CNN of about 150k parameters,
12 epochs, no augmentation): {base.name} with {n_base:,} parameters, trained by

    {args.baseline_command}

| model | test top-1 | test top-5 | errors (top-1) |
|---|--:|--:|--:|
| baseline: plain CNN, {n_base:,} parameters, no augmentation | {b['top1']:.4f} | {b['top5']:.4f} | {round((1 - b['top1']) * b['samples'])} |
| **shipped default** | **{test['top1']:.4f}** | **{test['top5']:.4f}** | {round((1 - test['top1']) * test['samples'])} |

The shipped model makes {1 - (1 - test['top1']) / (1 - b['top1']):.0%} fewer top-1 errors than the baseline on these unseen writers.
"""

    confusions = "\n".join(
        f"| `{c['true']}` | `{c['predicted']}` | {c['count']} | {c['rate']:.1%} |" for c in test["most_confused"][:10]
    )
    section = f"""{SECTION}

The model that `strokes.recognize()` uses by default: `strokes/data/default_model.pt`
({size_mb:.1f} MB, {ckpt['model']['name']}, {n_params:,} parameters, config
`{json.dumps(ckpt['model']['config'])}`), trained on the real CROHME data by

    {args.train_command}

and shipped by

    .venv/bin/python benchmarks/ship_model.py {args.checkpoint} --train-command "..."

Split: {info['mode']}-disjoint, seed {info['seed']}: train {info['train']}, val {info['val']},
test {info['test']} symbols; no writer of the test split was seen in training.
Epochs run: {len(history)} (best val epoch {best_epoch}).{(' ' + args.note) if args.note else ''}

| subset | top-1 | top-5 | macro recall |
|---|--:|--:|--:|
| val ({info['val']}) | {val['top1']:.4f} | {val['top5']:.4f} | {val['macro_recall']:.4f} |
| **test, unseen writers** ({info['test']}) | **{test['top1']:.4f}** | **{test['top5']:.4f}** | {test['macro_recall']:.4f} |

Targets: top-1 >= 0.90, top-5 >= 0.985 on unseen writers; the calibration baseline (a plain
150k-parameter CNN, 12 epochs, no augmentation) is about 0.92 top-1.
{baseline}
Most confused test pairs:

| true | predicted | count | share of the class |
|---|---|--:|--:|
{confusions}

Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (evaluation {seconds:.0f} s on CPU).
"""
    from _results import write_section

    write_section(args.results, SECTION, section)
    print(f"wrote {out} ({size_mb:.1f} MB) and the {SECTION!r} section of {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
