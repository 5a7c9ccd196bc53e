"""Resizing: the super-resolution forward operators (bicubic, or the DIP notebook's Lanczos-2) and the initialiser.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16)
    >>> tuple(bicubic_down(x, 4).shape), tuple(bicubic_up(bicubic_down(x, 4), 4).shape)
    ((1, 3, 4, 4), (1, 3, 16, 16))
    >>> tuple(lanczos2_down(x, 4).shape)
    (1, 3, 4, 4)
"""

from __future__ import annotations

import functools
import math

import torch
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


@functools.cache
def lanczos2_kernel(factor: int) -> torch.Tensor:
    """The kernel of the official Deep Image Prior ``Downsampler(kernel_type='lanczos2', phase=0.5)`` (float64).

    ``models/downsampler.py`` of github.com/DmitryUlyanov/deep-image-prior, ``get_kernel``: support 2, width
    ``4·factor + 1``, with phase ½ a square of ``4·factor`` taps at distances ``|i + ½ − centre| / factor``,
    each tap the product of the two 1-d Lanczos-2 values, normalised to sum 1.

    >>> k = lanczos2_kernel(2)
    >>> tuple(k.shape), round(float(k.sum()), 12), bool(torch.equal(k, k.flip(0).flip(1)))
    ((8, 8), 1.0, True)
    """
    support = 2
    width = 4 * factor + 1
    centre = (width + 1) / 2.0
    values = []
    for i in range(1, width):  # phase 0.5: width - 1 taps
        d = abs(i + 0.5 - centre) / factor
        value = 1.0
        if d != 0:
            value = support * math.sin(math.pi * d) * math.sin(math.pi * d / support) / (math.pi * math.pi * d * d)
        values.append(value)
    taps = torch.tensor(values, dtype=torch.float64)
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def lanczos2_down(x: Tensor, factor: int) -> Tensor:
    """Downsampling by ``factor`` as the official DIP super-resolution notebook's forward operator.

    ``Downsampler(n_planes=3, factor, kernel_type='lanczos2', phase=0.5, preserve_size=True)``: replication
    padding by ``(4·factor − factor) / 2`` pixels, then the :func:`lanczos2_kernel` on each channel with stride
    ``factor`` (the official module is a full convolution whose off-diagonal weights are 0, i.e. this depthwise
    one), so ``H × W`` becomes ``H/factor × W/factor``.
    """
    kernel = lanczos2_kernel(factor).to(device=x.device, dtype=x.dtype)
    pad = (kernel.shape[0] - factor) // 2
    channels = x.shape[-3]
    weight = kernel.expand(channels, 1, *kernel.shape)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), weight, stride=factor, groups=channels)
