"""The ``strokes`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

import numpy as np

log = logging.getLogger("strokes")


def _load(args):
    from .io import load

    opts = {"progress": None}
    if getattr(args, "limit", None) is not None:
        opts["limit"] = args.limit
    if getattr(args, "table", None):
        opts["table"] = args.table
    return load(args.data, format=args.format, **opts)


def _summary(ds, out=None) -> None:
    out = out or sys.stdout  # looked up at call time, so redirection works
    info = ds.info
    unit = info.get("unit", "records")
    n_in = info.get("records_in", len(ds) + len(ds.skipped))
    kind = "SYNTHETIC data (generated, not real handwriting)" if ds.synthetic else "real data"
    print(f"{ds.name}: {kind}, format {info.get('format', '?')}", file=out)
    if "files_in" in info:
        print(
            f"  in: {info['files_in']} files; read: {info['files_read']}; skipped: {info['files_skipped']} files, "
            f"{info['symbols_skipped']} symbols",
            file=out,
        )
    else:
        print(f"  in: {n_in} {unit}; loaded: {len(ds)}; skipped: {len(ds.skipped)}", file=out)
    print(f"  samples: {len(ds)}, classes: {len(ds.vocab)}, writers: {len(ds.writer_names)}", file=out)
    if ds.skipped:
        reasons = Counter(s.reason.split(" (")[0] for s in ds.skipped)
        print("  skipped, by reason:", file=out)
        for reason, n in reasons.most_common():
            print(f"    {n:6d}  {reason}", file=out)
        for s in ds.skipped[:10]:
            print(f"    e.g. {s}", file=out)


def cmd_import(args) -> int:
    ds = _load(args)
    ds.save(args.output)
    _summary(ds)
    print(f"wrote {args.output}")
    return 0


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def cmd_render(args) -> int:
    import rendering
    from rendering.plot import save_grid

    from .normalize import default_pipeline

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    config = rendering.RenderConfig(
        size=args.size, thickness=args.thickness, antialias=not args.hard, channels=_csv(args.channels)
    )
    ds = _load(args)
    index = np.arange(len(ds))
    if args.label:
        wanted = [ds.class_to_idx.get(lab) for lab in args.label]
        missing = [lab for lab, i in zip(args.label, wanted) if i is None]
        if missing:
            near = [c for c in ds.classes if any(m.strip("\\").lower() in c.lower() for m in missing)][:10]
            raise ValueError(
                f"label(s) {missing} not in {ds.name} ({len(ds.classes)} classes)"
                + (f"; similar: {near}" if near else "; see `strokes stats DATA --all`")
            )
        index = index[np.isin(ds.labels, wanted)]
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(index, size=min(args.n, len(index)), replace=False))
    sub = ds.subset(pick)
    batch = default_pipeline().apply_dataset(sub)
    points, offsets = batch.data, batch.offsets
    if args.augment:
        import torch

        from rendering.augment import default_augment

        g = torch.Generator().manual_seed(args.seed)
        points = default_augment()(points, offsets, generator=g)
    images = rendering.rasterize_batch(points, offsets, config=config)
    titles = [str(sub.vocab[label]) for label in sub.labels]
    kind = "synthetic" if ds.synthetic else "real"
    save_grid(
        images,
        titles,
        args.output,
        channels=config.channels,
        columns=args.columns,
        suptitle=f"{ds.name} ({kind}), {len(pick)} of {len(index)} samples, seed {args.seed}, "
        f"{config.size}x{config.size}, channels {','.join(config.channels)}"
        + (", augmented" if args.augment else ""),
    )
    print(f"wrote {args.output} ({len(pick)} samples)")
    return 0


def cmd_stats(args) -> int:
    ds = _load(args)
    _summary(ds)
    pts, strk = ds.points_per_sample(), ds.strokes_per_sample()
    q = [0, 5, 25, 50, 75, 95, 100]
    print("\n  per sample      " + "".join(f"{'p' + str(p):>8}" for p in q) + "    mean")
    for name, v in (("points", pts), ("strokes", strk)):
        print(f"  {name:<16}" + "".join(f"{x:8.0f}" for x in np.percentile(v, q)) + f"{v.mean():8.1f}")
    counts = np.bincount(ds.labels, minlength=len(ds.vocab))
    order = np.argsort(-counts, kind="stable")
    print(f"\n  class counts (min {counts.min()}, median {int(np.median(counts))}, max {counts.max()}):")
    shown = order if args.all else order[: args.top]
    for i in shown:
        print(f"    {counts[i]:7d}  {ds.vocab[i]}")
    if not args.all and len(order) > args.top:
        print(f"    ... {len(order) - args.top} more (--all shows every class)")
    return 0


def cmd_db_load(args) -> int:
    from pathlib import Path

    from .io.postgres import copy_dump_to_postgres, save_postgres

    if Path(args.source).suffix.lower() == ".sql":
        n = copy_dump_to_postgres(args.source, args.dsn, table=args.table, replace=args.replace, progress=None)
    else:
        from .io import load

        ds = load(args.source, progress=None)
        _summary(ds)
        n = save_postgres(ds, args.dsn, table=args.table, replace=args.replace)
    print(f"loaded {n} rows into table {args.table}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="strokes",
        description="Recognize handwritten LaTeX symbols from strokes; load, inspect and convert stroke data.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def data_args(sp):
        sp.add_argument(
            "data",
            help="a directory of .inkml files, a detexify .sql dump, a .json, our .npz, "
            "a postgresql:// DSN, or 'synthetic[:writers=8,samples=4,seed=0]'",
        )
        sp.add_argument("--format", default=None, help="override the format inferred from DATA")
        sp.add_argument("--limit", type=int, default=None, help="read at most this many files/rows")
        sp.add_argument("--table", default=None, help="table name for dumps and PostgreSQL (default: samples)")

    sp = sub.add_parser("import", help="convert any source into our .npz cache", description="Load DATA and write it as .npz (or .sql).")
    data_args(sp)
    sp.add_argument("-o", "--output", required=True, help="output file (.npz or .sql), written atomically")
    sp.set_defaults(func=cmd_import)

    sp = sub.add_parser("stats", help="class counts and points/strokes per sample", description="Summarize a dataset.")
    data_args(sp)
    sp.add_argument("--top", type=int, default=20, help="classes to list (default 20)")
    sp.add_argument("--all", action="store_true", help="list every class")
    sp.set_defaults(func=cmd_stats)

    sp = sub.add_parser(
        "render",
        help="draw a labelled grid of rendered samples",
        description="Normalize and rasterize randomly chosen samples of DATA and write a labelled grid "
        "image (PNG, PDF or SVG by suffix). Extra channels are drawn side by side in colour.",
    )
    data_args(sp)
    sp.add_argument("-o", "--output", required=True, help="image file to write, e.g. grid.png")
    sp.add_argument("--n", type=int, default=64, help="samples to draw (default 64)")
    sp.add_argument("--label", action="append", help="only this class, e.g. '\\alpha' (repeatable)")
    sp.add_argument(
        "--channels", default="ink", help="comma-separated planes: ink, order, stroke, direction (default: ink)"
    )
    sp.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    sp.add_argument("--thickness", type=float, default=1.0, help="line width in pixels (default 1)")
    sp.add_argument("--hard", action="store_true", help="hard 0/1 pixels instead of anti-aliased lines")
    sp.add_argument("--augment", action="store_true", help="apply the default random augmentation first")
    sp.add_argument("--columns", type=int, default=None, help="grid columns (default: about square)")
    sp.add_argument("--seed", type=int, default=0, help="seed for the sample choice and augmentation")
    sp.set_defaults(func=cmd_render)

    db = sub.add_parser("db", help="PostgreSQL utilities", description="PostgreSQL utilities.")
    dbsub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    dbsub.required = True
    sp = dbsub.add_parser(
        "load",
        help="load a detexify dump (or any dataset) into PostgreSQL with COPY",
        description="Load a detexify .sql dump into a server through COPY (streamed), or any other "
        "dataset source through COPY of its rows. The DSN defaults to the PG* environment variables.",
    )
    sp.add_argument("source", help="a detexify .sql dump, or any source strokes.load reads")
    sp.add_argument("--dsn", default=None, help="postgresql://user@host:port/db (default: PG* variables)")
    sp.add_argument("--table", default="samples", help="target table (default: samples)")
    sp.add_argument("--replace", action="store_true", help="drop the table first")
    sp.set_defaults(func=cmd_db_load)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into head & co.: not an error
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        print(f"strokes: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("strokes: interrupted", file=sys.stderr)
        return 130
