"""Hyper-parameter search with Optuna: ``strokes tune`` (optional extra ``tune``).

:func:`tune` trains one small run per Optuna trial and maximizes the
validation top-1 of a fixed writer-disjoint split (the split a
:class:`~strokes.training.train.TrainConfig` with the same ``split``, ``val``, ``test``
and ``seed`` describes, so ``strokes train --config best_config.json`` on the
same data trains on the very same samples). Every trial uses the same
training seed; only the sampled hyper-parameters differ.

**Search spaces.** Every model searches the optimizer and the augmentation strength; models
with width, depth or dropout knobs search those too (``softmax``,
``lenet5`` and ``late_fusion``, whose members are trained apart, have none). A model option fixed by the caller (``--option`` /
``base.model_options``) is not searched. Integers are sampled as integers;
"log" means log-uniform. The table (also printed by ``strokes tune --help``;
:func:`format_spaces` writes it)::

    model         parameter     range                scale   sets
    (every)       lr            0.0001 .. 0.01       log     TrainConfig.lr (peak AdamW learning rate)
    (every)       weight_decay  0.0001 .. 0.3        log     TrainConfig.weight_decay (AdamW)
    (every)       augment       0 .. 2, step 0.1     linear  TrainConfig.augment: default_augment() magnitudes x augment (0 = off)
    emnist_cnn    width         8 .. 64              log     model_options.width
    emnist_cnn    hidden        64 .. 512            log     model_options.hidden
    emnist_cnn    dropout       0 .. 0.5             linear  model_options.dropout
    extexify_cnn  width         8 .. 48              log     model_options.channels = width x (1, 2, 4, 6)[:blocks]
    extexify_cnn  blocks        2 .. 4               linear  model_options.channels (its length)
    extexify_cnn  dropout       0 .. 0.5             linear  model_options.dropout
    fusion        seq_hidden    32 .. 192            log     model_options.seq_hidden
    fusion        image_width   8 .. 48              log     model_options.image_width
    fusion        dropout       0 .. 0.5             linear  model_options.dropout
    gru           hidden        32 .. 256            log     model_options.hidden
    gru           layers        1 .. 3               linear  model_options.layers
    gru           dropout       0 .. 0.5             linear  model_options.dropout
    late_fusion   (no architecture knobs)
    lenet5        (no architecture knobs)
    lstm          hidden        32 .. 256            log     model_options.hidden
    lstm          layers        1 .. 3               linear  model_options.layers
    lstm          dropout       0 .. 0.5             linear  model_options.dropout
    mlp           hidden        64 .. 1024           log     model_options.hidden
    mlp           dropout       0 .. 0.5             linear  model_options.dropout
    softmax       (no architecture knobs)
    tcn           channels      32 .. 256            log     model_options.channels
    tcn           blocks        3 .. 7               linear  model_options.blocks
    tcn           dropout       0 .. 0.4             linear  model_options.dropout
    vgg_gap       width         8 .. 64              log     model_options.width
    vgg_gap       stages        2 .. 4               linear  model_options.stages
    vgg_gap       dropout       0 .. 0.5             linear  model_options.dropout

The augmentation strength ``s`` scales every magnitude of
:func:`rendering.augment.default_augment` (rotation, shear, translation, the
scale range's distance from 1, elastic displacement, jitter); ``s = 0``
turns augmentation off. The result is written as explicit step configs, so
``best_config.json`` is self-contained. A registered model without a table
entry searches only the optimizer and augmentation rows (with a warning).

Trial 0 of a new study is the baseline: the base config's learning rate and
weight decay, the default augmentation and each model's default
architecture, so the best trial is never worse (on validation) than the
defaults.

A trial whose loss diverges or that runs out of GPU memory is marked
``FAIL`` (logged, with the reason in ``trials.csv``) and the study goes on;
failed trials do not count toward the target.

Pruning (``pruner``) reads the validation top-1 reported after every epoch:

* ``median``: ``MedianPruner(n_startup_trials=5, n_warmup_steps=2)``: from
  epoch 2 on, a trial stops when its best val top-1 so far is below the
  median of the finished trials at the same epoch (once 5 trials finished);
* ``halving``: ``SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)``:
  at epochs 2, 6, 18, ... only the top third of trials continue;
* ``none``: every trial runs to the end.

Files under ``out_dir``:

``study.db``
    The Optuna SQLite storage (study ``strokes-tune``). Running again with
    the same ``out_dir`` resumes: ``trials`` is the total target, and trials
    that are complete or pruned count toward it. A trial left ``RUNNING`` by
    a killed process is marked ``FAIL`` and its parameters are queued to run
    again (logged); so is a trial interrupted with Ctrl-C. A study made for
    another model, other data, another search space or other fixed training
    settings is refused with a ``ValueError`` naming the difference. A
    resumed study seeds its sampler from ``seed`` and the number of stored
    trials, so it never repeats the first run's draws.
``best_config.json``
    ``{"train": {TrainConfig fields of the best trial}, "study": {...}}``;
    ``strokes train DATA --config best_config.json`` trains it (``device`` is
    written as ``"auto"``). Rewritten after every new best trial, atomically.
``best.pt``
    The best trial's checkpoint.
``trials.csv``
    One row per trial: number, state, value, epochs, parameters.
``optimization_history.png``, ``param_importances.png``
    Optuna's matplotlib plots (importances need two completed trials whose
    parameters differ; otherwise a note is logged instead).
``trials/NNNN/``
    Each trial's ``history.json`` and ``config.json`` (its checkpoints are
    deleted once the trial ends).

Example::

    from strokes.training.tune import tune
    result = tune(ds, "tcn", trials=30, out_dir="runs/tune-tcn")
    result["best"]["value"], result["best"]["config"]["lr"]
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._util import atomic_write, tqdm_disable

log = logging.getLogger(__name__)

__all__ = [
    "Param",
    "ModelSpace",
    "COMMON_SPACE",
    "SEARCH_SPACES",
    "PRUNERS",
    "STUDY_NAME",
    "search_space",
    "format_spaces",
    "augment_config",
    "config_from_params",
    "suggest_config",
    "baseline_params",
    "epoch_reporter",
    "make_pruner",
    "require_optuna",
    "tune",
]

STUDY_NAME = "strokes-tune"
SPACE_VERSION = 1  # bump when a parameter's meaning (how it maps onto a TrainConfig) changes
DEFAULT_EPOCHS = 10  # epochs per trial unless the base config says otherwise
PRUNERS = ("median", "halving", "none")
INSTALL_HINT = "pip install -c constraints.txt -e '.[tune]'"
_COUNTED = ("COMPLETE", "PRUNED")  # trial states that count toward the target


@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter.

    Attributes:
        name: the Optuna parameter name.
        low: smallest value.
        high: largest value.
        log: sample log-uniformly.
        integer: sample integers.
        step: grid step (floats only; None = continuous).
        default: the value that reproduces the model's default (the baseline
            trial); None when the default is not in the range.
        sets: the model config fields this parameter sets (empty for the
            optimizer and augmentation parameters).
        doc: what it sets, for :func:`format_spaces`.
    """

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    step: float | None = None
    default: float | int | None = None
    sets: tuple[str, ...] = ()
    doc: str = ""

    def suggest(self, trial):
        """Draw this parameter from an Optuna ``trial`` (or ``FixedTrial``)."""
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def contains(self, value) -> bool:
        """Whether ``value`` lies in the range (and on the grid, for a stepped float)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.integer:
            return float(value).is_integer()
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-8
        return True

    def to_dict(self) -> dict:
        """The parameter's distribution, as stored with a study (to detect a changed space)."""
        return {"name": self.name, "low": self.low, "high": self.high, "log": self.log, "integer": self.integer, "step": self.step}

    def range_text(self) -> str:
        text = f"{self.low:g} .. {self.high:g}"
        return text + (f", step {self.step:g}" if self.step is not None else "")


