"""An extexify-style CNN: stacked 3x3 conv + ReLU + BatchNorm blocks, downsampling by
stride-2 convolutions (no pooling layers), global average pooling, one linear layer.

Global average pooling makes any input size work (one pixel per downsampling, at least).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .common import ImageModel, check_int, check_int_tuple, check_prob
from .registry import register_model


@dataclass
class ExtexifyCNNConfig:
    in_channels: int = 1  #: image planes C (rendering channels)
    channels: tuple[int, ...] = (32, 64, 128, 192)  #: channels per block; blocks 2+ open with a stride-2 conv (32->16->8->4)
    convs_per_block: int = 2  #: 3x3 conv + ReLU + BatchNorm units per block
    dropout: float = 0.2  #: dropout before the linear layer

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        self.channels = check_int_tuple("channels", self.channels)
        check_int("convs_per_block", self.convs_per_block)
        check_prob("dropout", self.dropout)


def conv_relu_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 conv (same padding, ``stride``) -> ReLU -> BatchNorm: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out))


@register_model("extexify_cnn", ExtexifyCNNConfig)
class ExtexifyCNN(ImageModel):
    """Extexify-style CNN: 3x3 conv-ReLU-BN blocks, stride-2 downsampling, GAP, linear."""

    def __init__(self, config: ExtexifyCNNConfig, num_classes: int):
        super().__init__()
        c = config
        self.in_channels = c.in_channels
        layers, c_in = [], c.in_channels
        for i, c_out in enumerate(c.channels):
            for j in range(c.convs_per_block):
                layers.append(conv_relu_bn(c_in, c_out, stride=2 if i > 0 and j == 0 else 1))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, C_last, h, w) -> (B, C_last)
        self.encoder = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c_in, num_classes))  # (B, K)
