"""Tests of the DIP recipes, the task choice and the fitting loops (bench/solvers/dip.py, dip_double.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.api import RestoreContext
from bench.physics import Observation, Operator
from bench.registry import get_degradation_class
from bench.solvers.applicability import NotApplicable
from bench.solvers.dip import (
    BACKTRACK_DB,
    PAPER_SETTINGS,
    Backtracking,
    DipFit,
    copy_all,
    fit_dip,
    resolve_task,
    sr_factor,
    task_recipe,
    task_settings,
)
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
    "inpaint": ("inpaint", 11000, 0.03, "skip", 32, 0.0),  # restoration.ipynb since issue 26 (was 6001)
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


def test_a_declared_task_without_a_recipe_is_not_applicable():
    obs = identity_observation(task="dehaze")
    assert resolve_task(obs) == "dehaze"  # any declared task is the task; it is never guessed from the operator
    with pytest.raises(NotApplicable, match="task 'dehaze'") as info:
        DeepImagePrior().resolve(obs)
    assert info.value.method == "dip" and info.value.reason
    assert DeepImagePrior(DeepImagePrior.Params(task="noise")).resolve(obs)["task"] == "noise"  # forced explicitly
    assert DoubleDIP().resolve(obs)["std_weight"] == 0.0  # the generic decomposition: no noise-like StdLoss


def test_a_task_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="is not a task name") as info:
        identity_observation(task="de haze!")
    assert "\n" not in str(info.value)


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


# ----------------------------------------------------------------------------- the notebooks, literally

# github.com/DmitryUlyanov/deep-image-prior, the cells each recipe comes from:
# denoising.ipynb: F16 num_iter 3000, input_depth 32, get_net(... 'skip', skip_n33d=128, skip_n33u=128, skip_n11=4,
#   num_scales=5, upsample_mode='bilinear'); snail (JPEG) num_iter 2400, input_depth 3, skip [8..128] / [0,0,0,4,4];
#   both reg_noise_std 1/30, LR 0.01, exp_weight 0.99, backtracking under `if i % show_every:` (show_every 100).
# super-resolution.ipynb: factor 4 num_iter 2000 reg 0.03, factor 8 num_iter 4000 reg 0.05; LR 0.01, no average,
#   no backtracking, result net(net_input).
# restoration.ipynb (barbara, get_bernoulli_mask 0.50): LR 0.001, num_iter 11000, reg 0.03, the skip net above,
#   backtracking under `if PLOT and i % show_every == 0:` (show_every 50), no average, result net(net_input).
NOTEBOOKS = {
    "noise": (3000, 1 / 30, "skip", 32, 0.01, 0.99, "denoising"),
    "jpeg": (2400, 1 / 30, "small", 3, 0.01, 0.99, "denoising"),
    "sr2": (2000, 0.03, "skip", 32, 0.01, 0.0, "off"),
    "sr4": (2000, 0.03, "skip", 32, 0.01, 0.0, "off"),
    "sr8": (4000, 0.05, "skip", 32, 0.01, 0.0, "off"),
    "inpaint": (11000, 0.03, "skip", 32, 0.001, 0.0, "restoration"),
    "blur": (3000, 0.03, "skip", 32, 0.01, 0.0, "off"),  # no notebook: the SR recipe, the denoising budget
    "multi": (3000, 1 / 30, "skip", 32, 0.01, 0.99, "denoising"),  # no notebook: the denoising recipe
}


def test_recipes_are_the_notebooks_values():
    assert {task: tuple(recipe[:7]) for task, recipe in PAPER_SETTINGS.items()} == NOTEBOOKS
    assert BACKTRACK_DB == 5.0
    # denoising.ipynb: "reg_noise_std = 1./30. # set to 1./20. for sigma=50"
    assert task_recipe("noise", observe("noise", sigma=50)).reg_noise_std == 1 / 20
    assert task_recipe("noise", observe("noise", sigma=25)).reg_noise_std == 1 / 30
    assert task_recipe("multi", observe("multi")).reg_noise_std == 1 / 30


def test_denoising_backtracking_checks_all_but_each_hundredth_iteration():
    w = [torch.zeros(3)]
    rule = Backtracking("denoising", w)
    assert rule.check(1e6) is False and rule.i == 1  # i = 0 is never checked (i % 100 == 0)
    assert rule.check(0.01) is False and rule.psnr_last == pytest.approx(20.0)  # i = 1: saved
    w[0] += 1.0
    assert rule.check(0.01 * 10**0.49) is False  # 4.9 dB lower: kept, and saved
    assert torch.equal(rule.saved[0], w[0])
    w[0] += 1.0
    assert rule.check(1.0) is True  # ~15 dB lower: back to the weights saved at the last check
    assert torch.equal(w[0], torch.ones(3)) and rule.i == 3 and rule.count == 1  # i did not advance
    while rule.i < 100:
        assert rule.check(0.01) is False
    assert rule.check(1.0) is False and rule.i == 101  # i = 100: not checked
    assert rule.check(1.0) is True and rule.i == 101


def test_restoration_backtracking_checks_every_fiftieth_iteration():
    w = [torch.zeros(2)]
    rule = Backtracking("restoration", w)
    assert rule.check(0.01) is False  # i = 0: checked, saved
    w[0] += 1.0
    for _ in range(49):
        assert rule.check(1.0) is False  # i = 1 … 49: not checked, however bad
    assert rule.check(1.0) is True and rule.i == 50  # i = 50: back to the weights of i = 0
    assert torch.equal(w[0], torch.zeros(2))
    assert rule.check(0.01) is False and rule.i == 51
    off = Backtracking("off", w)
    assert [off.check(1e9) for _ in range(3)] == [False] * 3 and off.saved == []
    with pytest.raises(ValueError, match="backtrack='sometimes'"):
        Backtracking("sometimes", w)


def small_fit(iterations: int, **kw) -> DipFit:
    return DipFit(iterations, kw.pop("reg_noise_std", 1 / 30), "small", 3, precision="float32", **kw)


def jumping_observation(at: int, size: int = 32) -> Observation:
    """An identity observation whose operator returns 1 at its ``at``-th call (0-based): the fit to y drops by far
    more than 5 dB at that iteration only."""
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.ones_like(x) + 0 * x if len(calls) == at + 1 else x

    y = torch.full((1, 3, size, size), 0.5)
    return Observation(y, Operator(forward, (size, size), (size, size), sigma=0.01), task="noise")


def test_backtracked_iterations_still_step_and_count_in_the_average(monkeypatch):
    """As denoising.ipynb: the average takes every output (also the one that triggers backtracking), and
    optimize() steps after every closure, with the gradient of the discarded iterate."""
    obs = jumping_observation(at=5)
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    fit = small_fit(12, ema=0.5, monitor=lambda it, raw, avg: seen.append((raw.clone(), avg.clone())))
    ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
    out = fit_dip(obs, ctx, fit)
    assert ctx.trace["backtracks"] == [1.0]
    assert len(steps) == 12 and len(seen) == 12
    average = seen[0][0]
    for raw, reported in seen:
        average = average if raw is seen[0][0] else average.lerp(raw, 0.5)
        assert torch.allclose(reported, average, atol=1e-6)
    assert torch.allclose(out, average.clamp(0, 1), atol=1e-6)
    off = RestoreContext(generator=torch.Generator().manual_seed(0))
    fit_dip(jumping_observation(at=5), off, small_fit(12, backtrack="off"))
    assert "backtracks" not in off.trace
    restoration = RestoreContext(generator=torch.Generator().manual_seed(0))
    fit_dip(jumping_observation(at=5), restoration, small_fit(12, backtrack="restoration"))
    assert restoration.trace["backtracks"] == [0.0]  # i = 5 is not a multiple of 50


def test_without_an_average_the_result_is_the_net_after_the_last_step():
    """super-resolution.ipynb and restoration.ipynb return net(net_input) after the loop: with reg_noise_std 0
    that is what iteration N + 1 of a longer fit computes before its own step."""
    obs = observe("sr", size=64, factor=4)
    ctx = lambda: RestoreContext(generator=torch.Generator().manual_seed(2))  # noqa: E731
    raw: list[torch.Tensor] = []
    fit_dip(obs, ctx(), small_fit(4, reg_noise_std=0.0, ema=0.0, backtrack="off",
                                  monitor=lambda it, out, reported: raw.append(out.clone())))
    result = fit_dip(obs, ctx(), small_fit(3, reg_noise_std=0.0, ema=0.0, backtrack="off"))
    assert torch.equal(result, raw[3].clamp(0, 1))
    assert not torch.equal(result, raw[2].clamp(0, 1))  # not the last iteration's (pre-step) output
    with pytest.raises(ValueError, match="backtrack=True"):
        fit_dip(obs, ctx(), small_fit(1, backtrack=True))
