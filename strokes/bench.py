"""``strokes bench``: sequence models vs image models vs both, on the same splits.

The harness trains every model of a list on every split of a matrix (seeds,
and folds for ``kfold:K``), then measures each trained model the same way:

* accuracy on the held-out test split: top-1, top-5, macro recall (mean and
  standard deviation over seeds/folds);
* training: epochs run, wall seconds of the training loop (validation
  excluded), samples/s, and how much of each step went to data preparation
  (gather, augment, pad, render) vs the model, so a data-bound run shows;
* batched inference throughput on the test split (preparation + forward);
* single-sample latency through the :func:`strokes.recognize` path
  (validate, normalize, pad or render, forward, softmax, top-k), p50 and p95
  after a warm-up that is not counted;
* peak memory: process RSS sampled during the cell, and on CUDA the peak
  allocated device memory.

Fairness: every model sees the same split for a given seed, the same seed for
initialization, shuffling and augmentation, the same augmentation (it acts on
the points, before they become a sequence or an image), the same optimizer
recipe, and the same ``epochs`` and/or ``time_budget``.

Each finished cell is written to ``OUT/cells/<cell>.json`` atomically, so an
interrupted run started again with the same ``--out`` skips finished cells
(and resumes an interrupted training from its ``last.pt``). The report
(``results.json``, ``results.csv``, ``cells.csv``, ``report.md`` and PNG
charts) is written by :mod:`strokes.bench_report`.

On CUDA the trainer runs bf16 autocast, pinned memory and non-blocking
copies, renders and augments on the GPU and enables ``cudnn.benchmark``;
timings of device work use CUDA events or a synchronization first.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._util import atomic_write, tqdm_disable
from .probes import DEFAULT_PROBES

log = logging.getLogger(__name__)

__all__ = [
    "BenchConfig",
    "run_bench",
    "make_splits",
    "parse_split",
    "check_models",
    "PeakMemory",
    "latency_stats",
    "DEFAULT_MODELS",
    "QUICK_MODELS",
    "QUICK_DATA",
    "QUICK_OPTIONS",
    "QUICK_EPOCHS",
    "compatible_models",
]

#: The models of a full comparison (two sequence models, three image models, and fusion).
DEFAULT_MODELS = ("lstm", "tcn", "lenet5", "extexify_cnn", "vgg_gap", "fusion")
#: The default run (``strokes bench`` with no ``--data``): real handwriting shipped in the
#: package (:data:`strokes.io.BUILTIN` ``crohme-mini``), one model of each kind, sized and
#: given enough epochs to converge on two CPU cores within about four minutes in all.
QUICK_DATA = "crohme-mini"
QUICK_MODELS = ("lstm", "lenet5", "fusion")
QUICK_OPTIONS = {
    "lstm": {"proj": 32, "hidden": 64, "layers": 1},
    "fusion": {"seq_hidden": 32, "seq_layers": 1, "seq_proj": 32, "image_width": 8, "head_hidden": 128},
}
QUICK_EPOCHS = 20
QUICK_BATCH_SIZE = 64
QUICK_SEEDS = 2

_CELL_FORMAT = 2  # 2: learning curves with val loss and cumulative seconds; precision


@dataclass(frozen=True)
class BenchConfig:
    """What a benchmark run compares and how (saved in ``results.json``)."""

    models: tuple = DEFAULT_MODELS  # names from models.list_models()
    epochs: int | None = None  # epochs per model (the cap when a time budget is set too)
    time_budget: float | None = None  # training seconds per model and seed (validation excluded)
    seeds: int = 3  # seeds per model: seed, seed + 1, ...
    seed: int = 0  # the first seed
    split: str = "writer"  # writer | random | kfold:K | collection (leave one collection out) | hasy-folds[:LIST]
    val: float = 0.1  # validation fraction (of the training part for kfold)
    test: float = 0.1  # test fraction (writer, random)
    device: str = "auto"  # auto | cpu | cuda[:N]
    batch_size: int = 128  # training batch size, every model
    lr: float = 2e-3  # peak learning rate, every model
    augment: bool | str = True  # a rendering.augment preset (default, none, strokes, probes), the same for every model; True = default
    patience: int = 0  # early stopping (0 = off, so every model gets its whole budget)
    max_train_samples: int | None = None  # train on a random subset of each training split
    compile: bool = False  # torch.compile the models
    precision: str = "auto"  # auto | fp32 | bf16 autocast for training (auto: bf16 where the hardware does it natively)
    infer_batch_size: int = 512  # batch size of the inference-throughput measurement
    latency_samples: int = 200  # timed single-sample recognize() calls per cell
    latency_warmup: int = 20  # untimed calls before them
    model_options: dict = field(default_factory=dict)  # model name -> {config field: value}
    probes: tuple = DEFAULT_PROBES  # strokes.probes names re-scoring each cell's test split under perturbed ink (() = none)
    train_fractions: tuple = (1.0,)  # nested writer subsets of each training split, e.g. (0.05, 0.1, 0.25, 0.5, 1.0)
    fraction_epochs: dict = field(default_factory=dict)  # training fraction below 1 -> its epochs (else ``epochs``): small subsets need more epochs to converge

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise ValueError("models is empty; name at least one, e.g. --models lstm,lenet5")
        dupes = sorted({m for m in self.models if self.models.count(m) > 1})
        if dupes:
            raise ValueError(f"models listed more than once: {dupes}")
        if self.epochs is None and self.time_budget is None:
            raise ValueError("give epochs and/or time_budget, so every model gets the same budget")
        for name in ("seeds", "batch_size", "infer_batch_size", "latency_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"epochs must be a positive int or None, got {self.epochs!r}")
        if self.time_budget is not None and not (isinstance(self.time_budget, (int, float)) and self.time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        if isinstance(self.latency_warmup, bool) or not isinstance(self.latency_warmup, int) or self.latency_warmup < 0:
            raise ValueError(f"latency_warmup must be an int >= 0, got {self.latency_warmup!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        parse_split(self.split)
        unknown = sorted(set(self.model_options) - set(self.models))
        if unknown:
            raise ValueError(f"model_options for models not in the run: {unknown}")
        from .probes import parse_probes

        object.__setattr__(self, "probes", parse_probes(list(self.probes)) if self.probes else ())
        fr = tuple(sorted({float(f) for f in self.train_fractions} | {1.0}))
        if any(not 0 < f <= 1 for f in fr):
            raise ValueError(f"train_fractions must lie in (0, 1], got {self.train_fractions}")
        object.__setattr__(self, "train_fractions", fr)
        if not isinstance(self.fraction_epochs, dict):
            raise TypeError(f"fraction_epochs must be a dict {{fraction: epochs}}, got {type(self.fraction_epochs).__name__}")
        if self.fraction_epochs and self.epochs is None:
            raise ValueError("fraction_epochs needs epochs too (the full-data cells' epochs); with a time budget only, every cell trains for the budget")
        fe = {}
        for f, e in self.fraction_epochs.items():
            try:
                f = float(f)
            except (TypeError, ValueError):
                raise ValueError(f"fraction_epochs keys must be training fractions, got {f!r}") from None
            if f not in fr or f >= 1:
                raise ValueError(
                    f"fraction_epochs names fraction {f:g}, which is not one of the run's train_fractions below 1 "
                    f"({', '.join(f'{x:g}' for x in fr if x < 1) or 'none'}); full-data cells use epochs"
                )
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ValueError(f"fraction_epochs[{f:g}] must be a positive int, got {e!r}")
            if f"{f:g}" in fe:
                raise ValueError(f"fraction_epochs names fraction {f:g} twice")
            fe[f"{f:g}"] = e  # string keys: the form JSON keeps, so a saved run compares equal
        object.__setattr__(self, "fraction_epochs", dict(sorted(fe.items(), key=lambda kv: float(kv[0]))))
        from rendering.augment import PRESETS

        if _augment_name(self.augment) not in PRESETS:
            raise ValueError(f"augment must be True, False or a preset ({', '.join(PRESETS)}), got {self.augment!r}")
        # one spelling per chain, so that runs recorded before presets existed still resume
        object.__setattr__(self, "augment", {"default": True, "none": False}.get(self.augment, self.augment))

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def epochs_for(self, fraction: float) -> int | None:
        """The epochs of a cell trained on ``fraction`` of its training split."""
        return self.fraction_epochs.get(f"{float(fraction):g}", self.epochs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["probes"] = list(self.probes)
        d["train_fractions"] = list(self.train_fractions)
        return d

    def cell_settings(self) -> dict:
        """The settings a finished cell depends on (besides model, seed and split)."""
        d = self.to_dict()
        # measurements only: a finished cell is reused whatever these say (missing probes are added)
        for k in ("models", "seeds", "latency_samples", "latency_warmup", "infer_batch_size", "probes", "train_fractions"):
            d.pop(k)
        if not d["fraction_epochs"]:  # runs recorded before the field existed still resume
            del d["fraction_epochs"]
        return d


def _augment_name(augment) -> str:
    """A preset name from BenchConfig.augment (True/False, the older form, mean default/none)."""
    if augment is True:
        return "default"
    if augment is False:
        return "none"
    return augment


# --------------------------------------------------------------------- checks
def check_models(names) -> list[str]:
    """Validate model names against the registry; the error lists the valid ones."""
    import models

    names = [n.strip() for n in names if n.strip()]
    valid = models.list_models()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"unknown model(s) {', '.join(unknown)}; valid models: {', '.join(valid)} "
            f"(sequence: {', '.join(models.list_models('sequence'))}; image: {', '.join(models.list_models('image'))}; "
            f"both: {', '.join(models.list_models('both'))})"
        )
    return names


_SPLIT = re.compile(r"^(writer|random|collection|kfold:(\d+)|hasy-folds(?::([\d,\-]+))?)$")


def _fold_list(text: str) -> tuple[int, ...]:
    """``"1,3-5"`` -> (1, 3, 4, 5)."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad fold list {text!r}; use e.g. hasy-folds:1,2,3 or hasy-folds:1-5")
        out.extend(range(int(lo), int(hi or lo) + 1))
    if not out or min(out) < 1 or len(set(out)) != len(out):
        raise ValueError(f"bad fold list {text!r}: folds are numbered from 1, each at most once")
    return tuple(out)


