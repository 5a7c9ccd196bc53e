"""The Gaussian mixture of bench.nets.gmm: densities, EM (means, weights, monotone likelihood), patch basis."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.nets.gmm import GaussianMixture, PatchGMM, dc_free_basis, upper_outer
from bench.physics.color import from_opponent, to_opponent


def two_clusters(n: int = 1500, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.5 + torch.tensor([3.0, 0.0, -1.0], dtype=torch.float64)
    b = torch.randn(2 * n, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 0.7]], dtype=torch.float64) - 3.0
    return torch.cat([a, b])


def test_log_prob_matches_torch_distributions():
    x = two_clusters(200)
    gmm = GaussianMixture.from_data(x, 3, torch.Generator().manual_seed(1), zero_mean=False)
    reference = torch.logsumexp(torch.stack([
        MultivariateNormal(gmm.means[k], gmm.covs[k]).log_prob(x) + torch.log(gmm.weights[k]) for k in range(3)
    ], 1), 1)
    assert torch.allclose(gmm.log_prob(x), reference, atol=1e-3)


def test_em_recovers_the_means_and_weights_of_two_components():
    x = two_clusters()
    gmm = GaussianMixture.from_data(x, 2, torch.Generator().manual_seed(0), zero_mean=False)
    history = []
    for _ in range(60):
        gmm, loglik = gmm.em_step(x, reg=1e-6)
        history.append(loglik)
    assert all(b >= a - 1e-4 for a, b in zip(history, history[1:])), "EM must not decrease the likelihood"
    order = torch.argsort(gmm.means[:, 0])
    means, weights = gmm.means[order], gmm.weights[order]
    assert torch.allclose(means[0], torch.full((3,), -3.0, dtype=torch.float64), atol=0.1), means
    assert torch.allclose(means[1], torch.tensor([3.0, 0.0, -1.0], dtype=torch.float64), atol=0.1), means
    assert weights.tolist() == pytest.approx([2 / 3, 1 / 3], abs=0.02)
    assert torch.allclose(gmm.covs[order[1]], 0.25 * torch.eye(3, dtype=torch.float64), atol=0.05)


def test_zero_mean_em_separates_two_scales():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([0.1 * torch.randn(2000, 4, generator=g), 2.0 * torch.randn(1000, 4, generator=g)]).double()
    gmm = GaussianMixture.from_data(x, 2, g, zero_mean=True)
    for _ in range(40):
        gmm, _ = gmm.em_step(x, reg=1e-8)
    assert bool((gmm.means == 0).all())
    variances = sorted(float(c.diagonal().mean()) for c in gmm.covs)
    assert variances == pytest.approx([0.01, 4.0], rel=0.15)


def test_a_starved_component_keeps_a_valid_covariance():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gmm = GaussianMixture.from_data(x, 2, torch.Generator().manual_seed(0))
    gmm.covs[1] = 1e-8 * torch.eye(2, dtype=torch.float64)  # takes no sample at all
    gmm.weights = torch.tensor([1 - 1e-30, 1e-30], dtype=torch.float64)
    new, _ = gmm.em_step(x, reg=1e-6)
    _, info = torch.linalg.cholesky_ex(new.covs)
    assert bool((info == 0).all()), "a covariance is no longer positive definite"
    assert bool(torch.isfinite(new.covs).all()) and bool(torch.isfinite(new.weights).all())


def test_upper_outer_and_basis():
    x = torch.randn(5, 7)
    iu, ju = torch.triu_indices(7, 7)
    assert torch.equal(upper_outer(x), x[:, iu] * x[:, ju])
    basis = dc_free_basis(8)
    assert basis.shape == (64, 63)
    assert torch.allclose(basis.T @ basis, torch.eye(63, dtype=torch.float64), atol=1e-12)
    patches = torch.rand(3, 64, dtype=torch.float64)
    rebuilt = (patches @ basis) @ basis.T + patches.mean(1, keepdim=True)
    assert torch.allclose(rebuilt, patches, atol=1e-12)
    rgb = torch.rand(1, 3, 4, 4)
    assert torch.allclose(to_opponent(rgb).pow(2).sum(), rgb.pow(2).sum(), rtol=1e-5)  # orthonormal
    assert torch.allclose(from_opponent(to_opponent(rgb)), rgb, atol=1e-6)


def test_patch_gmm_round_trips_through_a_weights_only_checkpoint(tmp_path):
    covs = torch.stack([torch.eye(15), 2 * torch.eye(15)]).double()
    gmm = GaussianMixture(torch.tensor([0.25, 0.75]).double(), torch.zeros(2, 15).double(), covs)
    save_checkpoint(PatchGMM(4, gmm, {"note": "test"}).to_payload(), tmp_path / "m.pt")
    back = PatchGMM.from_payload(load_checkpoint(tmp_path / "m.pt"))
    assert back.patch == 4 and back.meta == {"note": "test"} and torch.equal(back.gmm.covs, covs)
    with pytest.raises(ValueError, match="bench train epll"):
        PatchGMM.from_payload({"format": "something else"})
    with pytest.raises(ValueError, match="needs 15 dimensions"):
        PatchGMM(4, GaussianMixture(torch.ones(1).double(), torch.zeros(1, 3).double(), torch.eye(3).double()[None]))
    assert math.isfinite(float(back.gmm.log_prob(torch.zeros(1, 15)).item()))
