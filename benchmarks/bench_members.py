#!/usr/bin/env python
"""A late fusion's members side by side or one after the other: ``recognize()`` latency, same run (issue 15).

The recognizer runs a late fusion's members in parallel on small batches (member 0 in
the calling thread, the others in a helper thread; ``strokes.recognizer.PARALLEL_MAX_BATCH``).
This times one symbol per call through ``Recognizer.__call__`` (normalize, render, forward,
top-5) for the same model loaded twice, ``parallel=False`` and ``parallel=True``, the calls
interleaved on the same inks so that both see the same machine, and reports p50 / p95 and
their ratio. Target (issue 15): p50 <= 3 ms on this CPU.

    .venv/bin/python benchmarks/bench_members.py --n 500

Run it on an otherwise idle machine; it reports the load average it saw. Writes the
``## Late fusion members side by side (issue 15)`` section of RESULTS.md (``--no-write``
prints it only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTION = "## Late fusion members side by side (issue 15)"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crohme"
TARGET_MS = 3.0


def pick_inks(data: Path, n: int, seed: int) -> tuple[list, str]:
    """``n`` inks: CROHME symbols when ``data`` exists, else synthetic ones; and where they came from."""
    import strokes

    if data.exists():
        ds = strokes.load(data, progress=False)
        where = "CROHME symbols"
    else:
        from strokes.synthetic import generate

        ds = generate(n_writers=max(1, n // 20), samples_per_writer=1, seed=seed)
        where = "synthetic symbols (no CROHME data here)"
    idx = np.random.default_rng(seed).choice(len(ds), min(n, len(ds)), replace=False)
    return [ds[int(i)].strokes for i in idx], where


def time_calls(recognizers: dict, inks: list, warmup: int = 20) -> dict:
    """Per recognizer, the seconds of each call, the recognizers interleaved ink by ink."""
    for rec in recognizers.values():
        for ink in inks[:warmup]:
            rec(ink)
    out = {name: [] for name in recognizers}
    for ink in inks:
        for name, rec in recognizers.items():
            t0 = time.perf_counter()
            rec(ink)
            out[name].append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a late_fusion checkpoint (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the inks come from (CROHME folder)")
    ap.add_argument("--n", type=int, default=500, help="timed calls per setting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="2,1", help="torch thread counts to measure at (default 2,1)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from strokes.recognizer import DEFAULT_MODEL, PARALLEL_MAX_BATCH, Recognizer
    from strokes.training.checkpoint import load_checkpoint

    model = args.model or str(DEFAULT_MODEL)
    loaded = load_checkpoint(model)
    if loaded.name != "late_fusion":
        raise SystemExit(f"{model} is a {loaded.name}, not a late fusion: there are no members to run side by side")
    inks, where = pick_inks(args.data, args.n, args.seed)
    load0 = os.getloadavg()[0]
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        recs = {"one after the other": Recognizer(loaded, parallel=False), "side by side": Recognizer(loaded, parallel=True)}
        secs = time_calls(recs, inks)
        p50 = {k: 1e3 * float(np.median(v)) for k, v in secs.items()}
        p95 = {k: 1e3 * float(np.percentile(v, 95)) for k, v in secs.items()}
        rows.append((threads, p50, p95))
    load1 = os.getloadavg()[0]
    rel = os.path.relpath(model, ROOT) if os.path.isabs(model) else model
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python benchmarks/bench_members.py --n {args.n}`; model `{rel}` ({loaded.title}); "
        f"{len(inks)} {where}, one per `recognize()` call (normalize, render, forward, top-5), the two settings "
        f"interleaved call by call after {20} warm-up calls each; load average {load0:.2f} at the start and {load1:.2f} at the end. "
        f"Side by side applies to batches of up to {PARALLEL_MAX_BATCH}.",
        "",
        "| torch threads | one after the other p50 / p95 ms | side by side p50 / p95 ms | ratio (p50) | target p50 <= 3 ms |",
        "|--:|--:|--:|--:|---|",
    ]
    for threads, p50, p95 in rows:
        a, b = "one after the other", "side by side"
        lines.append(
            f"| {threads} | {p50[a]:.2f} / {p95[a]:.2f} | {p50[b]:.2f} / {p95[b]:.2f} | {p50[b] / p50[a]:.2f}x | "
            f"{'met' if p50[b] <= TARGET_MS else 'missed'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        from benchmarks._results import write_section

        write_section(args.results, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
