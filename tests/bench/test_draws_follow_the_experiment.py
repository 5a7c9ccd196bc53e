"""A cell's random draws follow the experiment (seed, image content, plugin names, resolved parameters, files),
never the code version: tidying code recomputes a cell (its key changes) and gives the same numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bench.api import Method
from bench.cells import Cell, instantiate
from bench.compute import execute_cell
from bench.datasets import ImageItem
from bench.metrics import MetricSuite

IMAGE = ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32))


def cell(version: str | None = None, seed: int = 0, weight: float = 0.9) -> Cell:
    m = instantiate("method", "tv", {"weight": weight}, "smoke")[0]
    if version is not None:
        m = dataclasses.replace(m, version=version)
    d = instantiate("degradation", "noise", {}, "smoke")[0]
    return Cell.make(m, d, IMAGE, seed, "smoke", "demo")


def test_a_code_change_changes_the_key_but_not_the_draws():
    before, after = cell(), cell(version="edited")
    assert before.key != after.key  # recomputed ...
    assert before.draws_id() == after.draws_id()  # ... with the same draws


def test_the_seed_and_the_parameters_change_the_draws():
    assert cell(seed=1).draws_id() != cell().draws_id()
    assert cell(weight=0.5).draws_id() != cell().draws_id()


def test_a_stochastic_restoration_is_unchanged_by_a_code_version_change(monkeypatch):
    from methods.tv import TotalVariation

    def noisy(self: Method, obs, ctx):  # a method that draws from its generator and the global RNG
        return (obs.y + 0.01 * ctx.randn(*obs.y.shape) + 0.01 * torch.randn(obs.y.shape)).clamp(0, 1)

    monkeypatch.setattr(TotalVariation, "restore", noisy)
    metrics = MetricSuite(lpips=False)
    first = execute_cell(cell(), metrics)
    second = execute_cell(cell(version="edited"), metrics)
    third = execute_cell(cell(seed=1), metrics)
    assert first.status == second.status == "ok"
    assert first.psnr == second.psnr and first.ssim == second.ssim
    assert third.psnr != first.psnr
