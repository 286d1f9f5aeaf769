"""Bidirectional GRU on the raw points (packed, so padding is never read)."""

from __future__ import annotations

from dataclasses import dataclass

from .common import FEATURES, ClassifierHead, RNNEncoder, SequenceModel, check_choice, check_int, check_prob
from .registry import register_model


@dataclass
class GRUConfig:
    features: str = "both"  #: "points" [x, y, pen_up], "deltas" [dx, dy, pen_up] (stroke-3) or "both" [x, y, dx, dy, pen_up]
    proj: int = 64  #: width of the per-point input projection (linear + GELU) fed to the GRU
    hidden: int = 128  #: GRU units per direction
    layers: int = 2  #: stacked bidirectional GRU layers
    dropout: float = 0.2  #: dropout between GRU layers and before the head
    head_hidden: int = 0  #: hidden units of the head MLP; 0 = a single linear layer

    def __post_init__(self):
        check_choice("features", self.features, FEATURES)
        check_int("proj", self.proj)
        check_int("hidden", self.hidden)
        check_int("layers", self.layers)
        check_prob("dropout", self.dropout)
        check_int("head_hidden", self.head_hidden, minimum=0)


@register_model("gru", GRUConfig)
class GRU(SequenceModel):
    """Bidirectional GRU over the points; head on [last fwd state, last bwd state, mean output]."""

    def __init__(self, config: GRUConfig, num_classes: int):
        super().__init__()
        c = config
        self.encoder = RNNEncoder("gru", c.features, c.proj, c.hidden, c.layers, c.dropout)  # -> (B, 4H)
        self.feature_dim = self.encoder.feature_dim
        self.head = ClassifierHead(self.feature_dim, num_classes, c.head_hidden, c.dropout)