def parse_split(spec: str) -> tuple[str, object]:
    """Parse a bench split name.

    ``"writer"`` -> ("writer", None); ``"kfold:5"`` -> ("kfold", 5);
    ``"hasy-folds"`` -> ("hasy-folds", None) (all the data's official folds);
    ``"hasy-folds:1-3"`` -> ("hasy-folds", (1, 2, 3)).
    """
    if not isinstance(spec, str):
        raise TypeError(f"split must be a str, got {type(spec).__name__}")
    m = _SPLIT.match(spec.strip())
    if not m:
        raise ValueError(
            f"unknown split {spec!r}; use writer, random, collection, kfold:K (e.g. kfold:5) or hasy-folds[:LIST] (e.g. hasy-folds:1-3)"
        )
    if m.group(1).startswith("hasy-folds"):
        return "hasy-folds", (_fold_list(m.group(3)) if m.group(3) else None)
    if m.group(2) is None:
        return m.group(1), None
    k = int(m.group(2))
    if k < 2:
        raise ValueError(f"kfold needs K >= 2, got {spec!r}")
    return "kfold", k


def make_splits(ds, config: BenchConfig) -> list[tuple[str, int, object]]:
    """The split matrix: ``(split_id, seed, Split)`` for every seed (and fold, and training fraction).

    With ``train_fractions`` below 1, each split also comes with nested writer
    subsets of its training part (``fraction_splits``), as ``<id>-frac<f>``.
    """
    base = _base_splits(ds, config)
    if config.train_fractions == (1.0,):
        return base
    return [s for sid, seed, sp in base for s in fraction_splits(ds, sid, seed, sp, config.train_fractions)]


