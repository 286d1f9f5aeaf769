"""Augment images with the point augmentations of :mod:`rendering.augment`.

Image-only data (HASYv2) has no points to distort, but the same random
transforms apply to its pixels: each output pixel ``q`` (its centre, in the
unit square) is moved by the augmentation, ``q' = T(q)``, and the image is
sampled there (bilinear, zeros outside). The picture is thereby warped by
``T⁻¹``, which the augmentations draw from nearly the same distribution as
``T``: rotations, shears and shifts are symmetric about the identity and
elastic fields about zero, while a scale range ``(lo, hi)`` becomes
``(1 / hi, 1 / lo)`` (``(0.9, 1.1)``: about ``(0.91, 1.11)``). So one
augmentation config means nearly the same thing for strokes and for images. :class:`rendering.augment.Jitter` moves every
pixel's sampling point independently; at its default size (0.004 of the
square, an eighth of a pixel at 32×32) that only softens edges slightly.
"""

from __future__ import annotations

__all__ = ["warp_images"]


def warp_images(images, augment, *, generator):
    """Randomly warp a batch of images with an :class:`rendering.augment.Augment`.

    Args:
        images: ``(B, C, S, S)`` float tensor, ink bright.
        augment: the augmentation; each image draws its own parameters.
        generator: a ``torch.Generator`` on the images' device (explicit, seeded).

    Returns:
        A new ``(B, C, S, S)`` tensor; the input is not modified.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be a (B, C, S, S) tensor, got {getattr(images, 'shape', type(images).__name__)}")
    b, c, s, _ = images.shape
    augment = augment.geometric()  # stroke order and direction mean nothing to pixels
    if b == 0 or not augment.steps:
        return images.clone()
    centres = (torch.arange(s, device=images.device, dtype=torch.float32) + 0.5) / s  # (S,)
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")  # (S, S) each, row = y
    grid = torch.stack([xx, yy, torch.zeros_like(xx)], dim=-1).reshape(1, s * s, 3).expand(b, -1, -1)  # (B, S*S, 3)
    moved = augment(grid.contiguous(), generator=generator)[..., :2]  # (B, S*S, 2) in the unit square
    moved = (moved * 2 - 1).reshape(b, s, s, 2)  # grid_sample wants [-1, 1], x first
    return F.grid_sample(images.float(), moved, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, S, S)
