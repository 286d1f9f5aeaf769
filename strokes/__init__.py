"""strokes: recognize handwritten LaTeX symbols from pen strokes, and measure how.

Quick start::

    import strokes
    ds = strokes.load("../shared/data/crohme")        # InkML, .sql dump, .json, .npz, postgresql://
    pts = strokes.normalize(ds[0].strokes)            # (n, 3) [x, y, pen_up] in the unit square
    sp = strokes.split(ds, mode="writer", seed=0)     # writer-disjoint train/val/test
    strokes.recognize(ink)                            # [(label, probability), ...] best first
    strokes.teach("\\heartsuit", [ink1, ink2])        # taught symbols: recognize(ink, user_symbols=PATH)

Stroke formats are defined once, in :mod:`strokes.formats`.
"""

from __future__ import annotations

import logging

from .dataset import Sample, Skipped, StrokeDataset
from .images import ImageDataset, ImageSample
from .ink import InkError, as_ink
from .io import FORMATS, infer_format, load, save
from .normalize import Pipeline, default_pipeline, normalize
from .recognizer import recognize, recognize_batch
from .teach import TeachResult, teach
from .splits import Split, kfold, split

from ._version import __version__

__all__ = [
    "recognize",
    "recognize_batch",
    "teach",
    "TeachResult",
    "load",
    "save",
    "infer_format",
    "FORMATS",
    "StrokeDataset",
    "ImageDataset",
    "ImageSample",
    "Sample",
    "Skipped",
    "normalize",
    "Pipeline",
    "default_pipeline",
    "as_ink",
    "InkError",
    "split",
    "kfold",
    "Split",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