def fraction_splits(ds, split_id: str, seed: int, sp, fractions) -> list[tuple[str, int, object]]:
    """Nested training subsets by writer: for each fraction ``f``, the first writers of a
    seeded random order of the training writers, until ``f`` of the training samples are
    reached. Every subset holds the smaller ones; validation and test are unchanged."""
    from .splits import Split, groups

    g = groups(ds)[sp.train]  # writer (or session) of each training sample
    writers, counts = np.unique(g, return_counts=True)
    order = np.random.default_rng([seed, 104_729]).permutation(len(writers))
    cum = np.cumsum(counts[order])
    out = []
    for f in fractions:
        if f >= 1.0:
            out.append((split_id, seed, sp))
            continue
        k = int(np.searchsorted(cum, f * len(sp.train))) + 1  # fewest writers reaching f
        keep = np.isin(g, writers[order[:k]])
        out.append((f"{split_id}-frac{f:g}", seed, Split(np.sort(sp.train[keep]), sp.val, sp.test, mode=f"{sp.mode}:frac{f:g}", seed=sp.seed)))
    return out


def _base_splits(ds, config: BenchConfig) -> list[tuple[str, int, object]]:
    """The split matrix without training fractions: ``(split_id, seed, Split)`` for every seed (and fold).

    ``writer``/``random``: one train/val/test split per seed (the seed seeds the
    split too, so the spread over seeds includes the choice of test writers).
    ``kfold:K``: K folds made once (writer-grouped when writers are known, else
    stratified); fold ``f`` is the test set and a writer-disjoint (or
    stratified) ``val`` fraction of the rest validates; every seed runs every fold.
    """
    from .splits import Split, kfold, split

    mode, k = parse_split(config.split)
    out = []
    if mode == "hasy-folds":
        return _official_folds(ds, config, k)
    if mode == "collection":
        return _collection_folds(ds, config)
    if mode != "kfold":
        for s in config.seed_list:
            sp = split(ds, mode=mode, val=config.val, test=config.test, seed=s)
            if len(sp.test) == 0:
                raise ValueError(f"the {mode} split of {ds.name} left no test samples; use more data or a larger test fraction")
            out.append((f"s{s}", s, sp))
        return out
    has_writers = bool((ds.writer_ids >= 0).any())
    folds = kfold(ds, k, seed=config.seed, by="writer" if has_writers else "class")
    for f, (rest, test_idx) in enumerate(folds):
        inner = split(ds.subset(rest), mode="writer" if has_writers else "random", val=config.val, test=0.0, seed=config.seed + f)
        train_idx, val_idx = np.sort(rest[inner.train]), np.sort(rest[inner.val])
        if len(val_idx) == 0 or len(test_idx) == 0:
            raise ValueError(f"fold {f} of {k} has no validation or test samples; use fewer folds")
        for s in config.seed_list:
            out.append((f"s{s}-f{f}", s, Split(train_idx, val_idx, test_idx, mode=f"kfold{k}:{f}", seed=s)))
    return out


