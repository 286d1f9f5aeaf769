"""The popular EMNIST/Kaggle CNN: two conv blocks, then an MLP head, Xavier init.

Each block is conv3x3 -> ReLU -> conv3x3 -> BatchNorm -> ReLU -> maxpool2 -> dropout
(the ReLU after the first conv keeps the two convs from collapsing into one linear
map). The flattened feature map feeds the MLP head, so the input size is fixed by
``image_size`` (a multiple of 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .common import ImageModel, check_int, check_prob
from .registry import register_model


@dataclass
class EMNISTCNNConfig:
    in_channels: int = 1  #: image planes C (rendering channels)
    image_size: int = 32  #: side of the square input image in pixels (a multiple of 4)
    width: int = 32  #: channels of the first block; the second block has twice as many
    hidden: int = 256  #: units of the MLP head's hidden layer
    dropout: float = 0.28  #: dropout after each conv block and in the head

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        check_int("image_size", self.image_size, minimum=4)
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2x2 max-pools), got {self.image_size}")
        check_int("width", self.width)
        check_int("hidden", self.hidden)
        check_prob("dropout", self.dropout)


def conv_block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    """(B, c_in, H, W) -> conv-ReLU-conv-BN-ReLU-maxpool-dropout -> (B, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(dropout),
    )  # fmt: skip


@register_model("emnist_cnn", EMNISTCNNConfig)
class EMNISTCNN(ImageModel):
    """EMNIST-style CNN: two conv-conv-BN-ReLU-pool-dropout blocks, MLP head, Xavier init."""

    def __init__(self, config: EMNISTCNNConfig, num_classes: int):
        super().__init__()
        c = config
        self.in_channels, self.image_size = c.in_channels, c.image_size
        side = c.image_size // 4
        self.encoder = nn.Sequential(
            conv_block(c.in_channels, c.width, c.dropout),  # (B, W, S/2, S/2)
            conv_block(c.width, 2 * c.width, c.dropout),  # (B, 2W, S/4, S/4)
            nn.Flatten(),  # (B, 2W * (S/4)^2)
        )
        self.feature_dim = 2 * c.width * side * side
        self.head = nn.Sequential(  # the encoder already ends in dropout
            nn.Linear(self.feature_dim, c.hidden), nn.ReLU(inplace=True), nn.Dropout(c.dropout),  # (B, hidden)
            nn.Linear(c.hidden, num_classes),  # (B, K)
        )  # fmt: skip
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
