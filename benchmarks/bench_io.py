#!/usr/bin/env python
"""Data-loading benchmark (issue 2): throughput and peak memory of the loaders.

Measures, on the real CROHME data in ``../shared/data/crohme`` and on a
detexify-format dump of at least ``--scale`` samples made from it:

1. InkML parse of the whole CROHME folder (``strokes.load(dir)``);
2. dump parse (``strokes.load(dump.sql)``) of the scale dump;
3. PostgreSQL import: (a) ``copy_dump_to_postgres(dump, dsn, replace=True)``
   (COPY load) and (b) ``strokes.load(dsn)`` reading the table back;
4. ``.npz`` load of the CROHME set (``strokes.load(x.npz)``), best of several runs.

Every measured operation runs in a fresh Python process (``--_worker``). Its
peak memory is the growth of peak RSS over a baseline taken after the imports:
the process resets its high-water mark (``/proc/self/clear_refs`` = 5), runs
the operation and reads ``VmHWM`` from ``/proc/self/status`` (falling back to
``ru_maxrss`` growth where the reset is not available). A second fresh process
repeats the operation under ``tracemalloc`` (untimed) for the Python/numpy
allocation peak. Times are ``time.perf_counter`` wall times.

The scale dump is a SCALE FIXTURE, not real data: the CROHME samples tiled until
``--scale`` samples, every copy after the first given a small random per-sample
affine jitter (``np.random.default_rng(seed)``), and, by default, relabelled
into >= ``--classes`` pseudo-classes. It is written with
``strokes.io.detexify.save_detexify_sql`` into a temporary directory outside
the repository, with a ``-- SCALE FIXTURE`` comment line at its top.

Results go to stdout (markdown) and into the ``## Data loading (issue 2)``
section of ``--out`` (default ``benchmarks/RESULTS.md``), written atomically;
other sections of that file are kept as they are.

Usage::

    .venv/bin/python benchmarks/bench_io.py                 # everything, throwaway PostgreSQL
    .venv/bin/python benchmarks/bench_io.py --skip-postgres
    .venv/bin/python benchmarks/bench_io.py --dsn postgresql://user@host/db --table bench_io_samples
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crohme"
DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Data loading (issue 2)"
RESULT_MARK = "BENCH_IO_RESULT "
MB = 1e6

# targets (issue 2)
TARGET_DUMP_RATE = 100_000  # samples/s, dump parse
TARGET_PG_RATE = 30_000  # samples/s, PostgreSQL import
TARGET_NPZ_S = 0.3  # seconds, .npz load of CROHME
TARGET_MEM_RATIO = 3.0  # peak memory <= 3x the bytes of the points


# =============================================================================
# worker side: runs in a fresh interpreter, one operation, prints one JSON line
# =============================================================================
def _proc_status() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(val.split()[0]) * 1024  # kB -> bytes
    except OSError:
        pass
    return out


def _reset_hwm() -> bool:
    """Reset the peak-RSS high-water mark of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class _Meter:
    """Peak RSS growth over the baseline at __enter__ (and tracemalloc peak when asked)."""

    def __init__(self, trace: bool = False):
        self.trace = trace

    def __enter__(self):
        import gc

        gc.collect()
        self.reset = _reset_hwm()
        st = _proc_status()
        self.base_rss = st.get("VmRSS", 0)
        self.base_maxrss = _maxrss_bytes()
        if self.trace:
            import tracemalloc

            tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        if self.trace:
            import tracemalloc

            self.trace_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        st = _proc_status()
        if self.reset and "VmHWM" in st:
            self.method = "VmHWM - VmRSS(baseline), HWM reset via /proc/self/clear_refs"
            self.rss_growth = st["VmHWM"] - self.base_rss
        else:
            self.method = "ru_maxrss growth"
            self.rss_growth = _maxrss_bytes() - self.base_maxrss
        self.base = self.base_rss or self.base_maxrss
        return False


def _points_bytes(ds) -> int:
    return ds.xy.nbytes + (ds.t.nbytes if ds.t is not None else 0)