#: A collection is held out only if it has at least this many samples (or 5% of the data, if less):
#: a handful of symbols (CROHME's 98-symbol ``extension`` folder) would give a meaningless test score.
MIN_HELD_OUT = 500


def _collection_folds(ds, config: BenchConfig) -> list[tuple[str, int, object]]:
    """Leave one collection out: train on the others (a writer-disjoint ``val`` part validates), test on it."""
    from .splits import Split, collections, split

    coll, names = collections(ds)
    sizes = np.bincount(coll[coll >= 0], minlength=len(names))
    floor = min(MIN_HELD_OUT, max(1, int(0.05 * len(ds))))
    held = [c for c in range(len(names)) if sizes[c] >= floor]
    if len(held) < 2:
        raise ValueError(
            f"--split collection needs at least two collections of {floor}+ samples; {ds.name} has "
            + (", ".join(f"{n} ({s})" for n, s in zip(names, sizes)) or "none (no collection or device in its sources)")
        )
    out = []
    for c in held:
        test_idx = np.flatnonzero(coll == c)
        rest = np.flatnonzero(coll != c)
        inner = split(ds.subset(rest), mode="writer", val=config.val, test=0.0, seed=config.seed + c)
        train_idx, val_idx = np.sort(rest[inner.train]), np.sort(rest[inner.val])
        for s in config.seed_list:
            out.append((f"s{s}-{names[c]}", s, Split(train_idx, val_idx, test_idx, mode=f"collection:{names[c]}", seed=s)))
    return out


def _official_folds(ds, config: BenchConfig, wanted) -> list[tuple[str, int, object]]:
    """HASYv2's protocol: fold ``f``'s own train and test lists; a stratified ``val``
    fraction of its train list validates (the official lists are not writer-disjoint)."""
    from .splits import Split, split

    n_folds = getattr(ds, "num_folds", 0)
    if not n_folds:
        raise ValueError(
            f"--split hasy-folds needs data with official folds (HASYv2 with its classification-task/ directory); "
            f"{ds.name} has none: use writer, random or kfold:K"
        )
    folds = wanted or tuple(range(1, n_folds + 1))
    if max(folds) > n_folds:
        raise ValueError(f"{ds.name} has folds 1 to {n_folds}; asked for {max(folds)}")
    out = []
    for f in folds:
        train_all, test_idx = ds.fold(f)
        if len(test_idx) == 0 or len(train_all) == 0:
            raise ValueError(f"official fold {f} of {ds.name} has an empty train or test list")
        inner = split(ds.subset(train_all), mode="random", val=config.val, test=0.0, seed=config.seed + f)
        train_idx, val_idx = np.sort(train_all[inner.train]), np.sort(train_all[inner.val])
        if len(val_idx) == 0:
            raise ValueError(f"official fold {f}: no validation samples; raise the validation fraction")
        for s in config.seed_list:
            out.append((f"s{s}-fold{f}", s, Split(train_idx, val_idx, test_idx, mode=f"hasy-fold:{f}", seed=s)))
    return out


def compatible_models(ds, names) -> tuple[list[str], dict[str, str]]:
    """The models that can read ``ds``, and a reason for each one that cannot.

    Image-only data (HASYv2) has no strokes, so sequence and fusion models are
    left out of a benchmark on it rather than failing half-way.
    """
    import models

    from .images import is_image_data

    if not is_image_data(ds):
        return list(names), {}
    keep, skipped = [], {}
    for name in names:
        kind = models.model_entry(name).input_kind
        if kind == "image":
            keep.append(name)
        else:
            skipped[name] = f"{kind} model: {ds.name} holds only images (no strokes to feed it)"
    return keep, skipped


