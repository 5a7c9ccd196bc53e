import ast
import importlib
from pathlib import Path

import pytest
import torch

from bench.api import TASKS, Degradation
from bench.cells import degradation_generator
from bench.errors import ParameterError
from bench.params import build_params
from bench.physics.blur import convolve, gaussian_kernel, motion_kernel
from bench.physics.jpeg import pillow_jpeg
from bench.registry import available, get_degradation_class

NAMES = ["noise", "jpeg", "blur", "sr", "inpaint", "multi"]


def clean(size=64):
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed_and_image(name):
    d: Degradation = get_degradation_class(name)()
    x = clean()
    a = d.degrade(x, degradation_generator(0, "img", name))
    b = d.degrade(x, degradation_generator(0, "img", name))
    c = d.degrade(x, degradation_generator(1, "img", name))
    assert torch.equal(a.y, b.y)
    if name not in ("jpeg", "sr"):  # deterministic operators without noise by default
        assert not torch.equal(a.y, c.y)
    if name in ("jpeg", "multi"):  # JPEG output is 8-bit by nature; the others are float by default (test_protocol)
        assert a.y.min() >= 0 and a.y.max() <= 1
        assert torch.equal(torch.round(a.y * 255) / 255, a.y), "JPEG observations are 8-bit"
    assert a.description and a.sigma > 0


@pytest.mark.parametrize("name", NAMES)
def test_operator_is_differentiable_and_matches_shapes(name):
    d = get_degradation_class(name)()
    x = clean().requires_grad_(True)
    obs = d.degrade(x.detach(), degradation_generator(0, "img", name))
    out = obs.operator(x)
    assert tuple(out.shape) == tuple(obs.y.shape)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert tuple(obs.operator.init(obs.y).shape) == tuple(x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_degradation_declares_its_task_and_the_observation_carries_it(name):
    cls = get_degradation_class(name)
    assert cls.task == name and cls.task in TASKS
    obs = cls().degrade(clean(), degradation_generator(0, "img", name))
    assert obs.task == name
    assert cls().observation(obs.y, obs.operator).task == name  # the cached-observation path keeps it


@pytest.mark.parametrize("name", NAMES)
def test_degradations_import_image_operators_only_from_bench(name):
    """Plugins sit side by side: a degradation never imports another plugin module (e.g. multi from blur)."""
    source = Path(importlib.import_module(f"degradations.{name}").__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {m for m in imported if m.split(".")[0] in ("degradations", "methods")}, imported


def test_operator_rebuilt_from_same_draws_matches_observation():
    d = get_degradation_class("inpaint")()
    x = clean()
    obs = d.degrade(x, degradation_generator(3, "a", "inpaint"))
    op = d.make_operator((64, 64), degradation_generator(3, "a", "inpaint"))
    assert torch.equal(op.mask, obs.operator.mask)


def test_noise_level_matches_sigma():
    d = get_degradation_class("noise")(build_params(get_degradation_class("noise").Params, {"sigma": 25}, "noise"))
    x = torch.full((1, 3, 128, 128), 0.5)
    y = d.degrade(x, torch.Generator().manual_seed(0)).y
    assert (y - x).std().item() * 255 == pytest.approx(25, rel=0.05)


def test_jpeg_is_real_pillow_jpeg_and_kornia_operator_close():
    x = clean(64)
    y = pillow_jpeg(x, 10)
    assert 0 < (y - x).abs().mean() < 0.1
    d = get_degradation_class("jpeg")(get_degradation_class("jpeg").Params(quality=10, operator="differentiable"))
    obs = d.degrade(x, torch.Generator())
    assert (obs.operator(x) - obs.y).pow(2).mean().sqrt() < 0.05


def test_kernels_normalised_and_motion_seeded():
    assert gaussian_kernel(25, 1.6).sum() == pytest.approx(1.0)
    k1 = motion_kernel(15, 10, torch.Generator().manual_seed(0))
    k2 = motion_kernel(15, 10, torch.Generator().manual_seed(0))
    k3 = motion_kernel(15, 10, torch.Generator().manual_seed(1))
    assert torch.equal(k1, k2) and not torch.equal(k1, k3) and k1.sum() == pytest.approx(1.0)
    impulse = torch.zeros(1, 3, 31, 31)
    impulse[..., 15, 15] = 1
    out = convolve(impulse, k1)
    assert torch.allclose(out[0, 0, 8:23, 8:23], k1, atol=1e-6)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("jpeg", {"quality": 0}, "quality=0 is outside 1..100"),
        ("jpeg", {"quality": 101}, "quality=101 is outside 1..100"),
        ("noise", {"sigma": -1}, "sigma=-1.0 must be >= 0"),
        ("sr", {"factor": 3}, "factor=3 is not supported"),
        ("inpaint", {"missing": 1.5}, "missing=1.5 must be in"),
    ],
)
def test_invalid_parameters(name, overrides, message):
    cls = get_degradation_class(name)
    with pytest.raises(ParameterError, match=message):
        build_params(cls.Params, overrides, name)


def test_sr_size_must_divide():
    d = get_degradation_class("sr")()
    with pytest.raises(ValueError, match="does not divide the image size 50×50; use --crop 48"):
        d.degrade(torch.rand(1, 3, 50, 50), torch.Generator())


def test_the_builtin_degradations_tested_here_are_registered():
    # What this file's parametrised tests cover is the built-ins; every registered degradation, built-in or dropped
    # in, goes through tests/conformance/test_plugins.py (seeded, captioned, declares a task, every method restores
    # it or says n/a) without editing a test, and the learned one (deflow) has its own file with a tiny checkpoint.
    assert set(NAMES) <= set(available("degradation"))