def _ds_summary(ds) -> dict:
    return {
        "samples": len(ds),
        "classes": len(ds.vocab),
        "strokes": ds.num_strokes,
        "points": ds.num_points,
        "points_bytes": _points_bytes(ds),
        "has_t": ds.t is not None,
        "skipped": len(ds.skipped),
        "fingerprint": ds.fingerprint(),
    }


def _build_scale(ds, scale: int, seed: int, min_classes: int, jitter: float):
    """The SCALE FIXTURE: ``ds`` tiled to ``scale`` samples, jittered and relabelled, vectorized."""
    import numpy as np

    from strokes.dataset import StrokeDataset

    n = len(ds)
    copies = max(1, math.ceil(scale / n))
    idx = np.tile(np.arange(n, dtype=np.int64), copies)[:scale]
    copy_no = np.repeat(np.arange(copies, dtype=np.int64), n)[:scale]
    big = ds.subset(idx)  # gathers points/strokes with index arrays, no Python loop per sample
    m = len(big)
    rng = np.random.default_rng(seed)

    # per-sample affine jitter about the sample's centroid (copy 0 stays the original data)
    starts = big.point_offsets[:-1]
    pps = big.points_per_sample()
    sid = np.repeat(np.arange(m), pps)  # sample of every point
    xy = big.xy.astype(np.float64)
    center = np.add.reduceat(xy, starts, axis=0) / pps[:, None]
    extent = np.maximum(np.maximum.reduceat(xy, starts, axis=0) - np.minimum.reduceat(xy, starts, axis=0), 1e-6)
    size = extent.max(axis=1)
    a = np.eye(2)[None] + rng.normal(0.0, jitter, (m, 2, 2))  # scale / rotation / shear near identity
    shift = rng.normal(0.0, jitter, (m, 2)) * size[:, None]
    jittered = copy_no > 0
    a[~jittered] = np.eye(2)
    shift[~jittered] = 0.0
    rel = xy - center[sid]
    del xy
    out = np.empty_like(rel)
    out[:, 0] = a[sid, 0, 0] * rel[:, 0] + a[sid, 0, 1] * rel[:, 1]
    out[:, 1] = a[sid, 1, 0] * rel[:, 0] + a[sid, 1, 1] * rel[:, 1]
    del rel
    out += center[sid] + shift[sid]
    # keep each sample's decimal precision as in the source (integral samples stay integral,
    # the others get 4 decimals like most CROHME files), so the dump's number tokens have
    # realistic lengths rather than 9-digit float32 noise
    src = big.xy
    frac_pt = np.any(src != np.round(src), axis=1)
    frac_sample = np.logical_or.reduceat(frac_pt, starts)
    decimals = np.where(frac_sample[sid], 4, 0)
    out = np.where(decimals[:, None] == 0, np.round(out), np.round(out, 4))
    out += 0.0  # -0.0 -> +0.0: the dump writes -0.0 as "0", which would break the fingerprint check
    new_xy = np.where(jittered[sid][:, None], out, src).astype(np.float32)
    del out

    # relabel: class name + "~v<k>", k = copy * K + (source index mod K), >= min_classes classes
    labels, vocab = big.labels, list(big.vocab)
    if min_classes and len(vocab) < min_classes:
        per_copy = max(1, math.ceil(min_classes / (len(vocab) * copies)))
        variant = copy_no * per_copy + idx % per_copy
        codes = labels * (copies * per_copy) + variant
        uniq, inv = np.unique(codes, return_inverse=True)
        names = [f"{vocab[c // (copies * per_copy)]}~v{c % (copies * per_copy)}" for c in uniq.tolist()]
        order = sorted(range(len(names)), key=names.__getitem__)
        rank = np.empty(len(names), np.int64)
        rank[order] = np.arange(len(names))
        labels, vocab = rank[inv.reshape(-1)], [names[i] for i in order]

    return StrokeDataset(
        new_xy,
        big.stroke_offsets,
        big.sample_offsets,
        labels,
        vocab,
        t=big.t,
        name=f"SCALE FIXTURE from {ds.name}",
        synthetic=False,
        info={"fixture": "scale", "copies": copies, "seed": seed},
    ), copies


def _prepend_marker(path: Path, line: str) -> None:
    """Put a comment line at the very top of ``path`` (atomically)."""
    tmp = path.with_name(path.name + ".marked")
    with open(tmp, "wb") as out, open(path, "rb") as src:
        out.write(line.encode() + b"\n")
        shutil.copyfileobj(src, out, 1 << 22)
    os.replace(tmp, path)