def _model_param(name, low, high, *, log=False, integer=False, default=None, sets=None, doc=None) -> Param:
    sets = sets or (name,)
    return Param(name, low, high, log=log, integer=integer, default=default, sets=tuple(sets), doc=doc or f"model_options.{name}")


def _int(name, low, high, default, log=False, **kw) -> Param:
    return _model_param(name, low, high, log=log, integer=True, default=default, **kw)


def _dropout(default, high=0.5) -> Param:
    return _model_param("dropout", 0.0, high, default=default)


@dataclass(frozen=True)
class ModelSpace:
    """A model's architecture parameters and how they become ``model_options``.

    Attributes:
        params: the searched parameters.
        build: ``build(values) -> model_options`` for the parameters of
            ``values`` (all present); None means ``{param.name: value}``.
    """

    params: tuple[Param, ...] = ()
    build: Callable[[dict], dict] | None = None

    def options(self, values: dict) -> dict:
        """The ``model_options`` that the architecture parameters ``values`` set."""
        values = {p.name: values[p.name] for p in self.params if p.name in values}
        return self.build(values) if self.build is not None else dict(values)


EXTEXIFY_MULTIPLIERS = (1, 2, 4, 6)  # channels per block as multiples of the first block's (default 32 -> 32, 64, 128, 192)


def _extexify_options(values: dict) -> dict:
    out = {k: v for k, v in values.items() if k not in ("width", "blocks")}
    if "width" in values or "blocks" in values:
        width, blocks = values.get("width", 32), values.get("blocks", len(EXTEXIFY_MULTIPLIERS))
        out["channels"] = [int(width) * m for m in EXTEXIFY_MULTIPLIERS[: int(blocks)]]
    return out


#: The optimizer and augmentation parameters, searched for every model.
COMMON_SPACE: tuple[Param, ...] = (
    Param("lr", 1e-4, 1e-2, log=True, doc="TrainConfig.lr (peak AdamW learning rate)"),
    Param("weight_decay", 1e-4, 0.3, log=True, doc="TrainConfig.weight_decay (AdamW)"),
    Param("augment", 0.0, 2.0, step=0.1, default=1.0,
          doc="TrainConfig.augment: default_augment() magnitudes x augment (0 = off)"),
)  # fmt: skip

