"""The `daep` method: exact prior gradient, improvement over `identity`, other degradations."""

from __future__ import annotations

import pytest
import torch

from bench.api import RestoreContext
from bench.cells import instantiate
from bench.compute import to_tensor
from bench.datasets import load_dataset
from bench.metrics import psnr
from bench.nets.dae import DAE
from degradations.noise import Noise
from methods.daep import DAEP


def _ctx(seed: int = 0) -> RestoreContext:
    return RestoreContext(generator=torch.Generator().manual_seed(seed), profile="smoke")


def test_prior_gradient_is_gradient_of_autoencoder_error():
    torch.manual_seed(0)
    model = DAE(depth=3, channels=6).double().eval()
    with torch.no_grad():
        model.body[-1].weight.normal_(0, 0.2)
    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    method = DAEP()
    grad = method.prior_gradient(model, x, 0.1, _ctx(1))
    eta = 0.1 * _ctx(1).randn(*x.shape).double()

    def f(z: torch.Tensor) -> float:
        with torch.no_grad():
            return 0.5 * float((z - model(z + eta)).pow(2).sum())

    d = torch.randn(x.shape, dtype=torch.float64)
    h = 1e-6
    numeric = (f(x + h * d) - f(x - h * d)) / (2 * h)
    assert abs(numeric - float((grad * d).sum())) < 1e-5 * max(1.0, abs(numeric))


def test_improves_over_identity_on_noise():
    clean = to_tensor(load_dataset("builtin", limit=1, crop=64)[0].image)
    obs = Noise(Noise.Params(sigma=25)).degrade(clean, torch.Generator().manual_seed(0))
    out = DAEP(DAEP.Params(iterations=40)).restore(obs, _ctx())
    assert psnr(clean, out) > psnr(clean, obs.y) + 3


@pytest.mark.parametrize("name", ["sr", "inpaint", "jpeg"])
def test_other_degradations(name, restores_through_the_operator):
    clean = to_tensor(load_dataset("builtin", limit=1, crop=32)[0].image)  # a photo: random pixels average out in sr
    obs = instantiate("degradation", name, {}, "smoke")[0].plugin.degrade(clean, torch.Generator().manual_seed(0))
    out = DAEP(DAEP.Params(iterations=3, noise_blind=name == "jpeg")).restore(obs, _ctx())
    assert out.shape == clean.shape
    restores_through_the_operator(obs, out)


def test_params():
    with pytest.raises(ValueError, match="gamma"):
        DAEP.Params(gamma=0)
    assert instantiate("method", "daep", {}, "quick")[0].params["iterations"] == 100
    w = DAEP().data_weight(1 / (25 / 255) ** 2, 25 / 255)
    assert 0.05 < w < 0.09  # official weighting at σ_d = σ_dae = 25: λ_p ≈ 0.93
