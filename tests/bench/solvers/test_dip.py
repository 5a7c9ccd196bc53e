"""Tests of the DIP recipes, the task choice and the fitting loops (bench/solvers/dip.py, dip_double.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.api import RestoreContext
from bench.physics import Observation, Operator
from bench.registry import get_degradation_class
from bench.solvers.dip import DipFit, copy_all, fit_dip, resolve_task, sr_factor, task_settings
from bench.solvers.dip_double import DoubleDipFit, default_std_weight, fit_double_dip
from methods.dip import DeepImagePrior
from methods.doubledip import DoubleDIP

# The recipe every built-in degradation got before tasks were declared (the caption heuristic):
# name -> (task, iterations, reg_noise_std, net, input_depth) of dip's paper profile, Double-DIP's std_weight.
BEFORE = {
    "noise": ("noise", 3000, 1 / 30, "skip", 32, 0.005),
    "jpeg": ("jpeg", 2400, 1 / 30, "small", 3, 0.005),
    "blur": ("blur", 3000, 0.03, "skip", 32, 0.0),
    "sr": ("sr", 2000, 0.03, "skip", 32, 0.0),
    "inpaint": ("inpaint", 6001, 0.03, "skip", 32, 0.0),
    "multi": ("multi", 3000, 1 / 30, "skip", 32, 0.005),
}


def observe(name: str, size: int = 64, **params) -> Observation:
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(torch.rand(1, 3, size, size), torch.Generator().manual_seed(0))


def identity_observation(description: str = "", name: str = "identity", task: str = "") -> Observation:
    op = Operator(lambda x: x, (64, 64), (64, 64), sigma=25 / 255, name=name)
    return Observation(torch.rand(1, 3, 64, 64), op, description=description, task=task)


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_every_builtin_degradation_keeps_its_recipe(name):
    obs = observe(name)
    s = DeepImagePrior().resolve(obs)
    task, iterations, reg, net, depth, std_weight = BEFORE[name]
    assert (s["task"], s["iterations"], s["reg_noise_std"], s["net"], s["input_depth"]) == (
        task,
        iterations,
        reg,
        net,
        depth,
    )
    assert DoubleDIP().resolve(obs)["std_weight"] == std_weight


def test_captions_and_operator_names_never_choose_the_recipe():
    """A DeFlow checkpoint called my_jpeg.pt once switched DIP to the JPEG recipe; the declared task decides."""
    obs = identity_observation("DeFlow learned degradation (my_jpeg.pt, heat 1)", name="jpeg_identity", task="noise")
    assert resolve_task(obs) == "noise"
    s = DeepImagePrior().resolve(obs)
    assert (s["task"], s["iterations"], s["net"], s["input_depth"]) == ("noise", 3000, "skip", 32)
    assert DoubleDIP().resolve(obs)["task"] == "noise"
    # the same caption without a declared task: the structural fallback, still not JPEG
    assert resolve_task(identity_observation("JPEG quality 10", name="diffjpeg")) == "noise"
    assert resolve_task(identity_observation("noise", task="jpeg")) == "jpeg"


@pytest.mark.parametrize(("name", "expected"), [("noise", "noise"), ("blur", "blur"), ("sr", "sr"), ("inpaint", "inpaint")])
def test_structural_fallback_without_a_declared_task(name, expected):
    obs = dataclasses.replace(observe(name), task="", description="")
    assert resolve_task(obs) == expected


def test_unknown_declared_task_is_an_error():
    with pytest.raises(ValueError, match="unknown task 'dehaze'"):
        resolve_task(identity_observation(task="dehaze"))


def test_sr_factor_is_structural():
    for factor, iterations in ((2, 2000), (4, 2000), (8, 4000)):
        obs = observe("sr", factor=factor)
        assert sr_factor(obs) == factor
        assert task_settings("sr", obs)[0] == iterations
    assert sr_factor(observe("noise")) == 1


def test_copy_all_copies_every_tensor():
    dst = [torch.zeros(3), torch.zeros(2, 2)]
    src = [torch.ones(3), torch.full((2, 2), 2.0)]
    copy_all(dst, src)
    assert all(torch.equal(d, s) for d, s in zip(dst, src))


@pytest.mark.parametrize("bf16", ["on", "off"])
def test_fits_are_the_plugins_restorations(bf16, monkeypatch):
    # "auto" means the same numeric path (precision, layout, convolution) in a fit built by hand as in the
    # plugin's key, with or without bfloat16 units (BENCH_BF16 stands in for the CPU)
    monkeypatch.setenv("BENCH_BF16", bf16)
    obs = observe("noise", size=32)
    ctx = lambda: RestoreContext(generator=torch.Generator().manual_seed(4))  # noqa: E731
    fit = fit_dip(obs, ctx(), DipFit(iterations=2, reg_noise_std=1 / 30, net="small", input_depth=3))
    plugin = DeepImagePrior(DeepImagePrior.Params(iterations=2, net="small")).restore(obs, ctx())
    assert torch.equal(fit, plugin)
    double = fit_double_dip(obs, ctx(), DoubleDipFit(iterations=2, std_weight=default_std_weight("noise")))
    assert torch.equal(double, DoubleDIP(DoubleDIP.Params(iterations=2)).restore(obs, ctx()))