#: The architecture parameters searched for each model, on top of :data:`COMMON_SPACE`.
#: Every ``default`` is the model config's default, so the baseline trial is the stock model.
SEARCH_SPACES: dict[str, ModelSpace] = {
    "softmax": ModelSpace(),
    "lenet5": ModelSpace(),
    "late_fusion": ModelSpace(),  # members are trained apart, then combined (strokes.training.ensemble)
    "mlp": ModelSpace((_int("hidden", 64, 1024, 512, log=True), _dropout(0.3))),
    "emnist_cnn": ModelSpace((_int("width", 8, 64, 32, log=True), _int("hidden", 64, 512, 256, log=True), _dropout(0.28))),
    "extexify_cnn": ModelSpace(
        (
            _int("width", 8, 48, 32, log=True, sets=("channels",),
                 doc="model_options.channels = width x (1, 2, 4, 6)[:blocks]"),
            _int("blocks", 2, 4, 4, sets=("channels",), doc="model_options.channels (its length)"),
            _dropout(0.2),
        ),
        build=_extexify_options,
    ),  # fmt: skip
    "vgg_gap": ModelSpace((_int("width", 8, 64, 32, log=True), _int("stages", 2, 4, 4), _dropout(0.3))),
    "gru": ModelSpace((_int("hidden", 32, 256, 128, log=True), _int("layers", 1, 3, 2), _dropout(0.2))),
    "lstm": ModelSpace((_int("hidden", 32, 256, 128, log=True), _int("layers", 1, 3, 2), _dropout(0.2))),
    "tcn": ModelSpace((_int("channels", 32, 256, 128, log=True), _int("blocks", 3, 7, 6), _dropout(0.1, high=0.4))),
    "fusion": ModelSpace(
        (_int("seq_hidden", 32, 192, 96, log=True), _int("image_width", 8, 48, 24, log=True), _dropout(0.3))
    ),
}


def format_spaces() -> str:
    """The search spaces as a plain-text table (the one in this module's docstring)."""
    rows = [("model", "parameter", "range", "scale", "sets")]
    for p in COMMON_SPACE:
        rows.append(("(every)", p.name, p.range_text(), "log" if p.log else "linear", p.doc))
    for name in sorted(SEARCH_SPACES):
        space = SEARCH_SPACES[name]
        if not space.params:
            rows.append((name, "(no architecture knobs)", "", "", ""))
        for p in space.params:
            rows.append((name, p.name, p.range_text(), "log" if p.log else "linear", p.doc))
    widths = (14, 14, 21, 8)
    lines = []
    for row in rows:
        if row[1] == "(no architecture knobs)":
            lines.append(f"{row[0]:<{widths[0]}}{row[1]}")
        else:
            lines.append("".join(f"{c:<{w}}" for c, w in zip(row, widths)) + row[4])
    return "\n".join(line.rstrip() for line in lines)


def _check_model(model: str):
    """The registry entry of ``model``; ValueError naming the valid models otherwise."""
    import models

    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    return models.model_entry(model)  # raises ValueError listing the valid models


def search_space(model: str, base=None) -> list[Param]:
    """The parameters searched for ``model``, given the fixed parts of ``base``.

    Args:
        model: a registered model name.
        base: a :class:`~strokes.training.train.TrainConfig` whose ``model_options``
            fix (and so remove from the search) the model fields they name,
            and whose ``augment``, when not None, fixes the augmentation.

    Returns:
        The :class:`Param` list, optimizer and augmentation first.

    Raises:
        ValueError: when ``model`` is not registered.
    """
    _check_model(model)
    fixed = set((base.model_options or {}) if base is not None else {})
    common = [p for p in COMMON_SPACE if not (p.name == "augment" and base is not None and base.augment is not None)]
    space = SEARCH_SPACES.get(model)
    if space is None:
        log.warning("no search space is defined for model %s: searching only %s", model, ", ".join(p.name for p in common))
        return common
    return common + [p for p in space.params if not fixed.intersection(p.sets)]


def augment_config(strength: float) -> list[dict]:
    """The default augmentation with every magnitude scaled by ``strength``, as step configs.

    Args:
        strength: 0 (no augmentation) up to about 2; 1 is :func:`rendering.augment.default_augment`.

    Returns:
        A list for ``TrainConfig.augment`` (``[]`` when ``strength`` is 0).

    Raises:
        ValueError: when ``strength`` is negative, or so large that a scale range reaches 0.
    """
    from rendering.augment import augment_from_config, default_augment

    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) or strength < 0:
        raise ValueError(f"augmentation strength must be a number >= 0, got {strength!r}")
    if strength == 0:
        return []
    s = float(strength)
    steps = []
    for step in default_augment().to_config():
        step = dict(step)
        if step["name"] == "affine":
            lo, hi = step["scale"]
            step.update(rotate=step["rotate"] * s, shear=step["shear"] * s, translate=step["translate"] * s)
            step["scale"] = [1 - (1 - lo) * s, 1 + (hi - 1) * s]
        elif step["name"] == "elastic":
            step["alpha"] = step["alpha"] * s
        elif step["name"] == "jitter":
            step["sigma"] = step["sigma"] * s
        steps.append({k: _tidy(v) for k, v in step.items()})
    augment_from_config(steps)  # validates (e.g. a scale range reaching 0)
    return steps


