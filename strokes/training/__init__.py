"""The training stack: batches, the trainer, checkpoints, evaluation, DDP and tuning.

It sits between the data core (:mod:`strokes.dataset`, :mod:`strokes.io`,
:mod:`strokes.normalize`, :mod:`strokes.splits`, with :mod:`rendering` and
:mod:`models` beside it) and the applications (:mod:`strokes.recognizer`,
:mod:`strokes.bench`, :mod:`strokes.server` and the command line). It imports
the data core; the data core never imports it.

- :mod:`strokes.training.batching`: ragged ink tensors and model inputs, batch by batch.
- :mod:`strokes.training.train`: :class:`~strokes.training.train.TrainConfig` and
  :class:`~strokes.training.train.Trainer`.
- :mod:`strokes.training.checkpoint`: self-describing checkpoints.
- :mod:`strokes.training.evaluate`: top-k, per-class recall, confusions.
- :mod:`strokes.training.distributed`: DistributedDataParallel under torchrun.
- :mod:`strokes.training.tune`: Optuna hyper-parameter search.
"""

from __future__ import annotations

from .checkpoint import LoadedModel, load_checkpoint, read_checkpoint, save_checkpoint
from .evaluate import evaluate
from .train import TrainConfig, Trainer, checkpoint_split, load_train_config, resolve_device

__all__ = [
    "TrainConfig",
    "Trainer",
    "load_train_config",
    "resolve_device",
    "checkpoint_split",
    "LoadedModel",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "evaluate",
]
