"""Tests of bench.physics: the operator, the observation and the image operators below both plugin packages."""

from __future__ import annotations

import pytest
import torch

import bench.api
import bench.physics
from bench.physics import TASKS, Observation, Operator, quantize
from bench.physics.blur import convolve, gaussian_kernel
from bench.physics.jpeg import KORNIA_JPEG_SIGMA, jpeg_effective_sigma, kornia_jpeg, pillow_jpeg
from bench.physics.resize import bicubic_down, bicubic_up


def test_api_re_exports_the_physics():
    for name in ("Operator", "Observation", "quantize", "Tensor", "TASKS"):
        assert getattr(bench.api, name) is getattr(bench.physics, name)
    assert TASKS == ("noise", "jpeg", "blur", "sr", "inpaint", "multi")


def test_degradation_modules_use_the_shared_operators():
    import degradations.blur
    import degradations.jpeg
    import degradations.multi
    import degradations.sr

    assert degradations.sr.bicubic_down is bicubic_down and degradations.sr.bicubic_up is bicubic_up
    assert degradations.blur.convolve is convolve and degradations.multi.convolve is convolve
    assert degradations.jpeg.pillow_jpeg is pillow_jpeg and degradations.multi.pillow_jpeg is pillow_jpeg


def test_operator_residual_init_and_mask():
    mask = torch.zeros(1, 3, 4, 4)
    mask[..., :2, :] = 1
    op = Operator(lambda x: x * mask, (4, 4), (4, 4), sigma=0.1, mask=mask)
    x, y = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    assert float(op.data_residual(x, y).sum()) == 3 * 2 * 4
    assert torch.equal(op.init(y), y) and op.init(y) is not y
    with pytest.raises(ValueError, match="initializer"):
        Operator(lambda x: x[..., ::2, ::2], (4, 4), (2, 2), 0.0).init(torch.zeros(1, 3, 2, 2))
    obs = Observation(y, op)
    assert obs.task == "" and obs.sigma == pytest.approx(0.1)


def test_quantize_rounds_to_8_bit_and_clips():
    x = torch.tensor([-0.2, 0.1, 1.3])
    q = quantize(x)
    assert torch.equal(q * 255, torch.round(q * 255)) and float(q.min()) == 0.0 and float(q.max()) == 1.0


def test_resize_shapes_and_range():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    low = bicubic_down(x, 4)
    up = bicubic_up(low, 4)
    assert low.shape == (1, 3, 8, 8) and up.shape == x.shape
    assert 0 <= float(up.min()) and float(up.max()) <= 1


def test_jpeg_operators():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    real = pillow_jpeg(x, 40)
    assert real.shape == x.shape and torch.equal(quantize(real), real)
    assert jpeg_effective_sigma(10) == pytest.approx(14.2 / 255)  # docs/tuning/jpeg-sigma.md
    assert jpeg_effective_sigma(5) > jpeg_effective_sigma(50) > jpeg_effective_sigma(100)
    smooth = torch.nn.functional.interpolate(x[..., :8, :8], size=(32, 32), mode="bilinear", align_corners=False)
    diff = kornia_jpeg(smooth.requires_grad_(True), 90)
    diff.sum().backward()
    assert diff.shape == x.shape and KORNIA_JPEG_SIGMA == pytest.approx(3.6 / 255)


def test_blur_convolution_keeps_size_and_mean():
    x = torch.full((1, 3, 16, 16), 0.25)
    out = convolve(x, gaussian_kernel(5, 1.0))
    assert out.shape == x.shape and torch.allclose(out, x)
