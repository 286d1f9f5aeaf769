"""The model registry: ``@register_model``, ``create_model`` and ``list_models``.

Every model in the zoo shares one interface:

* it is a ``torch.nn.Module`` built as ``Model(config, num_classes)`` from a
  ``@dataclass`` config (one per model, a commented default on every field);
* it declares ``input_kind``: ``"sequence"``, ``"image"`` or ``"both"``;
* ``forward(points=None, lengths=None, image=None)`` returns logits
  ``(B, num_classes)``, where ``points`` is a padded ``(B, T, 3)`` float batch of
  normalized points-3 ``[x, y, pen_up]`` (rows past ``lengths`` are padding and
  must not change the result), ``lengths`` is ``(B,)`` int64, and ``image`` is
  ``(B, C, H, W)`` from :mod:`rendering`. A model only reads what its
  ``input_kind`` needs. Sequence models that want stroke-3 deltas compute them
  from the points themselves (``config.features``).
* ``model.config`` is its config instance and ``model.name`` its registered name,
  so a checkpoint can rebuild it with ``create_model(name, num_classes, **asdict(config))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

INPUT_KINDS = ("sequence", "image", "both")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model, as :func:`models.model_entry` returns it."""

    name: str
    cls: type  #: the nn.Module class
    config_cls: type  #: its @dataclass config
    input_kind: str  #: "sequence", "image" or "both"
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config: type, description: str = "") -> Callable[[type], type]:
    """Class decorator: register ``cls`` under ``name`` with its config dataclass."""

    def deco(cls: type) -> type:
        kind = getattr(cls, "input_kind", None)
        if kind not in INPUT_KINDS:
            raise ValueError(f"{cls.__name__}.input_kind must be one of {INPUT_KINDS}, got {kind!r}")
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"config of {name} must be a dataclass")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        doc = description or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ModelEntry(name, cls, config, kind, doc)
        cls.name = name
        return cls

    return deco


def _entry(name: str) -> ModelEntry:
    _load_zoo()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models(input_kind: str | None = None) -> list[str]:
    """Registered model names, sorted; optionally only those taking ``input_kind``."""
    _load_zoo()
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    return sorted(n for n, e in _REGISTRY.items() if input_kind is None or e.input_kind == input_kind)


def model_entry(name: str) -> ModelEntry:
    """The registry entry (class, config class, input kind, description) of ``name``."""
    return _entry(name)


def config_fields(name: str) -> set[str]:
    """The names of the config fields of model ``name`` (what ``create_model`` overrides may set)."""
    return {f.name for f in dataclasses.fields(_entry(name).config_cls)}


def default_config(name: str, **overrides: Any):
    """The config dataclass of ``name`` with ``overrides`` applied (unknown fields raise)."""
    entry = _entry(name)
    fields = config_fields(name)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; valid: {sorted(fields)}")
    return entry.config_cls(**overrides)


def create_model(name: str, num_classes: int, **overrides: Any):
    """Build model ``name`` for ``num_classes`` classes, its config defaults updated by ``overrides``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    config = default_config(name, **overrides)
    model = _entry(name).cls(config, num_classes)
    model.config = config
    model.num_classes = num_classes
    return model


_LOADED = False


def _load_zoo() -> None:
    """Import the model modules once, so that their decorators run."""
    global _LOADED
    if not _LOADED:
        from . import zoo  # noqa: F401  (an import error propagates; the next call retries)

        _LOADED = True
