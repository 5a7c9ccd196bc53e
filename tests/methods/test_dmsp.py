"""The `dmsp` method: data gradient, improvement over `identity`, determinism, every degradation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.api import RestoreContext
from bench.cells import instantiate
from bench.compute import to_tensor
from bench.datasets import load_dataset
from bench.errors import CheckpointError
from bench.metrics import psnr
from bench.registry import available
from bench.solvers.initial import fill_missing
from bench.solvers.linear import data_gradient, operator_gain
from degradations.blur import Blur
from degradations.inpaint import Inpaint
from degradations.noise import Noise
from methods.dmsp import DMSP


def _ctx(seed: int = 0) -> RestoreContext:
    return RestoreContext(generator=torch.Generator().manual_seed(seed), profile="smoke")


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return to_tensor(load_dataset("builtin", limit=1, crop=64)[0].image)


def _blur_matrix(op, shape) -> torch.Tensor:
    """Explicit matrix of a linear operator, one column per basis image."""
    n = 3 * shape[0] * shape[1]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 3, *shape)
    return torch.cat([op(basis[i : i + 48]).reshape(-1, n) for i in range(0, n, 48)]).T


def test_data_gradient_is_adjoint_of_blur():
    shape = (12, 12)
    op = Blur(Blur.Params(kind="motion", kernel_size=7, motion_length=4)).make_operator(
        shape, torch.Generator().manual_seed(3)
    )
    A = _blur_matrix(op, shape)
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.rand(1, 3, *shape, generator=g, dtype=torch.float64),
        torch.rand(1, 3, *shape, generator=g, dtype=torch.float64),
    )
    grad, residual = data_gradient(op, x, y)
    expected = A.T @ (A @ x.flatten() - y.flatten())
    assert torch.allclose(grad.flatten(), expected, atol=1e-10)
    assert torch.allclose(residual.flatten(), A @ x.flatten() - y.flatten(), atol=1e-12)
    # conv_transpose form of Aᵀ, away from pixels that the reflect padding mirrors (radius 3 + 1)
    k = (
        Blur(Blur.Params(kind="motion", kernel_size=7, motion_length=4))
        .kernel(torch.Generator().manual_seed(3))
        .double()
    )
    r = op(x) - y
    adj = F.conv_transpose2d(r, k.flip(-1, -2).expand(3, 1, 7, 7).contiguous(), groups=3, padding=3)
    assert torch.allclose(grad[..., 4:-4, 4:-4], adj[..., 4:-4, 4:-4], atol=1e-10)
    # the noise gain of a blur is ‖k‖²
    assert abs(
        operator_gain(op, x, torch.randn(x.shape, generator=g, dtype=torch.float64)) - float(k.pow(2).sum())
    ) < 0.35 * float(k.pow(2).sum())


def test_data_gradient_applies_mask():
    op = Inpaint().make_operator((8, 8), torch.Generator().manual_seed(0))
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    grad, _ = data_gradient(op, x, y)
    assert torch.allclose(grad, op.mask * (x - y))


def test_fill_missing_keeps_observed_and_fills_all():
    y = torch.rand(1, 3, 16, 16)
    mask = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.8).float().expand(1, 3, 16, 16)
    out = fill_missing(y * mask, mask)
    assert torch.equal(out * mask, y * mask) and bool((out[mask == 0] > 0).all())


def test_improves_over_identity_on_noise(clean):
    obs = Noise(Noise.Params(sigma=25)).degrade(clean, torch.Generator().manual_seed(0))
    out = DMSP(DMSP.Params(iterations=40)).restore(obs, _ctx())
    assert psnr(clean, out) > psnr(clean, obs.y) + 3
    blind = DMSP(DMSP.Params(iterations=40, noise_blind=True)).restore(obs, _ctx())
    assert psnr(clean, blind) > psnr(clean, obs.y) + 2


def test_same_seed_same_output(clean):
    obs = Noise().degrade(clean[..., :32, :32], torch.Generator().manual_seed(0))
    method = DMSP(DMSP.Params(iterations=5))
    ctx = _ctx(7)
    a = method.restore(obs, ctx)
    assert torch.equal(a, method.restore(obs, _ctx(7)))
    assert not torch.equal(a, method.restore(obs, _ctx(8)))
    assert len(ctx.trace["loss"]) == 5


@pytest.mark.parametrize("name", sorted(available("degradation")))
def test_every_degradation(name, clean, tmp_path, restores_through_the_operator):
    overrides = {}
    if name == "deflow":  # a learned degradation needs a checkpoint: an untrained tiny one will do here
        from bench.nets.deflow import DeFlowNet, get_config, save_deflow

        path = tmp_path / "deflow.pt"
        save_deflow(path, DeFlowNet(get_config("tiny")), {"effective_sigma": {"heat0": 0.0, "heat1": 0.02}})
        overrides = {"checkpoint": str(path)}
    degradation = instantiate("degradation", name, overrides, "smoke")[0].plugin
    obs = degradation.degrade(clean[..., :48, :48], torch.Generator().manual_seed(0))
    for blind in (False, True):
        out = DMSP(DMSP.Params(iterations=3, noise_blind=blind)).restore(obs, _ctx())
        assert out.shape == (1, 3, 48, 48)
        restores_through_the_operator(obs, out)


def test_params_and_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="momentum"):
        DMSP.Params(momentum=1.0)
    with pytest.raises(ValueError, match="iterations"):
        DMSP.Params(iterations=0)
    with pytest.raises(ValueError, match="checkpoint"):
        DMSP.Params(checkpoint="weights.txt")
    assert instantiate("method", "dmsp", {}, "paper")[0].params["iterations"] == 300
    obs = Noise().degrade(torch.rand(1, 3, 16, 16), torch.Generator())
    with pytest.raises(CheckpointError, match="does not exist"):
        DMSP(DMSP.Params(checkpoint=str(tmp_path / "none.pt"))).restore(obs, _ctx())
