"""Training: :class:`TrainConfig` and :class:`Trainer`.

The recipe: AdamW, linear warmup then cosine decay (per step), label
smoothing, gradient clipping, on-the-fly point augmentation
(:mod:`rendering.augment`) and rendering on the training device, validation
every epoch, the best checkpoint kept by val top-1 (top-5 breaks ties), early
stopping, resume, and a usable checkpoint after Ctrl-C.

Splits come from :func:`strokes.split` and are writer-disjoint when the data
has writer ids (``split="writer"``). On CPU a run is deterministic for a given
``seed``: weights are initialized after ``torch.manual_seed(seed)`` and the
shuffling and augmentation draw from their own seeded generators.

Speed without changing the recipe:

* ``precision="auto"`` trains under bf16 autocast where the hardware does
  bf16 natively (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX)
  and in fp32 elsewhere; weights, optimizer state and the loss stay fp32. The
  precision used is recorded in the checkpoint (``train["precision_used"]``).
* Image models (and fusion's image branch) run in the channels-last memory
  format (``channels_last``), which oneDNN and cuDNN convolutions prefer.
* On the CPU, batches (gather, augment, pad, render) are prepared in
  DataLoader worker processes (``workers``) while the model steps. Batch ``i``
  of epoch ``e`` draws its augmentation from a generator seeded by
  ``(seed, rank, e, i)``, so the batches, and the run, are the same for any
  number of workers.

On CUDA the trainer also uses pinned host memory, ``cudnn.benchmark`` and
optionally ``torch.compile``; rendering and augmentation run on the GPU since
the ink lives there.

Beyond plain cross-entropy (issue 15), see :func:`training_loss`:

* Auxiliary branch losses. A model with a ``training_outputs(points, lengths,
  image) -> (logits, [aux logits, ...])`` method and an ``aux_weight`` > 0 (the
  ``fusion`` model with ``model_options={"aux_weight": ...}``) trains on
  ``loss(main) + aux_weight * mean(loss(aux_i))``, with the same label smoothing.
  Train accuracy, validation, test and checkpoints use the main head only.
* Distillation (``distill_from``: teacher checkpoints). The teachers, in eval
  mode and without gradients, score the very batch the student trains on; their
  log-probabilities are averaged (weighted by ``distill_weights``) and the loss
  of the main head is ``(1 - alpha) * CE(student, labels) + alpha * T^2 *
  KL(softmax(teacher / T) || softmax(student / T))``. Teachers must share the
  student's vocabulary (same order) and normalization pipeline (a teacher reading
  points may add steps after it, which run on each batch for it: a late fusion whose
  sequence member resamples), and image-reading teachers its render config. When a teacher reads an input the student does not
  (an image teacher for a sequence student, say), batches are built with both
  the points and the image, and each model is passed only what it reads.

``train_loss`` in the history is the whole objective (auxiliary and distillation
terms included); ``train_top1`` is the main head's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._util import atomic_write, tqdm_disable

log = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "load_train_config",
    "Trainer",
    "resolve_device",
    "resolve_precision",
    "native_bf16",
    "PRECISIONS",
    "evaluate_logits",
    "model_options_for_render",
    "topk_accuracy",
    "checkpoint_split",
    "training_loss",
    "mix_images",
    "distillation_loss",
    "teacher_log_probs",
    "batch_input_kind",
    "inputs_for",
]

#: Models with fewer parameters that render images get a DataLoader worker by default (``workers=None``).
LIGHT_MODEL_PARAMS = 300_000

#: The ``precision`` choices: ``auto`` (bf16 where the hardware does it natively, else fp32), ``fp32``, ``bf16``.
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in its checkpoints)."""

    model: str = "vgg_gap"  # a name from models.list_models()
    model_options: dict = field(default_factory=dict)  # overrides of the model's config
    epochs: int = 30  # maximum epochs
    batch_size: int = 128  # samples per optimizer step
    lr: float = 2e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_epochs: float = 1.0  # linear warmup length, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.01  # final learning rate as a fraction of lr
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 2.0  # max global gradient norm (0 = off)
    augment: list | None = None  # rendering.augment config; None = default_augment(); [] = off
    patience: int = 8  # stop after this many epochs without a better val score (0 = never)
    split: str = "writer"  # "writer" (writer-disjoint) or "random"
    val: float = 0.1  # validation fraction
    test: float = 0.1  # test fraction
    seed: int = 0  # seeds init, split, shuffling and augmentation
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16: autocast dtype of forward passes (auto: bf16 where native)
    channels_last: bool = True  # image inputs and conv weights in NHWC memory format (faster convolutions)
    workers: int | None = None  # DataLoader processes preparing batches; None = auto (see Trainer._resolve_workers)
    compile: bool = False  # torch.compile the model
    pipeline: list | None = None  # strokes.normalize pipeline config; None = default for the model
    render: dict | None = None  # rendering.RenderConfig config; None = 32x32 ink, anti-aliased
    eval_batch_size: int = 1024  # samples per evaluation batch
    max_train_samples: int | None = None  # use a random subset of the training split (quick runs)
    time_budget: float | None = None  # seconds of training (validation excluded); None = epochs only
    distill_from: list | None = None  # teacher checkpoint paths to distill from (their log-probs averaged); None = off
    distill_weights: list | None = None  # one weight > 0 per teacher for that average; None = equal weights
    distill_alpha: float = 0.5  # weight of the distillation term: (1 - alpha) * CE + alpha * T^2 * KL
    distill_temperature: float = 2.0  # softmax temperature T of teacher and student in the distillation term
    mixup: float = 0.0  # mixup of image batches: mixing weight ~ Beta(mixup, mixup); 0 = off (image models only)
    cutmix: float = 0.0  # cutmix of image batches: box area ~ Beta(cutmix, cutmix); 0 = off; with mixup, each batch picks one

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.split not in ("writer", "random"):
            raise ValueError(f"split must be 'writer' or 'random', got {self.split!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.time_budget is not None and not (isinstance(self.time_budget, (int, float)) and self.time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds or None, got {self.time_budget!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0):
            raise ValueError(f"workers must be an int >= 0 or None (auto), got {self.workers!r}")
        for name in ("mixup", "cutmix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0 (the Beta distribution's alpha; 0 = off), got {v!r}")
        self._check_distillation()

    def _check_distillation(self) -> None:
        """Validate (and normalize to JSON-able lists) the ``distill_*`` fields."""

        def number(v) -> bool:
            return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

        teachers = self.distill_from
        if teachers is not None:
            if isinstance(teachers, (str, bytes, os.PathLike)) or not isinstance(teachers, (list, tuple)) or not teachers:
                raise ValueError(f"distill_from must be a non-empty list of teacher checkpoint paths, or None; got {teachers!r}")
            paths = [os.fspath(t) if isinstance(t, os.PathLike) else t for t in teachers]
            bad = [t for t in paths if not isinstance(t, str) or not t]
            if bad:
                raise ValueError(f"distill_from must hold checkpoint paths (non-empty strings), got {bad[0]!r}")
            self.distill_from = paths
        weights = self.distill_weights
        if weights is not None:
            if teachers is None:
                raise ValueError("distill_weights weighs the teachers of distill_from, which is not set")
            if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple)) or len(weights) != len(teachers):
                raise ValueError(f"distill_weights must be a list of {len(teachers)} weight(s), one per teacher in distill_from; got {weights!r}")
            if not all(number(w) and w > 0 for w in weights):
                raise ValueError(f"distill_weights must be finite numbers > 0, got {list(weights)!r}")
            self.distill_weights = [float(w) for w in weights]
        if not (number(self.distill_alpha) and 0 <= self.distill_alpha <= 1):
            raise ValueError(f"distill_alpha must be a number in [0, 1], got {self.distill_alpha!r}")
        if not (number(self.distill_temperature) and self.distill_temperature > 0):
            raise ValueError(f"distill_temperature must be a finite number > 0, got {self.distill_temperature!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, **overrides) -> "TrainConfig":
        """A config from a dict of fields (e.g. a JSON file), then ``overrides``.

        Unknown keys raise ``ValueError`` naming the valid fields, so a typo in a
        config file is never silently ignored.
        """
        if not isinstance(values, dict):
            raise TypeError(f"a train config must be a dict of fields, got {type(values).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        merged = {**values, **overrides}
        if "amp" in merged:  # the field before `precision`: amp=False meant fp32
            amp = merged.pop("amp")
            if amp is False and "precision" not in merged:
                merged["precision"] = "fp32"
        unknown = sorted(set(merged) - set(valid))
        if unknown:
            raise ValueError(f"unknown train config field(s) {', '.join(unknown)}; valid fields: {', '.join(valid)}")
        return cls(**merged)


def load_train_config(path) -> dict:
    """The TrainConfig fields stored in a JSON file, as a dict.

    The file is either a plain object of fields or, as ``strokes tune`` writes
    it, an object whose ``"train"`` entry holds them (other entries are
    metadata). Fields are checked by :meth:`TrainConfig.from_dict`.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no such config file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); a train config is a JSON object of TrainConfig fields") from None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of TrainConfig fields, got {type(data).__name__}")
    TrainConfig.from_dict(data)  # validate now, with the file's name in any error
    return data


def resolve_device(device: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return dev


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 natively (so bf16 autocast is faster, not emulated).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: the ``avx512_bf16`` or
    ``amx_bf16`` flag in ``/proc/cpuinfo`` (elsewhere: assumed not).
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means on ``device``.

    ``auto`` is bf16 where :func:`native_bf16` says the device does bf16
    natively, else fp32. ``bf16`` asked for on a CPU without native support
    still runs (emulated, slower), with a warning; on a CUDA GPU without bf16 it
    raises ``ValueError``.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return "fp32"
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        if device.type == "cuda":
            raise ValueError("--precision bf16 was asked for but this GPU does not support bf16; use --precision fp32 or auto")
        log.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 autocast is emulated and may be slower than fp32")
    return "bf16"


def checkpoint_split(checkpoint: dict, ds):
    """The train/val/test :class:`strokes.Split` of ``ds`` that trained ``checkpoint``.

    Raises ``ValueError`` when ``ds`` is not the data the checkpoint was trained on
    (its fingerprint differs), since the split would then mean nothing.
    """
    from ..splits import split

    cfg = checkpoint.get("train") or {}
    info = cfg.get("split_info") or {}
    if info.get("mode", cfg.get("split")) not in ("writer", "random"):
        raise ValueError(
            f"this checkpoint was trained on a {info.get('mode')!r} split given by the caller (e.g. strokes bench); "
            "it cannot be rebuilt from the checkpoint: evaluate on all of the data, or on the bench cell's test indices"
        )
    if info.get("fingerprint") != ds.fingerprint():
        raise ValueError(
            f"{ds.name} is not the data this model was trained on ({info.get('dataset', 'unknown')}); "
            "its held-out split is undefined here: evaluate on all of it instead"
        )
    mode = info.get("mode", cfg["split"])
    sp = split(ds, mode=mode, val=cfg["val"], test=cfg["test"], seed=info.get("seed", cfg["seed"]))
    if "val" in info and (len(sp.val), len(sp.test)) != (info["val"], info.get("test")):
        raise ValueError(
            "this checkpoint's split was given by the caller and differs from the one its config describes; "
            "evaluate on all of the data, or on the bench cell's test indices"
        )
    return sp


def default_pipeline_for(input_kind: str):
    """Images: the plain unit-square pipeline. Sequences: also resampled to 48 points."""
    from ..normalize import default_pipeline

    if input_kind == "image":
        return default_pipeline()
    return default_pipeline(n_points=48)


def topk_accuracy(logits, labels, ks=(1, 5)) -> dict[str, float]:
    import torch

    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices  # (N, k)
    hit = top == labels.unsqueeze(1)  # (N, k)
    return {f"top{k}": float(hit[:, : min(k, k_max)].any(1).float().mean()) if len(labels) else math.nan for k in ks}


#: The ``forward`` keyword arguments a model of each input kind reads.
_KIND_INPUTS = {"sequence": ("points", "lengths"), "image": ("image",), "both": ("points", "lengths", "image")}


def batch_input_kind(kinds) -> str:
    """The input kind of batches that feed models of all ``kinds``: ``"both"`` when some read points and some images."""
    kinds = set(kinds)
    unknown = kinds - set(_KIND_INPUTS)
    if unknown or not kinds:
        raise ValueError(f"input kinds must be some of {tuple(_KIND_INPUTS)}, got {sorted(kinds)}")
    points = bool(kinds & {"sequence", "both"})
    image = bool(kinds & {"image", "both"})
    return "both" if points and image else ("sequence" if points else "image")


def inputs_for(input_kind: str, inputs: dict) -> dict:
    """The part of batch ``inputs`` (``forward`` keyword arguments) that a model taking ``input_kind`` reads."""
    if input_kind not in _KIND_INPUTS:
        raise ValueError(f"input_kind must be one of {tuple(_KIND_INPUTS)}, got {input_kind!r}")
    missing = [k for k in _KIND_INPUTS[input_kind] if k not in inputs]
    if missing:
        raise ValueError(f"a model taking {input_kind!r} input needs {', '.join(missing)}, which the batch lacks")
    return {k: inputs[k] for k in _KIND_INPUTS[input_kind]}


def teacher_log_probs(teacher_logits, weights=None):
    """The teachers' ensemble as log-probabilities ``(B, K)``.

    The weighted mean of each teacher's log-softmax (``weights``: one number > 0
    per teacher, normalized to sum 1; None = equal), renormalized: the weighted
    geometric mean of their distributions.
    """
    import torch
    import torch.nn.functional as F

    teacher_logits = list(teacher_logits)
    if not teacher_logits:
        raise ValueError("teacher_log_probs needs the logits of at least one teacher")
    shapes = {tuple(z.shape) for z in teacher_logits}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every teacher's logits must have the same shape (B, K), got {sorted(shapes)}")
    if weights is None:
        weights = [1.0] * len(teacher_logits)
    if len(weights) != len(teacher_logits) or not all(0 < float(w) < math.inf for w in weights):
        raise ValueError(f"weights must be {len(teacher_logits)} number(s) > 0, one per teacher, got {list(weights)!r}")
    w = torch.tensor([float(v) for v in weights], dtype=torch.float32, device=teacher_logits[0].device)  # (M,)
    w = w / w.sum()
    log_probs = torch.stack([F.log_softmax(z.float(), dim=1) for z in teacher_logits])  # (M, B, K)
    mixed = (w.view(-1, 1, 1) * log_probs).sum(0)  # (B, K)
    return F.log_softmax(mixed, dim=1)  # (B, K)


def distillation_loss(student_logits, labels, teacher_log_probs, *, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    ``student_logits`` ``(B, K)``, ``labels`` ``(B,)``, ``teacher_log_probs`` ``(B, K)`` (logits work
    too: only their softmax matters). CE carries ``label_smoothing``; KL is summed over classes and
    averaged over the batch; ``T^2`` keeps the soft term's gradients on the scale of CE's (Hinton et al.).
    """
    import torch.nn.functional as F

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if tuple(teacher_log_probs.shape) != tuple(student_logits.shape):
        raise ValueError(
            f"teacher and student outputs differ in shape: {tuple(teacher_log_probs.shape)} vs {tuple(student_logits.shape)}"
        )
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K)
    teacher = F.log_softmax(teacher_log_probs.detach() / temperature, dim=1)  # (B, K)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)  # mean over B of sum_k p_t (log p_t - log p_s)
    return (1 - alpha) * ce + alpha * temperature**2 * kl


