"""The ``strokes`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np

log = logging.getLogger("strokes")


def _load_options(args) -> dict:
    opts = {"progress": None}
    if getattr(args, "limit", None) is not None:
        opts["limit"] = args.limit
    if getattr(args, "table", None):
        opts["table"] = args.table
    return opts


def _load(args):
    from .io import load

    return load(args.data, format=args.format, **_load_options(args))


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
    if str(args.output).lower().rstrip("/").endswith(".strokes"):  # streamed, memory-mapped store
        from .io import import_to_store

        ds = import_to_store(args.data, args.output.rstrip("/"), format=args.format, **_load_options(args))
    else:
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


def _parse_options(items) -> dict:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, booleans, lists)."""
    import json

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--option takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _interrupt_on_signals() -> None:
    """Make SIGTERM (kill) and SIGINT raise KeyboardInterrupt, so training saves last.pt and stops.

    SIGINT needs re-arming because shells start background jobs with it ignored.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


_CLEAR = object()  # a flag given as "none": clear the value a --config file set


def _or_none(kind):
    """An argparse type: ``kind(text)``, or the word ``none`` to clear a value set by --config."""

    def parse(text: str):
        return _CLEAR if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def train_config_from_args(args):
    """The :class:`TrainConfig` of ``strokes train``: defaults, then ``--config FILE``, then the flags given.

    A flag given on the command line always wins over the file; a flag left out
    keeps the file's value (or the TrainConfig default).
    """
    from .training.train import TrainConfig, load_train_config

    fields = load_train_config(args.config) if args.config else {}
    given = {
        name: None if getattr(args, name) is _CLEAR else getattr(args, name)
        for name in (
            "model", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "patience",
            "split", "seed", "device", "max_train_samples", "time_budget", "precision", "workers",
            "distill_from", "distill_alpha", "distill_temperature", "mixup", "cutmix",
        )
        if getattr(args, name) is not None
    }
    if args.option:
        given["model_options"] = {**fields.get("model_options", {}), **_parse_options(args.option)}
    if args.no_augment:
        given["augment"] = []
    elif args.augment is not None:
        from rendering.augment import augment_preset

        given["augment"] = augment_preset(args.augment).to_config()
    if args.compile:
        given["compile"] = True
    if args.channels is not None or args.thickness is not None:
        render = dict(fields.get("render") or {"size": 32, "thickness": 1.0, "antialias": True, "channels": ["ink"]})
        if args.channels is not None:
            render["channels"] = list(_csv(args.channels))
        if args.thickness is not None:
            render["thickness"] = args.thickness
        given["render"] = render
    return TrainConfig.from_dict(fields, **given)


def cmd_train(args) -> int:
    from .training.evaluate import format_report, write_report
    from .training.train import Trainer

    config = train_config_from_args(args)
    args.model = config.model
    out = args.out or f"runs/{args.model}"
    from .training.distributed import init_from_env, shutdown

    dist = init_from_env(config.device)  # under torchrun: join the process group (DDP training)
    ds = _load(args)
    _interrupt_on_signals()
    trainer = Trainer(config, out, progress=None if dist.is_main else False)
    finished = False
    try:
        metrics = trainer.fit(ds, resume=args.resume)
        finished = True
    finally:
        shutdown(sync=finished)  # after success every rank leaves together (gloo can abort otherwise)
    if not dist.is_main:
        return 0
    if "distributed" in metrics:
        d = metrics["distributed"]
        print(
            f"trained on {d['world_size']} processes ({d['backend']}), {d['rank_batch']} samples per rank and step; "
            f"largest weight difference between ranks: {d['max_weight_difference_across_ranks']:.3g}"
        )
    from .training.checkpoint import load_checkpoint

    loaded = load_checkpoint(f"{out}/best.pt")
    if trainer.test_data is not None:
        from .training.evaluate import evaluate
        from .training.train import checkpoint_split

        report = evaluate(loaded, ds.subset(checkpoint_split(loaded.checkpoint, ds).test), device=str(trainer.device))
        report["subset"] = "test"
        paths = write_report(report, out, history=loaded.checkpoint.get("history"))
        print(format_report(report, top=10))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    print(f"best checkpoint: {out}/best.pt (val top-1 {metrics['val']['top1']:.4f}, epoch {metrics['best_epoch']})")
    return 0


def cmd_eval(args) -> int:
    from .training.checkpoint import load_checkpoint
    from .training.evaluate import evaluate, format_report, write_report
    from .training.train import checkpoint_split, resolve_device

    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint, device=device)
    ds = _load(args)
    subset = args.subset
    info = loaded.checkpoint.get("train", {}).get("split_info", {})
    if subset == "auto":
        subset = "test" if info.get("fingerprint") == ds.fingerprint() else "all"
        log.warning("evaluating on %s (%s)", subset,
                    "the checkpoint's held-out test split of this data" if subset == "test"
                    else "DATA is not the data the model was trained on, so all of it")
    if subset in ("test", "val"):
        sp = checkpoint_split(loaded.checkpoint, ds)
        ds = ds.subset(sp.test if subset == "test" else sp.val)
    report = evaluate(loaded, ds, device=device, batch_size=args.batch_size, shared_classes=args.shared_classes)
    report["subset"] = subset
    print(format_report(report, top=args.top))
    if args.out:
        paths = write_report(report, args.out, history=loaded.checkpoint.get("history"))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _read_drawing(path):
    """A drawing saved as JSON: a list of strokes, or an object holding one under strokes/ink/data."""
    import json
    from pathlib import Path

    text = Path(path).read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(obj, dict):
        for key in ("strokes", "ink", "data"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise ValueError(f"{path}: expected a list of strokes or an object with a 'strokes' key")
    if isinstance(obj, str):  # detexify keeps the strokes as a JSON string
        obj = json.loads(obj)
    return obj


def _user_symbols_arg(value):
    """``--user-symbols``: the given store, None for 'none', else the default store if it exists."""
    from .io.user_symbols import default_store_path

    if value is not None:
        return None if value.strip().lower() == "none" else value
    default = default_store_path()
    if default.startswith(("postgresql://", "postgres://")) or Path(default).is_file():
        return default
    return None


def cmd_recognize(args) -> int:
    import json

    from .recognizer import get_recognizer

    rec = get_recognizer(args.model)
    store = _user_symbols_arg(args.user_symbols)
    results = [(path, rec(_read_drawing(path), k=args.k, user_symbols=store)) for path in args.files]
    if args.json:
        print(json.dumps({str(p): [[lab, prob] for lab, prob in r] for p, r in results}, indent=1))
        return 0
    for path, r in results:
        if len(results) > 1:
            print(f"{path}:")
        for rank, (label, prob) in enumerate(r, 1):
            print(f"{rank:2d}. {label:<16s} {prob:7.2%}")
    return 0


def cmd_teach(args) -> int:
    from .io.user_symbols import default_store_path
    from .teach import teach

    if args.user_symbols is not None and args.user_symbols.strip().lower() == "none":
        raise ValueError("--user-symbols none means 'no store': teaching needs one (a SQLite path or a postgresql:// DSN)")
    inks = []
    for path in args.files:
        try:
            inks.append(_read_drawing(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    try:
        result = teach(args.label, inks, user_symbols=args.user_symbols or default_store_path())
    except (ValueError, TypeError) as exc:  # name the file, not just the drawing's position
        import re

        msg = str(exc)
        m = re.match(r"drawing (\d+): (.*)", msg, re.S)
        if m and int(m.group(1)) < len(args.files):
            msg = f"{args.files[int(m.group(1))]}: {m.group(2)}"
        raise ValueError(msg) from None
    print(
        f"taught {result.label}: {result.count} drawing(s) stored in {result.store} "
        f"(ids {result.ids[0]}..{result.ids[-1]}); it now has {result.total}"
    )
    return 0


def cmd_ensemble(args) -> int:
    """``strokes ensemble``: late fusion of trained members, weights fitted on their validation split."""
    from .training.ensemble import save_ensemble

    if args.data is None:
        raise ValueError("give --data DATA: the data the members were trained on (their validation split fits the weights)")
    ds = _load(args)
    result = save_ensemble(list(args.checkpoints), ds, args.output, device=args.device, seed=args.seed)
    val = result["metrics"]["val"]
    print(
        f"wrote {result['path']}: late fusion of {len(args.checkpoints)} members, weights "
        + ", ".join(f"{w:.3f}" for w in result["weights"])
        + f"; val top-1 {100 * val['top1']:.2f}%"
        + (f", test top-1 {100 * result['metrics']['test']['top1']:.2f}%" if result["metrics"].get("test") else "")
    )
    for m in result["metrics"].get("members", []):
        line = f"  {m.get('source', m.get('name', '?'))}: val top-1 {100 * m['val']['top1']:.2f}%"
        print(line + (f", test top-1 {100 * m['test']['top1']:.2f}%" if m.get("test") else ""))
    return 0


def cmd_export_onnx(args) -> int:
    from .onnx_export import export_onnx

    result = export_onnx(args.checkpoint, args.output, check=not args.no_check)
    print(f"wrote {args.output}" + (f" (max |onnx - torch| = {result['max_abs_diff']:.2e})" if "max_abs_diff" in result else ""))
    return 0


def cmd_stats(args) -> int:
    ds = _load(args)
    _summary(ds)
    if len(ds) == 0:
        print("  no samples were loaded")
        return 0
    q = [0, 5, 25, 50, 75, 95, 100]
    from .images import is_image_data

    if is_image_data(ds):  # image-only data (HASYv2)
        s = ds.image_size
        ink = ds.images.reshape(len(ds), -1).mean(1) if len(ds) else np.zeros(1)
        print(f"  images: {s}x{s}, ink bright (stored {ds.info.get('ink_in_files', '?')} in the files), "
              f"official folds: {ds.num_folds or 'none'}")
        print("\n  per sample      " + "".join(f"{'p' + str(p):>8}" for p in q) + "    mean")
        print("  ink coverage %  " + "".join(f"{100 * x:8.1f}" for x in np.percentile(ink, q)) + f"{100 * ink.mean():8.1f}")
    else:
        pts, strk = ds.points_per_sample(), ds.strokes_per_sample()
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


def _parse_fraction_epochs(text: str | None) -> dict:
    """``"0.05=60,0.1=40"`` -> {0.05: 60, 0.1: 40}."""
    out: dict = {}
    for part in _csv(text) if text else ():
        f, eq, e = part.partition("=")
        try:
            f, e = float(f), int(e)
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"--fraction-epochs takes FRACTION=EPOCHS pairs, e.g. 0.05=60,0.1=40; got {part!r}")
        if f in out:
            raise ValueError(f"--fraction-epochs names a fraction twice: {text!r}")
        out[f] = e
    return out


def cmd_bench(args) -> int:
    from .bench import (
        DEFAULT_MODELS, QUICK_BATCH_SIZE, QUICK_DATA, QUICK_EPOCHS, QUICK_MODELS, QUICK_OPTIONS, QUICK_SEEDS,
        BenchConfig, _argv, check_models, run_bench,
    )  # fmt: skip
    from .probes import parse_probes
    from .bench_report import markdown_table

    if args.ddp:
        from .training.distributed import launched_by_torchrun, relaunch_command

        if not launched_by_torchrun():  # start N copies of this very command through torchrun
            import subprocess

            import torch

            nproc = args.procs or max(torch.cuda.device_count(), 2)
            cmd = relaunch_command(nproc, args.argv)
            print(f"strokes bench --ddp: launching {nproc} processes: {' '.join(cmd)}", flush=True)
            return subprocess.run(cmd).returncode
    quick = args.data is None
    if quick:
        args.data = QUICK_DATA
    models = check_models(_csv(args.models)) if args.models else list(QUICK_MODELS if quick else DEFAULT_MODELS)
    epochs, budget, batch_size = args.epochs, args.time_budget, args.batch_size
    if epochs is None and budget is None:
        epochs = QUICK_EPOCHS if quick else 10
    if batch_size is None:
        batch_size = QUICK_BATCH_SIZE if quick else 128
    options: dict = {m: dict(o) for m, o in QUICK_OPTIONS.items() if m in models} if quick else {}
    for key, value in _parse_options(args.option).items():
        model, dot, field_name = key.partition(".")
        if not dot or not field_name:
            raise ValueError(f"--option takes MODEL.FIELD=VALUE (e.g. tcn.channels=96), got {key!r}")
        options.setdefault(model, {})[field_name] = value
    config = BenchConfig(
        models=tuple(models),
        epochs=epochs,
        time_budget=budget,
        seeds=args.seeds if args.seeds is not None else (QUICK_SEEDS if quick else 3),
        seed=args.seed,
        split=args.split,
        device=args.device,
        batch_size=batch_size,
        lr=args.lr,
        augment="none" if args.no_augment else args.augment,
        max_train_samples=args.max_train_samples,
        compile=args.compile,
        precision=args.precision,
        probes=parse_probes(args.probes),
        train_fractions=tuple(float(f) for f in _csv(args.train_fraction)),
        fraction_epochs=_parse_fraction_epochs(args.fraction_epochs),
        latency_samples=args.latency_samples,
        model_options=options,
    )
    from .training.distributed import init_from_env, shutdown

    dist = init_from_env(args.device) if args.ddp else None
    ds = _load(args)
    if quick and (dist is None or dist.is_main):
        print(
            f"strokes bench: no --data given, so this is the default run on {ds.name}: {len(ds):,} real symbols "
            f"of {len(ds.vocab)} classes shipped with strokes ({', '.join(models)}; {epochs} epochs; {config.seeds} seeds)"
        )
    _interrupt_on_signals()
    finished = False
    try:
        results = run_bench(
            ds, config, args.out, command=_argv(), progress=None, report_only=args.report_only, only=_csv(args.cells) if args.cells else None
        )
        finished = True
    finally:
        shutdown(sync=finished)
    if "summary" not in results:  # a DDP rank other than 0
        return 0
    out = Path(results["out_dir"])
    print()
    print(markdown_table(results["summary"]))
    print()
    for line in results["verdict"]:
        print("- " + line.replace("**", ""))
    print(f"\nwrote {out}/report.md, results.json, results.csv, cells.csv and charts")
    return 0


def cmd_serve(args) -> int:
    from .io.user_symbols import default_store_path, open_store
    from .recognizer import get_recognizer
    from .server import ServeConfig, serve
    from .training.train import resolve_device

    config = ServeConfig(max_body=args.max_body, max_points=args.max_points, max_strokes=args.max_strokes)
    spec = args.user_symbols
    no_store = spec is not None and spec.strip().lower() == "none"
    if no_store and args.collect:
        raise ValueError("--collect stores the picked drawings in the user-symbol store: it cannot go with --user-symbols none")
    device = str(resolve_device(args.device))
    # load (and so check) the model before announcing or binding anything: a missing or damaged
    # checkpoint ends here with a one-line error from main, not after the server has started
    recognizer = get_recognizer(args.model, device=device)
    if no_store:
        store = None
    else:
        if recognizer.classifier is None:
            if spec is not None or args.collect:
                raise ValueError(f"{recognizer.loaded.name} has no final linear layer, so it cannot rank taught symbols; "
                                 "serve it with --user-symbols none")  # fmt: skip
            logging.getLogger(__name__).warning("%s cannot rank taught symbols: serving built-in symbols only", recognizer.loaded.name)
            store = None
        else:
            store = open_store(spec or default_store_path())
            if store.exists():
                store.state(fresh=True)  # a damaged store or an unreachable server: a one-line error now
    print(f"strokes serve: http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
    if store is not None:
        print(f"user symbols: {store.location}; collecting picked drawings: {'on' if args.collect else 'off'}", flush=True)
    serve(
        args.host, args.port, model=recognizer, device=device, config=config,
        log_level="warning" if not args.verbose else "info", user_symbols=store, collect=args.collect,
    )  # fmt: skip
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


def cmd_tune(args) -> int:
    """``strokes tune``: an Optuna search over one model's hyper-parameters (see :mod:`strokes.training.tune`)."""
    import shlex

    from .training.train import TrainConfig
    from .training.tune import require_optuna, search_space, tune

    optuna = require_optuna()  # a clear error before any data is loaded
    if args.verbose == 0:
        logging.getLogger("strokes.training.tune").setLevel(logging.INFO)  # a line per trial; the trainers stay quiet
    optuna.logging.set_verbosity(logging.WARNING if args.verbose == 0 else logging.INFO)
    given = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "max_train_samples", "time_budget", "device", "precision")
        if getattr(args, name) is not None
    }
    base = TrainConfig(model=args.model, model_options=_parse_options(args.option), **given)
    search_space(args.model, base)  # an unknown model fails now, naming the valid ones
    out = Path(args.out or f"runs/tune-{args.model}")
    ds = _load(args)
    _interrupt_on_signals()
    result = tune(
        ds, args.model, args.trials, out, base=base, timeout=args.timeout, pruner=args.pruner, seed=args.seed,
        progress=None, command=shlex.join(["strokes", *getattr(args, "argv", sys.argv[1:])]),
    )  # fmt: skip
    states = result["states"]
    print(
        f"strokes tune: {result['n_trials']} trial(s) in {out / 'study.db'} ({states.get('COMPLETE', 0)} complete, "
        f"{states.get('PRUNED', 0)} pruned, {states.get('FAIL', 0)} failed); {result['ran']} run now"
    )
    best = result["best"]
    if best is None:
        print("strokes tune: no trial has completed yet, so there is no best_config.json", file=sys.stderr)
        return 1
    print(f"best: trial {best['number']}, val top-1 {best['value']:.4f}")
    for name, value in best["params"].items():
        print(f"  {name} = {value:.4g}" if isinstance(value, float) else f"  {name} = {value}")
    print(f"wrote {', '.join(Path(f).name for f in result['files'])} to {out}")
    cfg = best.get("config") or {}
    clear = "".join(f" --{k.replace('_', '-')} none" for k in ("max_train_samples", "time_budget") if cfg.get(k) is not None)
    print(f"train it: strokes train DATA --config {out / 'best_config.json'}{clear}"
          + ("  (the flags drop the search's subset/time limit)" if clear else ""))
    return 0


