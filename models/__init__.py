"""The model zoo: sequence, image and fusion classifiers behind one interface.

See :mod:`models.registry` for the interface every model follows.

Example:
    >>> import models
    >>> models.list_models()                     # every registered name
    >>> net = models.create_model("vgg_gap", num_classes=101, width=48)
"""

from .registry import INPUT_KINDS, config_fields, create_model, default_config, list_models, model_entry, register_model
from . import ensemble  # noqa: F401, E402  (registers late_fusion; the other models register through models.zoo)

__all__ = ["INPUT_KINDS", "config_fields", "create_model", "default_config", "list_models", "model_entry", "register_model"]