def training_loss(
    logits, labels, *, aux_logits=(), aux_weight: float = 0.0, teacher_log_probs=None,
    alpha: float = 0.5, temperature: float = 2.0, label_smoothing: float = 0.0,
):  # fmt: skip
    """The training objective of one batch (a scalar tensor).

    The main term is ``CE(logits, labels)`` (with ``label_smoothing``), or the
    :func:`distillation_loss` when ``teacher_log_probs`` is given. When
    ``aux_weight`` > 0, ``aux_weight * mean(CE(aux, labels))`` over ``aux_logits``
    (each ``(B, K)``, e.g. a fusion model's per-branch heads) is added; with
    ``aux_weight`` 0 the auxiliary logits are ignored.
    """
    import torch
    import torch.nn.functional as F

    if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)) or not 0 <= aux_weight < math.inf:
        raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
    if teacher_log_probs is None:
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    else:
        loss = distillation_loss(
            logits, labels, teacher_log_probs, alpha=alpha, temperature=temperature, label_smoothing=label_smoothing
        )
    aux_logits = list(aux_logits)
    if aux_weight > 0 and aux_logits:
        aux = torch.stack([F.cross_entropy(a, labels, label_smoothing=label_smoothing) for a in aux_logits])  # (A,)
        loss = loss + aux_weight * aux.mean()
    return loss


