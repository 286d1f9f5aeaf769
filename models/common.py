"""Small building blocks shared by the zoo: config checks, input checks, sequence
features, masked pooling, the bidirectional RNN encoder, the classifier head and
the two base classes every model derives from.

Shapes: ``B`` batch, ``T`` time steps (points), ``F`` per-point features,
``C`` channels, ``H`` hidden units.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Per-point input features a sequence model can read, and their width F.
FEATURES = {
    "points": 3,  # [x, y, pen_up]: absolute position in the unit square
    "deltas": 3,  # [dx, dy, pen_up]: stroke-3, the pen's motion since the previous point
    "both": 5,  # [x, y, dx, dy, pen_up]
}


# --------------------------------------------------------------------------- config checks


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; ValueError otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_prob(name: str, value) -> float:
    """``value`` as a float probability in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; ValueError listing them otherwise."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_int_tuple(name: str, value, minimum: int = 1) -> tuple[int, ...]:
    """A non-empty list/tuple of ints ``>= minimum`` as a tuple (JSON gives lists back)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty tuple of ints, got {value!r}")
    return tuple(check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))


def check_weight(name: str, value) -> float:
    """``value`` as a finite float ``>= 0`` (a loss weight; 0 = off); ValueError otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- input checks


def check_sequence_input(points, lengths) -> None:
    """Shape checks for ``points`` (B, T, 3) and ``lengths`` (B,): static, so tracing keeps them out."""
    if points is None or lengths is None:
        raise ValueError("this model reads a sequence: pass points (B, T, 3) and lengths (B,)")
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (B, T, 3) [x, y, pen_up], got {tuple(points.shape)}")
    if lengths.ndim != 1 or lengths.shape[0] != points.shape[0]:
        raise ValueError(f"lengths must have shape (B,)=({points.shape[0]},), got {tuple(lengths.shape)}")


def check_image_input(image, in_channels: int, size: int | None = None) -> None:
    """Shape checks for ``image`` (B, C, H, W); ``size``: the one side length the model accepts."""
    if image is None:
        raise ValueError("this model reads an image: pass image (B, C, H, W)")
    if image.ndim != 4 or image.shape[1] != in_channels:
        raise ValueError(f"image must have shape (B, {in_channels}, H, W), got {tuple(image.shape)}")
    if size is not None and (image.shape[2] != size or image.shape[3] != size):
        raise ValueError(
            f"this model was built for {size}x{size} images (config image_size), got {tuple(image.shape[2:])}"
        )


# --------------------------------------------------------------------------- sequences


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at real points (index < length), False at padding."""
    steps = torch.arange(T, device=lengths.device)  # (T,)
    return steps.unsqueeze(0) < lengths.to(steps.device).unsqueeze(1)  # (B, T)


def sequence_features(points: torch.Tensor, mask: torch.Tensor, features: str) -> torch.Tensor:
    """Per-point features (B, T, F) from points-3 (B, T, 3); padding rows come out as zeros.

    The padding is zeroed with ``where`` first, so any value there (NaN included)
    never reaches the output. The delta of each sample's first point is 0.
    """
    pts = torch.where(mask.unsqueeze(-1), points, 0.0)  # (B, T, 3)
    if features == "points":
        return pts
    xy = pts[..., :2]  # (B, T, 2)
    before = (torch.arange(xy.shape[1], device=xy.device) - 1).clamp_min(0)  # (T,): t - 1, and 0 at t=0
    prev = xy.index_select(1, before)  # (B, T, 2): the point before, itself at t=0 (no slices: exports for any T)
    delta = torch.where(mask.unsqueeze(-1), xy - prev, 0.0)  # (B, T, 2)
    pen = pts[..., 2:]  # (B, T, 1)
    if features == "deltas":
        return torch.cat([delta, pen], dim=-1)  # (B, T, 3)
    return torch.cat([xy, delta, pen], dim=-1)  # (B, T, 5)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``mask`` (bool, broadcastable to ``x``) is True.

    (B, T, C) with mask (B, T, 1) and dim=1, or (B, C, T) with mask (B, 1, T) and dim=2 -> (B, C).
    """
    total = torch.where(mask, x, 0.0).sum(dim)  # (B, C)
    count = mask.sum(dim).clamp_min(1).to(x.dtype)  # (B, 1)
    return total / count  # (B, C)


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Max of ``x`` over ``dim`` where ``mask`` is True (needs one True per sample, i.e. length >= 1)."""
    low = torch.finfo(x.dtype).min
    return torch.where(mask, x, low).amax(dim)  # (B, C)


class RNNEncoder(nn.Module):
    """Bidirectional LSTM or GRU over the packed (unpadded) sequence.

    features (B, T, F) -> linear projection + GELU (B, T, P) -> ``layers`` bidirectional
    layers of ``hidden`` units -> [final forward state, final backward state, masked mean
    of the top layer's outputs] (B, 4H). Packing means padding is never read.
    """

    def __init__(self, cell: str, features: str, proj: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        check_choice("cell", cell, ("lstm", "gru"))
        self.features = check_choice("features", features, FEATURES)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.proj = nn.Sequential(nn.Linear(FEATURES[features], proj), nn.GELU())
        self.rnn = rnn(
            proj,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,  # between layers only
        )
        self.feature_dim = 4 * hidden

    #: Run full-length batches unpacked (the same result as packing, 2x faster on the CPU).
    #: Only ``benchmarks/bench_train.py`` turns it off, to time the trainer as it was.
    skip_packing_when_full = True

    def forward(self, points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, _ = points.shape
        cpu_lengths = lengths.detach().to("cpu", torch.int64)  # (B,), pack wants them on the CPU
        if B and (int(cpu_lengths.min()) < 1 or int(cpu_lengths.max()) > T):
            raise ValueError(f"lengths must lie in [1, T={T}], got {cpu_lengths.tolist()}")
        mask = length_mask(lengths, T)  # (B, T)
        x = self.proj(sequence_features(points, mask, self.features))  # (B, T, P)
        full = B and self.skip_packing_when_full and int(cpu_lengths.min()) == T
        if full and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            # every sequence is full (the default pipeline resamples to a fixed length): packing would
            # compute the same thing, 2x slower on the CPU (the GRU has no fused kernel for packed input)
            out, state = self.rnn(x)  # (B, T, 2H)
            h = state[0] if isinstance(state, tuple) else state  # (layers * 2, B, H)
        else:
            packed = pack_padded_sequence(x, cpu_lengths, batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            h = state[0] if isinstance(state, tuple) else state  # (layers * 2, B, H); LSTM gives (h, c)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H), zeros at padding
        mean = masked_mean(out, mask.unsqueeze(-1), dim=1)  # (B, 2H)
        return torch.cat([h[-2], h[-1], mean], dim=1)  # (B, 4H): top layer forward, backward, mean


# --------------------------------------------------------------------------- heads and bases


class L2Normalize(nn.Module):
    """(B, F) -> each row scaled to unit length (B, F); a zero row stays zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1)  # (B, F)