# ------------------------------------------------------------------- memory
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every ``interval`` s).

    ``peak`` and ``start`` are bytes; on systems without ``/proc`` the peak
    comes from ``getrusage`` (the process-lifetime maximum) and ``exact`` is False.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.start = self.peak = 0
        self.exact = _rss_bytes() is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self):
        while not self._stop.wait(self.interval):
            v = _rss_bytes()
            if v is not None and v > self.peak:
                self.peak = v

    def __enter__(self):
        if self.exact:
            self.start = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() or 0)
        else:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return False


# ----------------------------------------------------------------- measuring
def latency_stats(seconds) -> dict:
    """p50/p95/mean/max in milliseconds of per-call times (already without warm-up)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError("no latency samples")
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "calls": int(ms.size),
    }


def measure_latency(recognizer, inks, warmup: int) -> dict:
    """Time ``recognizer(ink)`` per call; the first ``warmup`` calls are not counted.

    The result is a host numpy array, so every timed call includes the device
    finishing its work (no asynchronous work escapes the host clock).
    """
    if len(inks) <= warmup:
        raise ValueError(f"need more than {warmup} inks for a latency measurement, got {len(inks)}")
    for ink in inks[:warmup]:
        recognizer(ink)
    times = []
    for ink in inks[warmup:]:
        t0 = time.perf_counter()
        recognizer(ink)
        times.append(time.perf_counter() - t0)
    return {**latency_stats(times), "warmup_calls": warmup}


def measure_inference(loaded, ds, device, batch_size: int, min_seconds: float = 1.0) -> dict:
    """Batched inference throughput on ``ds``: normalization, then per batch preparation
    (pad/render) and forward, timed apart (CUDA events on a GPU). One untimed batch warms up."""
    import torch

    from .training.batching import loaded_tensors, make_inputs
    from .training.train import _StepTimer

    t0 = time.perf_counter()
    data = loaded_tensors(ds, loaded, device=device)
    normalize_s = time.perf_counter() - t0
    model = loaded.model.to(device).eval()
    n = len(data)
    timer = _StepTimer(torch.device(device))
    seen, passes = 0, 0
    with torch.inference_mode():
        warm = make_inputs(data.take(torch.arange(min(batch_size, n), device=device)), loaded.input_kind, loaded.render)
        model(**warm)
        timer.totals()
        timer = _StepTimer(torch.device(device))
        while True:
            for s in range(0, n, batch_size):
                timer.start()
                inputs = make_inputs(data.take(torch.arange(s, min(s + batch_size, n), device=device)), loaded.input_kind, loaded.render)
                timer.data_done()
                model(**inputs)
                timer.model_done()
            seen += n
            passes += 1
            prep_s, model_s = timer.totals()
            if prep_s + model_s >= min_seconds or passes >= 20:
                break
    normalize_total = normalize_s * passes  # a real job normalizes once per pass over the data
    total = prep_s + model_s + normalize_total
    return {
        "samples_per_s": seen / total,
        "model_samples_per_s": seen / max(model_s, 1e-12),
        "normalize_fraction": normalize_total / total,
        "prepare_fraction": prep_s / total,
        "model_fraction": model_s / total,
        "batch_size": batch_size,
        "samples": seen,
    }


def measure_probes(loaded, test_ds, names, device, seed: int, done: dict | None = None) -> dict:
    """Test top-1/top-5 of ``loaded`` on ``test_ds`` with each probe of ``names`` applied to the raw ink.

    ``done`` holds results already measured (kept). Image-only data has no ink
    to perturb: the result is empty.
    """
    from .images import is_image_data
    from .probes import apply_probe
    from .training.evaluate import evaluate

    out = dict(done or {})
    if is_image_data(test_ds):
        return out
    for name in names:
        if name in out:
            continue
        report = evaluate(loaded, apply_probe(test_ds, name, seed=seed), device=str(device), progress=False)
        out[name] = {"top1": report["top1"], "top5": report["top5"]}
    return out


# -------------------------------------------------------------------- cells
def _fraction_of(split_id: str) -> float:
    m = re.search(r"-frac([0-9.]+)$", split_id)
    return float(m.group(1)) if m else 1.0


def _cell_name(model: str, split_id: str) -> str:
    return f"{model}__{split_id}"


def _n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def run_cell(ds, model_name: str, seed: int, split_id: str, sp, config: BenchConfig, cell_dir: Path, progress=None) -> dict | None:
    """Train one model on one split and measure it; returns the cell's record (plain JSON).

    Under DDP every rank trains; rank 0 measures while the others wait, and
    only rank 0 gets the record (the others get None).
    """
    import torch

    from .training.distributed import current

    dist_info = current()

    import models

    from .training.checkpoint import load_checkpoint
    from .training.evaluate import evaluate
    from .recognizer import Recognizer
    from rendering.augment import augment_preset

    from .training.train import TrainConfig, Trainer, resolve_device

    device = resolve_device(config.device)
    entry = models.model_entry(model_name)
    mode, _ = parse_split(config.split)
    tcfg = TrainConfig(
        model=model_name,
        model_options=dict(config.model_options.get(model_name, {})),
        epochs=config.epochs_for(_fraction_of(split_id)) or 10_000,
        batch_size=config.batch_size,
        lr=config.lr,
        augment=augment_preset(_augment_name(config.augment)).to_config(),
        patience=config.patience,
        split=mode if mode not in ("kfold", "hasy-folds", "collection") else ("writer" if (ds.writer_ids >= 0).any() else "random"),
        val=config.val,
        test=config.test,
        seed=seed,
        device=str(device),
        compile=config.compile,
        precision=config.precision,
        max_train_samples=config.max_train_samples,
        time_budget=config.time_budget,
    )
    last = cell_dir / "last.pt"
    resume = last if last.exists() else None
    if resume is not None:
        log.info("%s: resuming the interrupted training from %s", cell_dir.name, last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakMemory() as train_mem:
        trainer = Trainer(tcfg, cell_dir, progress=progress)
        metrics = trainer.fit(ds, resume=resume, split=sp)
    if dist_info.enabled:
        import torch.distributed as dist

        if not dist_info.is_main:
            dist.barrier()  # wait while rank 0 measures
            return None
        device = trainer.device
    cuda_train_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    loaded = load_checkpoint(cell_dir / "best.pt", device=device)
    test_ds = ds.subset(sp.test)
    report = evaluate(loaded, test_ds, device=str(device), progress=False)
    probes = measure_probes(loaded, test_ds, config.probes, device, seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakMemory() as infer_mem:
        infer = measure_inference(loaded, test_ds, str(device), config.infer_batch_size)
        rng = np.random.default_rng(seed)
        n_lat = min(len(test_ds), config.latency_samples + config.latency_warmup)
        pick = rng.choice(len(test_ds), n_lat, replace=len(test_ds) < n_lat)
        from .images import is_image_data

        images = is_image_data(test_ds)  # image-only data: time one image per call
        inks = [test_ds.images[int(i)] if images else test_ds[int(i)].strokes for i in pick]
        if len(inks) <= config.latency_warmup:  # tiny test sets: reuse inks
            inks = [inks[j % len(inks)] for j in range(config.latency_samples + config.latency_warmup)]
        recognizer = Recognizer(loaded, device=str(device))
        with torch.inference_mode():
            latency = measure_latency(recognizer.classify_images if images else recognizer, inks, config.latency_warmup)
    cuda_infer_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    clock = metrics["clock"]
    step_s = clock["data_seconds"] + clock["model_seconds"]
    support = np.asarray(report["confusion"]).sum(1)
    recall = np.divide(np.diag(np.asarray(report["confusion"])), support, out=np.full(len(support), np.nan), where=support > 0)
    history, cumulative = [], 0.0
    for row in trainer.history:  # the learning curve: val top-1 and loss per epoch, against cumulative training seconds
        cumulative += row.get("train_seconds", 0.0)
        history.append(
            {
                **{k: row[k] for k in ("epoch", "val_top1", "val_top5", "val_loss", "train_loss", "train_seconds", "steps") if k in row},
                "cum_train_seconds": cumulative,
            }
        )
    record = {
        "format": _CELL_FORMAT,
        "cell": _cell_name(model_name, split_id),
        "model": model_name,
        "representation": entry.input_kind,
        "seed": seed,
        "split_id": split_id,
        "split_mode": sp.mode,
        "train_fraction": _fraction_of(split_id),
        "split_sizes": {"train": metrics["split"]["train"], "val": len(sp.val), "test": len(sp.test)},
        "params": _n_params(loaded.model),
        "epochs_run": round(clock["epochs_done"], 3),
        "best_epoch": metrics["best_epoch"],
        "stopped": metrics["stopped"],
        "train_seconds": clock["train_seconds"],
        "train_samples_per_s": clock["samples_seen"] / max(clock["train_seconds"], 1e-9),
        "train_data_seconds": clock["data_seconds"],
        "train_model_seconds": clock["model_seconds"],
        "train_data_fraction": clock["data_seconds"] / step_s if step_s > 0 else None,
        "precision": trainer.precision,
        "channels_last": trainer.channels_last,
        "workers": trainer.workers,
        "val_top1": metrics["val"]["top1"],
        "test": {k: report[k] for k in ("top1", "top5", "macro_recall", "loss", "samples")},
        "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": report["confusion"],
        "most_confused": report["most_confused"][:10],
        "inference": infer,
        "latency": latency,
        "memory": {
            "train_peak_rss_mb": train_mem.peak / 2**20,
            "train_rss_growth_mb": (train_mem.peak - train_mem.start) / 2**20,
            "infer_peak_rss_mb": infer_mem.peak / 2**20,
            "rss_exact": train_mem.exact,
            "cuda_train_peak_mb": None if cuda_train_peak is None else cuda_train_peak / 2**20,
            "cuda_infer_peak_mb": None if cuda_infer_peak is None else cuda_infer_peak / 2**20,
        },
        "history": history,
        "probes": probes,
        "vocab": list(loaded.vocab),
    }
    if "distributed" in metrics:
        record["distributed"] = metrics["distributed"]
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()
    return record


# ------------------------------------------------------------------ metadata
def _git_commit() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device) -> dict:
    """Device, CPU/GPU names, library versions, commit and load: what a reader needs to weigh the numbers."""
    import torch

    env = {
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **_git_commit(),
    }
    if hasattr(os, "getloadavg"):
        env["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return env


def data_summary(ds) -> dict:
    return {
        "name": ds.name,
        "synthetic": bool(ds.synthetic),
        "fingerprint": ds.fingerprint(),
        "samples": len(ds),
        "classes": len(ds.vocab),
        "writers": len(ds.writer_names),
        "skipped": len(ds.skipped),
        "format": ds.info.get("format"),
    }


def default_out_dir(ds, root="benchmarks/results") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ds.name.split("(")[0]).strip("-").lower()[:40] or "data"
    return Path(root) / f"{stamp}-{slug}"


# ----------------------------------------------------------------------- run
def _check_manifest(out: Path, settings: dict) -> None:
    path = out / "bench.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("settings") != settings:
            diff = sorted(k for k in set(old.get("settings", {})) | set(settings) if old.get("settings", {}).get(k) != settings.get(k))
            raise ValueError(
                f"{out} holds a bench run with other settings (they differ in: {', '.join(diff)}); "
                "use a new --out, or the same options and data to resume it"
            )
    else:
        with atomic_write(path, "w") as fh:
            json.dump({"settings": settings}, fh, indent=1)


def run_bench(
    ds,
    config: BenchConfig,
    out_dir=None,
    *,
    command: str | None = None,
    progress: bool | None = None,
    report_only: bool = False,
    only=None,
) -> dict:
    """Run the benchmark matrix on ``ds`` and write the report into ``out_dir``.

    Finished cells found in ``out_dir`` (same settings, same data) are reused.
    With ``report_only`` nothing is trained: the report covers the finished cells
    and names the ones still to run (``results["pending_cells"]``), so a run that
    spans sessions can publish what it has. ``only`` (cell-name patterns, e.g.
    ``["lstm__s0-KAIST", "*__s0-expressmatch"]``) trains just the matching cells
    and reports the others as pending unless they are finished; every pattern
    must match a cell of the run.
    Returns the results (the content of ``results.json``).
    """
    import torch
    from tqdm.auto import tqdm

    import models

    from . import bench_report
    from .training.train import resolve_device

    if not isinstance(config, BenchConfig):
        raise TypeError(f"config must be a BenchConfig, got {type(config).__name__}")
    check_models(config.models)
    if len(ds) == 0:
        raise ValueError(f"{ds.name} has no samples")
    from .training.distributed import current

    dist_info = current()
    device = resolve_device(config.device)
    settings = {**config.cell_settings(), "device": device.type, "data_fingerprint": ds.fingerprint(), "world_size": dist_info.world_size}
    if dist_info.world_size == 1:
        del settings["world_size"]
    problem = None
    if dist_info.is_main:
        out = Path(out_dir) if out_dir is not None else default_out_dir(ds)
        out.mkdir(parents=True, exist_ok=True)
        try:
            _check_manifest(out, settings)
        except ValueError as exc:
            problem = str(exc)
    if dist_info.enabled:  # every rank uses rank 0's output directory and verdict on it
        import torch.distributed as dist

        shared = [str(out) if dist_info.is_main else None, problem]
        dist.broadcast_object_list(shared, src=0)
        out, problem = Path(shared[0]), shared[1]
    if problem:
        raise ValueError(problem)

    env = environment(device)
    run_models, skipped_models = compatible_models(ds, config.models)
    for name, reason in skipped_models.items():
        log.warning("bench: skipping %s (%s)", name, reason)
    if not run_models:
        import models

        raise ValueError(
            f"none of the models can read {ds.name}: {'; '.join(f'{k}: {v}' for k, v in skipped_models.items())}. "
            f"Use image models: {', '.join(models.list_models('image'))}"
        )
    splits = make_splits(ds, config)
    cells = [(m, seed, sid, sp) for m in run_models for sid, seed, sp in splits]
    selected = select_cells([_cell_name(m, sid) for m, _, sid, _ in cells], only)
    log.info("bench: %d models x %d splits = %d cells on %s, out %s", len(run_models), len(splits), len(cells), device, out)
    if ds.synthetic:
        log.warning("bench data is SYNTHETIC (generated, not real handwriting): %s", ds.name)

    def finished(name):
        path = out / "cells" / f"{name}.json"
        if path.exists():
            rec = json.loads(path.read_text())
            if rec.get("format") == _CELL_FORMAT:
                return rec
        return None

    # decided once, before any cell runs, so that every DDP rank skips the same cells
    done = {_cell_name(m, sid): finished(_cell_name(m, sid)) for m, _, sid, _ in cells}
    records, reused, pending = [], 0, []
    started = time.perf_counter()
    bar = tqdm(cells, desc="bench", unit="cell", disable=tqdm_disable(progress) or not dist_info.is_main)
    for model_name, seed, sid, sp in bar:
        name = _cell_name(model_name, sid)
        bar.set_postfix_str(name)
        path = out / "cells" / f"{name}.json"
        if done[name] is not None:
            rec = done[name]
            missing = [p for p in config.probes if p not in rec.get("probes", {})]
            if missing and dist_info.is_main and (out / "cells" / name / "best.pt").exists():
                # a cell finished before these probes were asked for: score its best.pt under them now
                from .training.checkpoint import load_checkpoint

                loaded = load_checkpoint(out / "cells" / name / "best.pt", device=device)
                rec["probes"] = measure_probes(loaded, ds.subset(sp.test), missing, device, seed, rec.get("probes"))
                with atomic_write(path, "w") as fh:
                    json.dump(rec, fh)
            records.append(rec)
            reused += 1
            continue
        if report_only or name not in selected:
            pending.append(name)
            continue
        cell_dir = out / "cells" / name
        t0 = time.perf_counter()
        rec = run_cell(ds, model_name, seed, sid, sp, config, cell_dir, progress=False if progress is False or not dist_info.is_main else None)
        if rec is None:  # a DDP rank other than 0: rank 0 measures and writes
            continue
        rec["cell_seconds"] = time.perf_counter() - t0
        with atomic_write(path, "w") as fh:
            json.dump(rec, fh)
        for leftover in ("last.pt",):  # optimizer state is only needed while a cell is unfinished
            (cell_dir / leftover).unlink(missing_ok=True)
        records.append(rec)
        log.info(
            "%s: test top-1 %.4f, top-5 %.4f, %.0f s training, latency p50 %.2f ms",
            name, rec["test"]["top1"], rec["test"]["top5"], rec["train_seconds"], rec["latency"]["p50_ms"],
        )
    bar.close()
    if report_only and not records:
        raise ValueError(f"{out} has no finished cells to report yet; run without --report-only first")
    if not dist_info.is_main:
        return {"out_dir": str(out), "rank": dist_info.rank}
    if reused:
        log.info("bench: reused %d finished cell(s) from %s", reused, out)
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    results = {
        "config": config.to_dict(),
        "command": command,
        "environment": env,
        "data": data_summary(ds),
        "splits": [{"split_id": sid, "seed": seed, **sp.to_dict(), "missing": sp.missing} for sid, seed, sp in splits],
        "models": {m: {"representation": models.model_entry(m).input_kind} for m in config.models},
        "skipped_models": skipped_models,
        "cells": records,
        "cells_reused": reused,
        "pending_cells": pending,
        "run_seconds": time.perf_counter() - started,
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    bench_report.write(results, out)
    results["out_dir"] = str(out)
    return results


def select_cells(names: list[str], only) -> set[str]:
    """The cell names that match any of the glob patterns ``only`` (all of them when None).

    A pattern that matches no cell is an error that lists the run's cells.
    """
    import fnmatch

    if only is None:
        return set(names)
    if isinstance(only, str):
        raise TypeError("only must be a list of cell-name patterns, e.g. ['lstm__s0-KAIST'], not a str")
    bad = [p for p in only if not isinstance(p, str)]
    if bad:
        raise TypeError(f"only must hold cell-name patterns (str), got {bad[0]!r}")
    patterns = [p.strip() for p in only if p.strip()]
    if not patterns:
        raise ValueError("only names no cell; give cell names or patterns such as 'lstm__s0*'")
    hits = {p: {n for n in names if fnmatch.fnmatchcase(n, p)} for p in patterns}
    unmatched = [p for p, h in hits.items() if not h]
    if unmatched:
        raise ValueError(f"no cell of this run matches {', '.join(map(repr, unmatched))}; its cells are: {', '.join(names)}")
    return set().union(*hits.values())


def _argv() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
