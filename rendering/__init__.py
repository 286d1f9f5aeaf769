"""Rasterization of normalized ink into images for CNNs, and augmentation.

See :mod:`rendering.raster` for the geometry and the channels.
"""

from .raster import CHANNELS, RenderConfig, rasterize, rasterize_batch, rasterize_dataset, rasterize_torch, render_image_dataset

__all__ = ["CHANNELS", "RenderConfig", "rasterize", "rasterize_batch", "rasterize_dataset", "rasterize_torch", "render_image_dataset"]
