"""Tests every registered plugin passes (benchopt's idea): a method or a degradation dropped into ``methods/`` or
``degradations/`` is collected here without editing any test.

Every method × every degradation at the smoke profile, on a 64² image:
- the method restores (shape ``(1, 3, H, W)``, finite, in [0, 1]) or declares the task outside its scope by
  raising :class:`NotApplicable` (shown as n/a) — any other exception is a failure;
- the result is bit-identical for the same generator seed;
- the result does not depend on the clean image: it is the same when the clean tensor the observation was made
  from is zeroed in place before restoring (so no observation, operator or closure holds a reference to it).
Every method: dataclass parameters whose invalid values are one-line errors.
Every degradation: seeded (the same generator gives the same observation), declares a task, and a caption.
A task outside the built-in ones (``bench.api.TASKS``): a toy salt-and-pepper degradation declaring ``impulse``,
registered for the test only; every method restores it or says n/a with a reason, and the methods whose recipes
assume Gaussian noise (``dip``, ``pnp``, ``bm3d``) say n/a rather than run one.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bench.api import TASKS, Degradation, Operator, RestoreContext
from bench.cells import degradation_generator, instantiate
from bench.errors import BenchError, CheckpointError
from bench.params import build_params
from bench.registry import available, register_degradation, unregister
from bench.solvers.applicability import NotApplicable

METHODS = list(available("method"))
DEGRADATIONS = list(available("degradation"))
SIZE = 64


def clean_image() -> torch.Tensor:
    """A smooth 64² test image with texture (no evaluation image)."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, SIZE // 8, SIZE // 8, generator=g)
    smooth = torch.nn.functional.interpolate(base, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return (0.8 * smooth + 0.2 * torch.rand(1, 3, SIZE, SIZE, generator=g)).clamp(0, 1)


def degradation(name: str):
    """The smoke instance of ``name``; skipped (with the plugin's own reason) where it needs a file that a fresh
    checkout lacks, e.g. a learned degradation's checkpoint (``deflow``, tested with a tiny trained model in
    tests/degradations/test_deflow.py)."""
    deg = instantiate("degradation", name, {}, "smoke")[0].plugin
    try:
        deg.degrade(clean_image(), degradation_generator(0, "conformance", name))
    except CheckpointError as err:
        pytest.skip(f"{name} needs a checkpoint: {err}")
    return deg


def restore(method, obs, seed: int = 11) -> torch.Tensor:
    return method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(seed), profile="smoke"))


@pytest.mark.parametrize("degradation_name", DEGRADATIONS)
@pytest.mark.parametrize("method_name", METHODS)
def test_every_method_restores_every_degradation_or_says_na(method_name, degradation_name, one_thread):
    deg = degradation(degradation_name)
    method = instantiate("method", method_name, {}, "smoke")[0].plugin
    clean = clean_image()
    obs = deg.degrade(clean, degradation_generator(0, "conformance", degradation_name))
    try:
        first = restore(method, obs)
    except NotApplicable as err:
        assert err.method == method_name and str(err).startswith(f"{method_name} does not apply to the task")
        return
    assert isinstance(first, torch.Tensor) and tuple(first.shape) == (1, 3, SIZE, SIZE)
    assert bool(torch.isfinite(first).all()), f"{method_name} on {degradation_name}: NaN or Inf in the result"
    low, high = float(first.min()), float(first.max())
    assert 0 <= low and high <= 1, f"{method_name} on {degradation_name}: values in [{low:.4f}, {high:.4f}], not [0, 1]"

    # the same observation made from a copy of the clean image, that copy zeroed before restoring: a method (or an
    # observation) that kept a reference to the clean image would now see zeros; the same seed, the same bits
    copy = clean.clone()
    obs_again = deg.degrade(copy, degradation_generator(0, "conformance", degradation_name))
    copy.zero_()
    assert torch.equal(obs_again.y, obs.y)
    second = restore(method, obs_again)
    assert torch.equal(first, second), f"{method_name} on {degradation_name}: not reproducible under one seed"