def _tidy(value):
    """Floats rounded to 10 decimals (so 1.1 * 2 - 1 reads 1.2), in lists too."""
    if isinstance(value, float):
        return round(value, 10)
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def config_from_params(model: str, params: dict, base=None):
    """The :class:`~strokes.training.train.TrainConfig` that a trial's ``params`` describe.

    Args:
        model: a registered model name.
        params: sampled values by parameter name (as in ``trial.params``);
            parameters left out keep the base value.
        base: the fixed settings (epochs, batch size, split, seed, fixed model
            options...); default ``TrainConfig(epochs=DEFAULT_EPOCHS)``.

    Returns:
        A new TrainConfig for ``model``.

    Raises:
        ValueError: for an unknown model or parameter name, or an invalid value.
    """
    from .train import TrainConfig

    base = _base(model, base)
    known = {p.name for p in COMMON_SPACE} | {p.name for p in SEARCH_SPACES.get(model, ModelSpace()).params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for model {model}; valid: {sorted(known)}")
    changes = {}
    if "lr" in params:
        changes["lr"] = float(params["lr"])
    if "weight_decay" in params:
        changes["weight_decay"] = float(params["weight_decay"])
    if "augment" in params:
        changes["augment"] = augment_config(params["augment"])
    space = SEARCH_SPACES.get(model)
    if space is not None:
        options = space.options(params)
        if options:
            changes["model_options"] = {**base.model_options, **options}
    return TrainConfig.from_dict({**base.to_dict(), **changes})


def suggest_config(trial, model: str, base=None):
    """Sample a TrainConfig for ``model`` from an Optuna ``trial``.

    Args:
        trial: an ``optuna.Trial`` (or ``optuna.trial.FixedTrial``).
        model: a registered model name.
        base: the fixed settings; see :func:`config_from_params`.

    Returns:
        The :class:`~strokes.training.train.TrainConfig` of this trial.

    Raises:
        ValueError: when ``model`` is not registered.
    """
    base = _base(model, base)
    values = {p.name: p.suggest(trial) for p in search_space(model, base)}
    return config_from_params(model, values, base)


def baseline_params(model: str, base=None) -> dict:
    """The parameter values of the untuned defaults (trial 0 of a new study).

    Args:
        model: a registered model name.
        base: the fixed settings; its ``lr`` and ``weight_decay`` are the
            baseline's when they lie in the searched ranges.

    Returns:
        ``{name: value}`` for every searched parameter that has a default in range.
    """
    base = _base(model, base)
    out = {}
    for p in search_space(model, base):
        value = {"lr": base.lr, "weight_decay": base.weight_decay}.get(p.name, p.default)
        if value is not None and p.contains(value):
            out[p.name] = value
    return out


def _base(model: str, base=None):
    """``base`` (default ``TrainConfig(epochs=DEFAULT_EPOCHS)``) for ``model``, type-checked."""
    from .train import TrainConfig

    _check_model(model)
    if base is None:
        base = TrainConfig(model=model, epochs=DEFAULT_EPOCHS)
    if not isinstance(base, TrainConfig):
        raise TypeError(f"base must be a TrainConfig, got {type(base).__name__}")
    if base.model != model:
        base = dataclasses.replace(base, model=model)
    return base


# ---------------------------------------------------------------------------------- optuna


def require_optuna():
    """The ``optuna`` module; ValueError telling how to install it when it is missing."""
    try:
        import optuna
    except ImportError:
        raise ValueError(f"strokes tune needs the optional 'tune' extra (Optuna): {INSTALL_HINT}") from None
    return optuna


def make_pruner(pruner="median"):
    """An Optuna pruner from its name (see the module docstring), or ``pruner`` itself.

    Args:
        pruner: ``"median"``, ``"halving"``, ``"none"``, or an
            ``optuna.pruners.BasePruner`` instance (used as given).

    Returns:
        The pruner.

    Raises:
        ValueError: for an unknown name.
    """
    optuna = require_optuna()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    if pruner in ("none", None):
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {pruner!r}; valid: {', '.join(PRUNERS)}")


def epoch_reporter(trial) -> Callable[[dict], None]:
    """A ``Trainer.fit(on_epoch=...)`` callback that reports val top-1 and prunes.

    After each epoch it reports the epoch's ``val_top1`` at step ``epoch``
    (1-based) and raises ``optuna.TrialPruned`` when the study's pruner says so
    (recording the epoch as the trial's ``pruned_at_epoch`` user attribute).

    Args:
        trial: the running ``optuna.Trial``.

    Returns:
        The callback.
    """
    optuna = require_optuna()

    def on_epoch(row: dict) -> None:
        epoch, value = int(row["epoch"]), float(row["val_top1"])
        trial.report(value, step=epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"val top-1 {value:.4f} at epoch {epoch}")

    return on_epoch


@contextlib.contextmanager
def _exclusive(out_dir: Path):
    """Hold an exclusive lock on ``out_dir`` (so any RUNNING trial found is stale)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, stale trials are still failed
        yield
        return
    path = out_dir / ".tune.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another strokes tune is working on {out_dir} (it holds {path}); wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fixed_settings(base) -> dict:
    """The base config fields that change what a trial measures (stored with the study)."""
    d = base.to_dict()
    for name in ("model", "lr", "weight_decay", "device", "compile", "eval_batch_size", "workers"):
        d.pop(name)
    if d.get("augment") is None:
        d.pop("augment")  # searched
    return json.loads(json.dumps(d))  # tuples -> lists, as stored


def _study_attrs(model, ds, base, space, split_info) -> dict:
    return {
        "strokes_tune": SPACE_VERSION,
        "model": model,
        "data": {"name": ds.name, "fingerprint": ds.fingerprint(), "samples": len(ds), "classes": len(ds.vocab)},
        "space": [p.to_dict() for p in space],
        "train": _fixed_settings(base),
        "split": split_info,
    }


def _check_study(stored: dict, wanted: dict, db: Path) -> None:
    """ValueError naming what differs between a stored study and this run."""
    if "strokes_tune" not in stored:
        raise ValueError(f"{db} holds a study {STUDY_NAME!r} that strokes tune did not make; use another --out")
    diffs = []
    if stored.get("strokes_tune") != wanted["strokes_tune"]:
        diffs.append(f"search-space version {stored.get('strokes_tune')} (stored) vs {wanted['strokes_tune']} (now)")
    if stored.get("model") != wanted["model"]:
        diffs.append(f"model {stored.get('model')!r} (stored) vs {wanted['model']!r} (now)")
    sd, wd = stored.get("data", {}), wanted["data"]
    if sd.get("fingerprint") != wd["fingerprint"]:
        diffs.append(
            f"data {sd.get('name')!r} (fingerprint {sd.get('fingerprint')}, {sd.get('samples')} samples; stored) "
            f"vs {wd['name']!r} (fingerprint {wd['fingerprint']}, {wd['samples']} samples; now)"
        )
    if stored.get("space") != wanted["space"]:
        old = {p["name"]: p for p in stored.get("space", [])}
        new = {p["name"]: p for p in wanted["space"]}
        parts = [
            f"{n} {_range_of(old.get(n))} (stored) vs {_range_of(new.get(n))} (now)"
            for n in sorted(old.keys() | new.keys())
            if old.get(n) != new.get(n)
        ]
        diffs.append("search space: " + ", ".join(parts))
    st, wt = stored.get("train", {}), wanted["train"]
    changed = [f"{k} {st.get(k)!r} (stored) vs {wt.get(k)!r} (now)" for k in sorted(st.keys() | wt.keys()) if st.get(k) != wt.get(k)]
    if changed:
        diffs.append("training settings: " + ", ".join(changed))
    if diffs:
        raise ValueError(
            f"{db} holds a study made for a different setup: " + "; ".join(diffs)
            + ". Use another --out for this search, or delete that study.db to start over"
        )


def _range_of(p: dict | None) -> str:
    if p is None:
        return "not searched"
    step = f", step {p['step']:g}" if p.get("step") else ""
    return f"[{p['low']:g} .. {p['high']:g}{step}{', log' if p.get('log') else ''}]"


def _counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _n_counted(study) -> int:
    c = _counts(study)
    return sum(c.get(s, 0) for s in _COUNTED)


def _recover(study, storage) -> list[int]:
    """Fail trials left RUNNING by a dead process; queue stale or interrupted trials to run again.

    Returns:
        The numbers of the trials marked FAIL now.
    """
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(STUDY_NAME)
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "failed_reason", "stale: left RUNNING by a process that ended (killed?)")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        log.warning("trial %d was left RUNNING by a process that ended (killed?): marked FAIL", t.number)
        stale.append(t.number)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        reason = str(t.user_attrs.get("failed_reason", ""))
        if t.state == TrialState.FAIL and reason.startswith(("stale", "interrupted")) and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            log.warning("trial %d (%s) did not finish: its parameters %s are queued to run again", t.number, reason.split(":")[0], _fmt_params(t.params))
    return stale


def _fmt_params(params: dict) -> str:
    return "{" + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) + "}"


def _clean_checkpoints(trial_dir: Path) -> None:
    for p in trial_dir.glob("*.pt"):
        with contextlib.suppress(OSError):
            p.unlink()


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def _best_trial(study):
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if complete else None


def _write_json(path: Path, data) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def _best_config(study, model: str, base, meta: dict) -> dict | None:
    """The ``best_config.json`` content, or None when no trial has completed."""
    from .train import TrainConfig

    best = _best_trial(study)
    if best is None:
        return None
    cfg = best.user_attrs.get("config") or config_from_params(model, best.params, base).to_dict()
    cfg = TrainConfig.from_dict({**cfg, "device": "auto"}).to_dict()  # validated; portable
    counts = _counts(study)
    return {
        "train": json.loads(json.dumps(cfg)),
        "study": {
            "best_value": best.value,
            "metric": "val top-1 (best epoch)",
            "best_trial": best.number,
            "params": best.params,
            "n_trials": sum(counts.get(s, 0) for s in _COUNTED),
            "states": counts,
            **meta,
        },
    }


def _write_trials_csv(study, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    with atomic_write(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["number", "state", "val_top1", "seconds", "epochs_run", "best_epoch", "pruned_at_epoch", "retry_of", "baseline", "failed_reason", *names])
        for t in trials:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
            a = t.user_attrs
            w.writerow(
                [
                    t.number, t.state.name, "" if t.value is None else t.value, f"{seconds:.1f}" if seconds != "" else "",
                    a.get("epochs_run", ""), a.get("best_epoch", ""), a.get("pruned_at_epoch", ""), a.get("retry_of", ""),
                    int(bool(a.get("baseline"))), a.get("failed_reason", ""), *[t.params.get(n, "") for n in names],
                ]
            )  # fmt: skip


def _write_plots(study, out_dir: Path) -> list[Path]:
    """optimization_history.png and (when possible) param_importances.png; notes are logged."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.info("no completed trial yet: no plots")
        return []
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []

    def save(ax, name):
        fig = ax.figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = out_dir / name
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        written.append(path)

    # rc_context: optuna's plots switch to the ggplot style, which must not leak into later figures
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, and few-trial warnings of the importance evaluator
        save(ovm.plot_optimization_history(study, target_name="val top-1"), "optimization_history.png")
        varying = [n for n in {k for t in complete for k in t.params} if len({repr(t.params.get(n)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            log.info(
                "parameter importances need at least 2 completed trials whose parameters differ (have %d completed%s): "
                "no param_importances.png yet", len(complete), "" if varying or len(complete) < 2 else ", all alike",
            )  # fmt: skip
        else:
            evaluator = None
            if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):  # no scikit-learn needed (optuna >= 3.6)
                evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            try:
                save(ovm.plot_param_importances(study, evaluator=evaluator, target_name="val top-1"), "param_importances.png")
            except (ValueError, RuntimeError, ImportError, ZeroDivisionError) as exc:
                plt.close("all")
                log.info("could not compute parameter importances (%s): no param_importances.png", exc)
    return written


def tune(
    ds,
    model: str,
    trials: int,
    out_dir,
    *,
    base=None,
    time_budget: float | None = None,
    timeout: float | None = None,
    pruner="median",
    seed: int = 0,
    device: str | None = None,
    progress: bool | None = None,
    baseline: bool = True,
    command: str | None = None,
) -> dict:
    """Search hyper-parameters of ``model`` on ``ds`` with Optuna; results under ``out_dir``.

    Args:
        ds: a :class:`strokes.StrokeDataset`.
        model: a registered model name.
        trials: the total number of complete or pruned trials the study should
            have (a resumed study counts the ones it has).
        out_dir: where ``study.db``, ``best_config.json``, ``best.pt``,
            ``trials.csv``, the plots and ``trials/`` go.
        base: the fixed training settings (epochs, batch size, split, seed,
            fixed model options, ...); default ``TrainConfig(epochs=10)``.
            Its ``lr`` and ``weight_decay`` only seed the baseline trial.
        time_budget: training seconds per trial (``TrainConfig.time_budget``);
            None keeps ``base.time_budget``.
        timeout: wall-clock seconds for the whole call: no trial starts after it.
        pruner: ``"median"``, ``"halving"``, ``"none"`` or an Optuna pruner.
        seed: seeds the TPE sampler (not the training, which uses ``base.seed``).
        device: ``auto``, ``cpu`` or ``cuda``; None keeps ``base.device``.
        progress: show progress bars (None: only on a terminal).
        baseline: make trial 0 of a new study the untuned defaults.
        command: the command line, recorded in ``best_config.json``.

    Returns:
        A dict: ``out_dir``, ``storage``, ``ran`` (trials run now), ``states``
        (count per trial state), ``n_trials`` (complete + pruned), ``stale``
        (trial numbers marked FAIL now), ``best`` (``number``, ``value``,
        ``params``, ``config``; None when no trial completed) and ``files``.

    Raises:
        ValueError: for an unknown model or pruner, bad numbers, missing Optuna,
            or a stored study made for another model, data, space or settings.
        TypeError: when ``base`` is not a TrainConfig.
    """
    import torch

    from ..splits import split as make_split
    from .train import Trainer, resolve_device

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    base = _base(model, base)
    changes = {}
    if time_budget is not None:
        changes["time_budget"] = time_budget
    if device is not None:
        changes["device"] = device
    base = dataclasses.replace(base, **changes) if changes else base  # replace() validates
    import models

    models.default_config(model, **base.model_options)  # unknown fixed options fail now, naming the valid ones
    space = search_space(model, base)
    optuna = require_optuna()
    pruner_obj = make_pruner(pruner)
    on_cuda = resolve_device(base.device).type == "cuda"  # --device cuda without a GPU fails before any trial

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials_dir = out_dir / "trials"
    db = out_dir / "study.db"

    sp = make_split(ds, mode=base.split, val=base.val, test=base.test, seed=base.seed)
    if len(sp.val) == 0:
        raise ValueError(f"the {base.split} split of {ds.name} left no validation samples; lower val or use more data")
    split_info = {**sp.to_dict()}
    writer_ids = getattr(ds, "writer_ids", None)
    if writer_ids is not None:
        split_info["writers"] = [int(len(np.unique(writer_ids[idx][writer_ids[idx] >= 0]))) for idx in sp]
    wanted = json.loads(json.dumps(_study_attrs(model, ds, base, space, split_info)))  # as stored

    with _exclusive(out_dir):
        url = f"sqlite:///{db.resolve()}"
        storage = optuna.storages.RDBStorage(url)
        try:
            existing = STUDY_NAME in optuna.study.get_all_study_names(storage)
            if existing:
                peek = optuna.load_study(study_name=STUDY_NAME, storage=storage)
                if peek.user_attrs or peek.get_trials(deepcopy=False):
                    _check_study(peek.user_attrs, wanted, db)
                else:  # made, then killed before its attributes were written
                    existing = False
                n_stored = len(peek.get_trials(deepcopy=False))
            else:
                n_stored = 0
            # a resumed study must not repeat the fresh sampler's first draws
            sampler_seed = seed if n_stored == 0 else int(np.random.SeedSequence([seed, n_stored]).generate_state(1)[0])
            sampler = optuna.samplers.TPESampler(seed=sampler_seed)
            study = optuna.create_study(
                study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner_obj, direction="maximize", load_if_exists=True
            )
            if not existing:
                for key, value in wanted.items():
                    study.set_user_attr(key, value)
            stale = _recover(study, storage)
            if not study.get_trials(deepcopy=False) and baseline:
                study.enqueue_trial(baseline_params(model, base), user_attrs={"baseline": True})
            done = _n_counted(study)
            remaining = max(0, trials - done)
            c = _counts(study)
            if n_stored:
                log.info(
                    "resuming %s: %d trial(s) stored (%s); target %d complete or pruned: %d to run",
                    db, n_stored, ", ".join(f"{v} {k.lower()}" for k, v in sorted(c.items())), trials, remaining,
                )  # fmt: skip
            else:
                log.info("new study %s: model %s on %s (%d samples), %d trial(s)", db, model, ds.name, len(ds), trials)
                _remove_old_outputs(out_dir)  # a deleted study.db: its results must not pass for the new study's
            log.info("split %s: train %d, val %d, test %d", sp.mode, len(sp.train), len(sp.val), len(sp.test))
            log.info("searching %s", ", ".join(f"{p.name} [{p.range_text()}{', log' if p.log else ''}]" for p in space))

            meta = {
                "model": model,
                "data": wanted["data"],
                "split": split_info,
                "storage": str(db),
                "pruner": pruner if isinstance(pruner, str) else type(pruner).__name__,
                "sampler_seed": seed,
                "command": command,
                "optuna": optuna.__version__,
            }
            ran = 0
            failures = 0
            from tqdm.auto import tqdm

            bar = tqdm(total=remaining, desc=f"tune {model}", unit="trial", disable=tqdm_disable(progress))

            def objective(trial):
                config = suggest_config(trial, model, base)
                trial.set_user_attr("config", json.loads(json.dumps(config.to_dict())))
                tdir = trials_dir / f"{trial.number:04d}"
                if tdir.exists():
                    shutil.rmtree(tdir)  # an earlier attempt under this number (a deleted study.db)
                tdir.mkdir(parents=True)
                _write_json(tdir / "config.json", {"train": config.to_dict(), "params": trial.params, "trial": trial.number})
                trainer = Trainer(config, tdir, progress=progress)
                try:
                    metrics = trainer.fit(ds, split=sp, on_epoch=epoch_reporter(trial))
                except KeyboardInterrupt:
                    trial.set_user_attr("failed_reason", "interrupted")
                    raise
                except FloatingPointError as exc:
                    trial.set_user_attr("failed_reason", f"diverged: {exc}")
                    raise
                except torch.cuda.OutOfMemoryError:
                    trial.set_user_attr("failed_reason", "out of GPU memory")
                    trainer = None  # drop the model and optimizer before the next trial
                    torch.cuda.empty_cache()
                    raise
                finally:
                    if trainer is not None:
                        trial.set_user_attr("epochs_run", len(getattr(trainer, "history", [])))
                trial.set_user_attr("best_epoch", metrics["best_epoch"])
                trial.set_user_attr("train_seconds", metrics["train_seconds"])
                trial.set_user_attr("stopped", metrics["stopped"])
                return float(metrics["val"]["top1"])

            def after_trial(study, frozen):
                nonlocal ran, failures
                ran += 1
                bar.update(1)
                tdir = trials_dir / f"{frozen.number:04d}"
                state = frozen.state.name
                best = _best_trial(study)
                if state == "COMPLETE":
                    is_best = best is not None and best.number == frozen.number
                    if is_best and (tdir / "best.pt").exists():
                        _copy_atomic(tdir / "best.pt", out_dir / "best.pt")
                        _write_json(out_dir / "best_config.json", _best_config(study, model, base, meta))
                    log.info(
                        "trial %d: val top-1 %.4f after %s epoch(s)%s %s",
                        frozen.number, frozen.value, frozen.user_attrs.get("epochs_run", "?"),
                        " (new best)" if is_best else f" (best {best.value:.4f}, trial {best.number})",
                        _fmt_params(frozen.params),
                    )  # fmt: skip
                elif state == "PRUNED":
                    log.info("trial %d pruned at epoch %s %s", frozen.number, frozen.user_attrs.get("pruned_at_epoch", "?"), _fmt_params(frozen.params))
                else:
                    failures += 1
                    log.warning("trial %d failed (%s) %s", frozen.number, frozen.user_attrs.get("failed_reason", state), _fmt_params(frozen.params))
                _clean_checkpoints(tdir)
                if best is not None:
                    bar.set_postfix(best=f"{best.value:.4f}")
                if _n_counted(study) >= trials:
                    study.stop()
                elif failures >= max(3, remaining):
                    log.error("%d trials failed in this run: stopping", failures)
                    study.stop()

            started = time.perf_counter()
            try:
                if remaining:
                    study.optimize(
                        objective, n_trials=None, timeout=timeout, callbacks=[after_trial],
                        catch=(FloatingPointError, torch.cuda.OutOfMemoryError),  # the trial fails, the study goes on
                        gc_after_trial=on_cuda,  # frees GPU memory held in reference cycles
                    )  # fmt: skip
                else:
                    log.info("the study already has %d complete or pruned trial(s) (target %d): nothing to run", done, trials)
            except BaseException:
                bar.close()
                try:
                    _finish(study, model, base, meta, out_dir, trials_dir)
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.exception("could not write the results so far")
                raise
            bar.close()
            files = _finish(study, model, base, meta, out_dir, trials_dir)
            best = _best_trial(study)
            counts = _counts(study)
            if timeout is not None and _n_counted(study) < trials and time.perf_counter() - started >= timeout:
                log.info("timeout of %.0f s reached with %d of %d trial(s) done", timeout, _n_counted(study), trials)
            return {
                "out_dir": str(out_dir),
                "storage": url,
                "ran": ran,
                "states": counts,
                "n_trials": sum(counts.get(s, 0) for s in _COUNTED),
                "stale": stale,
                "best": None
                if best is None
                else {"number": best.number, "value": best.value, "params": dict(best.params), "config": _best_config(study, model, base, meta)["train"]},
                "files": [str(f) for f in files],
            }
        finally:
            with contextlib.suppress(Exception):
                storage.engine.dispose()


_OUTPUTS = ("best_config.json", "best.pt", "trials.csv", "optimization_history.png", "param_importances.png")


def _remove_old_outputs(out_dir: Path) -> None:
    """Delete the results of an earlier study in ``out_dir`` (its ``study.db`` is gone), logging what went."""
    gone = [name for name in _OUTPUTS if (out_dir / name).exists()]
    for name in gone:
        (out_dir / name).unlink()
    if (out_dir / "trials").is_dir():
        shutil.rmtree(out_dir / "trials")
        gone.append("trials/")
    if gone:
        log.warning("%s: removed the outputs of an earlier study (%s)", out_dir, ", ".join(gone))


def _finish(study, model, base, meta, out_dir: Path, trials_dir: Path) -> list[Path]:
    """Write best_config.json, trials.csv and the plots; delete leftover trial checkpoints."""
    if trials_dir.is_dir():
        for tdir in trials_dir.iterdir():
            if tdir.is_dir():
                _clean_checkpoints(tdir)
    files = []
    best = _best_config(study, model, base, meta)
    if best is not None:
        _write_json(out_dir / "best_config.json", best)
        files.append(out_dir / "best_config.json")
        if (out_dir / "best.pt").exists():
            files.append(out_dir / "best.pt")
    else:
        log.warning("no trial has completed yet: no best_config.json")
    _write_trials_csv(study, out_dir / "trials.csv")
    files.append(out_dir / "trials.csv")
    files.extend(_write_plots(study, out_dir))
    return files