def mix_images(image, labels, generator, *, mixup: float = 0.0, cutmix: float = 0.0):
    """Mixup or cutmix of one image batch, returning ``(mixed, labels_b, lam)``.

    The loss of the mixed batch is ``lam * CE(logits, labels) + (1 - lam) * CE(logits, labels_b)``.

    ``image`` (B, C, H, W) is paired with itself in an order drawn from ``generator``
    (a ``torch.Generator``). Mixup blends the pair, ``lam * a + (1 - lam) * b`` with
    ``lam ~ Beta(mixup, mixup)``; cutmix pastes one box of ``b`` into ``a``, the box's
    area ``1 - lam`` with ``lam ~ Beta(cutmix, cutmix)``, and ``lam`` is then the share of
    ``a`` left after clipping the box to the image. When both are > 0, each batch picks
    one with equal odds; when both are 0 the batch is returned as is with ``lam = 1``.
    Pure: the inputs are not modified, and the same generator state gives the same mix.
    """
    import torch

    if mixup <= 0 and cutmix <= 0:
        return image, labels, 1.0
    if image.dim() != 4:
        raise ValueError(f"mix_images needs images of shape (B, C, H, W), got {tuple(image.shape)}")
    b, _, h, w = image.shape
    perm = torch.randperm(b, generator=generator)  # (B,)
    use_cut = cutmix > 0 and (mixup <= 0 or bool(torch.rand((), generator=generator) < 0.5))
    alpha = cutmix if use_cut else mixup
    lam = _beta(alpha, generator)
    other = image[perm.to(image.device)]  # (B, C, H, W)
    labels_b = labels[perm.to(labels.device)]  # (B,)
    if not use_cut:
        return lam * image + (1.0 - lam) * other, labels_b, lam
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(round(h * ratio)), int(round(w * ratio))
    cy, cx = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=generator))
    cy, cx = cy % h, cx % w
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
    mixed = image.clone()
    mixed[:, :, y0:y1, x0:x1] = other[:, :, y0:y1, x0:x1]  # (B, C, H, W)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, labels_b, lam


def _beta(alpha: float, generator) -> float:
    """One draw of Beta(alpha, alpha) from ``generator``: X / (X + Y), X and Y ~ Gamma(alpha, 1)."""
    import torch

    # torch's Beta and Gamma samplers take no generator; the inverse-CDF of a Beta has no closed
    # form either, so draw the two Gammas with numpy from a seed taken off the torch generator
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    x, y = np.random.default_rng(seed).gamma(alpha, 1.0, size=2)
    return float(x / (x + y)) if x + y > 0 else 0.5


