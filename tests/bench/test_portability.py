"""One verdict on any x86 CPU: what CI compares must not depend on the CPU's kernel path or thread count.

A second kernel path is forced in a child process with the variables that torch, oneDNN and MKL read at
start-up (``ATEN_CPU_CAPABILITY=default`` etc.); on an AVX2 or AVX-512 machine that is a different set of
kernels from the parent's, so these tests compare two paths on any machine that runs them.
See docs/portability.md.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import draws
from bench.api import RestoreContext
from bench.solvers.dip import DipFit, fit_dip
from bench.solvers.dip_double import DoubleDipFit, fit_double_dip
from degradations.noise import Noise

ROOT = Path(__file__).resolve().parents[2]
BASIC_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}

# Runs in the child: the draws and the float64 fits whose results CI compares, saved for the parent.
CHILD = r"""
import sys, torch
sys.path.insert(0, sys.argv[2])
from tests.bench.test_portability import computations
torch.save(computations(), sys.argv[1])
"""


def computations() -> dict[str, torch.Tensor]:
    """Draws of every kind the suite makes, a default-initialised net, and two short float64 fits."""
    g = torch.Generator().manual_seed(5)
    out = {
        "randn": draws.randn((4096,), g),
        "normal_channels_last": draws.normal_(torch.empty(1, 8, 8, 3).permute(0, 3, 1, 2), g).contiguous(),
        "init": default_init(seed=6),
        "noise_observation": Noise().degrade(torch.full((1, 3, 32, 32), 0.5), torch.Generator().manual_seed(1)).y,
    }
    obs = Noise().degrade(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)),
                          torch.Generator().manual_seed(3))
    ctx = lambda: RestoreContext(generator=torch.Generator().manual_seed(4))  # noqa: E731
    out["dip_float64"] = fit_dip(obs, ctx(), DipFit(8, 1 / 30, "small", 3, precision="float64"))
    out["doubledip_float64"] = fit_double_dip(obs, ctx(), DoubleDipFit(8, precision="float64"))
    return out


def default_init(seed: int) -> torch.Tensor:
    """The parameters of a default-initialised conv layer built under ``seed`` (as DIP's make_net does)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = draws.build(lambda: torch.nn.Conv2d(16, 16, 3))
    return torch.cat([p.detach().flatten() for p in layer.parameters()])


@pytest.fixture(scope="module")
def other_kernel_path(tmp_path_factory):
    """``computations()`` run in a child process on torch's, oneDNN's and MKL's most basic kernels."""
    path = tmp_path_factory.mktemp("kernels") / "basic.pt"
    env = {**os.environ, **BASIC_KERNELS, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(ROOT)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def this_kernel_path():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a thread count other than the child's
    try:
        return computations()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["randn", "normal_channels_last", "init", "noise_observation"])
def test_draws_are_bit_identical_on_another_kernel_path(name, this_kernel_path, other_kernel_path):
    # torch.randn in float32 differs by up to 1.5e-6 between these paths, uniform_ by 1 ulp (bench/draws.py)
    assert torch.equal(this_kernel_path[name], other_kernel_path[name])


@pytest.mark.parametrize("name", ["dip_float64", "doubledip_float64"])
def test_float64_fits_agree_on_another_kernel_path(name, this_kernel_path, other_kernel_path):
    # the same fits in float32 differ by up to 0.3 (of 1) per pixel after 8 iterations between these paths;
    # in float64 only the final cast to float32 may round differently
    diff = (this_kernel_path[name] - other_kernel_path[name]).abs().max().item()
    assert diff <= 1e-6, f"{name}: {diff:.2e}"


def test_draws_keep_the_laws_they_replace():
    g = torch.Generator().manual_seed(0)
    x = draws.randn((200_000,), g)
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    conv = draws.build(lambda: torch.nn.Conv2d(32, 32, 3))
    bound = 1 / (32 * 9) ** 0.5  # torch's default (kaiming-uniform, a=√5) bound for this layer
    assert conv.weight.dtype == torch.float32 and float(conv.weight.abs().max()) <= bound
    assert float(conv.weight.abs().max()) > 0.9 * bound
    assert torch.get_default_dtype() == torch.float32


def test_normal_fill_follows_the_storage_order_of_a_channels_last_view():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    view = draws.normal_(torch.empty(1, 4, 5, 3).permute(0, 3, 1, 2), g1)  # (1, 3, 4, 5) channels-last
    plain = draws.randn((1, 4, 5, 3), g2).permute(0, 3, 1, 2)
    assert torch.equal(view, plain)
