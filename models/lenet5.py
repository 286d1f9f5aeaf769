"""LeNet-5 (LeCun et al. 1998) as in the classic tutorials, for 32x32 input.

conv5x5(6) -> pool2 -> conv5x5(16) -> pool2 -> fc120 -> fc84 -> classes. The
activation is ReLU by default (modern tutorials), tanh on request (closer to the
original); the pooling is max by default, average on request (the original's
subsampling). Other sizes work through ``image_size`` (at least 16 pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .common import ImageModel, check_choice, check_int
from .registry import register_model


@dataclass
class LeNet5Config:
    in_channels: int = 1  #: image planes C (rendering channels)
    image_size: int = 32  #: side of the square input image in pixels (>= 16)
    activation: str = "relu"  #: "relu" or "tanh" after every conv and hidden fc layer
    pool: str = "max"  #: "max" or "avg" 2x2 pooling after each conv

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        check_int("image_size", self.image_size, minimum=16)
        check_choice("activation", self.activation, ("relu", "tanh"))
        check_choice("pool", self.pool, ("max", "avg"))


@register_model("lenet5", LeNet5Config)
class LeNet5(ImageModel):
    """LeNet-5: conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-linear (ReLU, max pool by default)."""

    def __init__(self, config: LeNet5Config, num_classes: int):
        super().__init__()
        c = config
        self.in_channels, self.image_size = c.in_channels, c.image_size
        act = nn.ReLU if c.activation == "relu" else nn.Tanh
        pool = nn.MaxPool2d if c.pool == "max" else nn.AvgPool2d
        side = ((c.image_size - 4) // 2 - 4) // 2  # 5 for 32x32 input
        self.encoder = nn.Sequential(
            nn.Conv2d(c.in_channels, 6, 5), act(), pool(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), act(), pool(2),  # (B, 16, 5, 5)
            nn.Flatten(),  # (B, 400)
            nn.Linear(16 * side * side, 120), act(),  # (B, 120)
            nn.Linear(120, 84), act(),  # (B, 84)
        )  # fmt: skip
        self.feature_dim = 84
        self.head = nn.Linear(84, num_classes)  # (B, K)
