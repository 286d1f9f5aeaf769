"""Multinomial logistic regression on the flattened image (the classic MNIST softmax tutorial)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .common import ImageModel, check_int
from .registry import register_model


@dataclass
class SoftmaxConfig:
    in_channels: int = 1  #: image planes C (rendering channels)
    image_size: int = 32  #: side of the square input image in pixels

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        check_int("image_size", self.image_size)


@register_model("softmax", SoftmaxConfig)
class Softmax(ImageModel):
    """Softmax regression: one linear layer on the flattened pixels."""

    def __init__(self, config: SoftmaxConfig, num_classes: int):
        super().__init__()
        self.in_channels, self.image_size = config.in_channels, config.image_size
        self.encoder = nn.Flatten()  # (B, C, S, S) -> (B, C*S*S)
        self.feature_dim = config.in_channels * config.image_size**2
        self.head = nn.Linear(self.feature_dim, num_classes)  # (B, K) logits; softmax lives in the loss
