"""Load benchmark of ``strokes serve``: N concurrent clients on loopback, bounded in time and count.

Starts a real server process (the shipped model, CPU), then for each
concurrency level runs that many client threads, each with its own keep-alive
connection, posting real drawings (CROHME symbols from ``../shared/data`` in
detexify's request shape; synthetic ink where the data is absent) until the
time or request budget is spent. Reports throughput, p50/p90/p99 latency and
the error count (non-200 answers and connection errors, which must be 0).

The clients run in this process (Python threads), on the same two cores as
the server, so the figures are what one machine does serving itself.

    .venv/bin/python benchmarks/bench_serve.py                    # levels 1,4,16; 15 s each
    .venv/bin/python benchmarks/bench_serve.py --levels 16 --seconds 30 --no-write
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks._results import write_section  # noqa: E402
from serving import running_server  # noqa: E402  (the tests' real-server starter)

SHARED = ROOT.parent / "shared" / "data" / "crohme"


def _bodies(n: int, seed: int) -> tuple[list[bytes], str]:
    """``n`` request bodies in detexify's shape, from real CROHME ink when available."""
    import strokes

    if SHARED.is_dir():
        ds = strokes.load(SHARED, progress=False)
        source = f"CROHME ({SHARED.name}, {n} random symbols)"
    else:
        ds = strokes.load("synthetic:writers=8,samples=2", progress=False)
        source = "synthetic ink (../shared/data is absent)"
    rng = np.random.default_rng(seed)
    bodies = []
    for i in rng.choice(len(ds), min(n, len(ds)), replace=False):
        sample = ds[int(i)]
        strokes_json = []
        for s in sample.strokes:
            t = s[:, 2] if s.shape[1] > 2 else np.arange(len(s)) * 10.0
            strokes_json.append([{"x": float(x), "y": float(y), "t": float(tt)} for (x, y), tt in zip(s[:, :2], t)])
        bodies.append(json.dumps({"strokes": strokes_json}).encode())
    return bodies, source


def _health(port: int) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/healthz")
    out = json.loads(c.getresponse().read())
    c.close()
    return out


def run_level(port: int, bodies: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()
    count = [0]
    lock = threading.Lock()

    def client(i: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        j = i
        while not stop.is_set():
            with lock:
                if count[0] >= max_requests:
                    break
                count[0] += 1
            body = bodies[j % len(bodies)]
            j += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/classify?k=5", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and b'"results"' in data
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[i].append(time.perf_counter() - t0)
            if not ok:
                errors[i] += 1
        conn.close()

    before = _health(port)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    timer.cancel()
    after = _health(port)
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    batches = after["batches"] - before["batches"]
    inks = after["inks"] - before["inks"]
    return {
        "clients": clients,
        "requests": int(lat.size),
        "seconds": wall,
        "throughput": lat.size / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "errors": int(sum(errors)),
        "mean_batch": inks / max(batches, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="1,4,16", help="comma-separated client counts (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=15.0, help="time budget per level (default 15)")
    p.add_argument("--max-requests", type=int, default=20_000, help="request budget per level (default 20000)")
    p.add_argument("--inks", type=int, default=500, help="distinct drawings to cycle through (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    bodies, source = _bodies(args.inks, args.seed)
    with running_server() as (_, port, _proc):
        # warm-up: first requests pay for lazy initialization
        run_level(port, bodies, 2, 2.0, 200)
        rows = [run_level(port, bodies, c, args.seconds, args.max_requests) for c in levels]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "| clients | requests | throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms | errors | inks per batch |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['requests']:,} | {r['throughput']:.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['errors']} | {r['mean_batch']:.1f} |"
        )
    table = "\n".join(lines)
    print(f"ink: {source}; {args.seconds:g} s or {args.max_requests} requests per level; load average {load:.2f}")
    print(table)
    if not args.no_write:
        cmd = "python benchmarks/bench_serve.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv))
        section = (
            "## strokes serve under load (issue 6)\n\n"
            f"Command: `.venv/bin/{cmd}`. A real `strokes serve` process (shipped model, CPU) on loopback; "
            f"client threads in a second process, each on its own keep-alive connection, post {source} in detexify's "
            f"request shape (`POST /api/classify?k=5`) for {args.seconds:g} s per level (at most {args.max_requests:,} "
            f"requests) after a 2 s warm-up. Clients and server share the machine's "
            f"{os.cpu_count()} cores; load average {load:.2f} at the end.\n\n"
            f"{table}\n\n"
            "*inks per batch*: how many requests the inference thread classified together on average; under load, "
            "concurrent requests share one forward pass, which is where the throughput gain comes from. "
            "*errors*: non-200 answers and connection failures.\n"
        )
        write_section(ROOT / "benchmarks" / "RESULTS.md", "## strokes serve under load (issue 6)", section)
        print("updated benchmarks/RESULTS.md")
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
