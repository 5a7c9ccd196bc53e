"""BM3D reference: improves PSNR on noise and blur, declares sr/inpaint not applicable, clear bad-input errors."""

from __future__ import annotations

import pytest
import torch

from bench.api import Observation, Operator, RestoreContext
from bench.datasets import load_dataset
from bench.metrics import psnr
from bench.physics.blur import convolve, motion_kernel
from bench.registry import get_degradation_class
from bench.solvers.applicability import NotApplicable
from bench.solvers.bm3d import operator_psf
from methods.bm3d import BM3D


@pytest.fixture(scope="module")
def crop():
    item = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    return torch.from_numpy(item.image[100:164, 150:214].copy()).permute(2, 0, 1)[None].float()


def ctx():
    return RestoreContext(generator=torch.Generator().manual_seed(0), profile="smoke")


def degrade(name, clean, **params):
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(0))


def test_bm3d_denoises_sigma25(crop):
    obs = degrade("noise", crop, sigma=25)
    out = BM3D(BM3D.Params(profile="lc")).restore(obs, ctx())
    assert out.shape == crop.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert psnr(crop, out) > psnr(crop, obs.y) + 5.0, (psnr(crop, out), psnr(crop, obs.y))


@pytest.mark.parametrize("name", ["blur", "multi"])
def test_bm3d_deblurs(crop, name):
    obs = degrade(name, crop)
    out = BM3D(BM3D.Params(profile="lc")).restore(obs, ctx())
    assert psnr(crop, out) > psnr(crop, obs.y) + 0.5, (psnr(crop, out), psnr(crop, obs.y))


@pytest.mark.parametrize("name", ["sr", "inpaint"])
def test_bm3d_is_not_applicable_to_sr_and_inpaint(crop, name):
    obs = degrade(name, crop)
    with pytest.raises(NotApplicable) as info:
        BM3D().restore(obs, ctx())
    assert info.value.task == name and info.value.method == "bm3d"
    assert not isinstance(info.value, ValueError)  # distinct from a failure of the method


def test_bm3d_refuses_a_non_identity_jpeg_operator(crop):
    obs = degrade("jpeg", crop, operator="differentiable")
    with pytest.raises(NotApplicable, match="not the identity"):
        BM3D().restore(obs, ctx())


def test_bm3d_on_identity_jpeg_uses_the_measured_sigma(crop):
    obs = degrade("jpeg", crop, quality=10)
    c = ctx()
    out = BM3D(BM3D.Params(profile="lc")).restore(obs, c)
    assert c.trace["sigma"] == [pytest.approx(obs.sigma)] and obs.sigma * 255 > 10
    assert psnr(crop, out) > psnr(crop, obs.y)


def test_bm3d_rejects_an_image_smaller_than_a_block():
    op = Operator(lambda x: x, (6, 6), (6, 6), sigma=0.1)
    obs = Observation(torch.full((1, 3, 6, 6), 0.5), op, task="noise")
    with pytest.raises(ValueError, match="at least 8×8"):
        BM3D().restore(obs, ctx())


def test_operator_psf_reads_a_motion_kernel_and_refuses_a_mask():
    kernel = motion_kernel(15, 9.0, torch.Generator().manual_seed(3))
    op = Operator(lambda x: convolve(x, kernel), (48, 48), (48, 48), sigma=0.01)
    psf = operator_psf(op)
    assert psf is not None
    r = psf.shape[0] // 2
    assert torch.allclose(psf, kernel[7 - r : 8 + r, 7 - r : 8 + r], atol=1e-6)
    assert float(psf.sum()) == pytest.approx(float(kernel.sum()), abs=1e-5)  # nothing of the kernel left out
    masked = Operator(lambda x: x, (48, 48), (48, 48), sigma=0.01, mask=torch.ones(1, 3, 48, 48))
    assert operator_psf(masked) is None
