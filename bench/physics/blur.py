"""Blur kernels (Gaussian, seeded camera-shake) and the reflect-padded convolution that applies them.

Example:
    >>> import torch
    >>> k = gaussian_kernel(5, 1.0)
    >>> round(float(k.sum()), 6), tuple(convolve(torch.rand(1, 3, 8, 8), k).shape)
    (1.0, (1, 3, 8, 8))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench import draws
from bench.physics.operator import Tensor


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """Normalised ``size``×``size`` isotropic Gaussian kernel."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def motion_kernel(size: int, length: float, generator: torch.Generator) -> Tensor:
    """A random camera-shake kernel: a smooth random walk with momentum, rasterised.

    The walk takes 64 steps whose direction turns by a random angle each step;
    it is scaled to ``length`` pixels, centred and splatted bilinearly.
    """
    steps = 64
    angle = torch.rand((), generator=generator) * 2 * math.pi
    turns = draws.randn((steps,), generator) * 0.35
    angles = angle + torch.cumsum(turns, 0)
    pts = torch.cumsum(torch.stack([torch.cos(angles), torch.sin(angles)], 1), 0)
    pts = pts - pts.mean(0)
    extent = (pts.max(0).values - pts.min(0).values).max().clamp_min(1e-6)
    pts = pts * (length / extent) + (size - 1) / 2
    kernel = torch.zeros(size, size, dtype=torch.float64)
    for x, y in pts.tolist():
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < size and 0 <= yi < size:
                kernel[yi, xi] += w
    return (kernel / kernel.sum()).float()


def convolve(x: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel convolution with reflect padding (output has the input's size)."""
    k = kernel.to(x.device, x.dtype)
    pad = k.shape[-1] // 2
    weight = k.flip(-1, -2).expand(x.shape[1], 1, *k.shape)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=x.shape[1])
