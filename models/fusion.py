"""Fusion: a sequence encoder on the points and an image encoder on the render,
their features concatenated -> dropout -> MLP head.

The encoders are the zoo's own: :class:`models.common.RNNEncoder` (bidirectional
GRU), :class:`models.tcn.TCNEncoder` and :class:`models.vgg_gap.VGGEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .common import (
    FEATURES,
    ClassifierHead,
    RNNEncoder,
    check_choice,
    check_image_input,
    check_int,
    check_prob,
    check_sequence_input,
)
from .registry import register_model
from .tcn import TCNEncoder
from .vgg_gap import VGGEncoder


@dataclass
class FusionConfig:
    sequence_encoder: str = "gru"  #: "gru" (a bidirectional GRU, 4 * seq_hidden features) or "tcn" (a TCN trunk, 2 * seq_hidden)
    features: str = "both"  #: "points" [x, y, pen_up], "deltas" [dx, dy, pen_up] (stroke-3) or "both" [x, y, dx, dy, pen_up]
    seq_hidden: int = 96  #: GRU units per direction, or TCN channels
    seq_layers: int = 2  #: GRU layers, or TCN residual blocks (dilations 1, 2, 4, ...; use ~6 for the TCN)
    seq_proj: int = 64  #: GRU per-point input projection width (unused by the TCN)
    seq_dropout: float = 0.1  #: dropout inside the sequence encoder
    in_channels: int = 1  #: image planes C (rendering channels)
    image_width: int = 24  #: channels of the first VGG stage; stage i has image_width * 2**i
    image_stages: int = 4  #: VGG stages (max-pool between them)
    dropout: float = 0.3  #: dropout on the concatenated features and in the head
    head_hidden: int = 256  #: hidden units of the head MLP; 0 = a single linear layer

    def __post_init__(self):
        check_choice("sequence_encoder", self.sequence_encoder, ("gru", "tcn"))
        check_choice("features", self.features, FEATURES)
        check_int("seq_hidden", self.seq_hidden)
        check_int("seq_layers", self.seq_layers)
        check_int("seq_proj", self.seq_proj)
        check_prob("seq_dropout", self.seq_dropout)
        check_int("in_channels", self.in_channels)
        check_int("image_width", self.image_width, minimum=2)
        check_int("image_stages", self.image_stages)
        check_prob("dropout", self.dropout)
        check_int("head_hidden", self.head_hidden, minimum=0)


@register_model("fusion", FusionConfig)
class Fusion(nn.Module):
    """Fusion: [sequence encoder (GRU or TCN), VGG image encoder] features -> MLP head."""

    input_kind = "both"

    def __init__(self, config: FusionConfig, num_classes: int):
        super().__init__()
        c = config
        if c.sequence_encoder == "gru":
            self.seq_encoder = RNNEncoder("gru", c.features, c.seq_proj, c.seq_hidden, c.seq_layers, c.seq_dropout)
        else:
            self.seq_encoder = TCNEncoder(c.features, c.seq_hidden, c.seq_layers, 3, c.seq_dropout)
        self.image_encoder = VGGEncoder(c.in_channels, c.image_width, c.image_stages)
        self.in_channels = c.in_channels
        self.feature_dim = self.seq_encoder.feature_dim + self.image_encoder.feature_dim
        self.head = ClassifierHead(self.feature_dim, num_classes, c.head_hidden, c.dropout)

    def encoder(self, points: torch.Tensor, lengths: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Fused features (B, feature_dim)."""
        seq = self.seq_encoder(points, lengths)  # (B, F_seq)
        img = self.image_encoder(image)  # (B, F_img)
        return torch.cat([seq, img], dim=1)  # (B, F_seq + F_img)

    def forward(self, points=None, lengths=None, image=None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from padded ``points`` ``(B, T, 3)`` with ``lengths`` and their ``image`` renders."""
        check_sequence_input(points, lengths)
        check_image_input(image, self.in_channels)
        if image.shape[0] != points.shape[0]:
            raise ValueError(f"points and image disagree on the batch size: {points.shape[0]} vs {image.shape[0]}")
        return self.head(self.encoder(points, lengths, image))  # (B, num_classes)
