"""Tests of the ``doubledip`` method plugin (tiny images, few iterations); losses: tests/bench/solvers/test_dip_losses.py."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from bench.api import Observation, RestoreContext
from bench.cells import instantiate
from bench.compute import compute_cell, make_observation, to_tensor
from bench.datasets import ImageItem, load_dataset
from bench.metrics import MetricSuite
from bench.nets import dip as nets
from bench.registry import get_degradation_class
from bench.runner import RunConfig, build_cells
from methods.doubledip import DoubleDIP

DEGRADATIONS = ("noise", "jpeg", "blur", "sr", "inpaint", "multi")



def observe(name: str, clean: torch.Tensor, seed: int = 0, **params) -> Observation:
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(seed))


def restore(params: DoubleDIP.Params, obs: Observation, seed: int = 0) -> tuple[torch.Tensor, RestoreContext]:
    ctx = RestoreContext(generator=torch.Generator().manual_seed(seed))
    return DoubleDIP(params).restore(obs, ctx), ctx


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_runs_on_every_degradation(name):
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    obs = observe(name, clean)
    out, ctx = restore(DoubleDIP.Params(iterations=3), obs)
    assert out.shape == clean.shape
    assert torch.isfinite(out).all()
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert len(ctx.trace["loss"]) == 3 and all(np.isfinite(ctx.trace["loss"]))


def test_sr_artifact_layer_lives_at_the_observation_resolution(monkeypatch):
    shapes = []
    original = nets.code_noise

    def spy(depth, shape, generator, scale=0.1):
        shapes.append(tuple(shape))
        return original(depth, shape, generator, scale)

    monkeypatch.setattr(nets, "code_noise", spy)
    obs = observe("sr", torch.rand(1, 3, 256, 256), factor=4)
    restore(DoubleDIP.Params(iterations=1), obs)
    assert shapes == [(256, 256), (64, 64)]  # clean layer, artifact layer


def test_same_seed_same_output():
    obs = observe("noise", torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    a, _ = restore(DoubleDIP.Params(iterations=3), obs, seed=5)
    b, _ = restore(DoubleDIP.Params(iterations=3), obs, seed=5)
    c, _ = restore(DoubleDIP.Params(iterations=3), obs, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_settings_per_task_and_profile():
    clean = torch.rand(1, 3, 64, 64)
    for name in DEGRADATIONS:
        s = DoubleDIP().resolve(observe(name, clean))
        assert s["task"] == name
        assert s["std_weight"] == (0.005 if name in ("noise", "jpeg", "multi") else 0.0)
        assert s["iterations"] == 4000
    obs = observe("noise", clean)
    for profile, iterations in (("paper", 4000), ("quick", 400), ("smoke", 40)):
        assert instantiate("method", "doubledip", {}, profile)[0].plugin.resolve(obs)["iterations"] == iterations
    assert instantiate("method", "doubledip", {"iterations": "7"}, "quick")[0].plugin.resolve(obs)["iterations"] == 7


def test_invalid_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="artifact_range"):
        DoubleDIP.Params(artifact_range=0)
    with pytest.raises(ValueError, match="exclusion_weight"):
        DoubleDIP.Params(exclusion_weight=-1)


def test_restore_signature_has_no_clean_image():
    assert list(inspect.signature(DoubleDIP.restore).parameters) == ["self", "obs", "ctx"]


def test_output_does_not_depend_on_the_clean_image():
    """compute_cell with the clean image swapped after observing: the restoration must not change."""
    config = RunConfig(
        methods=["doubledip"],
        degradations=["multi"],
        dataset="builtin",
        limit=1,
        crop=32,
        profile="smoke",
        overrides={"doubledip": {"iterations": "2"}},
        lpips=False,
    )
    item = load_dataset("builtin", limit=1, crop=32)[0]
    cell = build_cells(config, [item])[0]
    obs = make_observation(cell.degradation.plugin, to_tensor(item.image), cell.seed, item.digest, "multi")
    metrics = MetricSuite(lpips=False)
    real = compute_cell(cell, obs, metrics)
    cell.image = ImageItem(item.id, np.ones_like(item.image), digest=item.digest)
    fake = compute_cell(cell, obs, metrics)
    assert real.status == fake.status == "ok"
    assert np.array_equal(real.restored, fake.restored)
    assert real.psnr != fake.psnr


def test_warmup_holds_the_artifact_layer_and_best_fit_is_returned():
    obs = observe("noise", torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="warmup"):
        DoubleDIP.Params(warmup=1.0)
    last, _ = restore(DoubleDIP.Params(iterations=4, output="last"), obs)
    best, ctx = restore(DoubleDIP.Params(iterations=4), obs)
    losses = ctx.trace["loss"]
    if int(np.argmin(losses)) == len(losses) - 1:
        assert torch.equal(best, last)
    else:
        assert not torch.equal(best, last)
