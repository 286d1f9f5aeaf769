#!/usr/bin/env python
"""Late fusion of converged bench cells (issue 15): do the representations err differently enough to pay?

Each member is a finished ``strokes bench`` cell (``<bench>/cells/<model>__s<seed>/best.pt``)
trained on the writer split of ``--data`` for that seed. For every seed, on that seed's split
(``strokes.splits.split(ds, mode="writer", seed=seed)``, the split the bench trained on):

1. every member scores the validation and the test writers, each with its own
   normalization pipeline (``strokes.training.ensemble`` member scoring; logits cached
   next to the checkpoint in ``heldout_logits-<fingerprint>.npz``);
2. for each combination of members, weights on the simplex are fitted on the
   **validation** writers only (``strokes.training.ensemble.fit_weights``: the maximum
   likelihood geometric mixture, the ``late_fusion`` model's output) and the mixture is
   scored on the **test** writers: top-1, top-5, and top-1 up to look-alikes
   (``strokes.glyphs.top1_up_to_lookalikes``); the plain equal-weight average beside it;
3. complementarity: of the test drawings the best single member gets wrong, the share
   another member gets right.

Usage::

    .venv/bin/python benchmarks/late_fusion.py --data ../shared/data/crohme \\
        --bench benchmarks/results/crohme-converged --seeds 0,1 --json benchmarks/results/late_fusion.json

Prints Markdown; ``--json`` keeps every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("late_fusion")


def rel(path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), ROOT)
    except ValueError:
        return str(path)


def member_logits(cell_dir: Path, ds, sp, device: str) -> dict:
    """``{"val": (N, C), "test": (N, C), "vocab": [...]}`` of one cell's best.pt, cached per dataset and split."""
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.ensemble import _member_logits

    cache = cell_dir / f"heldout_logits-{ds.fingerprint()}-{len(sp.val)}-{len(sp.test)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {"val": z["val"], "test": z["test"], "vocab": [str(v) for v in z["vocab"]]}
    m = load_checkpoint(cell_dir / "best.pt", device=device)
    out = {"vocab": list(m.vocab)}
    for part, idx in (("val", sp.val), ("test", sp.test)):
        logits, _ = _member_logits([(cell_dir.name, m)], ds, idx, m.vocab, device, 1024)
        out[part] = logits[0].float().numpy()
    from strokes._util import atomic_write

    with atomic_write(cache, "wb") as fh:
        np.savez(fh, val=out["val"], test=out["test"], vocab=np.array(out["vocab"]))
    return out


def scores(log_probs: np.ndarray, y: np.ndarray, vocab) -> dict:
    from strokes.glyphs import top1_up_to_lookalikes

    top = np.argsort(-log_probs, axis=1, kind="stable")[:, :5]
    return {
        "top1": float((top[:, 0] == y).mean()),
        "top5": float((top == y[:, None]).any(1).mean()),
        "top1_lookalike": top1_up_to_lookalikes(top[:, 0], y, vocab),
    }


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def confused_pairs(pred: np.ndarray, y: np.ndarray, vocab, n: int = 10) -> dict:
    """The ``n`` most frequent (true, predicted) error pairs, and how many errors fall inside look-alike groups."""
    from strokes.glyphs import lookalike_groups

    group = np.asarray(lookalike_groups(vocab))
    wrong = pred != y
    pairs, counts = np.unique(np.stack([y[wrong], pred[wrong]], 1), axis=0, return_counts=True) if wrong.any() else (np.zeros((0, 2), int), [])
    order = np.argsort(-np.asarray(counts), kind="stable")[:n]
    return {
        "errors": int(wrong.sum()),
        "lookalike_errors": int((group[pred[wrong]] == group[y[wrong]]).sum()),
        "pairs": [(vocab[pairs[i][0]], vocab[pairs[i][1]], int(counts[i])) for i in order],
    }


