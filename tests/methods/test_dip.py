"""Tests of the ``dip`` method plugin (tiny images, few iterations); the net: tests/bench/nets/test_dip.py."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from bench.api import Observation, Operator, RestoreContext
from bench.cells import instantiate
from bench.compute import compute_cell, make_observation, to_tensor
from bench.datasets import ImageItem, load_dataset
from bench.errors import ParameterError
from bench.metrics import MetricSuite, psnr
from bench.registry import get_degradation_class
from bench.runner import RunConfig, build_cells
from methods.dip import DeepImagePrior

DEGRADATIONS = ("noise", "jpeg", "blur", "sr", "inpaint", "multi")


def observe(name: str, clean: torch.Tensor, seed: int = 0, **params) -> Observation:
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(seed))


def restore(params: DeepImagePrior.Params, obs: Observation, seed: int = 0) -> tuple[torch.Tensor, RestoreContext]:
    ctx = RestoreContext(generator=torch.Generator().manual_seed(seed))
    return DeepImagePrior(params).restore(obs, ctx), ctx


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return to_tensor(load_dataset("builtin", limit=1, crop=64)[0].image)


def test_restore_signature_has_no_clean_image():
    assert list(inspect.signature(DeepImagePrior.restore).parameters) == ["self", "obs", "ctx"]


@pytest.mark.parametrize(
    ("name", "params", "task", "iterations", "reg", "net", "lr", "ema", "backtrack"),
    [
        ("noise", {}, "noise", 3000, 1 / 30, "skip", 0.01, 0.99, "denoising"),
        ("noise", {"sigma": 50}, "noise", 3000, 1 / 20, "skip", 0.01, 0.99, "denoising"),
        ("noise", {"sigma": 49}, "noise", 3000, 1 / 30, "skip", 0.01, 0.99, "denoising"),
        ("jpeg", {}, "jpeg", 2400, 1 / 30, "small", 0.01, 0.99, "denoising"),
        ("jpeg", {"operator": "differentiable"}, "jpeg", 2400, 1 / 30, "small", 0.01, 0.99, "denoising"),
        ("sr", {"factor": 4}, "sr", 2000, 0.03, "skip", 0.01, 0.0, "off"),
        ("sr", {"factor": 8}, "sr", 4000, 0.05, "skip", 0.01, 0.0, "off"),
        ("sr", {"factor": 4, "kernel": "lanczos2"}, "sr", 2000, 0.03, "skip", 0.01, 0.0, "off"),
        ("inpaint", {}, "inpaint", 11000, 0.03, "skip", 0.001, 0.0, "restoration"),
        ("blur", {}, "blur", 3000, 0.03, "skip", 0.01, 0.0, "off"),
        ("multi", {}, "multi", 3000, 1 / 30, "skip", 0.01, 0.99, "denoising"),
    ],
)
def test_task_settings_follow_the_notebooks(name, params, task, iterations, reg, net, lr, ema, backtrack):
    obs = observe(name, torch.rand(1, 3, 64, 64), **params)
    s = DeepImagePrior().resolve(obs)
    assert (s["task"], s["iterations"], s["reg_noise_std"], s["net"]) == (task, iterations, reg, net)
    assert s["input_depth"] == (3 if net == "small" else 32)
    assert (s["lr"], s["ema"], s["backtrack"]) == (lr, ema, backtrack)


def test_explicit_lr_ema_and_backtrack_override_the_recipe():
    obs = observe("sr", torch.rand(1, 3, 64, 64))
    s = DeepImagePrior(DeepImagePrior.Params(lr=0.005, ema=0.9, backtrack="denoising")).resolve(obs)
    assert (s["lr"], s["ema"], s["backtrack"]) == (0.005, 0.9, "denoising")
    s = DeepImagePrior(DeepImagePrior.Params(ema=0.0, backtrack="off")).resolve(
        observe("noise", torch.rand(1, 3, 64, 64))
    )
    assert (s["ema"], s["backtrack"]) == (0.0, "off")
    (inst,) = instantiate("method", "dip", {"backtrack": "restoration", "ema": "0.95"}, "smoke")
    assert inst.params["backtrack"] == "restoration" and inst.params["ema"] == 0.95
    with pytest.raises(ParameterError, match="backtrack"):
        instantiate("method", "dip", {"backtrack": "sometimes"}, "smoke")


def test_profiles_scale_iterations_only_and_overrides_win():
    obs = observe("noise", torch.rand(1, 3, 64, 64))
    paper = DeepImagePrior().resolve(obs)
    for profile, iterations in (("paper", 3000), ("quick", 300), ("smoke", 30)):
        method = instantiate("method", "dip", {}, profile)[0].plugin
        s = method.resolve(obs)
        assert s["iterations"] == iterations
        assert {k: v for k, v in s.items() if k != "iterations"} == {
            k: v for k, v in paper.items() if k != "iterations"
        }
    method = instantiate("method", "dip", {"iterations": "500"}, "quick")[0].plugin
    assert method.resolve(obs)["iterations"] == 500


def test_invalid_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="ema"):
        DeepImagePrior.Params(ema=1.0)
    with pytest.raises(ParameterError, match="lr"):
        instantiate("method", "dip", {"lr": "-1"}, "smoke")


def test_same_seed_same_output(astronaut):
    obs = observe("noise", astronaut[..., :32, :32])
    params = DeepImagePrior.Params(iterations=3, net="small")
    a, ctx = restore(params, obs, seed=3)
    b, _ = restore(params, obs, seed=3)
    c, _ = restore(params, obs, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len(ctx.trace["loss"]) == 3


def test_fits_through_every_operator():
    # the loss goes through each degradation's own operator and its gradient reaches the net: two Adam steps
    # already lower the data term (measured: by 12-53 %), for every task's recipe
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in DEGRADATIONS:
        obs = observe(name, clean)
        out, ctx = restore(DeepImagePrior.Params(iterations=2, net="small"), obs)
        assert out.shape == clean.shape, name
        assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1, name
        first, last = ctx.trace["loss"]
        assert last < 0.95 * first, (name, first, last)


def test_non_multiple_sizes_are_padded():
    obs = observe("noise", torch.rand(1, 3, 40, 72))
    out, _ = restore(DeepImagePrior.Params(iterations=1, net="small"), obs)
    assert out.shape == (1, 3, 40, 72)


def test_backtracking_restores_weights_after_a_jump():
    # y = 0.5 is fitted at once by the initial net; at the 4th iteration the operator ruins the fit by far
    # more than 5 dB, and the noise task's rule (denoising.ipynb) backtracks; the sr recipe has no rule
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.ones_like(x) + 0 * x if len(calls) == 4 else x

    op = Operator(forward, (32, 32), (32, 32), sigma=0.01)
    obs = Observation(torch.full((1, 3, 32, 32), 0.5), op, task="noise")
    out, ctx = restore(DeepImagePrior.Params(iterations=12, net="small"), obs)
    assert ctx.trace["backtracks"] == [1.0]
    assert torch.isfinite(out).all()
    calls.clear()
    _, ctx = restore(DeepImagePrior.Params(iterations=12, net="small", task="sr"), obs)
    assert "backtracks" not in ctx.trace


def test_tiny_dip_improves_on_identity_for_noise(astronaut):
    obs = observe("noise", astronaut, sigma=25)
    out, ctx = restore(DeepImagePrior.Params(iterations=300, net="small", ema=0.9), obs)
    gain = psnr(astronaut, out) - psnr(astronaut, obs.y)
    assert gain >= 1.0, f"DIP gained only {gain:.2f} dB over the noisy input"
    assert ctx.trace["loss"][-1] < ctx.trace["loss"][0]


def test_output_does_not_depend_on_the_clean_image():
    """compute_cell with the clean image swapped after observing: the restoration must not change."""
    config = RunConfig(
        methods=["dip"],
        degradations=["noise"],
        dataset="builtin",
        limit=1,
        crop=32,
        profile="smoke",
        overrides={"dip": {"iterations": "2", "net": "small"}},
        lpips=False,
    )
    item = load_dataset("builtin", limit=1, crop=32)[0]
    cell = build_cells(config, [item])[0]
    obs = make_observation(cell.degradation.plugin, to_tensor(item.image), cell.seed, item.digest, "noise")
    metrics = MetricSuite(lpips=False)
    real = compute_cell(cell, obs, metrics)
    cell.image = ImageItem(item.id, np.zeros_like(item.image), digest=item.digest)  # a clean image it must not use
    fake = compute_cell(cell, obs, metrics)
    assert real.status == fake.status == "ok"
    assert np.array_equal(real.restored, fake.restored)
    assert real.psnr != fake.psnr


def test_dip_resolves_conv_into_the_key_and_refuses_winograd_in_bfloat16(monkeypatch):
    monkeypatch.setenv("BENCH_BF16", "off")
    (cpu,) = instantiate("method", "dip", {}, "smoke", "cpu")
    assert cpu.params["conv"] == "winograd"  # float32 on a CPU
    (pinned,) = instantiate("method", "dip", {"conv": "direct"}, "smoke", "cpu")
    assert pinned.params["conv"] == "direct" and pinned.key_data() != cpu.key_data()
    assert instantiate("method", "dip", {}, "smoke", "cuda")[0].params["conv"] == "direct"
    monkeypatch.setenv("BENCH_BF16", "on")
    assert instantiate("method", "dip", {}, "smoke", "cpu")[0].params["conv"] == "direct"
    with pytest.raises(ValueError, match="conv=winograd is a float32 algorithm"):
        DeepImagePrior.Params(precision="bfloat16", conv="winograd")
