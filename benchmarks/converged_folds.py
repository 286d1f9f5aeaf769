#!/usr/bin/env python
"""Per-fold comparison from converged cells only, taken from several ``strokes bench`` runs.

A bench run gives every cell the same epochs. When a fold had not converged at that budget,
it is run again with more epochs into another ``--out`` (``strokes bench --cells``). This
script then builds one table in which every fold compares the models **at the same budget
within the fold** and **converged** (the bench's rule, :func:`strokes.bench_report.converged`):
for each fold, the first run in ``--runs`` (in the order given) where every model of
``--models`` has a finished, converged cell for it. A fold that no run settles is listed
with the reason.

Usage::

    .venv/bin/python benchmarks/converged_folds.py --models lstm,lenet5,vgg_gap \\
        --runs benchmarks/bench-runs/crohme-collection benchmarks/bench-runs/crohme-collection-e20

Prints Markdown (``--json`` keeps the numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def read_cells(run: Path) -> list[dict]:
    """The finished cell records of a bench ``--out`` (``cells/*.json``)."""
    cells = sorted((Path(run) / "cells").glob("*.json"))
    if not cells:
        raise ValueError(f"{run} has no finished cells (cells/*.json); give a strokes bench --out")
    return [json.loads(p.read_text()) for p in cells]


def fold_of(cell: dict) -> str:
    """The fold a cell tested on: its split id without the seed prefix (``s0-KAIST`` -> ``KAIST``)."""
    sid = cell["split_id"]
    return sid.split("-", 1)[1] if "-" in sid else sid


def settle(runs: dict[str, list[dict]], models: list[str], seed: int = 0) -> list[dict]:
    """Per fold, the first run (in ``runs``' order) where every model converged on it.

    Returns one row per fold seen in any run: ``{"fold", "run", "epochs", "top1": {model: top-1},
    "gain": {model: last-window gain}}``, or ``{"fold", "run": None, "why"}`` when no run settles it.
    """
    from strokes.bench_report import converged

    runs = {name: [c for c in cells if c["seed"] == seed and c.get("train_fraction", 1.0) >= 1.0] for name, cells in runs.items()}
    folds = list(dict.fromkeys(fold_of(c) for cells in runs.values() for c in cells))  # in order of appearance
    rows = []
    for fold in folds:
        why = []
        for name, cells in runs.items():
            mine = {c["model"]: c for c in cells if fold_of(c) == fold}
            missing = [m for m in models if m not in mine]
            if missing:
                why.append(f"{name}: no cell for {', '.join(missing)}")
                continue
            conv = {m: converged(mine[m].get("history") or []) for m in models}
            if not all(v["converged"] for v in conv.values()):
                why.append(f"{name}: " + ", ".join(f"{m} {v['reason']}" for m, v in conv.items() if not v["converged"]))
                continue
            epochs = sorted({mine[m]["epochs_run"] for m in models})
            rows.append(
                {
                    "fold": fold,
                    "run": name,
                    "epochs": epochs[0] if len(epochs) == 1 else epochs,
                    "top1": {m: mine[m]["test"]["top1"] for m in models},
                    "gain": {m: conv[m]["gain"] for m in models},
                }
            )
            break
        else:
            rows.append({"fold": fold, "run": None, "why": "; ".join(why)})
    return rows


def markdown(rows: list[dict], models: list[str]) -> str:
    """The table: one row per fold, the best model in bold, then the mean over settled folds."""
    import numpy as np

    lines = ["| held out | run | epochs | " + " | ".join(models) + " | best |", "|---|---|--:|" + "--:|" * len(models) + "---|"]
    settled = [r for r in rows if r["run"]]
    for r in rows:
        if not r["run"]:
            lines.append(f"| {r['fold']} | not settled: {r['why']} | – | " + " | ".join("–" for _ in models) + " | – |")
            continue
        top = max(r["top1"].values())
        best = [m for m in models if r["top1"][m] >= top - 1e-9]  # a tie names every model at the top
        vals = [f"**{100 * r['top1'][m]:.2f}**" if m in best else f"{100 * r['top1'][m]:.2f}" for m in models]
        epochs = r["epochs"] if isinstance(r["epochs"], list) else f"{r['epochs']:g}"
        lines.append(f"| {r['fold']} | `{r['run']}` | {epochs} | " + " | ".join(vals) + " | " + " = ".join(f"`{m}`" for m in best) + " |")
    if settled:
        means = {m: float(np.mean([r["top1"][m] for r in settled])) for m in models}
        lines.append(
            f"| mean of {len(settled)} settled fold(s) | | | " + " | ".join(f"{100 * means[m]:.2f}" for m in models) + " | "
            f"`{max(models, key=lambda m: means[m])}` |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="strokes bench --out folders, the preferred (e.g. the shorter budget) first")
    ap.add_argument("--models", required=True, help="comma-separated models every settled fold must have converged")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose cells are compared (default 0)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        ap.error("--models names no model")
    try:
        runs = {Path(r).name: read_cells(Path(r)) for r in args.runs}
    except ValueError as exc:
        ap.error(str(exc))
    if len(runs) != len(args.runs):
        ap.error("two --runs folders have the same name; their rows could not be told apart")
    rows = settle(runs, models, args.seed)
    print(markdown(rows, models))
    if args.json:
        from strokes._util import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump({"runs": [str(r) for r in args.runs], "models": models, "seed": args.seed, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
