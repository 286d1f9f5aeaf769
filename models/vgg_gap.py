"""A modern VGG-style CNN with global average pooling, in the spirit of HMS-VGGNet
(the state of the art on CROHME isolated symbols): small 3x3 convs, 1x1 convs between
them, BatchNorm, and global average pooling instead of big fully connected layers.

``stages`` stages; stage i has ``width * 2**i`` channels and is
3x3 conv -> 1x1 conv (half the channels, a bottleneck) -> 3x3 conv, each followed by
BatchNorm and ReLU; 2x2 max-pool between stages; then global average pooling,
dropout and a linear layer. Any input side >= 2**(stages - 1) works.

With ``residual=True`` each stage is a residual block instead: the same three convs,
the last one's ReLU moved after the sum with a shortcut (identity, or a 1x1 conv and
BatchNorm where the channel count changes), as in ResNet's bottleneck-free blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .common import ClassifierHead, ImageModel, check_int, check_prob
from .registry import register_model


@dataclass
class VGGGAPConfig:
    in_channels: int = 1  #: image planes C (rendering channels)
    width: int = 32  #: channels of the first stage; stage i has width * 2**i
    stages: int = 4  #: conv stages, with a 2x2 max-pool between consecutive ones (32 -> 16 -> 8 -> 4)
    dropout: float = 0.3  #: dropout on the pooled features (and in the head MLP, if any)
    head_hidden: int = 0  #: hidden units of the head MLP; 0 = a single linear layer
    residual: bool = False  #: a shortcut around each stage's three convs (ResNet-style); False = plain VGG stages
    cosine_scale: float = 0.0  #: when positive, a cosine classifier (unit embedding and class rows, logits = scale x cosine); 0 = linear

    def __post_init__(self):
        check_int("in_channels", self.in_channels)
        check_int("width", self.width, minimum=2)
        check_int("stages", self.stages)
        check_prob("dropout", self.dropout)
        check_int("head_hidden", self.head_hidden, minimum=0)
        if not isinstance(self.residual, bool):
            raise TypeError(f"residual must be a bool, got {self.residual!r}")
        if isinstance(self.cosine_scale, bool) or not isinstance(self.cosine_scale, (int, float)) or not 0 <= self.cosine_scale < 1e4:
            raise ValueError(f"cosine_scale must be a number in [0, 1e4) (0 = a plain linear classifier), got {self.cosine_scale!r}")


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """(B, c_in, H, W) -> kxk conv (same padding, no bias) -> BatchNorm -> ReLU -> (B, c_out, H, W)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualStage(nn.Module):
    """(B, c_in, H, W) -> relu(convs(x) + shortcut(x)) -> (B, c_out, H, W); convs: 3x3, 1x1 to half, 3x3 (last without ReLU)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(c_in, c_out, 3),
            conv_bn_relu(c_out, c_out // 2, 1),
            nn.Conv2d(c_out // 2, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))  # (B, c_out, H, W)


class VGGEncoder(nn.Module):
    """image (B, C, H, W) -> VGG stages with 1x1 bottlenecks -> global average pool (B, width * 2**(stages-1))."""

    def __init__(self, in_channels: int, width: int, stages: int, residual: bool = False):
        super().__init__()
        layers, c_in = [], in_channels
        for i in range(stages):
            c = width * 2**i
            if i > 0:
                layers.append(nn.MaxPool2d(2))  # (B, c_in, H/2, W/2)
            if residual:
                layers.append(ResidualStage(c_in, c))
            else:
                layers += [conv_bn_relu(c_in, c, 3), conv_bn_relu(c, c // 2, 1), conv_bn_relu(c // 2, c, 3)]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels
        self.feature_dim = c_in

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.trunk(image)  # (B, C_last, H / 2**(stages-1), W / 2**(stages-1))
        return self.pool(x).flatten(1)  # (B, C_last)


@register_model("vgg_gap", VGGGAPConfig)
class VGGGAP(ImageModel):
    """VGG-style CNN (HMS-VGGNet spirit): 3x3/1x1/3x3 conv-BN-ReLU stages, max-pool, GAP, linear."""

    def __init__(self, config: VGGGAPConfig, num_classes: int):
        super().__init__()
        c = config
        self.in_channels = c.in_channels
        self.encoder = VGGEncoder(c.in_channels, c.width, c.stages, c.residual)
        self.feature_dim = self.encoder.feature_dim
        self.head = ClassifierHead(self.feature_dim, num_classes, c.head_hidden, c.dropout, c.cosine_scale)
