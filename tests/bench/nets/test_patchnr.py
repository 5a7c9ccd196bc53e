"""The PatchNR patch flow (bench/nets/patchnr.py): invertibility, exact log-density, checkpoints, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import CheckpointError
from bench.nets.patchnr import PatchFlow, PatchNRConfig, bits_per_dim, load_checkpoint, save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def tiny_tensors_on_one_thread(one_thread):
    """Tiny networks: one thread (the ``one_thread`` fixture of tests/conftest.py)."""


def perturbed(config: PatchNRConfig, seed: int = 0) -> PatchFlow:
    """A flow with every parameter moved off its identity initialisation (so every coupling acts)."""
    torch.manual_seed(seed)
    flow = PatchFlow(config)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow.eval()


def test_flow_is_invertible_and_its_logdet_is_the_jacobian_logdet():
    flow = perturbed(PatchNRConfig(patch=2, layers=3, hidden=16)).double()
    x = torch.rand(4, 3, 2, 2, dtype=torch.float64)
    z, logdet = flow(x)
    assert torch.allclose(flow.inverse(z).reshape(x.shape), x, atol=1e-10)
    for i in range(len(x)):  # log|det J| of the whole flow, by autograd, for each sample
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i].flatten())
        assert float(torch.linalg.slogdet(jac).logabsdet) == pytest.approx(float(logdet[i].detach()), abs=1e-8)


def test_log_prob_of_the_initialised_flow_is_the_fitted_diagonal_gaussian():
    flow = PatchFlow(PatchNRConfig(patch=2, layers=2, hidden=8))  # couplings start as the identity
    data = 0.5 + 0.1 * torch.randn(500, 12)
    flow.initialize(data)
    x = torch.rand(6, 12)
    expected = torch.distributions.Normal(data.mean(0), data.std(0)).log_prob(x).sum(1)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-4)
    assert bool(flow.initialized)


def test_couplings_clamp_the_log_scale_and_samples_have_the_patch_shape():
    cfg = PatchNRConfig(patch=3, layers=2, hidden=8, clamp=0.5)
    flow = perturbed(cfg)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(100.0)  # huge sub-network outputs: |s| stays below the clamp per dimension and coupling
        flow.log_scale.zero_()
    with torch.no_grad():
        _, logdet = flow(torch.rand(8, 27))
    assert 0 < float(logdet.abs().max()) <= cfg.layers * cfg.dim * cfg.clamp
    sample = flow.sample(3, torch.Generator().manual_seed(0))
    assert tuple(sample.shape) == (3, 3, 3, 3)


def test_bits_per_dim_converts_nats_per_patch_of_unit_scale_data():
    assert bits_per_dim(torch.zeros(3), 108) == pytest.approx(8.0)
    assert bits_per_dim(torch.full((2,), 108 * math.log(2)), 108) == pytest.approx(7.0)


def test_checkpoint_round_trip_keeps_weights_permutations_and_config(tmp_path):
    flow = perturbed(PatchNRConfig(patch=3, layers=2, hidden=8))
    path = tmp_path / "nr.pt"
    sha = save_checkpoint(flow, path, {"steps": 7}, extra={"optimizer": {"ignored": 1}})
    loaded, info = load_checkpoint(path)
    assert len(sha) == 64 and info["meta"] == {"steps": 7} and info["config"]["hidden"] == 8
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded.blocks[1].perm, flow.blocks[1].perm)
    assert not torch.equal(loaded.blocks[1].perm, loaded.blocks[3].perm)  # a different seed per block
    x = torch.rand(5, 27)
    assert torch.allclose(loaded.log_prob(x), flow.log_prob(x))


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="patch=1 must be >= 2"):
        PatchNRConfig(patch=1)
    with pytest.raises(ValueError, match="hidden=0 must be >= 1"):
        PatchNRConfig(hidden=0)
    flow = PatchFlow(PatchNRConfig(patch=3, layers=1, hidden=4))
    with pytest.raises(ValueError, match=r"patches of 3×3×3 = 27 values, got \(3, 4, 4\)"):
        flow.log_prob(torch.rand(2, 3, 4, 4))
    with pytest.raises(CheckpointError, match="does not exist; train one with `bench train patchnr`"):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(CheckpointError, match="not a restoration-bench PatchNR checkpoint"):
        load_checkpoint(other)