def _op_prepare(spec: dict) -> dict:
    import numpy as np

    import strokes
    from strokes.io.detexify import save_detexify_sql
    from strokes.io.npz import save_npz

    tmp = Path(spec["tmp"])
    t0 = time.perf_counter()
    ds = strokes.load(spec["data"], progress=False)
    res = {"crohme": _ds_summary(ds), "crohme_load_s": time.perf_counter() - t0}
    save_npz(ds, tmp / "crohme.npz")  # what ds.save("x.npz") writes (zip-deflated)
    save_npz(ds, tmp / "crohme_raw.npz", compress=False)
    res["npz_bytes"] = os.path.getsize(tmp / "crohme.npz")
    res["npz_raw_bytes"] = os.path.getsize(tmp / "crohme_raw.npz")

    t0 = time.perf_counter()
    big, copies = _build_scale(ds, spec["scale"], spec["seed"], spec["classes"], spec["jitter"])
    res["fixture_build_s"] = time.perf_counter() - t0
    del ds
    res["scale"] = _ds_summary(big)
    res["scale"]["copies"] = copies
    res["scale"]["t_known_fraction"] = float(np.mean(~np.isnan(big.t))) if big.t is not None else 0.0
    dump = tmp / "scale.sql"
    with _Meter() as m:
        save_detexify_sql(big, dump)
    res["dump_write"] = {"seconds": m.seconds, "rss_growth": m.rss_growth}
    _prepend_marker(
        dump,
        f"-- SCALE FIXTURE (strokes benchmarks/bench_io.py): {len(big)} samples = CROHME x{copies}, "
        f"per-sample affine jitter (seed {spec['seed']}), {len(big.vocab)} pseudo-classes; NOT real detexify data",
    )
    res["dump_bytes"] = os.path.getsize(dump)
    res["dump"] = str(dump)
    return res


def _op_load(spec: dict) -> dict:
    """Time (best of ``runs``) and measure one load; memory from the first run."""
    import numpy as np  # noqa: F401  (imported before the baseline)
    import psycopg2  # noqa: F401

    import strokes
    import strokes.io.detexify  # noqa: F401
    import strokes.io.inkml  # noqa: F401
    import strokes.io.npz  # noqa: F401
    import strokes.io.postgres  # noqa: F401

    opts = {"progress": False, **spec.get("options", {})}
    trace = spec.get("trace", False)
    times, first = [], None
    for i in range(spec.get("runs", 1)):
        ds = None
        with _Meter(trace=trace and i == 0) as m:
            ds = strokes.load(spec["source"], **opts)
        times.append(m.seconds)
        if first is None:
            first = m
            summary = _ds_summary(ds)
    out = {
        "times": times,
        "seconds": min(times),
        "rss_growth": first.rss_growth,
        "baseline_rss": first.base,
        "method": first.method,
        **summary,
    }
    if trace:
        out["trace_peak"] = first.trace_peak
    return out


def _op_pg_copy(spec: dict) -> dict:
    import numpy as np  # noqa: F401
    import psycopg2  # noqa: F401

    import strokes  # noqa: F401
    from strokes.io.postgres import copy_dump_to_postgres

    with _Meter(trace=spec.get("trace", False)) as m:
        rows = copy_dump_to_postgres(spec["dump"], spec["dsn"], table=spec["table"], replace=True, progress=False)
    out = {"seconds": m.seconds, "times": [m.seconds], "rss_growth": m.rss_growth, "baseline_rss": m.base,
           "method": m.method, "samples": rows}
    if spec.get("trace"):
        out["trace_peak"] = m.trace_peak
    return out


