"""The DIP notebook's Lanczos-2 downsampler (bench/physics/resize.py) against a literal copy of the official code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.physics.resize import lanczos2_down, lanczos2_kernel
from bench.registry import get_degradation_class


def official_get_kernel(factor: int, phase: float, kernel_width: int, support: int) -> np.ndarray:
    """``get_kernel(factor, 'lanczos', phase, kernel_width, support)`` of deep-image-prior's models/downsampler.py."""
    kernel = np.zeros([kernel_width - 1, kernel_width - 1]) if phase == 0.5 else np.zeros([kernel_width, kernel_width])
    center = (kernel_width + 1) / 2.0
    for i in range(1, kernel.shape[0] + 1):
        for j in range(1, kernel.shape[1] + 1):
            if phase == 0.5:
                di = abs(i + 0.5 - center) / factor
                dj = abs(j + 0.5 - center) / factor
            else:
                di = abs(i - center) / factor
                dj = abs(j - center) / factor
            val = 1
            if di != 0:
                val = val * support * np.sin(np.pi * di) * np.sin(np.pi * di / support)
                val = val / (np.pi * np.pi * di * di)
            if dj != 0:
                val = val * support * np.sin(np.pi * dj) * np.sin(np.pi * dj / support)
                val = val / (np.pi * np.pi * dj * dj)
            kernel[i - 1][j - 1] = val
    kernel /= kernel.sum()
    return kernel


def official_downsampler(factor: int) -> nn.Module:
    """``Downsampler(n_planes=3, factor, kernel_type='lanczos2', phase=0.5, preserve_size=True)``, float64."""
    kernel = official_get_kernel(factor, 0.5, 4 * factor + 1, 2)
    conv = nn.Conv2d(3, 3, kernel_size=kernel.shape, stride=factor, padding=0).double()
    conv.weight.data[:] = 0
    conv.bias.data[:] = 0
    for i in range(3):
        conv.weight.data[i, i] = torch.from_numpy(kernel)
    pad = int((kernel.shape[0] - 1) / 2.0) if kernel.shape[0] % 2 == 1 else int((kernel.shape[0] - factor) / 2.0)
    return nn.Sequential(nn.ReplicationPad2d(pad), conv)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_kernel_and_operator_are_the_official_downsampler(factor):
    assert torch.allclose(lanczos2_kernel(factor), torch.from_numpy(official_get_kernel(factor, 0.5, 4 * factor + 1, 2)),
                          rtol=0, atol=1e-15)
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(factor), dtype=torch.float64)
    with torch.no_grad():
        expected = official_downsampler(factor)(x)
    assert expected.shape == (1, 3, 64 // factor, 48 // factor)
    assert torch.allclose(lanczos2_down(x, factor), expected, rtol=0, atol=1e-13)
    assert torch.allclose(lanczos2_down(x.float(), factor), expected.float(), rtol=0, atol=1e-5)


def test_sr_degradation_kernel_parameter():
    cls = get_degradation_class("sr")
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    bicubic = cls(cls.Params(factor=4)).degrade(clean, torch.Generator().manual_seed(0))
    lanczos = cls(cls.Params(factor=4, kernel="lanczos2")).degrade(clean, torch.Generator().manual_seed(0))
    assert cls.Params().kernel == "bicubic"  # the default stays comparable with every other method
    assert bicubic.operator.name == "bicubic_down_x4" and lanczos.operator.name == "lanczos2_down_x4"
    assert torch.allclose(lanczos.operator(clean), lanczos2_down(clean, 4))
    assert not torch.allclose(lanczos.y, bicubic.y)
    assert "Lanczos-2" in cls(cls.Params(kernel="lanczos2")).describe()
    assert "Lanczos" not in cls(cls.Params()).describe()
    with pytest.raises(ValueError, match="kernel='box'"):
        cls.Params(kernel="box")