def _training_outputs_module(model):
    """``model`` as a module whose ``forward`` is ``model.training_outputs``: DDP syncs and
    ``torch.compile`` traces only ``forward``, and the auxiliary heads must be part of it."""
    import torch

    class TrainingOutputs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs):
            return self.inner.training_outputs(**inputs)  # (logits (B, K), [aux logits (B, K), ...])

    return TrainingOutputs(model)


def _vocab_difference(a: list, b: list) -> str:
    """Where two vocabularies first differ, in a few words."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} labels"
    i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"label {i} is {a[i]!r} vs {b[i]!r}" + (" (same labels, another order)" if sorted(a) == sorted(b) else "")


def _file_sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain_json(obj):
    """``obj`` as plain JSON data (tuples -> lists), so configs compare by value."""
    return json.loads(json.dumps(obj))


def model_options_for_render(model: str, input_kind: str, options: dict, render) -> dict:
    """``options`` with the model's ``in_channels`` set to the planes ``render`` (a RenderConfig) draws.

    ``--channels ink,order`` renders 2 planes; a model that reads images then needs
    ``in_channels=2``, which is filled in unless given. A given value that disagrees
    raises ``ValueError`` naming both, rather than failing at the first batch.
    """
    import models

    options = dict(options)
    if input_kind not in ("image", "both"):
        return options
    if "in_channels" not in models.config_fields(model):
        return options
    planes = render.n_planes
    given = options.setdefault("in_channels", planes)
    if given != planes:
        raise ValueError(
            f"model option in_channels={given!r} does not match the {planes} plane(s) rendered for channels "
            f"{list(render.channels)}; drop the option (it is set from the channels) or set it to {planes}"
        )
    return options


def evaluate_logits(model, data, input_kind, render, batch_size=1024, amp_dtype=None, progress=None, channels_last=False):
    """Logits ``(N, C)`` (float32, CPU) of ``model`` on every sample of ``data`` (InkTensors)."""
    import torch
    from tqdm.auto import tqdm

    from .batching import make_inputs

    model.eval()
    device = data.device
    outs = []
    n = len(data)
    with torch.inference_mode():
        for s in tqdm(range(0, n, batch_size), desc="eval", leave=False, disable=tqdm_disable(progress)):
            idx = torch.arange(s, min(s + batch_size, n), device=device)
            inputs = make_inputs(data.take(idx), input_kind, render, channels_last=channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(**inputs)
            outs.append(logits.float().cpu())
    return torch.cat(outs) if outs else torch.zeros((0, getattr(model, "num_classes", 0)))


class Trainer:
    """Train a model from :mod:`models` on a :class:`strokes.StrokeDataset`.

    >>> trainer = Trainer(TrainConfig(model="vgg_gap", epochs=20), out_dir="runs/vgg")
    >>> result = trainer.fit(ds)               # writes runs/vgg/{best,last}.pt, history.json
    """

    #: AdamW's fused update. Only ``benchmarks/bench_train.py`` turns it off, to time the trainer as it was.
    fused_optimizer = True

    def __init__(self, config: TrainConfig, out_dir, *, progress: bool | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress

    # -- set-up --------------------------------------------------------------
    def _setup(self, ds, resume_ckpt: dict | None, given_split=None):
        import torch

        import models
        from rendering import RenderConfig
        from rendering.augment import augment_from_config, default_augment

        from .batching import check_image_input, dataset_tensors
        from ..normalize import Pipeline
        from ..splits import Split, split

        cfg = self.config
        # training-loop accounting (validation excluded): wall seconds, samples, and the
        # part of each step spent preparing data (gather, augment, pad, render) vs in the model
        self.train_seconds = 0.0
        self.samples_seen = 0
        self.data_seconds = 0.0
        self.model_seconds = 0.0
        self.epochs_done = 0.0  # fractional when a time budget ends an epoch early
        from .distributed import current

        self.dist = current()  # single process unless torch.distributed was initialized (torchrun)
        self.device = resolve_device(cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} is the global batch and must divide evenly over {self.dist.world_size} processes"
            )
        self.rank_batch = cfg.batch_size // self.dist.world_size
        entry = models.model_entry(cfg.model)
        self.input_kind = entry.input_kind
        self.pipeline = (
            Pipeline.from_config(cfg.pipeline) if cfg.pipeline is not None else default_pipeline_for(self.input_kind)
        )
        self.render = RenderConfig.from_config(cfg.render) if cfg.render is not None else RenderConfig()
        self.augment = default_augment() if cfg.augment is None else augment_from_config(cfg.augment)
        if len(ds.vocab) < 2:
            raise ValueError(f"{ds.name} has {len(ds.vocab)} class(es); training needs at least 2")
        check_image_input(ds, self.input_kind, self.render, cfg.model)  # image-only data: image models only
        from ..images import is_image_data

        self.data_kind = "images" if is_image_data(ds) else "strokes"
        self.vocab = list(ds.vocab)
        # before torch.manual_seed: building the teachers draws from the global RNG, the student must not see that
        self.teachers = self._load_teachers(ds)
        self.teacher_sha256 = [_file_sha256(path) for path in cfg.distill_from or []]  # which files, for the record
        self.teacher_weights = cfg.distill_weights
        # batches hold what the student and every teacher read; each model is passed its part (inputs_for)
        self.batch_kind = batch_input_kind([self.input_kind, *(t.input_kind for t in self.teachers)])

        if given_split is None:
            sp = split(ds, mode=cfg.split, val=cfg.val, test=cfg.test, seed=cfg.seed)
        elif isinstance(given_split, Split):
            sp = given_split
            top = max((int(a.max()) for a in sp if len(a)), default=-1)
            if top >= len(ds):
                raise ValueError(f"the given split indexes sample {top}, but {ds.name} has {len(ds)} samples")
        else:
            raise TypeError(f"split must be a strokes.splits.Split, got {type(given_split).__name__}")
        train_idx = sp.train
        if cfg.max_train_samples is not None and cfg.max_train_samples < len(train_idx):
            rng = np.random.default_rng(cfg.seed)
            train_idx = np.sort(rng.choice(train_idx, cfg.max_train_samples, replace=False))
        self.split_info = {
            "mode": sp.mode,
            "seed": sp.seed,
            "train": len(train_idx),
            "val": len(sp.val),
            "test": len(sp.test),
            "dataset": ds.name,
            "fingerprint": ds.fingerprint(),
            "data_kind": self.data_kind,
            "missing": {k: list(v) for k, v in sp.missing.items()},
        }
        if len(sp.val) == 0:
            raise ValueError(f"the {cfg.split} split of {ds.name} left no validation samples; lower val or use more data")
        log.info("split %s: train %d, val %d, test %d", sp.mode, len(train_idx), len(sp.val), len(sp.test))

        def tensors(idx):
            t = dataset_tensors(ds.subset(idx), self.pipeline, device="cpu")
            if self.device.type == "cuda":
                t = t.pin_memory().to(self.device, non_blocking=True)
            return t

        self.train_data = tensors(train_idx)
        self.val_data = tensors(sp.val)
        self.test_data = tensors(sp.test) if len(sp.test) else None

        torch.manual_seed(cfg.seed)
        options = model_options_for_render(cfg.model, self.input_kind, cfg.model_options, self.render)
        self.model = models.create_model(cfg.model, len(self.vocab), **options).to(self.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.amp_dtype = torch.bfloat16 if self.precision == "bf16" else None
        # NHWC for convolutions: the conv weights now, the images as each batch is made
        self.channels_last = bool(cfg.channels_last and self.input_kind in ("image", "both"))
        self.batch_channels_last = bool(cfg.channels_last and self.batch_kind in ("image", "both"))
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        for t in self.teachers:
            if self.batch_channels_last and t.input_kind in ("image", "both"):
                t.model.to(memory_format=torch.channels_last)
        self.mixing = cfg.mixup > 0 or cfg.cutmix > 0
        if self.mixing and self.batch_kind != "image":
            raise ValueError(
                f"mixup/cutmix blend images, but {cfg.model} (with its teachers) reads {self.batch_kind} input; "
                "use them with an image model and image teachers, or set mixup=0 and cutmix=0"
            )
        # auxiliary losses: a model with training_outputs() and aux_weight > 0 (fusion's per-branch heads)
        has_aux = callable(getattr(self.model, "training_outputs", None))
        self.aux_weight = float(getattr(self.model, "aux_weight", 0.0) or 0.0) if has_aux else 0.0
        # what steps call: the model (or its training_outputs), or its DDP / compiled wrapper
        self.forward = _training_outputs_module(self.model) if self.aux_weight > 0 else self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # DDP broadcasts rank 0's weights now and averages gradients in backward
            self.forward = DistributedDataParallel(
                self.forward, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            fused=self.fused_optimizer,  # one kernel for the whole update (CPU and CUDA)
        )
        self.sampler = None
        n_local = len(self.train_data)
        if self.dist.enabled:
            from torch.utils.data import DistributedSampler

            # every rank gets a distinct shard of each epoch (padded to equal length, so equal step counts)
            self.sampler = DistributedSampler(
                range(len(self.train_data)), num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=cfg.seed
            )
            n_local = len(self.sampler)
        self.steps_per_epoch = math.ceil(n_local / self.rank_batch)
        self.workers = self._resolve_workers()
        total = self.steps_per_epoch * cfg.epochs
        warmup = max(1, int(cfg.warmup_epochs * self.steps_per_epoch))

        def cosine(progress: float) -> float:
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        def lr_at(step: int) -> float:
            if cfg.time_budget is not None:
                # the schedule follows the clock: warm up for `warmup` steps or 5% of the
                # budget, whichever ends first, then decay over the whole budget
                spent = self.train_seconds / cfg.time_budget
                return min(1.0, max((step + 1) / warmup, spent / 0.05)) * cosine(spent)
            if step < warmup:
                return (step + 1) / warmup
            return cosine((step - warmup) / max(1, total - warmup))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_at)
        self.shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict] = []
        self.epoch = 0
        self.best: dict | None = None
        self.bad_epochs = 0
        if resume_ckpt is not None:
            self._restore(resume_ckpt)

    def _load_teachers(self, ds) -> list:
        """The ``distill_from`` checkpoints as :class:`LoadedModel` s on the training device, in eval mode, frozen.

        Raises ``ValueError`` for a teacher whose vocabulary (labels and order) differs from the data's,
        whose normalization pipeline differs from the student's, whose render config differs from the
        student's while it reads images, or that cannot read this data.
        """
        from .batching import check_image_input
        from .checkpoint import load_checkpoint

        cfg = self.config
        teachers = []
        self.teacher_steps = []  # per teacher: more normalization steps for its points, or None
        for path in cfg.distill_from or []:
            teacher = load_checkpoint(path, device=self.device)
            what = f"teacher {path} ({teacher.name})"
            if teacher.vocab != self.vocab:
                raise ValueError(
                    f"{what} has another vocabulary than the data {ds.name}: {_vocab_difference(teacher.vocab, self.vocab)} "
                    f"(teacher: {len(teacher.vocab)} labels, data: {len(self.vocab)}); a teacher must predict the "
                    "student's classes in the same order: train it on this data"
                )
            extra = None
            if self.data_kind == "strokes":  # image data is not normalized, and has one render (check_image_input)
                mine = _plain_json(self.pipeline.to_config())
                theirs = _plain_json(teacher.pipeline.to_config())
                if teacher.input_kind in ("sequence", "both"):
                    if theirs[: len(mine)] != mine:
                        raise ValueError(
                            f"{what} normalizes ink with another pipeline than this run: teacher {json.dumps(theirs)}, "
                            f"student {json.dumps(mine)}; both score the same batch, so the teacher's must be the "
                            "student's, or the student's followed by more steps: set the student's pipeline "
                            "(TrainConfig.pipeline)"
                        )
                    if len(theirs) > len(mine):  # run on each batch for this teacher (strokes.training.batching.renormalize)
                        extra = type(teacher.pipeline)(teacher.pipeline.steps[len(mine) :])
                theirs = _plain_json(teacher.render_pipeline.to_config())
                if teacher.input_kind in ("image", "both") and theirs != mine:
                    raise ValueError(
                        f"{what} renders its images from ink normalized by another pipeline than this run's: teacher "
                        f"{json.dumps(theirs)}, student {json.dumps(mine)}; set the student's pipeline to the teacher's "
                        "(TrainConfig.pipeline)"
                    )
                mine, theirs = _plain_json(self.render.to_config()), _plain_json(teacher.render.to_config())
                if teacher.input_kind in ("image", "both") and theirs != mine:
                    raise ValueError(
                        f"{what} reads images rendered with another config than this run's: teacher {json.dumps(theirs)}, "
                        f"student {json.dumps(mine)}; set the student's render to the teacher's (TrainConfig.render)"
                    )
            self.teacher_steps.append(extra)
            check_image_input(ds, teacher.input_kind, teacher.render, what)
            teacher.model.requires_grad_(False)
            teacher.model.eval()
            teachers.append(teacher)
        return teachers

    def _teacher_log_probs(self, inputs: dict):
        """The teachers' averaged log-probabilities ``(B, K)`` on batch ``inputs`` (no gradients)."""
        import torch

        from .batching import renormalize

        with torch.no_grad():
            logits = []
            for t, steps in zip(self.teachers, self.teacher_steps):
                mine = inputs_for(t.input_kind, inputs)
                if steps is not None:  # its pipeline continues the student's
                    mine["points"], mine["lengths"] = renormalize(inputs["points"], inputs["lengths"], steps)
                logits.append(t.model(**mine).float())  # (B, K)
            return teacher_log_probs(logits, self.teacher_weights)

    def _distill_record(self) -> dict | None:
        """What distillation used, for the checkpoint's ``train`` dict."""
        if not self.teachers:
            return None
        weights = self.teacher_weights or [1.0] * len(self.teachers)
        total = sum(weights)
        return {
            "teachers": [
                {
                    "path": str(t.source),
                    "sha256": sha,
                    "model": t.name,
                    "input_kind": t.input_kind,
                    "weight": w / total,
                    "val_top1": (t.metrics.get("val") or {}).get("top1"),
                    "test_top1": (t.metrics.get("test") or {}).get("top1"),
                }
                for t, w, sha in zip(self.teachers, weights, self.teacher_sha256)
            ],
            "alpha": self.config.distill_alpha,
            "temperature": self.config.distill_temperature,
            "batch_inputs": self.batch_kind,
        }

    def _restore(self, ckpt: dict):
        import torch

        state = ckpt.get("trainer_state")
        if state is None:
            raise ValueError("this checkpoint has no trainer state to resume from (use last.pt, not a slim file)")
        if ckpt["model"]["name"] != self.config.model:
            raise ValueError(f"cannot resume: checkpoint is a {ckpt['model']['name']}, config asks for {self.config.model}")
        if list(ckpt["vocab"]) != self.vocab:
            raise ValueError("cannot resume: the data's vocabulary differs from the checkpoint's")
        used = (ckpt.get("train") or {}).get("distill_used")
        if used and self.teachers:
            before = [t.get("sha256") for t in used.get("teachers", [])]
            if before != self.teacher_sha256:
                raise ValueError(
                    "cannot resume: the teachers of distill_from are not the files this run started with "
                    f"(before: {[t.get('path') for t in used.get('teachers', [])]}, now: {self.config.distill_from}); "
                    "their contents differ"
                )
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle_gen.set_state(state["shuffle_gen"])  # augmentation is seeded per batch: no state to restore
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        clock = state.get("clock", {})
        self.train_seconds = float(clock.get("train_seconds", 0.0))
        self.samples_seen = int(clock.get("samples_seen", 0))
        self.data_seconds = float(clock.get("data_seconds", 0.0))
        self.model_seconds = float(clock.get("model_seconds", 0.0))
        self.epochs_done = float(clock.get("epochs_done", self.epoch))
        self.history = list(ckpt.get("history", []))
        self.best = state.get("best") or None
        log.info("resumed at epoch %d", self.epoch)

    # -- checkpoints ---------------------------------------------------------
    def _checkpoint(self, metrics: dict, with_state: bool) -> dict:
        import torch

        from .checkpoint import make_checkpoint

        state = None
        if with_state:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "shuffle_gen": self.shuffle_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": self.epoch,
                "bad_epochs": self.bad_epochs,
                "best": self.best or {},
                "clock": self.clock(),
            }
        return make_checkpoint(
            self.model,
            vocab=self.vocab,
            pipeline=self.pipeline,
            render=self.render,
            metrics=metrics,
            history=self.history,
            train={
                **self.config.to_dict(),
                "split_info": self.split_info,
                "augment": self.augment.to_config(),
                "precision_used": self.precision,
                "channels_last_used": self.channels_last,
                "workers_used": self.workers,
                "aux_weight_used": self.aux_weight,
                "distill_used": self._distill_record(),
            },
            trainer_state=state,
        )

    def _save(self, name: str, metrics: dict, with_state: bool) -> Path:
        from .checkpoint import save_checkpoint

        path = self.out_dir / name
        if self.dist.is_main:  # under DDP only rank 0 writes
            save_checkpoint(self._checkpoint(metrics, with_state), path)
        return path

    # -- loop ----------------------------------------------------------------
    def clock(self) -> dict:
        """Training-loop accounting so far: seconds, samples, data vs model time, epochs."""
        return {
            "train_seconds": self.train_seconds,
            "samples_seen": self.samples_seen,
            "data_seconds": self.data_seconds,
            "model_seconds": self.model_seconds,
            "epochs_done": self.epochs_done,
        }

    def _resolve_workers(self) -> int:
        """DataLoader worker processes for batch preparation (see ``TrainConfig.workers``).

        ``auto`` (None): one worker for small models that render images on the CPU
        (fewer than ``LIGHT_MODEL_PARAMS`` parameters, e.g. lenet5), whose step is
        short enough for rendering to be a third of it; none otherwise. On two
        cores a worker takes a core from the model (see ``benchmarks/bench_train.py``):
        that pays only when preparation is a large share of the step. No workers on
        CUDA (the GPU prepares batches), under DDP, or for epochs of fewer than 16 steps
        (the fork would cost more than it saves).
        """
        w = self.config.workers
        if w is None:
            n_params = sum(p.numel() for p in self.model.parameters())
            light = self.batch_kind in ("image", "both") and n_params < LIGHT_MODEL_PARAMS
            cpu = self.device.type == "cpu" and not self.dist.enabled
            return 1 if (cpu and light and self.steps_per_epoch >= 16) else 0
        if w and self.device.type != "cpu":
            raise ValueError(
                f"workers={w}: DataLoader workers prepare batches on the CPU, but training runs on {self.device}, "
                "where batches are prepared on the device; use workers=0 (or leave it to auto)"
            )
        return w

    def _epoch_batches(self, order):
        """This epoch's batches, prepared in the main process or in DataLoader workers."""
        import multiprocessing

        import torch

        from .batching import EpochBatches

        batches = EpochBatches(
            self.train_data,
            order,
            self.rank_batch,
            self.batch_kind,
            self.render,
            augment=self.augment if self.augment.steps else None,
            seed=self.config.seed,
            epoch=self.epoch,
            rank=self.dist.rank,
            channels_last=self.batch_channels_last,
        )
        if not self.workers:
            return iter(batches[i] for i in range(len(batches)))
        from torch.utils.data import DataLoader

        from .batching import BatchGroups, ungroup

        ctx = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        loader = DataLoader(
            BatchGroups(batches, group=4),  # 4 batches per transfer from the worker
            batch_size=None, shuffle=False, num_workers=self.workers, prefetch_factor=2, multiprocessing_context=ctx,
            # the loader draws its workers' base seed from this generator, not from the global RNG that
            # dropout uses: so the run is the same with and without workers
            generator=torch.Generator().manual_seed(self.config.seed),
        )  # fmt: skip
        return (batch for item in loader for batch in ungroup(item))

    def _budget_left(self) -> bool:
        return self.config.time_budget is None or self.train_seconds < self.config.time_budget

    def _train_epoch(self) -> dict:
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        self.model.train()
        n = len(self.train_data)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            order = torch.tensor(list(self.sampler), dtype=torch.int64).to(self.device)
        else:
            order = torch.randperm(n, generator=self.shuffle_gen).to(self.device)
        batches = self._epoch_batches(order)
        # mixup/cutmix draws: seeded per (seed, epoch, rank), so a resumed run mixes as the uninterrupted one
        mix_gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.epoch) * 1_009 + self.dist.rank)
        # running sums stay on the device: no host sync per step on a GPU
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        total_seen = 0
        timer = _StepTimer(self.device)
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=tqdm_disable(self.progress),
        )
        epoch_start = time.perf_counter()
        seconds_before = self.train_seconds
        steps_done = 0
        for step in bar:
            timer.start()
            inputs, labels = next(batches)  # waits for a worker's batch, or prepares it here
            lam, labels_b = 1.0, labels
            if self.mixing:
                image, labels_b, lam = mix_images(inputs["image"], labels, mix_gen, mixup=cfg.mixup, cutmix=cfg.cutmix)
                if self.batch_channels_last:
                    image = image.contiguous(memory_format=torch.channels_last)
                inputs = {**inputs, "image": image}  # (B, C, H, W)
            timer.data_done()
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out = self.forward(**inputs_for(self.input_kind, inputs))
                logits, aux = out if self.aux_weight > 0 else (out, [])  # (B, K), [(B, K), ...]
                teacher = self._teacher_log_probs(inputs) if self.teachers and cfg.distill_alpha > 0 else None  # (B, K)
                loss = training_loss(
                    logits.float(), labels, aux_logits=[a.float() for a in aux], aux_weight=self.aux_weight,
                    teacher_log_probs=teacher, alpha=cfg.distill_alpha, temperature=cfg.distill_temperature,
                    label_smoothing=cfg.label_smoothing,
                )  # fmt: skip
                if lam < 1.0:  # mixed batch: the loss of the pasted-in partner, weighted by its share
                    loss = lam * loss + (1.0 - lam) * training_loss(
                        logits.float(), labels_b, aux_logits=[a.float() for a in aux], aux_weight=self.aux_weight,
                        teacher_log_probs=teacher, alpha=cfg.distill_alpha, temperature=cfg.distill_temperature,
                        label_smoothing=cfg.label_smoothing,
                    )  # fmt: skip
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            b = len(labels)
            total_loss += loss.detach() * b
            correct += (logits.detach().argmax(1) == labels).sum()
            total_seen += b
            steps_done += 1
            timer.model_done()
            check = step % 20 == 0 or step == self.steps_per_epoch - 1
            if check or not timer.cuda or (cfg.time_budget is not None and step % 5 == 0):
                timer.sync()  # on CUDA the host clock is only read once the device has caught up
                self.train_seconds = seconds_before + time.perf_counter() - epoch_start
            self.scheduler.step()  # after the clock: a time-budget schedule reads train_seconds
            if check:
                mean_loss = float(total_loss) / total_seen
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"loss became {mean_loss} at epoch {self.epoch + 1}, step {step}; lower lr")
                bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{int(correct) / total_seen:.3f}")
            if cfg.time_budget is not None and self._stop_for_budget():
                log.info("time budget of %.0f s spent after %d of %d steps", cfg.time_budget, step + 1, self.steps_per_epoch)
                break
        bar.close()
        del batches  # stops the workers of an epoch ended early by the time budget
        timer.sync()
        self.train_seconds = seconds_before + time.perf_counter() - epoch_start
        data_s, model_s = timer.totals()
        self.data_seconds += data_s
        self.model_seconds += model_s
        self.epochs_done += steps_done / self.steps_per_epoch
        if self.dist.enabled:  # loss, hits and samples summed over all ranks
            seen = torch.tensor(float(total_seen), dtype=torch.float64, device=self.device)
            sums = torch.stack([total_loss.double(), correct.double(), seen])
            self._all_reduce(sums)
            total_loss, correct, total_seen = sums[0], int(sums[1]), int(sums[2])
        self.samples_seen += total_seen  # all ranks together: the job's throughput
        mean_loss = float(total_loss) / max(total_seen, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"loss became {mean_loss} in epoch {self.epoch + 1}; lower lr")
        return {
            "train_loss": mean_loss,
            "train_top1": int(correct) / max(total_seen, 1),
            "train_seconds": self.train_seconds - seconds_before,
            "data_seconds": data_s,
            "model_seconds": model_s,
            "steps": steps_done,
        }

    def _evaluate(self, data) -> dict:
        import torch

        if not self.dist.enabled:
            logits = evaluate_logits(
                self.model, data, self.input_kind, self.render, self.config.eval_batch_size, self.amp_dtype, self.progress,
                channels_last=self.channels_last,
            )
            labels = data.labels.cpu()
            loss = float(torch.nn.functional.cross_entropy(logits, labels))
            return {"loss": loss, **topk_accuracy(logits, labels)}
        # each rank scores every world_size-th sample; the sums are reduced, so the result is exact
        shard = data.take(torch.arange(self.dist.rank, len(data), self.dist.world_size, device=data.device))
        logits = evaluate_logits(
            self.model, shard, self.input_kind, self.render, self.config.eval_batch_size, self.amp_dtype, False,
            channels_last=self.channels_last,
        )
        labels = shard.labels.cpu()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top == labels.unsqueeze(1)
        sums = torch.tensor(
            [
                float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum")) if len(labels) else 0.0,
                float(hit[:, :1].any(1).sum()),
                float(hit.any(1).sum()),
                float(len(labels)),
            ],
            dtype=torch.float64,
            device=self.device,
        )
        self._all_reduce(sums)
        n = max(float(sums[3]), 1.0)
        return {"loss": float(sums[0]) / n, "top1": float(sums[1]) / n, "top5": float(sums[2]) / n}

    # -- distributed helpers -------------------------------------------------
    def _all_reduce(self, tensor, op: str = "sum"):
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return tensor

    def _stop_for_budget(self) -> bool:
        """Whether the time budget is spent; under DDP all ranks stop at the same step."""
        import torch

        stop = not self._budget_left()
        if self.dist.enabled:
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            stop = bool(self._all_reduce(flag, "max")[0] > 0)
        return stop

    def _rank_divergence(self) -> float:
        """Largest absolute difference between this job's ranks' weights (0.0 when in sync)."""
        from .distributed import max_weight_difference

        return max_weight_difference(self.model)

    def fit(self, ds, *, resume=None, split=None, on_epoch=None) -> dict:
        """Train on ``ds``; returns the final metrics (best val, and test when there is a test split).

        Args:
            ds: a :class:`strokes.StrokeDataset`.
            resume: a ``last.pt`` path (or checkpoint dict) to continue from.
            split: a :class:`strokes.splits.Split` to use instead of the one the
                config describes (the benchmark harness gives every model the same
                splits, k-fold included). Its ``mode`` is recorded in the checkpoint.
            on_epoch: called as ``on_epoch(row)`` after every epoch with that
                epoch's history row (``epoch``, ``val_top1``, ``val_top5``, ...),
                once ``last.pt`` is written. An exception it raises ends training
                and propagates (``strokes tune`` prunes trials this way).
        """
        from .checkpoint import read_checkpoint

        resume_ckpt = None
        if resume is not None:
            resume_ckpt = resume if isinstance(resume, dict) else read_checkpoint(resume)
        self._setup(ds, resume_ckpt, split)
        import torch

        threads = torch.get_num_threads()
        if self.workers and self.device.type == "cpu":
            # the workers get their own cores: the model keeps the rest (oversubscribing is slower)
            torch.set_num_threads(max(1, threads - self.workers))
        try:
            return self._fit(on_epoch)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, on_epoch) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model %s: %s parameters, input %s, device %s", cfg.model, f"{n_params:,}", self.input_kind, self.device)
        started = time.perf_counter()
        stopped = "max_epochs"
        try:
            while self.epoch < cfg.epochs and not (cfg.time_budget is not None and self._stop_for_budget()):
                t0 = time.perf_counter()
                row = {"epoch": self.epoch + 1, **self._train_epoch()}
                val = self._evaluate(self.val_data)
                row.update({f"val_{k}": v for k, v in val.items()})
                row["lr"] = self.scheduler.get_last_lr()[0]
                row["seconds"] = time.perf_counter() - t0
                self.epoch += 1
                self.history.append(row)
                score = (val["top1"], val["top5"])
                improved = self.best is None or score > (self.best["val_top1"], self.best["val_top5"])
                if improved:
                    self.best = {"epoch": self.epoch, "val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]}
                    self.bad_epochs = 0
                    self._save("best.pt", {"val": val, "epoch": self.epoch}, with_state=False)
                else:
                    self.bad_epochs += 1
                self._save("last.pt", {"val": val, "epoch": self.epoch}, with_state=True)
                self._write_history()
                log.info(
                    "epoch %d: train loss %.4f top1 %.4f | val loss %.4f top1 %.4f top5 %.4f%s (%.0f s)",
                    self.epoch, row["train_loss"], row["train_top1"], val["loss"], val["top1"], val["top5"],
                    " *" if improved else "", row["seconds"],
                )
                if on_epoch is not None:
                    on_epoch(dict(row))
                if cfg.patience and self.bad_epochs >= cfg.patience:
                    stopped = "early_stopping"
                    log.info("early stopping: no better val top-1 for %d epochs", cfg.patience)
                    break
                if cfg.time_budget is not None and self._stop_for_budget():
                    stopped = "time_budget"
                    break
        except KeyboardInterrupt:
            log.warning("interrupted: saving %s", self.out_dir / "last.pt")
            self._save("last.pt", {"interrupted": True, "epoch": self.epoch}, with_state=True)
            self._write_history()
            raise
        distributed = None
        if self.dist.enabled:
            import torch.distributed as dist

            distributed = {
                "world_size": self.dist.world_size,
                "backend": self.dist.backend,
                "rank_batch": self.rank_batch,
                # the trained (not the best-checkpoint) weights of every rank, compared with rank 0's
                "max_weight_difference_across_ranks": self._rank_divergence(),
            }
            dist.barrier()  # rank 0 has written best.pt
        metrics = self._finish(stopped, time.perf_counter() - started, distributed)
        return metrics

    def _finish(self, stopped: str, seconds: float, distributed: dict | None = None) -> dict:
        from .checkpoint import load_checkpoint, save_checkpoint

        best_path = self.out_dir / "best.pt"
        loaded = load_checkpoint(best_path, device=self.device)
        self.model.load_state_dict(loaded.model.state_dict())
        metrics = {"val": self._evaluate(self.val_data), "best_epoch": self.best["epoch"], "epochs_run": self.epoch}
        if self.test_data is not None:
            metrics["test"] = self._evaluate(self.test_data)
        metrics.update(
            {
                "stopped": stopped,
                "wall_seconds": round(seconds, 3),
                "clock": self.clock(),
                "train_seconds": round(self.train_seconds, 3),
                "train_samples_per_s": self.samples_seen / max(self.train_seconds, 1e-9),
                "split": self.split_info,
            }
        )
        if distributed is not None:
            metrics["distributed"] = distributed
        ckpt = loaded.checkpoint
        ckpt["metrics"] = metrics
        ckpt["history"] = self.history
        if self.dist.is_main:
            save_checkpoint(ckpt, best_path)
        self._write_history()
        log.info("best epoch %d: %s", self.best["epoch"], json.dumps({k: metrics[k] for k in ("val", "test") if k in metrics}))
        return metrics

    def _write_history(self):
        if not self.dist.is_main:
            return
        with atomic_write(self.out_dir / "history.json", "w") as fh:
            json.dump(self.history, fh, indent=1)


class _StepTimer:
    """Per-step data-preparation and model time for one epoch.

    On the CPU work is synchronous and the host clock is right. On CUDA the
    host only queues work, so the boundaries are CUDA events and their elapsed
    times are read after a synchronization (never the host clock).
    """

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"
        self.data = 0.0
        self.model = 0.0
        self.events: list = []  # (start, data_done, model_done) CUDA events not yet read
        self._t = [0.0, 0.0]

    def _mark(self):
        if self.cuda:
            ev = self.torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def start(self):
        self._t = [self._mark()]

    def data_done(self):
        self._t.append(self._mark())

    def model_done(self):
        t0, t1, t2 = (*self._t, self._mark())
        if self.cuda:
            self.events.append((t0, t1, t2))
        else:
            self.data += t1 - t0
            self.model += t2 - t1

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            for t0, t1, t2 in self.events:
                self.data += t0.elapsed_time(t1) / 1000
                self.model += t1.elapsed_time(t2) / 1000
            self.events.clear()

    def totals(self) -> tuple[float, float]:
        self.sync()
        return self.data, self.model
