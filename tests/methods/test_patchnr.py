"""PatchNR (methods/patchnr.py): denoises with the packaged flow, reproducible per generator, clear bad input."""

from __future__ import annotations

import pytest
import torch

from bench.api import Observation, Operator, RestoreContext
from bench.checkpoints import sha256_file
from bench.datasets import load_dataset
from bench.errors import CheckpointError
from bench.metrics import psnr
from bench.nets.patchnr import DEFAULT_CHECKPOINT, PatchFlow, PatchNRConfig, load_checkpoint, save_checkpoint
from bench.registry import get_degradation_class
from bench.solvers.initial import fill_missing
from methods.patchnr import PatchNR


@pytest.fixture(scope="module")
def crop():
    item = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    return torch.from_numpy(item.image[100:148, 150:198].copy()).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def tiny_flow(tmp_path_factory):
    """A small random flow (moved off its identity initialisation), for fast mechanics tests."""
    torch.manual_seed(0)
    flow = PatchFlow(PatchNRConfig(layers=1, hidden=8))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("patchnr") / "tiny.pt"
    save_checkpoint(flow, path)
    return str(path)


def degrade(name, clean, seed=0, **params):
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(seed))


def restore(method, obs, seed=0):
    ctx = RestoreContext(generator=torch.Generator().manual_seed(seed))
    return method.restore(obs, ctx), ctx


def test_packaged_flow_is_the_documented_model():
    flow, info = load_checkpoint(DEFAULT_CHECKPOINT)
    assert info["config"]["patch"] == 6 and info["config"]["channels"] == 3 and not flow.training
    card = DEFAULT_CHECKPOINT.with_suffix(".md").read_text()
    assert sha256_file(DEFAULT_CHECKPOINT) in card and "bench train patchnr" in card
    assert DEFAULT_CHECKPOINT.stat().st_size <= 5 * 2**20
    assert PatchNR.version == "weights:" + sha256_file(DEFAULT_CHECKPOINT)[:16]


def test_patchnr_denoises_with_the_packaged_flow(crop):
    obs = degrade("noise", crop, sigma=25)
    method = PatchNR(PatchNR.Params(iterations=30, patches_per_iteration=600))
    out, ctx = restore(method, obs)
    assert out.shape == crop.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert psnr(crop, out) > psnr(crop, obs.y) + 1.5, (psnr(crop, out), psnr(crop, obs.y))
    nll = ctx.trace["nll"]
    assert ctx.steps == 30 and len(nll) == 30 and sum(nll[-5:]) < sum(nll[:5])  # the patches became likelier
    assert ctx.trace["lr"] == [pytest.approx(0.1 * obs.sigma)]  # automatic step: lr_per_sigma·σ


def test_same_generator_same_result_and_another_seed_differs(tiny_flow, crop):
    obs = degrade("noise", crop)
    method = PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=4, patches_per_iteration=100, prior_weight=1.0))
    first, _ = restore(method, obs, seed=3)
    again, _ = restore(method, obs, seed=3)
    other, _ = restore(method, obs, seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_without_prior_the_noisy_input_is_already_the_data_fit(tiny_flow, crop):
    obs = degrade("noise", crop)  # Gaussian data term: zero gradient at x = y
    out, _ = restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=3, prior_weight=0.0)), obs)
    assert torch.allclose(out, obs.y.clamp(0, 1), atol=1e-6)  # y is unclipped float AWGN; outputs are images
    qcs, _ = restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=3, data_term="qcs")), obs)
    ref, _ = restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=3)), obs)
    assert torch.equal(qcs, ref)  # no JPEG quantisation on a noise observation: the Gaussian term


def test_inpainting_starts_from_the_observed_pixels_filled_in(tiny_flow, crop):
    obs = degrade("inpaint", crop)
    out, ctx = restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=0)), obs)
    assert torch.allclose(out, fill_missing(obs.operator.init(obs.y).clamp(0, 1), obs.operator.mask).clamp(0, 1))
    assert ctx.steps == 0


def test_bad_input_is_one_clear_error(tiny_flow, tmp_path):
    with pytest.raises(ValueError, match="prior_weight=-1 must be >= 0"):
        PatchNR.Params(prior_weight=-1)
    with pytest.raises(ValueError, match="lr=-0.1 must be >= 0"):
        PatchNR.Params(lr=-0.1)
    with pytest.raises(ValueError, match="patches_per_iteration=0 must be >= 1"):
        PatchNR.Params(patches_per_iteration=0)
    with pytest.raises(ValueError, match="data_term='l1' must be one of operator, qcs"):
        PatchNR.Params(data_term="l1")
    with pytest.raises(ValueError, match="must be a .pt file written by `bench train patchnr`"):
        PatchNR.Params(checkpoint="weights.txt")
    small = Observation(torch.rand(1, 3, 5, 5), Operator(lambda x: x, (5, 5), (5, 5), sigma=0.1))
    with pytest.raises(ValueError, match="at least 6×6 px"):
        restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=1)), small)
    grey = Observation(torch.rand(1, 1, 16, 16), Operator(lambda x: x, (16, 16), (16, 16), sigma=0.1))
    with pytest.raises(ValueError, match="3-channel patches, the input has 1"):
        restore(PatchNR(PatchNR.Params(checkpoint=tiny_flow, iterations=1)), grey)
    with pytest.raises(CheckpointError, match="does not exist"):
        restore(PatchNR(PatchNR.Params(checkpoint=str(tmp_path / "none.pt"))), grey)