def _op_profile(spec: dict) -> dict:
    import cProfile
    import pstats

    import strokes
    import strokes.io.detexify  # noqa: F401

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    ds = strokes.load(spec["source"], progress=False)
    prof.disable()
    total = time.perf_counter() - t0
    st = pstats.Stats(prof)

    def short(key):
        file, line, func = key
        if file == "~":
            return func
        p = Path(file)
        parts = p.parts
        where = "/".join(parts[parts.index("strokes"):]) if "strokes" in parts else p.name
        return f"{where}:{line}({func})"

    rows = [
        {"func": short(k), "ncalls": nc, "tottime": tt, "cumtime": ct}
        for k, (cc, nc, tt, ct, _callers) in st.stats.items()
    ]
    top_tot = sorted(rows, key=lambda r: -r["tottime"])[: spec.get("top", 15)]
    top_cum = sorted(rows, key=lambda r: -r["cumtime"])[: spec.get("top", 15)]
    return {"profiled_seconds": total, "samples": len(ds), "top_tottime": top_tot, "top_cumtime": top_cum,
            "total_tt": st.total_tt}


def _worker(spec_json: str) -> None:
    sys.path.insert(0, str(ROOT))
    spec = json.loads(spec_json)
    op = {"prepare": _op_prepare, "load": _op_load, "pg_copy": _op_pg_copy, "profile": _op_profile}[spec["op"]]
    result = op(spec)
    print(RESULT_MARK + json.dumps(result), flush=True)


# =============================================================================
# driver side
# =============================================================================
def run_worker(spec: dict, label: str) -> dict:
    """Run one operation in a fresh interpreter; return its JSON result."""
    print(f"  [{time.strftime('%H:%M:%S')}] {label} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
        )
    res = json.loads(lines[-1][len(RESULT_MARK):])
    print(f"      done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return res


def machine_info() -> dict:
    import numpy

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "?"
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    try:
        import psycopg2

        pg = psycopg2.__version__.split()[0]
    except ImportError:
        pg = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "psycopg2": pg,
        "os": f"{platform.system()} {platform.release()}",
    }


def pg_server_version(dsn: str) -> str:
    try:
        import psycopg2

        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            v = cur.fetchone()[0]
        conn.close()
        return v
    except Exception as exc:  # noqa: BLE001 - informational only
        return f"? ({exc.__class__.__name__})"


def drop_table(dsn: str, table: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*table.split("."))))
    finally:
        conn.close()


