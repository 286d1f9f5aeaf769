"""Multilayer perceptron on the flattened image: one or two hidden ReLU layers with dropout."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .common import ImageModel, check_int, check_prob
from .registry import register_model


@dataclass
class MLPConfig:
    in_channels: int = 1  #: image planes C (rendering channels)
    image_size: int = 32  #: side of the square input image in pixels
    hidden: int = 512  #: units of the first hidden layer
    hidden2: int = 256  #: units of the second hidden layer; 0 = only one hidden layer
    dropout: float = 0.3  #: dropout after each hidden layer

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        check_int("image_size", self.image_size)
        check_int("hidden", self.hidden)
        check_int("hidden2", self.hidden2, minimum=0)
        check_prob("dropout", self.dropout)


@register_model("mlp", MLPConfig)
class MLP(ImageModel):
    """MLP: flattened pixels -> hidden ReLU layer(s) with dropout -> linear."""

    def __init__(self, config: MLPConfig, num_classes: int):
        super().__init__()
        c = config
        self.in_channels, self.image_size = c.in_channels, c.image_size
        layers = [nn.Flatten(), nn.Linear(c.in_channels * c.image_size**2, c.hidden), nn.ReLU(inplace=True)]
        layers.append(nn.Dropout(c.dropout))
        self.feature_dim = c.hidden
        if c.hidden2:
            layers += [nn.Linear(c.hidden, c.hidden2), nn.ReLU(inplace=True), nn.Dropout(c.dropout)]
            self.feature_dim = c.hidden2
        self.encoder = nn.Sequential(*layers)  # (B, C, S, S) -> (B, feature_dim)
        self.head = nn.Linear(self.feature_dim, num_classes)  # (B, K)