PRECISION_HELP = (
    "auto (default): bf16 autocast where the CPU (AVX512-BF16/AMX) or GPU does bf16 natively, else fp32; "
    "fp32; bf16. Recorded in the checkpoint"
)


AUGMENT_HELP = (
    "augmentation preset: default (rotation, shear, scale, elastic, jitter), none, strokes (default plus random "
    "stroke order and direction), probes (strokes plus rotation to 20 degrees, slant to 0.3, aspect to 1.25)"
)


def build_parser() -> argparse.ArgumentParser:
    from .bench import DEFAULT_MODELS, QUICK_BATCH_SIZE, QUICK_DATA, QUICK_EPOCHS, QUICK_MODELS, QUICK_SEEDS
    from rendering.augment import PRESETS as AUGMENT_PRESETS

    from .training.train import PRECISIONS

    p = argparse.ArgumentParser(
        prog="strokes",
        description="Recognize handwritten LaTeX symbols from strokes; load, inspect and convert stroke data.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def data_args(sp, option: bool = False):
        sp.add_argument(
            "--data" if option else "data",
            default=None,
            help="a directory of .inkml files, a detexify .sql dump, a .json, our .npz or .strokes store, "
            "a postgresql:// DSN, or 'synthetic[:writers=8,samples=4,seed=0]'",
        )
        sp.add_argument("--format", default=None, help="override the format inferred from DATA")
        sp.add_argument("--limit", type=int, default=None, help="read at most this many files/rows")
        sp.add_argument("--table", default=None, help="table name for dumps and PostgreSQL (default: samples)")

    sp = sub.add_parser("import", help="convert any source into our .npz cache", description="Load DATA and write it as .npz, .sql, or a .strokes memory-mapped store (dumps and PostgreSQL are streamed into a store chunk by chunk, in bounded memory).")
    data_args(sp)
    sp.add_argument("-o", "--output", required=True, help="output: .npz, .sql or .strokes (a directory), written atomically")
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

    sp = sub.add_parser(
        "train",
        help="train a model (best.pt, last.pt, metrics, plots)",
        description="Train MODEL on DATA with a writer-disjoint split (when writers are known), on-the-fly "
        "augmentation, AdamW with warmup and cosine decay. Writes OUT/best.pt (the best val top-1), "
        "OUT/last.pt (resumable), history.json, and a test-split report with plots. Under torchrun "
        "(torchrun --standalone --nproc_per_node=N -m strokes train ...) it trains with DistributedDataParallel: "
        "gloo on the CPU, NCCL on CUDA, --batch-size is the global batch.",
    )
    data_args(sp)
    sp.add_argument("--config", default=None, metavar="FILE.json", help="TrainConfig fields as JSON (e.g. best_config.json from strokes tune); flags given here override it")
    sp.add_argument("--model", default=None, help="a model from models.list_models() (default vgg_gap)")
    sp.add_argument("--option", action="append", metavar="KEY=VALUE", help="override a model config field (repeatable)")
    sp.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 30)")
    sp.add_argument("--time-budget", type=_or_none(float), default=None, metavar="SECONDS", help="stop after this many training seconds (default: none; 'none' clears a --config value)")
    sp.add_argument("--batch-size", type=int, default=None, help="default 128")
    sp.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    sp.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.05)")
    sp.add_argument("--label-smoothing", type=float, default=None, help="default 0.1")
    sp.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (0 = off; default 8)")
    sp.add_argument("--no-augment", action="store_true", help="train without augmentation")
    sp.add_argument("--augment", choices=AUGMENT_PRESETS, default=None, help=AUGMENT_HELP)
    sp.add_argument("--split", choices=["writer", "random"], default=None, help="default: writer (writer-disjoint)")
    sp.add_argument("--channels", default=None, help="render channels for image models (default ink)")
    sp.add_argument("--thickness", type=float, default=None, help="render line width in pixels (default 1)")
    sp.add_argument("--max-train-samples", type=_or_none(int), default=None, help="train on a random subset (quick runs; 'none' clears a --config value, e.g. a tune search's subset)")
    sp.add_argument("--compile", action="store_true", help="torch.compile the model")
    sp.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    sp.add_argument("--workers", type=int, default=None, help="DataLoader processes preparing batches (default: 1 for small image models on the CPU, else 0)")
    sp.add_argument("--distill-from", action="append", default=None, metavar="CHECKPOINT", help="distill from this teacher (repeatable: their softmaxes are averaged); same vocabulary and normalization as the student")
    sp.add_argument("--distill-alpha", type=float, default=None, help="weight of the distillation term (default 0.5)")
    sp.add_argument("--distill-temperature", type=float, default=None, help="distillation temperature T (default 2)")
    sp.add_argument(
        "--mixup", type=float, default=None, metavar="ALPHA",
        help="blend pairs of training images, weight ~ Beta(ALPHA, ALPHA); image models only (default 0: off)",
    )  # fmt: skip
    sp.add_argument(
        "--cutmix", type=float, default=None, metavar="ALPHA",
        help="paste a box of one training image into another, area ~ Beta(ALPHA, ALPHA); with --mixup each batch "
        "picks one; image models only (default 0: off)",
    )  # fmt: skip
    sp.add_argument("--resume", default=None, help="continue from OUT/last.pt")
    sp.add_argument("--out", default=None, help="output directory (default runs/MODEL)")
    sp.add_argument("--seed", type=int, default=None, help="seeds init, split, shuffling and augmentation (default 0)")
    sp.add_argument("--device", default=None, help="auto | cpu | cuda (default auto)")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser(
        "bench",
        help="compare sequence, image and fused models on the same splits",
        description="Train and measure every model of --models on the same splits and seeds: top-1/top-5/macro "
        "recall (mean ± std over seeds), training time and throughput, data-preparation share, batched inference "
        "throughput, single-sample recognize() latency (p50/p95) and peak memory. Writes results.json, results.csv, "
        "cells.csv, report.md (with a verdict) and charts to --out; the same --out resumes an interrupted run. "
        f"Without --data: the default run on {QUICK_DATA}, real CROHME handwriting shipped with strokes "
        f"({', '.join(QUICK_MODELS)}, small sizes, {QUICK_EPOCHS} epochs, {QUICK_SEEDS} seeds: about four minutes on two cores). "
        "--data synthetic runs on generated data instead.",
    )
    data_args(sp, option=True)
    sp.add_argument("--models", default=None, help=f"comma-separated model names (default: {','.join(DEFAULT_MODELS)}; without --data: {','.join(QUICK_MODELS)})")
    sp.add_argument("--epochs", type=int, default=None, help=f"epochs per model and seed (default 10; without --data: {QUICK_EPOCHS})")
    sp.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="training seconds per model and seed (with --epochs: whichever ends first)")
    sp.add_argument("--seeds", type=int, default=None, help=f"seeds per model (default 3; without --data: {QUICK_SEEDS})")
    sp.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    sp.add_argument("--split", default="writer", help="writer | random | kfold:K | collection (leave one collection/device out, e.g. CROHME's five) | hasy-folds[:LIST] (HASYv2's official folds, e.g. hasy-folds:1-3) (default writer)")
    sp.add_argument("--train-fraction", default="1", metavar="F[,F...]", help="also train on nested writer subsets of each training split, e.g. 0.05,0.1,0.25,0.5,1 (data-efficiency curves; default 1)")
    sp.add_argument(
        "--fraction-epochs", default=None, metavar="F=E[,F=E...]",
        help="epochs of the cells trained on a --train-fraction below 1, e.g. 0.05=60,0.1=40 (default: --epochs); "
        "a small subset gives few updates per epoch, so it needs more epochs to converge",
    )  # fmt: skip
    sp.add_argument("--batch-size", type=int, default=None, help=f"training batch size, every model (default 128; without --data: {QUICK_BATCH_SIZE})")
    sp.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, every model (default 2e-3)")
    sp.add_argument("--no-augment", action="store_true", help="train without augmentation (= --augment none)")
    sp.add_argument("--augment", choices=AUGMENT_PRESETS, default="default", help=AUGMENT_HELP)
    sp.add_argument("--max-train-samples", type=int, default=None, help="train on a random subset of each split")
    sp.add_argument("--latency-samples", type=int, default=200, help="timed single-sample calls per model (default 200)")
    sp.add_argument("--option", action="append", metavar="MODEL.FIELD=VALUE", help="override a model config field (repeatable)")
    sp.add_argument("--compile", action="store_true", help="torch.compile the models")
    sp.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    sp.add_argument(
        "--probes", default="all",
        help="re-score each cell's test split with its raw ink perturbed: all (default), none, or a comma list of "
        "reversed, stroke-order, rotate-20, rotate-10, rotate+10, rotate+20, slant, aspect, sparse-2, sparse-3, dense-4, "
        "jitter, last-stroke-missing, flip-y (see strokes.probes); a finished cell gets the probes it lacks",
    )  # fmt: skip
    sp.add_argument("--report-only", action="store_true", help="train nothing: report the finished cells of --out and name the ones still to run")
    sp.add_argument(
        "--cells", default=None, metavar="PATTERN[,PATTERN...]",
        help="train only the cells whose names match, e.g. 'lstm__s0-KAIST,*__s0-expressmatch' (cell names are MODEL__SPLIT, "
        "as in OUT/cells/); the others are reported if finished and listed as still to run otherwise",
    )  # fmt: skip
    sp.add_argument("--ddp", action="store_true", help="train every cell with DistributedDataParallel (re-launches through torchrun)")
    sp.add_argument("--procs", type=int, default=None, help="processes for --ddp (default: the GPU count, at least 2)")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    sp.add_argument("--out", default=None, help="output directory (default benchmarks/results/<timestamp>-<data>/)")
    sp.set_defaults(func=cmd_bench)

    import textwrap

    from .training.tune import DEFAULT_EPOCHS, PRUNERS, format_spaces

    sp = sub.add_parser(
        "tune",
        help="hyper-parameter search with Optuna (needs the 'tune' extra)",
        description=textwrap.fill(
            "Search MODEL's learning rate, weight decay, augmentation strength and architecture (width, depth, "
            "dropout) with Optuna's TPE sampler, maximizing val top-1 on a writer-disjoint split; bad trials are "
            "pruned from their per-epoch val top-1. Results go to OUT: study.db (SQLite; the same command with the "
            "same --out resumes, --trials being the total), best_config.json (for strokes train --config), best.pt, "
            "trials.csv, optimization_history.png and param_importances.png. Needs: "
            "pip install -c constraints.txt -e '.[tune]'.",
            width=79,
        ),
        epilog="search spaces (an --option fixes a field and removes it from the search):\n\n"
        + textwrap.indent(format_spaces(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_args(sp)
    sp.add_argument("--model", required=True, help="the model to tune, from models.list_models()")
    sp.add_argument("--trials", type=int, default=20, help="total complete or pruned trials the study should have (default 20)")
    sp.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="training seconds per trial (default: epochs only)")
    sp.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="wall-clock limit of this run: no trial starts after it")
    sp.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"maximum epochs per trial (default {DEFAULT_EPOCHS})")
    sp.add_argument("--pruner", choices=PRUNERS, default="median", help="stop bad trials early: median (default), halving (successive halving) or none")
    sp.add_argument("--batch-size", type=int, default=None, help="training batch size of every trial (default 128)")
    sp.add_argument("--max-train-samples", type=int, default=None, help="train every trial on a random subset (quick searches)")
    sp.add_argument("--option", action="append", metavar="KEY=VALUE", help="fix a model config field (repeatable); it is not searched")
    sp.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    sp.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0); trials train with seed 0")
    sp.add_argument("--device", default=None, help="auto | cpu | cuda (default auto)")
    sp.add_argument("--out", default=None, help="output directory (default runs/tune-MODEL)")
    sp.set_defaults(func=cmd_tune)

    sp = sub.add_parser(
        "serve",
        help="the drawing page and JSON API (needs the 'serve' extra)",
        description="Serve a detexify-like drawing page at / and a JSON API: POST /api/classify?k=5 "
        "(detexify's {\"strokes\": [[{x, y, t}, ...], ...]} or [[x, y(, t)], ...] point lists), GET /api/symbols, "
        "POST /api/teach, GET /symbols, GET /healthz. Binds to loopback unless --host says otherwise. "
        "Needs: pip install -c constraints.txt -e '.[serve]'.",
    )
    sp.add_argument("--model", default=None, help="a checkpoint (default: the shipped model)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    sp.add_argument("--port", type=int, default=8000, help="default 8000")
    sp.add_argument("--max-body", type=int, default=256 * 1024, help="request body limit in bytes (default 262144); more gets 413")
    sp.add_argument("--max-points", type=int, default=20_000, help="points per request (default 20000); more gets 400")
    sp.add_argument("--max-strokes", type=int, default=200, help="strokes per request (default 200); more gets 400")
    sp.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu: single inks are faster there)")
    sp.add_argument(
        "--user-symbols", default=None, metavar="PATH_OR_DSN",
        help="the store of taught symbols: ranked with the built-in ones, written by the page's 'Teach it' "
        "(POST /api/teach); a SQLite file (created on the first teach) or a postgresql:// DSN "
        "(default: $STROKES_USER_SYMBOLS, else ~/.strokes/user_symbols.sqlite; 'none': built-in symbols only, no teaching)",
    )
    sp.add_argument(
        "--collect", action="store_true",
        help="store the drawing and the symbol when a user picks a result on the page (copies it), as labelled "
        "samples in the user-symbol store (POST /api/collect); off by default",
    )  # fmt: skip
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: top-1/top-5, per class, confusions",
        description="Evaluate CHECKPOINT on DATA. By default on the checkpoint's held-out test split when DATA is "
        "the data it was trained on, else on all of DATA. --out writes metrics.json, confusion.png, curves.png.",
    )
    sp.add_argument("checkpoint", help="a .pt checkpoint from strokes train")
    data_args(sp)
    sp.add_argument("--subset", choices=["auto", "test", "val", "all"], default="auto", help="which samples (default auto)")
    sp.add_argument("--out", default=None, help="directory for metrics.json and the plots")
    sp.add_argument("--top", type=int, default=20, help="rows in the worst-class and confusion lists")
    sp.add_argument("--shared-classes", action="store_true", help="let the model choose only among classes DATA also has (models and data with different vocabularies, e.g. CROHME vs HASYv2)")
    sp.add_argument("--batch-size", type=int, default=1024, help="default 1024")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser(
        "recognize",
        help="top-k symbols for drawings saved as JSON",
        description="Print the k most likely symbols for each FILE: a JSON list of strokes ([[x, y], ...] or "
        "{x, y, t} points), or an object with a 'strokes' key (detexify style).",
    )
    sp.add_argument("files", nargs="+", metavar="FILE.json")
    sp.add_argument("-k", type=int, default=5, help="how many candidates (default 5)")
    sp.add_argument("--model", default=None, help="a checkpoint (default: the shipped model)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument(
        "--user-symbols", default=None, metavar="PATH_OR_DSN",
        help="rank the symbols taught with `strokes teach` too: a SQLite file or a postgresql:// DSN "
        "(default: $STROKES_USER_SYMBOLS or ~/.strokes/user_symbols.sqlite when it exists; 'none': built-in symbols only)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_recognize)

    from .io.user_symbols import MAX_INKS_PER_CALL, MAX_LABEL_CHARS, MAX_POINTS_PER_INK

    sp = sub.add_parser(
        "teach",
        help="teach a new symbol (or your way of drawing a known one) from drawings",
        description="Store the drawings FILE.json (each one drawing, as for `strokes recognize`) as examples of "
        "LABEL, e.g. '\\heartsuit'. `strokes recognize` (and strokes.recognize(..., user_symbols=...)) then ranks "
        "LABEL with the built-in symbols; a LABEL the model knows adapts it to these drawings. Nothing is "
        f"retrained. Limits: {MAX_LABEL_CHARS} characters per label, {MAX_INKS_PER_CALL} drawings per call, "
        f"{MAX_POINTS_PER_INK} points per drawing. All drawings of a call are stored, or none.",
    )
    sp.add_argument("label", help="the symbol's name as it should be returned, e.g. '\\heartsuit'")
    sp.add_argument("files", nargs="+", metavar="FILE.json", help="drawings: a JSON list of strokes, or an object with a 'strokes' key")
    sp.add_argument(
        "--user-symbols", default=None, metavar="PATH_OR_DSN",
        help="where to store: a SQLite file (created when missing) or a postgresql:// DSN "
        "(default: $STROKES_USER_SYMBOLS, else ~/.strokes/user_symbols.sqlite)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_teach)

    sp = sub.add_parser(
        "ensemble",
        help="late fusion: combine trained checkpoints, weights fitted on validation",
        description="Combine two or more checkpoints trained on DATA (same vocabulary; sequence members one "
        "normalization pipeline, image members one pipeline and render config, which may differ from the sequence "
        "members': the checkpoint keeps both) into one late_fusion checkpoint: the weighted sum of the members' "
        "log-probabilities, the weights fitted on the validation split they were trained against (the best "
        "validation log-likelihood; never worse than any member or the plain average). recognize(), eval and "
        "export-onnx take the result.",
    )
    sp.add_argument("checkpoints", nargs="+", help="member checkpoints (best.pt of strokes train)")
    data_args(sp, option=True)
    sp.add_argument("-o", "--output", required=True, help="the checkpoint to write")
    sp.add_argument("--seed", type=int, default=0, help="seed of the weight fit's restarts (default 0)")
    sp.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")
    sp.set_defaults(func=cmd_ensemble)

    sp = sub.add_parser(
        "export-onnx",
        help="export a checkpoint to ONNX",
        description="Write CHECKPOINT's network as an ONNX model and check it against PyTorch with onnxruntime "
        "(needs the 'onnx' extra: pip install -c constraints.txt -e '.[onnx]').",
    )
    sp.add_argument("checkpoint")
    sp.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    sp.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    sp.set_defaults(func=cmd_export_onnx)

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
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what to re-launch (bench --ddp)
    base = logging.INFO if args.command in ("train", "bench") else logging.WARNING  # training reports every epoch
    level = max(logging.DEBUG, base - 10 * min(args.verbose, 2))
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
