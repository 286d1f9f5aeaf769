#!/usr/bin/env python
"""Copy a ``strokes bench`` run into ``benchmarks/RESULTS.md`` (and its charts into ``benchmarks/img/``).

    .venv/bin/python benchmarks/publish_bench.py benchmarks/results/crohme-writer \\
        --note "Three cells were re-run on a quiet machine ..."

The run's ``report.md`` becomes the section ``## Sequence vs image: strokes bench
(issue 5)`` with its headings one level down and the chart links pointing at
``img/bench-*.png``; ``--note`` adds a paragraph after the heading. Other
sections of RESULTS.md are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import write_section  # noqa: E402

HEADING = "## Sequence vs image: strokes bench (issue 5)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the bench output directory (with results.json)")
    p.add_argument("--note", action="append", default=[], help="a paragraph to add after the heading (repeatable)")
    p.add_argument("--heading", default=HEADING, help=f"the RESULTS.md section to replace (default {HEADING!r})")
    p.add_argument("--prefix", default="bench-", help="file name prefix of the charts in benchmarks/img/ (default bench-)")
    args = p.parse_args(argv)

    from strokes.bench_report import CHARTS, render_report

    run = Path(args.run)
    results = json.loads((run / "results.json").read_text())
    img = ROOT / "benchmarks" / "img"
    img.mkdir(exist_ok=True)
    for name in CHARTS.values():
        if (run / name).exists():
            shutil.copyfile(run / name, img / f"{args.prefix}{name}")
    body = render_report(results, image_prefix=f"img/{args.prefix}")
    lines = body.splitlines()
    out = [args.heading, ""]
    out += [n + "\n" for n in args.note]
    for line in lines[1:]:  # the report's own title is replaced by HEADING
        out.append("#" + line if line.startswith("#") else line)
    write_section(ROOT / "benchmarks" / "RESULTS.md", args.heading, "\n".join(out).rstrip("\n") + "\n")
    print(f"updated benchmarks/RESULTS.md and benchmarks/img/{args.prefix}*.png from {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
