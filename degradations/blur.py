"""Blur by a Gaussian or a seeded motion kernel, followed by mild Gaussian noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bench.api import Degradation, Operator, Tensor
from bench.registry import register_degradation


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
    turns = torch.randn(steps, generator=generator) * 0.35
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


@register_degradation("blur")
class Blur(Degradation):
    """Gaussian (default σ=1.6, 25×25, as in IRCNN/DPIR) or seeded motion blur, then noise σ=2.55/255.

    Example:
        >>> import torch
        >>> d = Blur(Blur.Params(kind="motion"))
        >>> obs = d.degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(1))
        >>> tuple(obs.operator(torch.rand(1, 3, 32, 32)).shape)
        (1, 3, 32, 32)
    """

    @dataclass
    class Params:
        kind: Literal["gaussian", "motion"] = "gaussian"
        kernel_size: int = 25
        kernel_sigma: float = 1.6
        motion_length: float = 15.0
        sigma: float = 2.55

        def __post_init__(self) -> None:
            if self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f"kernel_size={self.kernel_size} must be a positive odd number, e.g. 25")
            if not self.kernel_sigma > 0:
                raise ValueError(f"kernel_sigma={self.kernel_sigma} must be > 0")
            if not self.motion_length > 0:
                raise ValueError(f"motion_length={self.motion_length} must be > 0")
            if not self.sigma >= 0:
                raise ValueError(f"sigma={self.sigma} must be >= 0 (0-255 scale)")

    def kernel(self, generator: torch.Generator) -> Tensor:
        p = self.params
        if p.kind == "gaussian":
            return gaussian_kernel(p.kernel_size, p.kernel_sigma)
        return motion_kernel(p.kernel_size, min(p.motion_length, p.kernel_size - 2), generator)

    def check_shape(self, shape: tuple[int, int]) -> None:
        if min(shape) <= self.params.kernel_size // 2:
            raise ValueError(
                f"image {shape[0]}×{shape[1]} is too small for a {self.params.kernel_size}-px blur kernel"
            )

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        kernel = self.kernel(generator)
        return Operator(lambda x: convolve(x, kernel), shape, shape, sigma=self.params.sigma / 255.0, name="blur")

    def describe(self) -> str:
        p = self.params
        what = f"Gaussian blur σ={p.kernel_sigma:g}" if p.kind == "gaussian" else f"motion blur {p.motion_length:g} px"
        return f"{what} ({p.kernel_size}×{p.kernel_size}) + noise σ={p.sigma:g}/255"