@pytest.mark.parametrize("name", METHODS)
def test_every_method_validates_its_parameters(name):
    cls = available("method")[name]
    params = cls.Params()
    assert dataclasses.is_dataclass(params)
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        with pytest.raises(BenchError) as info:  # a number given as text that is not a number
            build_params(cls.Params, {field.name: "abc"}, owner=name)
        assert "\n" not in str(info.value) and field.name in str(info.value)
        if isinstance(value, float):
            with pytest.raises(BenchError) as info:  # NaN is never a meaningful setting
                build_params(cls.Params, {field.name: math.nan}, owner=name)
            assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_every_degradation_is_seeded_captioned_and_declares_a_task(name):
    deg = degradation(name)
    clean = clean_image()
    a = deg.degrade(clean, degradation_generator(0, "conformance", name))
    b = deg.degrade(clean, degradation_generator(0, "conformance", name))
    assert torch.equal(a.y, b.y)
    assert isinstance(type(deg).task, str) and type(deg).task and a.task == type(deg).task
    assert deg.describe().strip() and a.description.strip()
    assert a.sigma >= 0 and math.isfinite(a.sigma)
    assert tuple(a.operator.in_shape) == (SIZE, SIZE) and tuple(a.operator(clean).shape) == tuple(a.y.shape)


IMPULSE = "conformance-impulse"  # registered only while a test below runs
GAUSSIAN_ONLY = ("dip", "pnp", "bm3d")  # every recipe assumes Gaussian noise (or JPEG treated as such)


class SaltAndPepper(Degradation):
    """Salt-and-pepper impulse noise (a toy third-party degradation): a fraction of pixels set to 0 or 1."""

    task = "impulse"  # not one of the built-in tasks

    @dataclasses.dataclass
    class Params:
        density: float = 0.1

    def make_operator(self, shape, generator):
        # the identity with the error's RMS for uniform intensities: sqrt(density · E[(b − x)²]) = sqrt(density / 3)
        sigma = math.sqrt(self.params.density / 3)
        return Operator(lambda x: x, shape, shape, sigma=sigma, name="identity", linear=True)

    def simulate(self, clean, operator, generator):
        size = (clean.shape[0], 1, *clean.shape[-2:])
        hit = torch.rand(size, generator=generator) < self.params.density
        salt = (torch.rand(size, generator=generator) < 0.5).to(clean.dtype)
        return torch.where(hit, salt.expand_as(clean), operator(clean))


@pytest.fixture
def impulse():
    """The toy ``impulse`` degradation, registered for one test and removed after it."""
    register_degradation(IMPULSE)(SaltAndPepper)
    try:
        yield instantiate("degradation", IMPULSE, {}, "smoke")[0].plugin
    finally:
        unregister("degradation", IMPULSE)


@pytest.mark.parametrize("method_name", METHODS)
def test_every_method_restores_a_task_without_builtin_recipes_or_says_na(method_name, impulse, one_thread):
    assert "impulse" not in TASKS and IMPULSE in available("degradation")
    obs = impulse.degrade(clean_image(), degradation_generator(0, "conformance", IMPULSE))
    assert obs.task == "impulse"
    method = instantiate("method", method_name, {}, "smoke")[0].plugin
    try:
        out = restore(method, obs)
    except NotApplicable as err:
        assert err.method == method_name and err.task == "impulse" and err.reason.strip()
        assert "\n" not in str(err)
        return
    assert method_name not in GAUSSIAN_ONLY, f"{method_name} ran a Gaussian recipe on impulse noise"
    assert tuple(out.shape) == (1, 3, SIZE, SIZE)
    assert bool(torch.isfinite(out).all()), f"{method_name} on impulse: NaN or Inf in the result"
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_a_task_must_be_a_short_identifier():
    class Bad(SaltAndPepper):
        task = "Salt & pepper"

    with pytest.raises(ValueError) as info:
        Bad().degrade(clean_image(), torch.Generator().manual_seed(0))
    assert "\n" not in str(info.value) and "task=" in str(info.value)
