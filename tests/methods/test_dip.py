"""Tests of the ``dip`` method and its network (tiny images, few iterations)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from bench.api import Observation, RestoreContext
from bench.datasets import ImageItem, load_dataset
from bench.errors import ParameterError
from bench.metrics import MetricSuite, psnr
from bench.registry import get_degradation_class
from bench.runner import RunConfig, build_cells, compute_cell, instantiate, make_observation, to_tensor
from methods import _dip_nets as nets
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


def expected_skip_params(depth: int, down: int = 128, up: int = 128, skip: int = 4, scales: int = 5) -> int:
    """Parameter count of the official skip net, layer by layer (conv weights + biases, BN affine)."""
    total = 0
    for i in range(scales):
        c_in = depth if i == 0 else down
        k = up if i < scales - 1 else down
        total += c_in * skip + skip + 2 * skip  # 1×1 skip conv, BN
        total += c_in * down * 9 + down + 2 * down  # stride-2 3×3 conv, BN
        total += down * down * 9 + down + 2 * down  # 3×3 conv, BN
        total += 2 * (skip + k)  # BN of the concatenation
        total += (skip + k) * up * 9 + up + 2 * up  # 3×3 conv, BN
        total += up * up + up + 2 * up  # 1×1 conv, BN
    return total + up * 3 + 3  # 1×1 output conv


def test_official_skip_net_structure():
    net = nets.SkipNet(input_depth=32)
    count = sum(p.numel() for p in net.parameters())
    assert count == expected_skip_params(32) == 2_217_831  # the official notebook prints 2217831
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.stride == (2, 2) for c in convs) == 5  # stride-2 downsampling at each of 5 scales
    assert all(c.padding_mode == "reflect" for c in convs if c.kernel_size == (3, 3))
    assert sorted({c.out_channels for c in convs}) == [3, 4, 128]
    assert sum(c.out_channels == 4 and c.kernel_size == (1, 1) for c in convs) == 5  # 4-channel skips
    assert all(m.negative_slope == 0.2 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 5 * 6
    assert net.head.kernel_size == (1, 1)
    out = net(torch.rand(1, 32, 64, 64))
    assert out.shape == (1, 3, 64, 64) and 0 < float(out.detach().min()) and float(out.detach().max()) < 1  # sigmoid


def test_small_net_is_the_jpeg_notebook_net():
    net = nets.SkipNet.small(input_depth=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs if c.stride == (2, 2)] == [8, 16, 32, 64, 128]
    assert sorted(c.out_channels for c in convs if c.kernel_size == (1, 1) and c.out_channels == 4) == [4, 4]
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_restore_signature_has_no_clean_image():
    assert list(inspect.signature(DeepImagePrior.restore).parameters) == ["self", "obs", "ctx"]


@pytest.mark.parametrize(
    ("name", "params", "task", "iterations", "reg", "net"),
    [
        ("noise", {}, "noise", 3000, 1 / 30, "skip"),
        ("jpeg", {}, "jpeg", 2400, 1 / 30, "small"),
        ("jpeg", {"operator": "differentiable"}, "jpeg", 2400, 1 / 30, "small"),
        ("sr", {"factor": 4}, "sr", 2000, 0.03, "skip"),
        ("sr", {"factor": 8}, "sr", 4000, 0.05, "skip"),
        ("inpaint", {}, "inpaint", 5000, 0.03, "skip"),
        ("blur", {}, "blur", 3000, 0.03, "skip"),
        ("multi", {}, "multi", 3000, 1 / 30, "skip"),
    ],
)
def test_task_settings_follow_the_notebooks(name, params, task, iterations, reg, net):
    obs = observe(name, torch.rand(1, 3, 64, 64), **params)
    s = DeepImagePrior().resolve(obs)
    assert (s["task"], s["iterations"], s["reg_noise_std"], s["net"]) == (task, iterations, reg, net)
    assert s["input_depth"] == (3 if net == "small" else 32)


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


def test_runs_through_every_operator_with_the_right_shape():
    clean = torch.rand(1, 3, 32, 32)
    for name in DEGRADATIONS:
        obs = observe(name, clean)
        out, _ = restore(DeepImagePrior.Params(iterations=2, net="small"), obs)
        assert out.shape == clean.shape, name
        assert torch.isfinite(out).all(), name


def test_non_multiple_sizes_are_padded():
    obs = observe("noise", torch.rand(1, 3, 40, 72))
    out, _ = restore(DeepImagePrior.Params(iterations=1, net="small"), obs)
    assert out.shape == (1, 3, 40, 72)


def test_backtracking_restores_weights_after_a_jump():
    # y = 0.5 is fitted at once by the initial net; a huge step ruins the fit by far more than 5 dB
    obs = observe("noise", torch.full((1, 3, 32, 32), 0.5), sigma=0)
    out, ctx = restore(DeepImagePrior.Params(iterations=12, net="small", lr=5.0), obs)
    assert ctx.trace["backtracks"][0] >= 1
    assert torch.isfinite(out).all()


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
    obs = make_observation(cell.degradation.plugin, to_tensor(item.image), cell.seed, item.id, "noise")
    metrics = MetricSuite(lpips=False)
    real = compute_cell(cell, obs, metrics)
    cell.image = ImageItem(item.id, np.zeros_like(item.image), digest=item.digest)  # a clean image it must not use
    fake = compute_cell(cell, obs, metrics)
    assert real["status"] == fake["status"] == "ok"
    assert np.array_equal(real["_restored"], fake["_restored"])
    assert real["psnr"] != fake["psnr"]