def run_seed(ds, seed: int, members: dict[str, Path], device: str, max_size: int) -> dict:
    import torch

    from strokes.splits import split
    from strokes.training.ensemble import fit_weights

    sp = split(ds, mode="writer", seed=seed)
    got = {name: member_logits(path, ds, sp, device) for name, path in members.items()}
    vocab = next(iter(got.values()))["vocab"]
    for name, g in got.items():
        if g["vocab"] != vocab:
            raise ValueError(f"{name} has another vocabulary than the other members")
    index = {v: i for i, v in enumerate(vocab)}
    y = {part: np.array([index[ds.vocab[c]] for c in ds.labels[idx]]) for part, idx in (("val", sp.val), ("test", sp.test))}
    lp = {name: {part: log_softmax(g[part].astype(np.float64)) for part in ("val", "test")} for name, g in got.items()}
    rows = {}
    names = list(members)
    for size in range(1, min(max_size, len(names)) + 1):
        for combo in itertools.combinations(names, size):
            if size == 1:
                w = [1.0]
            else:
                w = fit_weights([torch.from_numpy(lp[n]["val"]) for n in combo], torch.from_numpy(y["val"]), seed=seed)
            mix = sum(wi * lp[n]["test"] for wi, n in zip(w, combo))
            row = {"weights": dict(zip(combo, map(float, w))), "fitted": scores(mix, y["test"], vocab)}
            if size > 1:
                row["equal"] = scores(sum(lp[n]["test"] for n in combo) / size, y["test"], vocab)
            rows[" + ".join(combo)] = row
    single = {n: rows[n]["fitted"]["top1"] for n in names}
    best = max(single, key=single.get)
    top_combo = max(rows, key=lambda c: rows[c]["fitted"]["top1"])
    confusion = {}
    for label, combo in (("best single", best), ("best combination", top_combo)):
        w = rows[combo]["weights"]
        pred = sum(wi * lp[n]["test"] for n, wi in w.items()).argmax(1)
        confusion[label] = {"members": combo, **confused_pairs(pred, y["test"], vocab)}
    wrong = lp[best]["test"].argmax(1) != y["test"]
    rescued = {n: float((lp[n]["test"].argmax(1)[wrong] == y["test"][wrong]).mean()) for n in names if n != best}
    return {"seed": seed, "test": int(len(sp.test)), "val": int(len(sp.val)), "combos": rows, "best_single": best,
            "best_single_errors": int(wrong.sum()), "rescued_by": rescued, "confusion": confusion}  # fmt: skip


def probe_combo(ds, seed: int, members: dict[str, Path], combo: list[str], probes: list[str], device: str) -> dict:
    """Top-1 of the val-fitted late fusion of ``combo`` (and of each member) on the test writers'
    ink perturbed by each probe (``strokes.probes``, seeded by ``seed``), against clean ink."""
    import torch

    from strokes.probes import apply_probe
    from strokes.splits import split
    from strokes.training.checkpoint import load_checkpoint
    from strokes.training.ensemble import _member_logits, fit_weights

    sp = split(ds, mode="writer", seed=seed)
    got = {n: member_logits(members[n], ds, sp, device) for n in combo}
    vocab = got[combo[0]]["vocab"]
    index = {v: i for i, v in enumerate(vocab)}
    y_val = np.array([index[ds.vocab[c]] for c in ds.labels[sp.val]])
    w = fit_weights([torch.from_numpy(log_softmax(got[n]["val"].astype(np.float64))) for n in combo], torch.from_numpy(y_val), seed=seed)
    loaded = {n: load_checkpoint(members[n] / "best.pt", device=device) for n in combo}
    test = ds.subset(sp.test)
    out = {"weights": dict(zip(combo, map(float, w))), "top1": {}}
    for probe in ["clean", *probes]:
        data = test if probe == "clean" else apply_probe(test, probe, seed=seed)
        lps = {}
        for n in combo:
            m = loaded[n]
            logits, y = _member_logits([(n, m)], data, np.arange(len(data)), m.vocab, device, 1024)
            lps[n] = log_softmax(logits[0].double().numpy())
        y = y.numpy()
        mix = sum(wi * lps[n] for wi, n in zip(w, combo))
        out["top1"][probe] = {"fusion": float((mix.argmax(1) == y).mean()), **{n: float((lps[n].argmax(1) == y).mean()) for n in combo}}
        log.info("probe %s: %s", probe, out["top1"][probe])
    return out


