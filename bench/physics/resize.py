"""Bicubic resizing: the super-resolution forward operator and its inverse-ish initialiser.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16)
    >>> tuple(bicubic_down(x, 4).shape), tuple(bicubic_up(bicubic_down(x, 4), 4).shape)
    ((1, 3, 4, 4), (1, 3, 16, 16))
"""

from __future__ import annotations

import torch.nn.functional as F

from bench.physics.operator import Tensor


def bicubic_down(x: Tensor, factor: int) -> Tensor:
    """Bicubic downsampling by ``factor`` with antialiasing (torch, like MATLAB imresize)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)


def bicubic_up(y: Tensor, factor: int) -> Tensor:
    """Bicubic upsampling by ``factor``, clipped to [0, 1]."""
    h, w = y.shape[-2:]
    return F.interpolate(y, size=(h * factor, w * factor), mode="bicubic", align_corners=False).clamp(0, 1)
