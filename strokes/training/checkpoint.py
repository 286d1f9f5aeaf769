"""Self-describing model checkpoints.

A checkpoint is one file written by :func:`save_checkpoint`, a ``torch.save``
of plain data only (dicts, lists, strings, numbers and tensors):

``format``, ``version``
    ``"strokes-checkpoint"`` and the layout version.
``model``
    ``{"name", "config", "num_classes", "input_kind"}``: what
    :func:`models.create_model` needs to rebuild the network.
``state_dict``
    the weights.
``vocab``
    the class labels, index i being output i.
``pipeline``, ``render``
    the normalization pipeline (:meth:`strokes.normalize.Pipeline.to_config`)
    and the rendering config (:meth:`rendering.RenderConfig.to_config`).
``metrics``, ``history``, ``train``
    final metrics (val / test), per-epoch history and the training config.
``versions``
    strokes, torch, numpy and Python versions that wrote it.
``trainer_state`` (optional)
    optimizer, scheduler and RNG states, for resuming; dropped by ``slim``.

:func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``, so
loading never runs pickled code: a file carrying any other object is refused.
"""

from __future__ import annotations

import io
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "strokes-checkpoint"
VERSION = 1


def versions() -> dict[str, str]:
    import torch

    from .._version import __version__

    return {
        "strokes": __version__,
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def make_checkpoint(
    model,
    *,
    vocab,
    pipeline,
    render,
    metrics: dict | None = None,
    history: list | None = None,
    train: dict | None = None,
    trainer_state: dict | None = None,
    extra: dict | None = None,
) -> dict[str, Any]:
    """The checkpoint dictionary for ``model`` (a registered model from :mod:`models`)."""
    from models import model_entry

    entry = model_entry(model.name)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # NCHW even if trained channels-last
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": model.name,
            "config": _plain(asdict(model.config)),
            "num_classes": int(model.num_classes),
            "input_kind": entry.input_kind,
        },
        "state_dict": state,
        "vocab": [str(v) for v in vocab],
        "pipeline": _plain(pipeline.to_config()),
        "render": _plain(render.to_config()),
        "metrics": _plain(metrics or {}),
        "history": _plain(history or []),
        "train": _plain(train or {}),
        "versions": versions(),
    }
    if extra:
        ckpt.update(_plain(extra))
    if trainer_state is not None:
        ckpt["trainer_state"] = trainer_state
    return ckpt


def _plain(obj):
    """Convert tuples and numpy scalars to what ``weights_only`` loading accepts."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def save_checkpoint(ckpt: dict, path, *, slim: bool = False) -> Path:
    """Write ``ckpt`` atomically (temporary file, then rename); ``slim`` drops the trainer state."""
    import torch

    from .._util import atomic_write

    if slim:
        ckpt = {k: v for k, v in ckpt.items() if k != "trainer_state"}
    path = Path(path)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getbuffer())
    return path


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with everything needed to use it."""

    model: Any  #: the torch module, in eval mode
    vocab: list[str]
    pipeline: Any  #: strokes.normalize.Pipeline
    render: Any  #: rendering.RenderConfig
    input_kind: str  #: "sequence", "image" or "both"
    checkpoint: dict = field(repr=False)  #: the raw checkpoint (weights included)
    source: str = "<memory>"

    @property
    def name(self) -> str:
        return self.checkpoint["model"]["name"]

    @property
    def metrics(self) -> dict:
        return self.checkpoint.get("metrics", {})

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"LoadedModel({self.name}, {len(self.vocab)} classes, {n:,} parameters, "
            f"input {self.input_kind}, from {self.source})"
        )


def read_checkpoint(source, map_location="cpu") -> dict:
    """The raw checkpoint dictionary, read safely (``weights_only=True``) and checked."""
    import pickle

    import torch

    name = str(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln or "Unpickler error" in ln]
        why = lines[0] if lines else str(exc).splitlines()[0]
        raise ValueError(
            f"refusing to load {name}: it holds more than plain data and tensors, and loading it "
            f"could run code ({why})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{name} is not a readable checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{name} is not a strokes checkpoint (no format={FORMAT!r} marker)")
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise ValueError(
            f"{name} has checkpoint version {ckpt.get('version')!r}; this strokes reads up to "
            f"{VERSION}: upgrade strokes"
        )
    missing = [k for k in ("model", "state_dict", "vocab", "pipeline", "render") if k not in ckpt]
    if missing:
        raise ValueError(f"{name} lacks {missing}: not a complete checkpoint")
    return ckpt


def load_checkpoint(source, device="cpu") -> LoadedModel:
    """Rebuild model, vocabulary, pipeline and render config from a checkpoint alone.

    Args:
        source: a path, a file object, or an already-read checkpoint dict.
        device: where to put the model.

    Returns:
        The :class:`LoadedModel`, in eval mode.
    """
    import models
    from rendering import RenderConfig

    from ..normalize import Pipeline

    ckpt = source if isinstance(source, dict) else read_checkpoint(source)
    spec = ckpt["model"]
    model = models.create_model(spec["name"], int(spec["num_classes"]), **spec["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"weights in {source if not isinstance(source, dict) else 'checkpoint'} do not fit "
                         f"model {spec['name']}: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    vocab = list(ckpt["vocab"])
    if len(vocab) != model.num_classes:
        raise ValueError(f"checkpoint vocabulary has {len(vocab)} labels but the model has {model.num_classes} outputs")
    return LoadedModel(
        model=model,
        vocab=vocab,
        pipeline=Pipeline.from_config(ckpt["pipeline"]),
        render=RenderConfig.from_config(ckpt["render"]),
        input_kind=spec.get("input_kind") or models.model_entry(spec["name"]).input_kind,
        checkpoint=ckpt,
        source="<memory>" if isinstance(source, dict) else str(source),
    )
