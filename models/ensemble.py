"""Late fusion: separately trained members, their log-probabilities averaged with weights.

``forward`` runs every member on the input it reads (points and lengths for the
sequence members, the render for the image members, both for fusion members) and
returns

    s = sum_i w_i * log_softmax(logits_i)            (B, num_classes)

as its logits. ``softmax(s)`` is then the normalized weighted *geometric* mixture
``prod_i p_i ** w_i / Z`` of the members' distributions (a product of experts), not
the arithmetic mean ``sum_i w_i p_i``: a class any member rules out stays unlikely.
With weights summing to 1, as :func:`strokes.training.ensemble.fit_weights` fits
them, ``s`` is on the scale of one member's log-probabilities.

The members live under ``members.<i>.`` in the state dict, so a checkpoint
rebuilds the whole ensemble from its config alone (``members`` names each
member's model and config). :func:`strokes.training.ensemble.build_ensemble`
makes such a checkpoint from trained member checkpoints; built with its defaults
(a GRU and a VGG-GAP), a ``late_fusion`` model trains its members jointly.

The ensemble's ``input_kind`` is ``"both"``: it always takes points, lengths and
an image, computed once per ink. The sequence members share one normalization
pipeline and the image members one pipeline and render config; a checkpoint whose
two pipelines differ records the image members' as its ``image_pipeline``
(:mod:`strokes.training.checkpoint`), and the image is rendered from that.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .common import check_image_input, check_int, check_sequence_input
from .registry import config_fields, create_model, register_model

#: The default members, the zoo's sequence GRU and image VGG-GAP, each with its own defaults.
DEFAULT_MEMBERS = ({"name": "gru", "config": {}}, {"name": "vgg_gap", "config": {}})


def default_members() -> list:
    """A fresh copy of :data:`DEFAULT_MEMBERS`, as a list."""
    return copy.deepcopy(list(DEFAULT_MEMBERS))


#: The keys a member spec may have.
MEMBER_KEYS = ("name", "config", "num_classes")


@dataclass
class LateFusionConfig:
    members: list = field(default_factory=default_members)  #: the members, each a dict of name (a model), config (its fields) and optionally num_classes
    weights: list = field(default_factory=list)  #: one weight >= 0 per member, applied to its log-probs as given; [] = 1/M each
    in_channels: int = 1  #: image planes C that image-reading members take; a member config without in_channels gets it

    def __post_init__(self):
        if isinstance(self.members, (str, bytes, dict)) or not isinstance(self.members, (list, tuple)):
            raise TypeError(f"members must be a list of member specs, got {type(self.members).__name__}")
        if not self.members:
            raise ValueError("late_fusion needs at least one member: members=[{'name': ..., 'config': {...}}, ...]")
        for i, spec in enumerate(self.members):
            if not isinstance(spec, dict):
                raise TypeError(f"members[{i}] must be a dict {{'name', 'config', 'num_classes'}}, got {type(spec).__name__}")
            unknown = sorted(set(spec) - set(MEMBER_KEYS))
            if unknown:
                raise ValueError(f"members[{i}] has unknown key(s) {unknown}; a member spec takes {list(MEMBER_KEYS)}")
            if not isinstance(spec.get("name"), str):
                raise ValueError(f"members[{i}] needs a 'name' (a registered model name), got {spec.get('name')!r}")
            if not isinstance(spec.get("config", {}), dict):
                raise TypeError(f"members[{i}]['config'] must be a dict of config fields, got {type(spec['config']).__name__}")
            if "num_classes" in spec:
                check_int(f"members[{i}]['num_classes']", spec["num_classes"], minimum=2)
        if isinstance(self.weights, (str, bytes, dict)) or not isinstance(self.weights, (list, tuple)):
            raise TypeError(f"weights must be a list of numbers, got {type(self.weights).__name__}")
        if self.weights:
            if len(self.weights) != len(self.members):
                raise ValueError(f"weights has {len(self.weights)} entries for {len(self.members)} members; give one per member or []")
            for i, w in enumerate(self.weights):
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                    raise ValueError(f"weights[{i}] must be a finite number >= 0, got {w!r}")
            if not sum(self.weights) > 0:
                raise ValueError(f"weights must not all be 0, got {list(self.weights)}")
        check_int("in_channels", self.in_channels)


def member_config(spec: dict, in_channels: int, index: int) -> dict:
    """The config overrides member ``index`` is built with: its own, plus ``in_channels`` if it takes one and sets none.

    Raises ValueError when the member's model is unknown or it reads another number of image planes.
    """
    try:
        fields = config_fields(spec["name"])
    except ValueError as exc:
        raise ValueError(f"late_fusion members[{index}]: {exc}") from None
    config = dict(spec.get("config", {}))
    if "in_channels" in fields:
        given = config.setdefault("in_channels", in_channels)
        if given != in_channels:
            raise ValueError(
                f"late_fusion members[{index}] ({spec['name']}) reads {given}-plane images but the ensemble's "
                f"in_channels is {in_channels}; every member sees the same render"
            )
    return config


class LogProbMixture(nn.Module):
    """Head: stacked member log-probabilities (B, M * C) -> their weighted sum (B, C).

    The weights are a buffer kept out of the state dict (they come from the config).
    A member of weight 0 contributes exactly 0, even where its log-probability is -inf.
    """

    def __init__(self, weights: list[float], num_classes: int):
        super().__init__()
        self.num_members = len(weights)
        self.num_classes = num_classes
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32), persistent=False)  # (M,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        log_probs = features.unflatten(1, (self.num_members, self.num_classes))  # (B, M, C)
        w = self.weights.to(log_probs.dtype).view(1, -1, 1)  # (1, M, 1)
        terms = torch.where(w > 0, log_probs * w, 0.0)  # (B, M, C): 0 * -inf would be NaN
        return terms.sum(1)  # (B, C)


@register_model("late_fusion", LateFusionConfig)
class LateFusion(nn.Module):
    """Late fusion: sum_i w_i * log_softmax(member_i logits), members trained separately (a geometric mixture)."""

    input_kind = "both"

    def __init__(self, config: LateFusionConfig, num_classes: int):
        super().__init__()
        c = config
        members = []
        for i, spec in enumerate(c.members):
            n = spec.get("num_classes", num_classes)
            if n != num_classes:
                raise ValueError(
                    f"late_fusion members[{i}] ({spec['name']}) has {n} classes but the ensemble has {num_classes}; "
                    "members must share one vocabulary"
                )
            try:
                members.append(create_model(spec["name"], num_classes, **member_config(spec, c.in_channels, i)))
            except TypeError as exc:
                raise ValueError(f"late_fusion members[{i}] ({spec['name']}): {exc}") from None
        self.members = nn.ModuleList(members)
        self.member_kinds = [m.input_kind for m in members]
        self.in_channels = c.in_channels
        weights = [float(w) for w in c.weights] if c.weights else [1.0 / len(members)] * len(members)
        self.feature_dim = len(members) * num_classes
        self.head = LogProbMixture(weights, num_classes)

    def _member_logits(self, member: nn.Module, kind: str, points, lengths, image) -> torch.Tensor:
        if kind == "sequence":
            return member(points=points, lengths=lengths)  # (B, C)
        if kind == "image":
            return member(image=image)  # (B, C)
        return member(points=points, lengths=lengths, image=image)  # (B, C)

    def member_log_probs(self, i: int, points, lengths, image) -> torch.Tensor:
        """Member ``i``'s log-probabilities (B, C), given what every member reads."""
        return torch.log_softmax(self._member_logits(self.members[i], self.member_kinds[i], points, lengths, image), dim=1)

    def encoder(self, points: torch.Tensor, lengths: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The members' log-probabilities side by side (B, M * C), member i in columns [i * C, (i + 1) * C)."""
        outs = [self.member_log_probs(i, points, lengths, image) for i in range(len(self.members))]  # M x (B, C)
        return torch.cat(outs, dim=1)  # (B, M * C)

    def forward(self, points=None, lengths=None, image=None) -> torch.Tensor:
        """Logits ``(B, num_classes)``: the weighted sum of the members' log-probabilities.

        Takes padded ``points`` ``(B, T, 3)`` with ``lengths`` ``(B,)`` and their ``image`` renders
        ``(B, C, H, W)``; each member reads what its own ``input_kind`` needs.
        """
        check_sequence_input(points, lengths)
        check_image_input(image, self.in_channels)
        if image.shape[0] != points.shape[0]:
            raise ValueError(f"points and image disagree on the batch size: {points.shape[0]} vs {image.shape[0]}")
        return self.head(self.encoder(points, lengths, image))  # (B, num_classes)
