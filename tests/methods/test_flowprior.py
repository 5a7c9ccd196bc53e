"""The flowprior method: patch tiling, MAP restoration and checkpoints (the trainer: tests/bench/training)."""

from __future__ import annotations

import pytest
import torch

from bench.api import RestoreContext
from bench.errors import CheckpointError, ParameterError
from bench.metrics import psnr
from bench.nets.flow import Flow, FlowConfig, load_checkpoint, save_checkpoint
from bench.params import build_params
from bench.registry import get_method_class
from bench.solvers.flow_map import Tiler
from bench.training.data import split_holdout
from degradations.inpaint import Inpaint
from degradations.noise import Noise
from degradations.sr import SuperResolution
from methods.flowprior import DEFAULT_CHECKPOINT, FlowPrior


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A small random (non-identity) flow: L=2, K=1, patches must be multiples of 4."""
    torch.manual_seed(0)
    flow = Flow(FlowConfig(levels=2, steps=1, hidden=8))
    flow.train()
    flow.encode(torch.rand(4, 3, 16, 16))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    path = tmp_path_factory.mktemp("flow") / "tiny.pt"
    save_checkpoint(path, flow.eval())
    return str(path)


def ctx(seed: int = 0) -> RestoreContext:
    return RestoreContext(generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "shape,patch,margin", [((64, 64), 64, 4), ((100, 130), 64, 4), ((256, 256), 64, 4), ((37, 50), 16, 2)]
)
def test_tiling_reassembles_exactly(shape, patch, margin):
    x = torch.rand(1, 3, *shape)
    tiler = Tiler(shape, patch, margin)
    assert torch.allclose(tiler.merge(tiler.split(x)), x, atol=1e-6)


def test_tiling_layout_for_a_256_crop():
    assert Tiler.starts(256, 64, 4) == [0, 56, 112, 168, 192]  # neighbours overlap by 2·margin = 8
    assert len(Tiler((256, 256), 64, 4)) == 25


def test_small_images_are_explained():
    with pytest.raises(ValueError, match=r"32×48 px.*--crop 64.*flowprior.patch"):
        Tiler((32, 48), 64, 4)


def test_no_optimisation_gives_the_input_back(tiny_checkpoint):
    obs = Noise().degrade(torch.rand(1, 3, 40, 44), torch.Generator().manual_seed(0))
    method = FlowPrior(FlowPrior.Params(checkpoint=tiny_checkpoint, iterations=0, patch=16, margin=2))
    out = method.restore(obs, ctx())
    # the observation is unclipped float AWGN (the literature's protocol); a restoration is an image in [0, 1]
    assert (out - obs.y.clamp(0, 1)).abs().max() < 1e-4


def test_params_are_validated():
    with pytest.raises(ValueError, match="lr"):
        FlowPrior.Params(lr=0)
    with pytest.raises(ValueError, match="margin"):
        FlowPrior.Params(patch=16, margin=8)
    with pytest.raises(ParameterError, match="prior_weight"):
        build_params(FlowPrior.Params, {"prior_weight": "-1"}, owner="flowprior")
    assert FlowPrior.profiles["smoke"]["iterations"] < FlowPrior.profiles["quick"]["iterations"]


def test_registered_method():
    assert get_method_class("flowprior") is FlowPrior


def test_bad_checkpoint_setting(tmp_path):
    obs = Noise().degrade(torch.rand(1, 3, 64, 64), torch.Generator())
    with pytest.raises(CheckpointError, match="does not exist"):
        FlowPrior(FlowPrior.Params(checkpoint=str(tmp_path / "nope.pt"))).restore(obs, ctx())
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        FlowPrior(FlowPrior.Params(checkpoint=str(bad))).restore(obs, ctx())
    truncated = tmp_path / "truncated.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        FlowPrior(FlowPrior.Params(checkpoint=str(truncated))).restore(obs, ctx())


def test_operators_on_the_full_image(tiny_checkpoint, restores_through_the_operator):
    params = FlowPrior.Params(checkpoint=tiny_checkpoint, iterations=2, patch=16, margin=2)
    from bench.compute import to_tensor
    from bench.datasets import load_dataset

    clean = to_tensor(load_dataset("builtin", limit=1, crop=32)[0].image)  # a photo: random pixels average out in sr
    for degradation in (SuperResolution(SuperResolution.Params(factor=4)), Inpaint()):
        obs = degradation.degrade(clean, torch.Generator().manual_seed(0))
        out = FlowPrior(params).restore(obs, ctx())
        assert out.shape == clean.shape
        restores_through_the_operator(obs, out)


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="packaged flowprior weights not present")
def test_map_beats_identity_on_noise_and_is_deterministic():
    from bench.compute import to_tensor
    from bench.datasets import load_dataset

    clean = to_tensor(load_dataset("builtin", limit=1, crop=64)[0].image)
    obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
    method = FlowPrior(FlowPrior.Params(iterations=15))
    first = method.restore(obs, ctx(1))
    second = method.restore(obs, ctx(1))
    assert torch.equal(first, second)
    assert psnr(clean, first) > psnr(clean, obs.y) + 0.5


def test_packaged_checkpoint_is_weights_only():
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("packaged flowprior weights not present")
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 2**20
    flow, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert isinstance(flow, Flow) and meta["step"] > 0


def test_split_holdout_is_disjoint():
    train, val = split_holdout(list(range(40)), 0.1)
    assert len(val) == 4 and not set(train) & set(val)


def test_prior_and_data_term_options_are_validated():
    with pytest.raises(ValueError, match="prior"):
        FlowPrior.Params(prior="l2")
    with pytest.raises(ValueError, match="qcs_width"):
        FlowPrior.Params(qcs_width=1.5)
    with pytest.raises(ParameterError, match="data_term"):
        build_params(FlowPrior.Params, {"data_term": "l1"}, owner="flowprior")
    with pytest.raises(ValueError, match="space='image'"):
        FlowPrior.Params(space="image", prior="latent_norm")


def test_image_space_map_lowers_the_objective(tiny_checkpoint):
    from bench.solvers.flow_map import FLOWS, map_image

    flow = FLOWS.get(tiny_checkpoint)
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    x0 = (y + 0.2).clamp(0, 1)

    def objective(x):
        return float((x - y).pow(2).sum() * 50 - 0.1 * flow.log_prob(x).sum())

    out = map_image(flow, x0, lambda x: (x - y).pow(2).sum() * 50, 20, 0.01, 0.1)
    assert objective(out) < objective(x0)


def test_latent_norm_prior_shrinks_the_latents(tiny_checkpoint):
    """Asim et al.'s regulariser: a large weight pulls the standardised latents towards 0."""
    from bench.solvers.flow_map import FLOWS, latent_norm, map_latents

    flow = FLOWS.get(tiny_checkpoint)
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    start, _ = flow.encode(x0, standardized=True)
    _, weak = map_latents(flow, x0, lambda p: (p - x0).pow(2).sum() * 100, 20, 0.05, 0.0, prior="latent_norm")
    _, strong = map_latents(flow, x0, lambda p: (p - x0).pow(2).sum() * 100, 20, 0.05, 1e4, prior="latent_norm")
    assert float(latent_norm(strong)) < 0.9 * min(float(latent_norm(weak)), float(latent_norm(start)))


def test_qcs_data_term_runs_and_is_recorded(tiny_checkpoint):
    from degradations.jpeg import Jpeg

    obs = Jpeg().degrade(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.Generator())
    context = ctx()
    params = FlowPrior.Params(
        checkpoint=tiny_checkpoint, iterations=3, patch=16, margin=2, data_term="qcs", qcs_width=0.5
    )
    out = FlowPrior(params).restore(obs, context)
    assert out.shape == obs.y.shape and torch.isfinite(out).all()
    assert context.trace["qcs_width"] == [0.5]
