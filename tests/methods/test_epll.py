"""EPLL with the packaged 200-component prior: improves noise and blur, runs every task, clear bad input."""

from __future__ import annotations

import pytest
import torch

from bench.api import Observation, Operator, RestoreContext
from bench.checkpoints import load_checkpoint, save_checkpoint, sha256_file
from bench.datasets import load_dataset
from bench.errors import CheckpointError
from bench.metrics import psnr
from bench.nets.gmm import DEFAULT_MODEL, PatchGMM
from bench.registry import get_degradation_class
from methods.epll import EPLL


@pytest.fixture(scope="module")
def crop():
    item = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    return torch.from_numpy(item.image[100:156, 150:206].copy()).permute(2, 0, 1)[None].float()


def ctx():
    return RestoreContext(generator=torch.Generator().manual_seed(0), profile="quick")


def degrade(name, clean, **params):
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(0))


def test_packaged_prior_is_the_documented_model():
    payload = load_checkpoint(DEFAULT_MODEL)
    prior = PatchGMM.from_payload(payload)
    assert prior.patch == 8 and prior.gmm.components == 200 and prior.gmm.covs.dtype == torch.float64
    assert bool((prior.gmm.means == 0).all())
    torch.linalg.cholesky(prior.gmm.covs)  # every covariance positive definite
    assert DEFAULT_MODEL.stat().st_size <= 20 * 2**20
    card = DEFAULT_MODEL.with_suffix(".md").read_text()
    assert sha256_file(DEFAULT_MODEL) in card


def test_epll_denoises_sigma25(crop):
    obs = degrade("noise", crop, sigma=25)
    c = ctx()
    out = EPLL(EPLL.Params(cg_steps=2)).restore(obs, c)
    assert out.shape == crop.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert psnr(crop, out) > psnr(crop, obs.y) + 6.0, (psnr(crop, out), psnr(crop, obs.y))
    assert len(c.trace["beta"]) == 5 and c.trace["beta"][0] == pytest.approx(1 / obs.sigma**2)


def test_epll_deblurs(crop):
    obs = degrade("blur", crop)
    out = EPLL(EPLL.Params(cg_steps=10)).restore(obs, ctx())
    assert psnr(crop, out) > psnr(crop, obs.y) + 1.0, (psnr(crop, out), psnr(crop, obs.y))


@pytest.mark.parametrize("name", ["sr", "inpaint", "multi", "jpeg"])
def test_epll_restores_every_other_task(crop, name):
    obs = degrade(name, crop)
    out = EPLL(EPLL.Params(stride=4, cg_steps=5)).restore(obs, ctx())
    start = obs.operator.init(obs.y).clamp(0, 1)
    assert out.shape == crop.shape and torch.isfinite(out).all()
    assert psnr(crop, out) > psnr(crop, start), (psnr(crop, out), psnr(crop, start))


def test_epll_rejects_an_image_smaller_than_a_patch():
    obs = Observation(torch.full((1, 3, 6, 6), 0.5), Operator(lambda x: x, (6, 6), (6, 6), sigma=0.1), task="noise")
    with pytest.raises(ValueError, match="at least 8×8"):
        EPLL().restore(obs, ctx())


def test_epll_explains_a_checkpoint_that_is_not_a_gmm(tmp_path, crop):
    path = tmp_path / "other.pt"
    save_checkpoint({"state_dict": {"w": torch.ones(1)}}, path)
    obs = degrade("noise", crop)
    with pytest.raises(CheckpointError, match="bench train epll"):
        EPLL(EPLL.Params(checkpoint=str(path))).restore(obs, ctx())
    with pytest.raises(ValueError, match="stride"):
        EPLL.Params(stride=0)
