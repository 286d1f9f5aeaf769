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
``image_pipeline`` (optional)
    for a model reading points and an image, the pipeline whose output is
    rendered, when it differs from ``pipeline`` (a late fusion of a sequence
    member trained on resampled ink and an image member trained on the ink as
    drawn). Absent: the image is rendered from ``pipeline``'s points.
``teach_references`` (optional)
    embeddings of drawings of the built-in classes that the model did not train on
    (``{"features": (M, D) float16, "top": (M,) float32, "labels": (M,) int64}``: the
    input of the final linear layer, the top built-in logit, the class index), which
    keep taught symbols off the built-in classes (:mod:`strokes.teach`,
    :func:`strokes.teach.add_teach_references`). Numbers, not drawings.
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
import zipfile
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
    image_pipeline=None,
) -> dict[str, Any]:
    """The checkpoint dictionary for ``model`` (a registered model from :mod:`models`).

    ``image_pipeline``: the pipeline whose output the image is rendered from, when it is
    not ``pipeline`` (see the module docstring); None renders ``pipeline``'s points.
    """
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
    if image_pipeline is not None:
        if entry.input_kind != "both":
            raise ValueError(
                f"image_pipeline is for models reading points and an image; {model.name} reads {entry.input_kind} input only, "
                "so its one pipeline is all it needs"
            )
        ckpt["image_pipeline"] = _plain(image_pipeline.to_config())
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
    image_pipeline: Any = None  #: the pipeline the image is rendered from, when it is not ``pipeline``, else None

    @property
    def render_pipeline(self):
        """The pipeline whose output is rendered, ``image_pipeline`` if set, else ``pipeline``."""
        return self.pipeline if self.image_pipeline is None else self.image_pipeline

    @property
    def name(self) -> str:
        return self.checkpoint["model"]["name"]

    @property
    def metrics(self) -> dict:
        return self.checkpoint.get("metrics", {})

    @property
    def title(self) -> str:
        """The model's name for people, such as ``vgg_gap``, or ``late_fusion (vgg_gap + tcn)`` naming an ensemble's members."""
        members = self.checkpoint["model"]["config"].get("members") if self.name == "late_fusion" else None
        if not members:
            return self.name
        return f"{self.name} ({' + '.join(str(m.get('name')) for m in members)})"

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"LoadedModel({self.name}, {len(self.vocab)} classes, {n:,} parameters, "
            f"input {self.input_kind}, from {self.source})"
        )


def _source_name(source) -> str:
    """How error messages name a checkpoint source: its path, a file object's name, or what it is."""
    if isinstance(source, dict):
        return "the checkpoint dict"
    if isinstance(source, (str, Path)):
        return str(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, Path)) else f"the {type(source).__name__} checkpoint stream"


_ZIP_MAGIC = b"PK\x03\x04"


