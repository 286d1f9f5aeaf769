"""Temporal convolutional network on the raw points.

Non-causal (same-padded) dilated 1-D convolutions in pre-norm residual blocks.
Padding never leaks in: every convolution reads zeros at padding positions (the
same zeros a lone sample gets from the convolution's own padding), the norm is a
LayerNorm over channels at each time step (no statistics across time or batch),
and the pooling is masked. ``forward`` has no data-dependent Python control flow
(a dilated convolution picks its kernel by batch size, but traced or exported
graphs always take the one path that serves every size; see :func:`same_conv1d`),
so it traces/exports; ``lengths`` must lie in [1, T] (not checked, for that reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import (
    FEATURES,
    ClassifierHead,
    SequenceModel,
    check_choice,
    check_int,
    check_prob,
    length_mask,
    masked_max,
    masked_mean,
    sequence_features,
)
from .registry import register_model


@dataclass
class TCNConfig:
    features: str = "both"  #: "points" [x, y, pen_up], "deltas" [dx, dy, pen_up] (stroke-3) or "both" [x, y, dx, dy, pen_up]
    channels: int = 128  #: channels of the residual stream
    blocks: int = 6  #: residual blocks; block i has dilation 2**i (1, 2, 4, ...), receptive field 1 + 2*(k-1)*(2**blocks - 1)
    kernel: int = 3  #: temporal kernel size of each convolution (odd)
    dropout: float = 0.1  #: dropout inside each block and before the head
    head_hidden: int = 0  #: hidden units of the head MLP; 0 = a single linear layer

    def __post_init__(self):
        check_choice("features", self.features, FEATURES)
        check_int("channels", self.channels)
        check_int("blocks", self.blocks)
        check_int("kernel", self.kernel)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same padding, non-causal), got {self.kernel}")
        check_prob("dropout", self.dropout)
        check_int("head_hidden", self.head_hidden, minimum=0)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, T), separately at every time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T)


#: batches up to this size take the matmul path of :func:`same_conv1d` (larger ones: ``conv(x)``)
SMALL_BATCH = 32


def same_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a same-padded, possibly dilated ``nn.Conv1d``; small batches as one matmul over shifted copies.

    PyTorch's CPU kernel for a 1-D convolution takes a slow generic path on small
    batches (at batch 1 the TCN spent about 60% of its forward there); large batches,
    and bf16 autocast, are faster through ``conv(x)``. So batches of up to
    :data:`SMALL_BATCH` (the recognizer's), and any traced or exported graph (which
    must serve every batch size with one path: this one exports to ONNX as static
    slices, a concatenation and a matmul), use the matmul. Same weights, the same
    result up to float rounding. Without gradients (inference) the weight laid out
    for the matmul is kept on the module until the weight changes
    (``_matmul_weight``), and a batch of one is a single ``addmm``.
    """
    d, k, pad = conv.dilation[0], conv.kernel_size[0], conv.padding[0]
    tracing = torch.jit.is_tracing() or torch.compiler.is_exporting()
    if not tracing and x.shape[0] > SMALL_BATCH:
        return conv(x)  # (B, O, T)
    t = x.shape[2]
    xp = F.pad(x, (pad, pad)) if pad else x  # (B, C, T + 2 * pad)
    cols = torch.cat([xp[:, :, i * d : i * d + t] for i in range(k)], dim=1) if k > 1 else xp  # (B, k * C, T): tap i in rows [i * C, (i + 1) * C)
    w = _matmul_weight(conv, cache=not tracing and not torch.is_grad_enabled())  # (O, k * C)
    if x.shape[0] == 1 and not tracing and conv.bias is not None:
        return torch.addmm(conv.bias.view(-1, 1), w, cols[0]).unsqueeze(0)  # (1, O, T)
    out = torch.matmul(w, cols)  # (B, O, T)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1)  # (B, O, T)


def _matmul_weight(conv: nn.Conv1d, cache: bool) -> torch.Tensor:
    """``conv.weight`` (O, C, k) as the (O, k * C) matrix of :func:`same_conv1d`: ``w[o, i * C + c] = weight[o, c, i]``.

    With ``cache`` (no autograd) the matrix is kept on the module, keyed on the weight's
    storage, version counter, dtype and device, so an optimizer step or ``load_state_dict``
    (which bump the version) or a move makes it rebuilt.
    """
    weight = conv.weight
    if not cache:
        return weight.permute(0, 2, 1).reshape(conv.out_channels, -1)  # (O, k * C)
    key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
    kept = getattr(conv, "_matmul_weight_cache", None)
    if kept is None or kept[0] != key:
        kept = (key, weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1).contiguous())
        conv._matmul_weight_cache = kept
    return kept[1]


class TCNBlock(nn.Module):
    """x + conv(mask * drop(gelu(norm(conv(mask * gelu(norm(x))))))), both convs with the same dilation."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        pad = dilation * (kernel - 1) // 2  # same length out as in
        self.norm1 = ChannelLayerNorm(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)
        self.norm2 = ChannelLayerNorm(channels)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        # x (B, C, T); m (B, 1, T) float, 0 at padding: convs must read zeros there
        h = same_conv1d(self.conv1, F.gelu(self.norm1(x)) * m)  # (B, C, T)
        h = same_conv1d(self.conv2, self.drop(F.gelu(self.norm2(h))) * m)  # (B, C, T)
        return x + h  # (B, C, T)


class TCNEncoder(nn.Module):
    """points (B, T, 3), lengths (B,) -> masked [mean, max] over time of the TCN output (B, 2C)."""

    def __init__(self, features: str, channels: int, blocks: int, kernel: int, dropout: float):
        super().__init__()
        self.features = check_choice("features", features, FEATURES)
        self.inp = nn.Conv1d(FEATURES[features], channels, 1)  # 1x1: per-point embedding
        self.blocks = nn.ModuleList(TCNBlock(channels, kernel, 2**i, dropout) for i in range(blocks))
        self.norm = ChannelLayerNorm(channels)
        self.feature_dim = 2 * channels

    def forward(self, points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths, points.shape[1])  # (B, T) bool
        x = sequence_features(points, mask, self.features)  # (B, T, F), zeros at padding
        x = self.inp(x.transpose(1, 2))  # (B, C, T)
        mask = mask.unsqueeze(1)  # (B, 1, T)
        m = mask.to(x.dtype)  # (B, 1, T)
        for block in self.blocks:
            x = block(x, m)  # (B, C, T)
        x = F.gelu(self.norm(x))  # (B, C, T)
        return torch.cat([masked_mean(x, mask, dim=2), masked_max(x, mask, dim=2)], dim=1)  # (B, 2C)


@register_model("tcn", TCNConfig)
class TCN(SequenceModel):
    """Temporal conv net: dilated residual 1-D convs (LayerNorm per step), masked mean+max pooling."""

    def __init__(self, config: TCNConfig, num_classes: int):
        super().__init__()
        c = config
        self.encoder = TCNEncoder(c.features, c.channels, c.blocks, c.kernel, c.dropout)  # -> (B, 2C)
        self.feature_dim = self.encoder.feature_dim
        self.head = ClassifierHead(self.feature_dim, num_classes, c.head_hidden, c.dropout)
