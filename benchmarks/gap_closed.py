#!/usr/bin/env python
"""Does augmentation close a robustness gap? Two ``strokes bench`` runs side by side (issue 16).

Given two bench output directories that differ only in ``--augment`` (the
same data, models, split, seeds and epochs), writes a table per model: clean
test top-1, and top-1 under each probe with its drop, for both runs; and the
change of the drop ("gap closed" when the augmented run loses less). The
section ``## Does augmentation close the gap? (issue 16)`` of
``benchmarks/RESULTS.md`` is replaced.

Usage::

    .venv/bin/python benchmarks/gap_closed.py benchmarks/results/mini-augment-default benchmarks/results/mini-augment-strokes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import write_section  # noqa: E402

SECTION = "## Does augmentation close the gap? (issue 16)"


def _load(run: Path) -> dict:
    res = json.loads((run / "results.json").read_text())
    if not res.get("probes"):
        raise SystemExit(f"{run} has no probe results; run strokes bench with --probes")
    return res


def _aug(res) -> str:
    a = res["config"]["augment"]
    return "default" if a is True else "none" if a is False else str(a)


def render(base: dict, aug: dict) -> str:
    same = ("split", "seeds", "seed", "epochs", "time_budget", "batch_size", "lr")
    diff = [k for k in same if base["config"].get(k) != aug["config"].get(k)]
    if diff or base["data"]["fingerprint"] != aug["data"]["fingerprint"]:
        raise SystemExit(f"the runs differ in more than --augment: {diff or 'data'}")
    a_name, b_name = _aug(base), _aug(aug)
    lines = [
        SECTION,
        "",
        f"Two runs of `strokes bench` on {base['data']['name']} ({base['data']['samples']:,} symbols, "
        f"{base['data']['classes']} classes), the same writer splits, seeds {base['config']['seed']}.."
        f"{base['config']['seed'] + base['config']['seeds'] - 1} and {base['config']['epochs']} epochs, "
        f"differing only in the augmentation: `{a_name}` vs `{b_name}`.",
        "",
        f"- `{base['command']}`",
        f"- `{aug['command']}`",
        "",
        "Test top-1 % (mean over seeds) and, for each probe, the change against the same run's clean top-1. "
        "*Gap closed* is how many points of the drop the augmented run recovers.",
        "",
    ]
    clean = {r["model"]: r for r in base["summary"]}
    clean_b = {r["model"]: r for r in aug["summary"]}
    conv_a = {r["model"]: r.get("converged") for r in base["summary"]}
    conv_b = {r["model"]: r.get("converged") for r in aug["summary"]}
    rows_a = {r["probe"]: r for r in base["probes"]["rows"]}
    rows_b = {r["probe"]: r for r in aug["probes"]["rows"]}
    for model in base["probes"]["models"]:
        if model not in clean_b:
            continue
        lines += [
            f"**`{model}`** ({clean[model]['representation']}): clean {100 * clean[model]['top1_mean']:.2f}% with `{a_name}`"
            f"{'' if conv_a[model] else ' (not converged)'}, {100 * clean_b[model]['top1_mean']:.2f}% with `{b_name}`"
            f"{'' if conv_b[model] else ' (not converged)'}.",
            "",
            f"| probe | `{a_name}` top-1 (drop) | `{b_name}` top-1 (drop) | gap closed |",
            "|---|--:|--:|--:|",
        ]
        for probe, ra in rows_a.items():
            rb = rows_b.get(probe)
            if rb is None or model not in ra["models"] or model not in rb["models"]:
                continue
            a, b = ra["models"][model], rb["models"][model]
            closed = 100 * (b["drop"] - a["drop"])
            lines.append(
                f"| {probe}{' (informational)' if ra['informational'] else ''} | {100 * a['top1']:.2f} ({100 * a['drop']:+.2f}) "
                f"| {100 * b['top1']:.2f} ({100 * b['drop']:+.2f}) | {closed:+.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path, help="the bench run with the baseline augmentation")
    ap.add_argument("augmented", type=Path, help="the bench run with the probe-mirroring augmentation")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to add at the end (repeatable)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    text = render(_load(args.base), _load(args.augmented)) + "".join(f"\n{n}\n" for n in args.note)
    print(text)
    if not args.no_write:
        write_section(ROOT / "benchmarks" / "RESULTS.md", SECTION, text)
        print("updated benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
