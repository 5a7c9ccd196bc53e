"""The HQS solver of plug-and-play (bench/solvers/pnp.py): DPIR's schedule and the data step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.physics.blur import convolve, gaussian_kernel
from bench.physics.operator import Observation, Operator
from bench.solvers.pnp import LAMBDA, SIGMA_START, hqs_restore, schedule


class Identity(nn.Module):
    """A denoiser that returns its input: HQS then only enforces the data."""

    def forward(self, y, sigma):
        return y


def test_schedule_is_log_spaced_from_49_to_the_noise_level():
    levels = schedule(10 / 255, 8)
    assert len(levels) == 8 and levels[0] == pytest.approx(SIGMA_START) and levels[-1] == pytest.approx(10 / 255)
    ratios = [a / b for a, b in zip(levels, levels[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert schedule(0.0, 3)[-1] == pytest.approx(0.255 / 255)  # DPIR's floor
    assert schedule(1.0, 3) == [pytest.approx(SIGMA_START)] * 3  # never above the start level


def test_data_steps_fit_the_observation_through_the_operator():
    clean = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    kernel = gaussian_kernel(7, 1.5)
    op = Operator(lambda x: convolve(x, kernel), (24, 24), (24, 24), sigma=0.01)
    y = op(clean)
    obs = Observation(y, op, task="blur")
    start = float((op(y) - y).pow(2).mean())
    x = hqs_restore(obs, Identity(), schedule(0.01, 6), cg_steps=20)
    assert float((op(x) - y).pow(2).mean()) < 0.05 * start
    assert LAMBDA == 0.23
