#!/usr/bin/env python
"""The image-branch ablation of issue 15: each change to ``vgg_gap``, 2 seeds, against the plain model.

Every variant is trained like the baseline (CROHME, writer split of its seed, the same
epochs, schedule and augmentation) and differs in one thing: line thickness, render
channels, residual stages, mixup. A variant is a list of runs, one per seed: a
``strokes train`` output folder (``metrics.json`` and ``history.json``) or a
``strokes bench`` cell record (``cells/NAME__sS.json``). The baseline is given the same way.

Usage::

    .venv/bin/python benchmarks/ablation_image.py \\
        --baseline "plain=benchmarks/results/crohme-converged/cells/vgg_gap__s0.json,...__s1.json" \\
        --variant "thickness 2=runs/abl/thick2_s0,runs/abl/thick2_s1" --command "thickness 2=strokes train ... --thickness 2" ...

The decision is made on the validation writers (a change is kept when it raises val
top-1 on every seed, by more than ``--min-gain`` points on average); the test writers'
figures are reported beside it, never used to choose. Writes the ``## Image-branch
ablation (issue 15)`` section of ``benchmarks/RESULTS.md`` (``--no-write`` prints it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEADING = "## Image-branch ablation (issue 15)"
#: the convergence rule of strokes bench: val top-1 gained less than this over the last 3 epochs
CONVERGED_GAIN = 0.003
#: a change that costs more than this many points of test top-1 under a probe is not kept (issue 15's rule for the default)
MAX_PROBE_DROP = 2.0


def load_run(path) -> dict:
    """One seed's figures from a ``strokes train`` folder or a ``strokes bench`` cell JSON."""
    path = Path(path)
    ckpt = path / "best.pt" if path.is_dir() else path.parent / path.stem / "best.pt"  # a bench cell keeps it beside its record
    if path.is_dir():
        metrics_file, history_file = path / "metrics.json", path / "history.json"
        if not metrics_file.exists():
            raise SystemExit(f"{path} has no metrics.json: is the run finished?")
        metrics = json.loads(metrics_file.read_text())
        history = json.loads(history_file.read_text())
        history = history["epochs"] if isinstance(history, dict) else history
        test1, test5 = metrics["top1"], metrics["top5"]
    else:
        cell = json.loads(path.read_text())
        history = cell["history"]
        test1, test5 = cell["test"]["top1"], cell["test"]["top5"]
    vals = [h["val_top1"] for h in history]
    best = int(np.argmax(vals))
    gain = max(vals[-3:]) - max(vals[:-3]) if len(vals) > 3 else float("inf")
    return {
        "source": str(path),
        "test_top1": float(test1),
        "test_top5": float(test5),
        "val_top1": float(vals[best]),
        "best_epoch": best + 1,
        "epochs": len(vals),
        "last3_gain": float(gain),
        "converged": bool(gain < CONVERGED_GAIN),
        "checkpoint": str(ckpt) if ckpt.exists() else None,
        "probes": {},
    }


def add_probes(runs: list[dict], data: str, names: list[str], seed: int) -> None:
    """Test top-1 of each run's best.pt under the probes ``names`` (raw ink perturbed), and the drop in points."""
    import strokes
    from strokes.bench import measure_probes
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.train import checkpoint_split

    ds = strokes.load(data, progress=False)
    for run in runs:
        if run["checkpoint"] is None:
            raise SystemExit(f"{run['source']}: no best.pt beside it to probe")
        loaded = load_checkpoint(run["checkpoint"])
        test = ds.subset(checkpoint_split(loaded.checkpoint, ds).test)
        for name, row in measure_probes(loaded, test, names, "cpu", seed).items():
            run["probes"][name] = {"top1": row["top1"], "drop": 100 * (run["test_top1"] - row["top1"])}


def _pm(values, scale: float = 100.0, signed: bool = False) -> str:
    v = np.asarray(values, float) * scale
    fmt = "{:+.2f}" if signed else "{:.2f}"
    return fmt.format(v.mean()) + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")


def summarize(baseline: list[dict], variants: dict[str, list[dict]], min_gain: float) -> dict:
    """Per variant: the paired differences against the baseline (seed by seed) and the decision."""
    out = {}
    for name, runs in variants.items():
        if len(runs) != len(baseline):
            raise SystemExit(f"variant {name!r} has {len(runs)} seed(s) but the baseline {len(baseline)}: pair them seed by seed")
        d_val = [r["val_top1"] - b["val_top1"] for r, b in zip(runs, baseline)]
        d_test = [r["test_top1"] - b["test_top1"] for r, b in zip(runs, baseline)]
        accurate = all(d > 0 for d in d_val) and 100 * float(np.mean(d_val)) > min_gain
        probes = runs[0]["probes"]
        fragile = [p for p in probes if np.mean([r["probes"][p]["drop"] for r in runs]) > MAX_PROBE_DROP]
        out[name] = {"runs": runs, "d_val": d_val, "d_test": d_test, "more_accurate": accurate, "fragile": fragile,
                     "keep": accurate and not fragile}
    return out


