"""Helpers of the DeFlow demonstration (``tests/degradations/test_deflow.py`` and ``benchmarks/deflow_demo.py``).

A hidden synthetic degradation to learn from unpaired folders, PNG I/O, random
crops, and the radially averaged power spectrum used to compare residuals.

Example:
    >>> import torch
    >>> x = torch.full((1, 3, 32, 32), 0.5)
    >>> y = hidden_degradation(x, torch.Generator().manual_seed(0))
    >>> 0.01 < float((y - x).std()) < 0.2
    True
    >>> round(log_spectrum_distance(y - x, y - x), 6)
    0.0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.api import quantize
from bench.physics.jpeg import pillow_jpeg

Tensor = torch.Tensor


def hidden_degradation(x: Tensor, generator: torch.Generator, a: float = 0.01, b: float = 0.0004,
                       quality: int = 60) -> Tensor:
    """Signal-dependent Gaussian noise (std² = a·x + b, x in [0, 1]), 8-bit, then Pillow JPEG at ``quality``."""
    std = torch.sqrt(a * x + b)
    return pillow_jpeg(quantize(x + std * torch.randn(x.shape, generator=generator)), quality)


def load_png(path: Path) -> Tensor:
    """An RGB image file as a ``(1, 3, H, W)`` tensor in [0, 1]."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def save_png(x: Tensor, path: Path) -> None:
    """Write a ``(1, 3, H, W)`` tensor in [0, 1] as an 8-bit PNG."""
    Image.fromarray((x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)


def random_crop(x: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A random ``size``×``size`` crop of ``x`` (offsets drawn from ``generator``)."""
    h, w = x.shape[-2:]
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return x[..., top : top + size, left : left + size]


def radial_power(residual: Tensor, bins: int = 16) -> Tensor:
    """Radially averaged power spectrum of a batch of residuals (mean over images and channels)."""
    centred = residual - residual.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(centred.double()).abs().pow(2).mean((0, 1))
    fy, fx = torch.fft.fftfreq(power.shape[0]), torch.fft.fftfreq(power.shape[1])
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    index = (radius / radius.max() * (bins - 1)).round().long()
    return torch.stack([power[index == k].mean() for k in range(bins)])


def log_spectrum_distance(a: Tensor, b: Tensor, bins: int = 16) -> float:
    """Mean absolute difference of the log radial power spectra of two residual batches."""
    return float((radial_power(a, bins).log() - radial_power(b, bins).log()).abs().mean())