def code_fingerprint() -> dict:
    """Which library code was measured: a hash over strokes/**/*.py (the checkout may change under us)."""
    import hashlib

    h, newest = hashlib.sha256(), 0.0
    for f in sorted((ROOT / "strokes").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        newest = max(newest, f.stat().st_mtime)
    when = datetime.fromtimestamp(newest, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"sha256": h.hexdigest()[:16], "newest": when}


def display_path(path) -> str:
    """``path`` as committed files should show it: relative to the repository (``../shared/data/crohme``), never a machine path."""
    try:
        return os.path.relpath(Path(path).resolve(), ROOT)
    except ValueError:  # another drive (Windows)
        return Path(path).name


def fmt_mb(b) -> str:
    return "–" if b is None else f"{b / MB:,.1f}"


def fmt_rate(r) -> str:
    return "–" if r is None else f"{r:,.0f}"


def verdict(ok) -> str:
    return "–" if ok is None else ("**pass**" if ok else "**FAIL**")


def build_rows(res: dict) -> list[dict]:
    """One row per measured operation, with targets and verdicts."""
    prep = res["prepare"]
    crohme, scale = prep["crohme"], prep["scale"]
    rows = []

    def add(key, step, data, speed_target, speed_ok, points_bytes, note=""):
        r = res.get(key)
        if r is None:
            return
        n = r["samples"]
        rate = n / r["seconds"] if r["seconds"] > 0 else float("inf")
        ratio = r["rss_growth"] / points_bytes if points_bytes else None
        rows.append({
            "key": key,
            "step": step,
            "data": data,
            "samples": n,
            "seconds": r["seconds"],
            "times": r.get("times", [r["seconds"]]),
            "rate": rate,
            "rss": r["rss_growth"],
            "trace": res.get(key + "_trace", {}).get("trace_peak"),
            "points_bytes": points_bytes,
            "ratio": ratio,
            "speed_target": speed_target,
            "speed_ok": speed_ok(rate, r["seconds"]) if speed_ok else None,
            "mem_ok": None if ratio is None else ratio <= TARGET_MEM_RATIO,
            "note": note,
        })

    add("inkml", "1. InkML parse (`strokes.load(dir)`)", "CROHME (real)", "–", None, crohme["points_bytes"])
    add("dump", "2. dump parse (`strokes.load(dump.sql)`)", "scale dump (SCALE FIXTURE)",
        f"≥ {TARGET_DUMP_RATE:,}/s", lambda rate, s: rate >= TARGET_DUMP_RATE, scale["points_bytes"])
    add("pg_copy", "3a. PostgreSQL COPY load (`copy_dump_to_postgres`)", "scale dump (SCALE FIXTURE)",
        f"≥ {TARGET_PG_RATE:,}/s", lambda rate, s: rate >= TARGET_PG_RATE, scale["points_bytes"],
        note="client process only; the server's memory is not counted")
    add("pg_read", "3b. PostgreSQL read (`strokes.load(dsn)`)", "scale table (SCALE FIXTURE)",
        f"≥ {TARGET_PG_RATE:,}/s", lambda rate, s: rate >= TARGET_PG_RATE, scale["points_bytes"])
    add("npz", "4. `.npz` load (`strokes.load(x.npz)`, deflated as `ds.save` writes)", "CROHME (real)",
        f"< {TARGET_NPZ_S} s", lambda rate, s: s < TARGET_NPZ_S, crohme["points_bytes"])
    add("npz_raw", "4'. `.npz` load, `save_npz(compress=False)` (informational)", "CROHME (real)",
        "–", None, crohme["points_bytes"])
    return rows


def render(res: dict, rows: list[dict], args, command: str) -> str:
    prep = res["prepare"]
    crohme, scale = prep["crohme"], prep["scale"]
    mi = res["machine"]
    L = []
    L.append(SECTION)
    L.append("")
    L.append(f"Produced by `{command}` (in the repository root) on {res['started']}; "
             f"benchmark wall time {res['wall_s']:.0f} s.")
    L.append("")
    L.append(f"Machine: {mi['cpu']}, {mi['cores']} cores ({mi['usable_cores']} usable), {mi['memory']} RAM, "
             f"{mi['os']}; Python {mi['python']}, numpy {mi['numpy']}, psycopg2 {mi['psycopg2']}"
             + (f", PostgreSQL server {res['pg_version']} ({res['pg_where']})" if res.get("pg_version") else "")
             + ".")
    c0, c1 = res["code_start"], res["code_end"]
    L.append(f"Library code measured: sha256 over `strokes/**/*.py` = `{c0['sha256']}` (newest file modified "
             f"{c0['newest']})."
             + ("" if c0 == c1 else f" **WARNING: `strokes/` changed during the run** (now `{c1['sha256']}`, "
                f"{c1['newest']}); the steps may have measured different code."))
    la0, la1 = res["loadavg_start"], res["loadavg_end"]
    L.append(f"Load average (1/5/15 min) at start {la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f}, "
             f"at end {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f}: the machine is shared (other people run tests "
             "at the same time), and the PostgreSQL server runs on the same cores, so treat the times as "
             "indicative (± tens of %), not exact.")
    L.append("")
    L.append("Data:")
    L.append("")
    L.append(f"* **CROHME (real)**: `{display_path(args.data)}`: {crohme['samples']:,} samples, {crohme['classes']} classes, "
             f"{crohme['points']:,} points, points bytes (xy float32 + t float64) {fmt_mb(crohme['points_bytes'])} MB. "
             f"`.npz` cache {fmt_mb(prep['npz_bytes'])} MB deflated, {fmt_mb(prep['npz_raw_bytes'])} MB stored.")
    L.append(f"* **scale dump — SCALE FIXTURE, not real detexify data**: CROHME tiled ×{scale['copies']} and cut to "
             f"{scale['samples']:,} samples; every copy after the first gets a per-sample random affine jitter "
             f"(σ = {args.jitter}, `np.random.default_rng({args.seed})`), coordinates rounded to the source's "
             f"precision; relabelled into {scale['classes']:,} pseudo-classes (`label~vK`). "
             f"{scale['points']:,} points ({100 * scale['t_known_fraction']:.0f}% with timestamps), points bytes "
             f"{fmt_mb(scale['points_bytes'])} MB; written by `save_detexify_sql` to a temporary directory "
             f"({fmt_mb(prep['dump_bytes'])} MB of SQL, first line `-- SCALE FIXTURE ...`), deleted afterwards.")
    L.append("")
    L.append("Method: each operation runs in a fresh Python process. *Peak RSS Δ* is the peak resident memory "
             "above a baseline taken after the imports (high-water mark reset through `/proc/self/clear_refs`, "
             "then `VmHWM` − baseline `VmRSS`), so it includes the returned dataset. *tracemalloc peak* comes "
             "from a second fresh run under `tracemalloc` (untimed). The memory target is peak RSS Δ ≤ "
             f"{TARGET_MEM_RATIO:g} × points bytes of the loaded dataset (for the COPY step: of the dataset in the dump). "
             f"Files are in the page cache (just written/read). Times: best of {args.npz_runs} runs for `.npz`, "
             + (f"best of {args.runs} runs" if args.runs > 1 else "a single run") + " for the others "
             "(memory from the first run of each process).")
    L.append("")
    L.append("| step | data | samples | time (s) | samples/s | peak RSS Δ (MB) | tracemalloc peak (MB) "
             "| points (MB) | RSS Δ / points | speed target | speed | memory ≤ 3× |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|")
    for r in rows:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        L.append(
            f"| {r['step']} | {r['data']} | {r['samples']:,} | {r['seconds']:.3f} | {fmt_rate(r['rate'])} "
            f"| {fmt_mb(r['rss'])} | {fmt_mb(r['trace'])} | {fmt_mb(r['points_bytes'])} "
            f"| {ratio} "
            f"| {r['speed_target']} | {verdict(r['speed_ok'])} | {verdict(r['mem_ok'])} |"
        )
    if "pg_copy" in res and "pg_read" in res:
        n = res["pg_read"]["samples"]
        tot = res["pg_copy"]["seconds"] + res["pg_read"]["seconds"]
        rate = n / tot
        L.append("")
        L.append(f"PostgreSQL import end to end (3a + 3b): {n:,} samples in {tot:.2f} s = {rate:,.0f} samples/s "
                 f"(target ≥ {TARGET_PG_RATE:,}/s: {verdict(rate >= TARGET_PG_RATE)}).")
    L.append("")
    notes = []
    for r in rows:
        if len(r["times"]) > 1:
            notes.append(f"{r['step'].split(' ')[0]} all runs (s): " + ", ".join(f"{t:.3f}" for t in r["times"]))
    checks = res.get("checks", [])
    if notes or checks:
        L.append("Notes:")
        L.append("")
        for n in notes + checks:
            L.append(f"* {n}")
        if "pg_copy" in res:
            L.append("* 3a measures the client process; the PostgreSQL server (same machine) does the parsing "
                     "and writing of the rows and its memory is not counted.")
        dw = prep["dump_write"]
        L.append(f"* Fixture build (not a target): tiling + jitter {prep['fixture_build_s']:.1f} s; "
                 f"`save_detexify_sql` of the scale set {dw['seconds']:.1f} s, peak RSS Δ "
                 f"{fmt_mb(dw['rss_growth'])} MB ({dw['rss_growth'] / scale['points_bytes']:.1f}× points bytes).")
        L.append("")
    missed = [r for r in rows if r["speed_ok"] is False or r["mem_ok"] is False]
    if missed:
        L.append("Targets missed:")
        L.append("")
        for r in missed:
            if r["speed_ok"] is False:
                if r["key"].startswith("npz"):
                    L.append(f"* {r['step']}: {r['seconds']:.3f} s vs < {TARGET_NPZ_S} s "
                             f"({r['seconds'] / TARGET_NPZ_S:.2f}× the budget).")
                else:
                    tgt = TARGET_DUMP_RATE if r["key"] == "dump" else TARGET_PG_RATE
                    L.append(f"* {r['step']}: {r['rate']:,.0f} samples/s vs ≥ {tgt:,} "
                             f"({100 * r['rate'] / tgt:.0f}% of target; needs {tgt / r['rate']:.2f}× faster).")
            if r["mem_ok"] is False:
                L.append(f"* {r['step']}: peak RSS Δ {r['ratio']:.2f}× points bytes vs ≤ {TARGET_MEM_RATIO:g}× "
                         f"({fmt_mb(r['rss'])} MB vs {fmt_mb(TARGET_MEM_RATIO * r['points_bytes'])} MB).")
        L.append("")
    else:
        L.append("All measured targets met.")
        L.append("")
    prof = res.get("profile")
    if prof:
        L.append(f"cProfile of the dump parse (one run, {prof['samples']:,} samples, {prof['profiled_seconds']:.2f} s "
                 "under the profiler), top entries by own time:")
        L.append("")
        L.append("| function | calls | own time (s) | cumulative (s) |")
        L.append("|---|--:|--:|--:|")
        for e in prof["top_tottime"][: args.profile_top]:
            L.append(f"| `{e['func']}` | {e['ncalls']:,} | {e['tottime']:.3f} | {e['cumtime']:.3f} |")
        L.append("")
        L.append("Top entries by cumulative time:")
        L.append("")
        L.append("| function | calls | own time (s) | cumulative (s) |")
        L.append("|---|--:|--:|--:|")
        for e in prof["top_cumtime"][: args.profile_top]:
            L.append(f"| `{e['func']}` | {e['ncalls']:,} | {e['tottime']:.3f} | {e['cumtime']:.3f} |")
        L.append("")
    return "\n".join(L).rstrip() + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) our section of ``path``, keeping every other section; atomic."""
    from _results import write_section as _write

    _write(path, SECTION, section)


def command_line() -> str:
    exe = sys.executable
    try:
        rel = os.path.relpath(exe, ROOT)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    script = sys.argv[0]
    try:
        rel = os.path.relpath(os.path.abspath(script), ROOT)
        if not rel.startswith(".."):
            script = rel
    except ValueError:
        pass
    return shlex.join([exe, script, *sys.argv[1:]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark strokes' data loading (issue 2): InkML, detexify dump, PostgreSQL and .npz; "
        "throughput and peak memory, each operation in a fresh process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the CROHME folder (real data)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"markdown results file; the '{SECTION}' section is replaced, others kept")
    p.add_argument("--scale", type=int, default=210_000, help="samples in the scale dump (SCALE FIXTURE)")
    p.add_argument("--classes", type=int, default=1000,
                   help="relabel the scale fixture into at least this many pseudo-classes (0: keep CROHME's)")
    p.add_argument("--jitter", type=float, default=0.03, help="std of the per-sample affine jitter")
    p.add_argument("--seed", type=int, default=0, help="seed of np.random.default_rng for the jitter")
    p.add_argument("--dsn", default=None,
                   help="PostgreSQL DSN to use; default: start a throwaway cluster with tests/pgserver.py")
    p.add_argument("--table", default="bench_io_samples",
                   help="table the COPY step (re)creates with replace=True and drops at the end")
    p.add_argument("--skip-postgres", action="store_true", help="skip step 3 (PostgreSQL)")
    p.add_argument("--runs", type=int, default=3, help="timed runs of the slow steps (best is reported)")
    p.add_argument("--npz-runs", type=int, default=7, help="timed runs of the .npz load (best is reported)")
    p.add_argument("--no-tracemalloc", action="store_true", help="skip the extra tracemalloc runs")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile run of the dump parse")
    p.add_argument("--profile-top", type=int, default=12, help="profile entries to report")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (fixture dump, .npz)")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._worker:
        _worker(args._worker)
        return 0
    if not args.data.is_dir():
        sys.exit(f"CROHME data not found at {args.data} (pass --data)")
    if args.scale < 200_000:
        print(f"warning: --scale {args.scale} < 200000: below the size issue 2 asks for", file=sys.stderr)

    started = time.perf_counter()
    res = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "loadavg_start": os.getloadavg(),
        "code_start": code_fingerprint(),
    }
    command = command_line()
    tmp = Path(tempfile.mkdtemp(prefix="strokes-bench-io-"))
    pg_root = None
    trace = not args.no_tracemalloc
    try:
        res["prepare"] = run_worker(
            {"op": "prepare", "data": str(args.data), "tmp": str(tmp), "scale": args.scale, "seed": args.seed,
             "classes": args.classes, "jitter": args.jitter},
            f"preparing: CROHME .npz and the {args.scale:,}-sample SCALE FIXTURE dump in {tmp}",
        )
        dump = res["prepare"]["dump"]
        npz, npz_raw = str(tmp / "crohme.npz"), str(tmp / "crohme_raw.npz")

        def measured(key, spec, label):
            res[key] = run_worker(spec, label)
            if trace:
                res[key + "_trace"] = run_worker({**spec, "trace": True, "runs": 1}, label + " (tracemalloc)")

        measured("inkml", {"op": "load", "source": str(args.data), "runs": args.runs}, "1. InkML parse of CROHME")
        measured("dump", {"op": "load", "source": dump, "runs": args.runs}, "2. dump parse of the scale dump")
        if not args.no_profile:
            res["profile"] = run_worker({"op": "profile", "source": dump, "top": max(args.profile_top, 15)},
                                        "2'. dump parse under cProfile")
        if not args.skip_postgres:
            dsn = args.dsn
            if dsn:
                res["pg_where"] = "given by --dsn"
            else:
                sys.path.insert(0, str(ROOT / "tests"))
                import pgserver

                print("  starting a throwaway PostgreSQL cluster (tests/pgserver.py) ...", file=sys.stderr)
                dsn, pg_root = pgserver.start()
                res["pg_where"] = "throwaway cluster from tests/pgserver.py, fsync=off, same machine"
            res["pg_version"] = pg_server_version(dsn)
            try:
                copy_spec = {"op": "pg_copy", "dump": dump, "dsn": dsn, "table": args.table}
                best = None
                for _ in range(max(1, args.runs)):
                    r = run_worker(copy_spec, "3a. COPY load of the scale dump")
                    if best is None or r["seconds"] < best["seconds"]:
                        times = (best or {}).get("times", []) + r["times"]
                        best = {**r, "times": times}
                    else:
                        best["times"] += r["times"]
                res["pg_copy"] = best
                if trace:
                    res["pg_copy_trace"] = run_worker({**copy_spec, "trace": True}, "3a. COPY load (tracemalloc)")
                measured("pg_read", {"op": "load", "source": dsn, "options": {"table": args.table},
                                     "runs": args.runs}, "3b. PostgreSQL read back")
            finally:
                try:
                    drop_table(dsn, args.table)
                except Exception as exc:  # noqa: BLE001
                    print(f"warning: could not drop {args.table}: {exc}", file=sys.stderr)
        measured("npz", {"op": "load", "source": npz, "runs": args.npz_runs}, "4. .npz load of CROHME")
        measured("npz_raw", {"op": "load", "source": npz_raw, "runs": args.npz_runs},
                 "4'. .npz load of CROHME (stored, not deflated)")
    finally:
        if pg_root:
            import pgserver

            pgserver.stop(pg_root)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # correctness cross-checks: what was loaded is what was written
    prep, checks = res["prepare"], []
    for key, ref, what in (("dump", "scale", "dump parse"), ("pg_read", "scale", "PostgreSQL read"),
                           ("npz", "crohme", ".npz load"), ("npz_raw", "crohme", ".npz load (stored)"),
                           ("inkml", "crohme", "InkML parse")):
        if key in res:
            same = res[key]["fingerprint"] == prep[ref]["fingerprint"] and res[key]["samples"] == prep[ref]["samples"]
            checks.append(f"{what}: {res[key]['samples']:,} samples, fingerprint "
                          f"{'matches' if same else 'DIFFERS from'} the {'SCALE FIXTURE' if ref == 'scale' else 'CROHME'} "
                          f"dataset ({res[key]['fingerprint']}); skipped records: {res[key]['skipped']}.")
    if "pg_copy" in res:
        checks.append(f"COPY loaded {res['pg_copy']['samples']:,} rows (dump has {prep['scale']['samples']:,}).")
    methods = {res[k]["method"] for k in res if isinstance(res[k], dict) and "method" in res[k]}
    checks.append("memory method: " + "; ".join(sorted(methods)) + ".")
    res["checks"] = checks
    res["loadavg_end"] = os.getloadavg()
    res["code_end"] = code_fingerprint()
    res["wall_s"] = time.perf_counter() - started

    rows = build_rows(res)
    section = render(res, rows, args, command)
    print(section)
    write_section(args.out, section)
    print(f"wrote the '{SECTION}' section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
