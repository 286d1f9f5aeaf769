"""Fusion: a sequence encoder on the points and an image encoder on the render,
their features concatenated -> dropout -> MLP head.

The encoders are the zoo's own: :class:`models.common.RNNEncoder` (bidirectional
GRU, or LSTM), :class:`models.tcn.TCNEncoder` and :class:`models.vgg_gap.VGGEncoder`.
The GRU is the default and the one measured in ``benchmarks/RESULTS.md``; the LSTM
branch trains faster under bf16 autocast on the CPU (PyTorch's CPU LSTM has a bf16
kernel, its GRU does not; ``benchmarks/bench_fusion_step.py``).

Trained jointly, the stronger branch tends to crowd out the weaker one (issue 15).
Two knobs counter that, both off by default:

* ``aux_weight`` > 0 adds one linear classifier per branch (sequence features ->
  logits, image features -> logits). :meth:`Fusion.training_outputs` returns their
  logits next to the main ones, and the Trainer adds
  ``aux_weight * mean(CE(aux_i))`` to the loss, so each branch must classify on its
  own. ``forward`` (inference, export) still returns the main logits only; the
  extra heads are in the state dict only when ``aux_weight`` > 0.
* ``branch_dropout`` = p zeroes, in training, one branch's features of a sample with
  probability p (the sequence or the image branch, p / 2 each), so the head must
  also decide from either branch alone.
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
    check_weight,
)
from .registry import register_model
from .tcn import TCNEncoder
from .vgg_gap import VGGEncoder


@dataclass
class FusionConfig:
    sequence_encoder: str = "gru"  #: "gru" or "lstm" (bidirectional, 4 * seq_hidden features) or "tcn" (a TCN trunk, 2 * seq_hidden)
    features: str = "both"  #: "points" [x, y, pen_up], "deltas" [dx, dy, pen_up] (stroke-3) or "both" [x, y, dx, dy, pen_up]
    seq_hidden: int = 96  #: GRU / LSTM units per direction, or TCN channels
    seq_layers: int = 2  #: GRU / LSTM layers, or TCN residual blocks (dilations 1, 2, 4, ...; use ~6 for the TCN)
    seq_proj: int = 64  #: GRU / LSTM per-point input projection width (unused by the TCN)
    seq_dropout: float = 0.1  #: dropout inside the sequence encoder
    in_channels: int = 1  #: image planes C (rendering channels)
    image_width: int = 24  #: channels of the first VGG stage; stage i has image_width * 2**i
    image_stages: int = 4  #: VGG stages (max-pool between them)
    dropout: float = 0.3  #: dropout on the concatenated features and in the head
    head_hidden: int = 256  #: hidden units of the head MLP; 0 = a single linear layer
    aux_weight: float = 0.0  #: weight of the per-branch auxiliary classification losses; 0 = off (no extra heads)
    branch_dropout: float = 0.0  #: chance, in training only, of zeroing one branch's features (either, p / 2 each); 0 = off

    def __post_init__(self):
        check_choice("sequence_encoder", self.sequence_encoder, ("gru", "lstm", "tcn"))
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
        self.aux_weight = check_weight("aux_weight", self.aux_weight)
        self.branch_dropout = check_prob("branch_dropout", self.branch_dropout)


@register_model("fusion", FusionConfig)
class Fusion(nn.Module):
    """Fusion: [sequence encoder (GRU, LSTM or TCN), VGG image encoder] features -> MLP head."""

    input_kind = "both"

    def __init__(self, config: FusionConfig, num_classes: int):
        super().__init__()
        c = config
        if c.sequence_encoder in ("gru", "lstm"):
            self.seq_encoder = RNNEncoder(c.sequence_encoder, c.features, c.seq_proj, c.seq_hidden, c.seq_layers, c.seq_dropout)
        else:
            self.seq_encoder = TCNEncoder(c.features, c.seq_hidden, c.seq_layers, 3, c.seq_dropout)
        self.image_encoder = VGGEncoder(c.in_channels, c.image_width, c.image_stages)
        self.in_channels = c.in_channels
        self.feature_dim = self.seq_encoder.feature_dim + self.image_encoder.feature_dim
        self.head = ClassifierHead(self.feature_dim, num_classes, c.head_hidden, c.dropout)
        self.aux_weight = c.aux_weight  # read by the Trainer (see training_outputs)
        self.branch_dropout = c.branch_dropout
        if c.aux_weight > 0:  # only then: checkpoints of models without them keep loading
            self.seq_aux_head = ClassifierHead(self.seq_encoder.feature_dim, num_classes, 0, c.dropout)
            self.image_aux_head = ClassifierHead(self.image_encoder.feature_dim, num_classes, 0, c.dropout)

    def encoder(self, points: torch.Tensor, lengths: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Fused features (B, feature_dim)."""
        seq = self.seq_encoder(points, lengths)  # (B, F_seq)
        img = self.image_encoder(image)  # (B, F_img)
        return torch.cat([seq, img], dim=1)  # (B, F_seq + F_img)

    def _drop_branches(self, seq: torch.Tensor, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch dropout (training only): per sample, zero the sequence features with probability p / 2,
        else the image features with probability p / 2, and scale what is kept by 1 / (1 - p / 2) so each
        branch's expected features equal those at evaluation. Draws from torch's global RNG, as
        ``nn.Dropout`` does (the Trainer seeds it).
        """
        p = self.branch_dropout
        if not self.training or p == 0:
            return seq, img
        u = torch.rand(seq.shape[0], 1, device=seq.device)  # (B, 1)
        drop_seq = u < p / 2  # (B, 1)
        drop_img = (u >= p / 2) & (u < p)  # (B, 1): never both
        keep = 1.0 / (1.0 - p / 2)
        seq = torch.where(drop_seq, 0.0, seq * keep)  # (B, F_seq)
        img = torch.where(drop_img, 0.0, img * keep)  # (B, F_img)
        return seq, img

    def training_outputs(self, points=None, lengths=None, image=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(main logits (B, K), aux logits)`` for training.

        ``aux logits`` is ``[sequence-branch logits (B, K), image-branch logits (B, K)]`` when
        ``aux_weight`` > 0, else ``[]``. The branch heads read each branch's features before
        branch dropout; the main logits are what :meth:`forward` returns.
        """
        return self._outputs(points, lengths, image, with_aux=True)

    def forward(self, points=None, lengths=None, image=None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from padded ``points`` ``(B, T, 3)`` with ``lengths`` and their ``image`` renders."""
        return self._outputs(points, lengths, image, with_aux=False)[0]  # (B, num_classes)

    def _outputs(self, points, lengths, image, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_sequence_input(points, lengths)
        check_image_input(image, self.in_channels)
        if image.shape[0] != points.shape[0]:
            raise ValueError(f"points and image disagree on the batch size: {points.shape[0]} vs {image.shape[0]}")
        seq = self.seq_encoder(points, lengths)  # (B, F_seq)
        img = self.image_encoder(image)  # (B, F_img)
        aux = [self.seq_aux_head(seq), self.image_aux_head(img)] if with_aux and self.aux_weight > 0 else []  # 2 x (B, K)
        seq, img = self._drop_branches(seq, img)
        return self.head(torch.cat([seq, img], dim=1)), aux  # (B, K), aux
