"""Imports every model module so that its ``@register_model`` runs (see :mod:`models.registry`)."""

from . import (  # noqa: F401
    emnist_cnn,
    extexify_cnn,
    fusion,
    gru,
    lenet5,
    lstm,
    mlp,
    softmax,
    tcn,
    vgg_gap,
)