def probe_table(res: dict) -> str:
    combo = list(res["weights"])
    clean = res["top1"]["clean"]
    cols = ["fusion", *combo]
    lines = [
        f"Late fusion of {' + '.join(f'`{n}`' for n in combo)} (weights {', '.join(f'{v:.2f}' for v in res['weights'].values())}, fitted on "
        "clean validation ink) and its members, test top-1 % under each probe, change against clean ink in points:",
        "",
        "| probe | " + " | ".join("late fusion" if c == "fusion" else f"`{c}`" for c in cols) + " |",
        "|---|" + "--:|" * len(cols),
    ]
    for probe, row in res["top1"].items():
        cells = [f"{100 * row[c]:.2f}" + ("" if probe == "clean" else f" ({100 * (row[c] - clean[c]):+.2f})") for c in cols]
        lines.append(f"| {probe} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(results: list[dict]) -> str:
    combos = list(results[0]["combos"])
    n = len(results)
    pm = lambda v: f"{100 * np.mean(v):.2f}" + (f" ± {100 * np.std(v, ddof=1):.2f}" if len(v) > 1 else "")  # noqa: E731
    best_single = {}
    for c in combos:
        if " + " not in c:
            best_single[c] = np.mean([r["combos"][c]["fitted"]["top1"] for r in results])
    ref = max(best_single, key=best_single.get)
    ref_v = [r["combos"][ref]["fitted"]["top1"] for r in results]
    one_rep = {c: v for c, v in best_single.items() if not c.startswith("fusion")}  # one representation only
    ref1 = max(one_rep, key=one_rep.get) if one_rep else ref
    ref1_v = [r["combos"][ref1]["fitted"]["top1"] for r in results]
    lines = [
        f"Seeds: {', '.join(str(r['seed']) for r in results)} (mean ± std over {n}); test writers {results[0]['test']:,} drawings "
        f"(seed {results[0]['seed']}); weights fitted on the validation writers. Δ: top-1 against the best single member (`{ref}`) and "
        f"against the best model of one representation (`{ref1}`), per seed, then averaged.",
        "",
        f"| members | weights (fitted on val) | top-1 | Δ vs `{ref}` | Δ vs `{ref1}` | top-5 | top-1 up to look-alikes | equal weights: top-1 |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    order = sorted(combos, key=lambda c: -np.mean([r["combos"][c]["fitted"]["top1"] for r in results]))
    for c in order:
        f = [r["combos"][c]["fitted"] for r in results]
        w = {k: np.mean([r["combos"][c]["weights"][k] for r in results]) for k in results[0]["combos"][c]["weights"]}
        delta = np.mean([r["combos"][c]["fitted"]["top1"] - v for r, v in zip(results, ref_v)])
        delta1 = np.mean([r["combos"][c]["fitted"]["top1"] - v for r, v in zip(results, ref1_v)])
        eq = [r["combos"][c].get("equal", {}).get("top1") for r in results]
        lines.append(
            f"| {c} | {', '.join(f'{v:.2f}' for v in w.values()) if len(w) > 1 else '—'} | {pm([x['top1'] for x in f])} | {100 * delta:+.2f} | {100 * delta1:+.2f} | "
            f"{pm([x['top5'] for x in f])} | {pm([x['top1_lookalike'] for x in f])} | {pm(eq) if eq[0] is not None else '—'} |"
        )
    lines += ["", "Complementarity (test writers): of the best single member's errors, the share each other member gets right:", ""]
    for r in results:
        lines.append(
            f"- seed {r['seed']}: `{r['best_single']}` errs on {r['best_single_errors']} drawings; "
            + ", ".join(f"`{k}` gets {100 * v:.0f} % of them right" for k, v in sorted(r["rescued_by"].items(), key=lambda kv: -kv[1]))
        )
    lines += ["", "Most confused (true → predicted, count on the test writers), and the errors inside look-alike groups "
              "(`|`/`1`, `o`/`0`, `C`/`c`, `X`/`x`/`\\times`):", ""]  # fmt: skip
    for r in results:
        for label, c in r["confusion"].items():
            lines.append(
                f"- seed {r['seed']}, {label} (`{c['members']}`): {c['errors']} errors, {c['lookalike_errors']} of them look-alikes; "
                + ", ".join(f"`{a}`→`{b}` {k}" for a, b, k in c["pairs"])
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/crohme")
    ap.add_argument("--bench", action="append", required=True, help="a strokes bench --out folder (repeatable); "
                    "give NAME=DIR to name its members MODEL@NAME")  # fmt: skip
    ap.add_argument("--models", default=None, help="comma list of members to use (default: every finished cell)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--max-size", type=int, default=4, help="largest combination scored (default 4)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--probe-combo", default=None, help="members joined by + (e.g. tcn+vgg_gap): also score their late "
                    "fusion under --probes on the first seed")  # fmt: skip
    ap.add_argument("--probes", default="reversed,stroke-order,rotate-10,rotate+10,sparse-3")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import strokes

    ds = strokes.load(args.data, progress=False)
    wanted = set(args.models.split(",")) if args.models else None
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        members = {}
        for spec in args.bench:
            tag, _, folder = spec.rpartition("=")
            for cell in sorted(Path(folder, "cells").glob(f"*__s{seed}")):
                if not (cell / "best.pt").exists() or "frac" in cell.name:
                    continue
                name = cell.name.split("__")[0] + (f"@{tag}" if tag else "")
                if wanted is None or name in wanted:
                    members[name] = cell
        if len(members) < 2:
            raise SystemExit(f"seed {seed}: fewer than 2 finished cells with best.pt in {args.bench}")
        log.info("seed %d: members %s", seed, ", ".join(f"{k} ({rel(v)})" for k, v in members.items()))
        results.append(run_seed(ds, seed, members, args.device, args.max_size))
    probed = None
    if args.probe_combo:
        seed0 = int(args.seeds.split(",")[0])
        members0 = {}
        for spec in args.bench:
            tag, _, folder = spec.rpartition("=")
            for cell in sorted(Path(folder, "cells").glob(f"*__s{seed0}")):
                members0[cell.name.split("__")[0] + (f"@{tag}" if tag else "")] = cell
        probed = probe_combo(ds, seed0, members0, args.probe_combo.split("+"), args.probes.split(","), args.device)
    common = set.intersection(*(set(r["combos"]) for r in results))
    for r in results:
        r["combos"] = {c: v for c, v in r["combos"].items() if c in common}
    text = summarize(results) + ("\n" + probe_table(probed) if probed else "")
    print(text)
    if args.json:
        from strokes._util import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump({"data": args.data, "bench": [rel(b.rpartition("=")[2]) for b in args.bench], "results": results,
                       "probes": probed, "markdown": text}, fh, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