def _check_container(source, name: str) -> None:
    """Refuse what is not a complete zip archive (what ``torch.save`` writes) before torch reads it.

    torch's own errors for these are misleading (a cut-off file reads as "Invalid argument",
    a few bytes of garbage as "could run code"), so the common cases are told apart here.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist: check the path")
        if path.is_dir():
            raise ValueError(f"{name} is a directory, not a checkpoint file: pass the .pt file inside it")
        with open(path, "rb") as fh:
            _check_stream(fh, name)
        return
    if all(hasattr(source, a) for a in ("read", "seek", "tell")):
        pos = source.tell()
        try:
            _check_stream(source, name)
        finally:
            source.seek(pos)


def _check_stream(fh, name: str) -> None:
    start = fh.tell()
    head = fh.read(len(_ZIP_MAGIC))
    size = fh.seek(0, io.SEEK_END) - start
    fh.seek(start)
    if size == 0:
        raise ValueError(f"{name} is empty (0 bytes), not a checkpoint: it was cut off while saving or copying; "
                         "copy or save it again")
    if not head.startswith(_ZIP_MAGIC):
        if _ZIP_MAGIC.startswith(head):  # a few bytes of a checkpoint, then nothing
            raise ValueError(f"{name} is truncated: only {size} byte(s) of a checkpoint; copy or save it again")
        raise ValueError(f"{name} is not a strokes checkpoint: it is not a zip archive, the format "
                         f"torch.save writes (it starts with {head!r})")
    if not zipfile.is_zipfile(fh):
        raise ValueError(f"{name} is truncated or damaged: it starts as a checkpoint archive but its end "
                         f"(the zip directory) is missing after {size:,} bytes; copy or save it again")


def read_checkpoint(source, map_location="cpu") -> dict:
    """The raw checkpoint dictionary, read safely (``weights_only=True``) and checked.

    Raises:
        FileNotFoundError: when ``source`` is a path that does not exist.
        ValueError: for a file that is empty, truncated, damaged, not a strokes checkpoint,
            of a newer checkpoint version, lacking a section, or holding anything but plain data;
            the message names the file and the problem.
    """
    import pickle

    import torch

    name = _source_name(source)
    _check_container(source, name)
    try:
        ckpt = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("Unsupported")), None)  # torch's own reason
        why = why or next((ln for ln in lines if "Unpickler error" in ln), lines[0] if lines else "unpickling failed")
        raise ValueError(
            f"refusing to load {name}: it holds more than plain data and tensors, and loading it "
            f"could run code, or it is damaged ({why})"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise ValueError(f"{name} is damaged, not a readable checkpoint ({why}); copy or save it again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{name} is not a strokes checkpoint (no format={FORMAT!r} marker)")
    version = ckpt.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{name} has an invalid checkpoint version {version!r}, not a positive integer: "
                         "the file is damaged")
    if version > VERSION:
        raise ValueError(
            f"{name} has checkpoint version {version}, newer than this strokes reads (up to "
            f"{VERSION}): upgrade strokes"
        )
    _check_layout(ckpt, name)
    return ckpt


_SECTIONS = ("model", "state_dict", "vocab", "pipeline", "render")


def _check_layout(ckpt: dict, name: str) -> None:
    """Every section present and of the right type, or a ValueError naming ``name`` and what is wrong."""
    import torch

    missing = [k for k in _SECTIONS if k not in ckpt]
    if missing:
        raise ValueError(f"{name} lacks {', '.join(repr(k) for k in missing)}: not a complete checkpoint "
                         f"(it needs {', '.join(_SECTIONS)}); save it again with strokes train")

    def bad(what: str, expected: str, got) -> ValueError:
        return ValueError(f"{name} is damaged: its {what} should be {expected}, not {type(got).__name__}"
                          + (f" {got!r}" if isinstance(got, (str, int, float)) else ""))

    spec = ckpt["model"]
    if not isinstance(spec, dict):
        raise bad("'model' section", "a dict", spec)
    lacking = [k for k in ("name", "config", "num_classes") if k not in spec]
    if lacking:
        raise ValueError(f"{name} is damaged: its 'model' section lacks {', '.join(repr(k) for k in lacking)}")
    if not isinstance(spec["name"], str):
        raise bad("model name", "a string", spec["name"])
    if not isinstance(spec["config"], dict):
        raise bad("model config", "a dict", spec["config"])
    n = spec["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} is damaged: its model num_classes is {n!r}, not a positive integer")
    weights = ckpt["state_dict"]
    if not isinstance(weights, dict):
        raise bad("'state_dict' section", "a dict of tensors", weights)
    odd = [k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise ValueError(f"{name} is damaged: its 'state_dict' holds {odd[0]!r}, which is not a named tensor")
    vocab = ckpt["vocab"]
    if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
        raise bad("'vocab' section", "a list of strings", vocab)
    if not isinstance(ckpt["pipeline"], list):
        raise bad("'pipeline' section", "a list of step configs", ckpt["pipeline"])
    if not isinstance(ckpt["render"], dict):
        raise bad("'render' section", "a dict", ckpt["render"])
    if "image_pipeline" in ckpt and not isinstance(ckpt["image_pipeline"], list):
        raise bad("'image_pipeline' section", "a list of step configs", ckpt["image_pipeline"])
    if "teach_references" in ckpt:
        refs = ckpt["teach_references"]
        if not isinstance(refs, dict) or not all(isinstance(refs.get(k), torch.Tensor) for k in ("features", "top", "labels")):
            raise bad("'teach_references' section", "a dict of tensors 'features', 'top' and 'labels'", refs)
        m = refs["features"].shape[0] if refs["features"].dim() == 2 else -1
        if m < 0 or refs["top"].shape != (m,) or refs["labels"].shape != (m,):
            raise ValueError(
                f"{name} is damaged: its 'teach_references' should hold features (M, D), top (M,) and labels (M,); "
                f"got {tuple(refs['features'].shape)}, {tuple(refs['top'].shape)}, {tuple(refs['labels'].shape)}"
            )
        if m and not (0 <= int(refs["labels"].min()) and int(refs["labels"].max()) < len(vocab)):
            raise ValueError(f"{name} is damaged: its 'teach_references' name classes outside its {len(vocab)}-class vocabulary")


def _weight_mismatches(expected: dict, found: dict, limit: int = 3) -> str:
    """What differs between the model's state dict and the file's, in a few words."""
    parts = []
    wrong = [
        f"{k} is {tuple(found[k].shape)} in the file but {tuple(v.shape)} in the model"
        for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]

    def some(items):
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    if wrong:
        parts.append(some(wrong))
    if missing:
        parts.append(f"missing {some(missing)}")
    if extra:
        parts.append(f"unexpected {some(extra)}")
    return "; ".join(parts)


def load_checkpoint(source, device="cpu") -> LoadedModel:
    """Rebuild model, vocabulary, pipeline and render config from a checkpoint alone.

    Args:
        source: a path, a file object, or an already-read checkpoint dict.
        device: where to put the model.

    Returns:
        The :class:`LoadedModel`, in eval mode.

    Raises:
        FileNotFoundError: when ``source`` is a path that does not exist.
        ValueError: for a damaged or incompatible checkpoint (see :func:`read_checkpoint`), weights that
            do not fit the model it describes, or a vocabulary whose size differs from the model's outputs;
            the message names the file and the problem.
    """
    import models
    from rendering import RenderConfig

    from ..normalize import Pipeline

    name = _source_name(source)
    if isinstance(source, dict):
        ckpt = source
        _check_layout(ckpt, name)
    else:
        ckpt = read_checkpoint(source)
    spec = ckpt["model"]
    vocab = list(ckpt["vocab"])
    if len(vocab) != spec["num_classes"]:
        raise ValueError(
            f"{name} is damaged: its vocabulary has {len(vocab)} labels but its model "
            f"{spec['name']} has {spec['num_classes']} outputs; they must match one to one"
        )
    written_by = ckpt.get("versions", {}).get("strokes") if isinstance(ckpt.get("versions"), dict) else None
    try:
        model = models.create_model(spec["name"], spec["num_classes"], **spec["config"])
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} describes a model this strokes cannot build ({exc})"
            + (f"; it was written by strokes {written_by}" if written_by else "")
        ) from None
    expected = model.state_dict()
    mismatch = _weight_mismatches(expected, ckpt["state_dict"])
    if mismatch:
        raise ValueError(
            f"weights in {name} do not fit its model {spec['name']} ({spec['num_classes']} classes, "
            f"config {spec['config']}): {mismatch}; the file is damaged or its weights and model "
            f"description disagree"
        )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        why = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
        raise ValueError(f"weights in {name} do not fit its model {spec['name']}: {why}") from None
    model.to(device).eval()
    try:
        pipeline = Pipeline.from_config(ckpt["pipeline"])
        render = RenderConfig.from_config(ckpt["render"])
        image_pipeline = Pipeline.from_config(ckpt["image_pipeline"]) if "image_pipeline" in ckpt else None
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} has a pipeline or render config this strokes cannot rebuild ({exc})"
            + (f"; it was written by strokes {written_by}" if written_by else "")
        ) from None
    return LoadedModel(
        model=model,
        vocab=vocab,
        pipeline=pipeline,
        render=render,
        input_kind=spec.get("input_kind") or models.model_entry(spec["name"]).input_kind,
        checkpoint=ckpt,
        source="<memory>" if isinstance(source, dict) else str(source),
        image_pipeline=image_pipeline,
    )