class CosineLinear(nn.Linear):
    """A cosine classifier: logits = ``scale * x . unit(w_k)`` for unit-length inputs ``x`` (B, F) -> (B, K).

    Used after :class:`L2Normalize`, so each logit is ``scale`` times the cosine between the
    embedding and the class's weight row. :meth:`effective_weight` is the ``(K, F)`` matrix
    ``W`` of the equivalent plain linear layer (no bias): what taught symbols are calibrated on.
    """

    def __init__(self, in_features: int, out_features: int, scale: float):
        super().__init__(in_features, out_features, bias=False)
        self.scale = float(scale)

    def effective_weight(self) -> torch.Tensor:
        """The ``(K, F)`` rows of the equivalent linear layer: ``scale`` times each class's unit row."""
        return self.scale * nn.functional.normalize(self.weight, dim=1)  # (K, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight())  # (B, K)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}"


class ClassifierHead(nn.Sequential):
    """features (B, F) -> [dropout] -> [linear -> ReLU -> dropout] (if ``hidden``) -> linear -> logits (B, K).

    ``cosine_scale > 0`` makes the last layer a cosine classifier: the features are scaled to
    unit length (:class:`L2Normalize`) and each logit is ``cosine_scale`` times their cosine
    with the class's row (:class:`CosineLinear`, no bias). Class rows and embeddings then live
    on one sphere, which is what few-shot teaching compares taught drawings on.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 0, dropout: float = 0.0, cosine_scale: float = 0.0):
        if not cosine_scale >= 0:
            raise ValueError(f"cosine_scale must be >= 0 (0 = a plain linear layer), got {cosine_scale!r}")
        layers: list[nn.Module] = []
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if hidden > 0:
            layers += [nn.Linear(in_features, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = hidden
        if cosine_scale > 0:
            layers += [L2Normalize(), CosineLinear(in_features, num_classes, cosine_scale)]
        else:
            layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class SequenceModel(nn.Module):
    """Base of the sequence models: ``forward`` = ``head(encoder(points, lengths))``.

    Subclasses set ``self.encoder`` (returning (B, feature_dim)), ``self.head`` and
    ``self.feature_dim`` in ``__init__``.
    """

    input_kind = "sequence"

    def forward(self, points=None, lengths=None, image=None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for padded ``points`` ``(B, T, 3)`` and their ``lengths`` ``(B,)``.

        ``image`` is ignored: a sequence model reads points only.
        """
        check_sequence_input(points, lengths)
        return self.head(self.encoder(points, lengths))  # (B, num_classes)


class ImageModel(nn.Module):
    """Base of the image models: ``forward`` = ``head(encoder(image))``.

    Subclasses set ``self.encoder``, ``self.head``, ``self.feature_dim``, ``self.in_channels``
    and ``self.image_size`` (None when any size works) in ``__init__``.
    """

    input_kind = "image"
    image_size: int | None = None

    def forward(self, points=None, lengths=None, image=None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for an ``image`` batch ``(B, C, H, W)``.

        ``points`` and ``lengths`` are ignored: an image model reads renders only.
        """
        check_image_input(image, self.in_channels, self.image_size)
        return self.head(self.encoder(image))  # (B, num_classes)
