"""Plug-and-play (DPIR-style HQS) with the packaged DRUNet: improves every task over its input, clear bad input."""

from __future__ import annotations

import pytest
import torch

from bench.api import RestoreContext
from bench.checkpoints import sha256_file
from bench.datasets import load_dataset
from bench.errors import CheckpointError
from bench.metrics import psnr
from bench.nets.drunet import DEFAULT_CHECKPOINT, load_checkpoint
from bench.registry import get_degradation_class
from methods.pnp import PlugAndPlay


@pytest.fixture(scope="module")
def crop():
    item = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    return torch.from_numpy(item.image[100:164, 150:214].copy()).permute(2, 0, 1)[None].float()


def ctx():
    return RestoreContext(generator=torch.Generator().manual_seed(0), profile="quick")


def degrade(name, clean, **params):
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(0))


def test_packaged_denoiser_is_the_documented_model():
    model, info = load_checkpoint(DEFAULT_CHECKPOINT)
    assert info["config"]["channels"] == [32, 64, 128, 256] and not model.training
    card = DEFAULT_CHECKPOINT.with_suffix(".md").read_text()
    assert sha256_file(DEFAULT_CHECKPOINT) in card and "bench train drunet" in card


def test_pnp_denoises_with_one_call_at_the_operator_sigma(crop):
    obs = degrade("noise", crop, sigma=25)
    c = ctx()
    out = PlugAndPlay().restore(obs, c)
    assert out.shape == crop.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert psnr(crop, out) > psnr(crop, obs.y) + 6.0, (psnr(crop, out), psnr(crop, obs.y))
    assert c.trace["sigma"] == [pytest.approx(obs.sigma * 255)] and "sigma_k" not in c.trace


@pytest.mark.parametrize(("name", "gain"), [("blur", 1.0), ("sr", 0.5), ("multi", 0.3), ("jpeg", 0.3)])
def test_pnp_improves_every_task_over_its_input(crop, name, gain):
    obs = degrade(name, crop)
    c = ctx()
    out = PlugAndPlay(PlugAndPlay.Params(cg_steps=5)).restore(obs, c)
    start = obs.operator.init(obs.y)
    assert out.shape == crop.shape
    assert psnr(crop, out) > psnr(crop, start) + gain, (psnr(crop, out), psnr(crop, start))
    if name == "jpeg":  # one denoiser call, at the JPEG error's level × jpeg_sigma_scale
        assert c.trace["sigma"] == [pytest.approx(1.5 * obs.sigma * 255)]
    if name in ("blur", "multi", "sr"):  # HQS: DPIR's decreasing levels, from 49 down to the noise level
        levels = c.trace["sigma_k"]
        assert levels[0] == pytest.approx(49) and levels == sorted(levels, reverse=True) and c.steps == len(levels)


def test_pnp_inpaints(crop):
    obs = degrade("inpaint", crop)
    out = PlugAndPlay(PlugAndPlay.Params(iterations=8, cg_steps=3)).restore(obs, ctx())
    missing = obs.operator.mask == 0
    assert float((out - crop)[missing.expand_as(out)].abs().mean()) < 0.1


def test_missing_checkpoint_and_bad_parameters_are_clear(crop, tmp_path):
    obs = degrade("noise", crop)
    with pytest.raises(CheckpointError, match="does not exist.*bench train drunet"):
        PlugAndPlay(PlugAndPlay.Params(checkpoint=str(tmp_path / "none.pt"))).restore(obs, ctx())
    with pytest.raises(ValueError, match="iterations=-1 must be >= 0"):
        PlugAndPlay.Params(iterations=-1)
    with pytest.raises(ValueError, match="must be a .pt file"):
        PlugAndPlay.Params(checkpoint="weights.bin")