def render(baseline: list[dict], summary: dict, commands: dict, min_gain: float, notes=()) -> str:
    seeds = len(baseline)
    probes = list(baseline[0]["probes"])
    lines = [
        HEADING,
        "",
        f"Each change to the image model (`vgg_gap`, 15 epochs, writer split, seeds 0..{seeds - 1}), trained exactly as the "
        "plain model otherwise, on the same splits. Δ: the change minus the plain model on the same seed, then mean ± std over "
        f"the seeds. **Chosen on the validation writers**: a change is kept when it raises val top-1 on every seed, by more than "
        f"{min_gain:g} points on average, and (when probes were measured) costs at most {MAX_PROBE_DROP:g} points under any of them; "
        "the test writers' figures are reported, never used to choose. Converged: val top-1 "
        f"gained less than {100 * CONVERGED_GAIN:g} points over the last 3 epochs.",
        "",
        "| change | seeds | val top-1 % | Δ val, pt | test top-1 % | Δ test, pt | test top-5 % | converged | kept? |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
        f"| none (plain `vgg_gap`) | {seeds} | {_pm([r['val_top1'] for r in baseline])} | — | {_pm([r['test_top1'] for r in baseline])} | — | "
        f"{_pm([r['test_top5'] for r in baseline])} | {sum(r['converged'] for r in baseline)}/{seeds} | — |",
    ]
    for name, s in summary.items():
        runs = s["runs"]
        lines.append(
            f"| {name} | {len(runs)} | {_pm([r['val_top1'] for r in runs])} | {_pm(s['d_val'], signed=True)} | "
            f"{_pm([r['test_top1'] for r in runs])} | {_pm(s['d_test'], signed=True)} | {_pm([r['test_top5'] for r in runs])} | "
            f"{sum(r['converged'] for r in runs)}/{len(runs)} | "
            + ("**yes**" if s["keep"] else "no" + (f" (loses > {MAX_PROBE_DROP:g} pt under {', '.join(s['fragile'])})" if s["more_accurate"] else ""))
            + " |"
        )
    if probes:
        lines += [
            "",
            "Robustness of each change (test top-1 change in points under each probe of the raw ink, mean over seeds; "
            "a default model may lose at most 2):",
            "",
            "| change | " + " | ".join(probes) + " |",
            "|---|" + "--:|" * len(probes),
        ]
        rows = [("none (plain `vgg_gap`)", baseline)] + [(n, s["runs"]) for n, s in summary.items()]
        for name, runs in rows:
            lines.append(f"| {name} | " + " | ".join(f"{-np.mean([r['probes'][p]['drop'] for r in runs]):+.2f}" for p in probes) + " |")
    kept = [n for n, s in summary.items() if s["keep"]]
    lines += [
        "",
        "Kept: " + (", ".join(f"`{n}`" for n in kept) if kept else "nothing: no change raised val top-1 on every seed by enough without costing robustness") + ".",
    ]
    for note in notes:
        lines += ["", note]
    lines += [
        "",
        "Runs (one per seed, in seed order):",
        "",
    ]
    def sources(runs):
        return ", ".join("`" + r["source"] + "`" for r in runs)

    lines += [f"- plain: {sources(baseline)}"]
    for name, s in summary.items():
        lines.append(f"- {name}: {sources(s['runs'])}")
    if commands:
        lines += ["", "Commands (seed 0; seed 1 with `--seed 1`):", ""]
        lines += [f"    {cmd}   # {name}" for name, cmd in commands.items()]
    return "\n".join(lines) + "\n"


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SystemExit(f"{what} must be NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="NAME=RUN[,RUN...]: the plain model, one run per seed")
    ap.add_argument("--variant", action="append", default=[], help="NAME=RUN[,RUN...] (repeatable), seeds in the baseline's order")
    ap.add_argument("--command", action="append", default=[], help="NAME=COMMAND that trained a variant (recorded)")
    ap.add_argument("--min-gain", type=float, default=0.1, help="points of val top-1 a kept change must add on average (default 0.1)")
    ap.add_argument("--probes", default="", help="comma list of strokes.probes to score each run's best.pt under (default: none)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crohme"), help="the data the runs were trained on (for --probes)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the seeded probes")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to add after the tables (repeatable)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    (_, base_runs), = _pairs([args.baseline], "--baseline").items()
    baseline = [load_run(p) for p in base_runs.split(",")]
    variants = {name: [load_run(p) for p in runs.split(",")] for name, runs in _pairs(args.variant, "--variant").items()}
    if args.probes:
        add_probes(baseline + [r for runs in variants.values() for r in runs], args.data, args.probes.split(","), args.seed)
    summary = summarize(baseline, variants, args.min_gain)
    if args.json:
        from strokes._util import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump({"baseline": baseline, "variants": summary, "min_gain": args.min_gain}, fh, indent=1)
    text = render(baseline, summary, _pairs(args.command, "--command"), args.min_gain, args.note)
    print(text)
    if not args.no_write:
        from benchmarks._results import write_section

        write_section(args.results, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
