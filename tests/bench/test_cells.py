"""One cell: a method that does not apply gives an "n/a" row (never "failed"); the budget share is recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.api import Budget
from bench.cells import Cell, instantiate
from bench.compute import cell_budget, compute_cell, execute_cell
from bench.datasets import ImageItem
from bench.metrics import MetricSuite
from bench.solvers.applicability import NotApplicable
from methods.identity import Identity
from methods.tv import TotalVariation

IMAGE = ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32))


def cell(
    method: str = "identity", degradation: str = "noise", overrides: dict | None = None, profile: str = "smoke"
) -> Cell:
    m = instantiate("method", method, overrides or {}, profile)[0]
    d = instantiate("degradation", degradation, {}, profile)[0]
    return Cell.make(m, d, IMAGE, 0, profile, "demo")


def test_not_applicable_is_an_na_row_with_its_reason(monkeypatch):
    def refuse(self, obs, ctx):
        raise NotApplicable("identity", obs.task, "no scheme for this task here")

    monkeypatch.setattr(Identity, "restore", refuse)
    row = execute_cell(cell(degradation="sr"), MetricSuite(lpips=False))
    assert row.status == "n/a"
    assert row.error == "identity does not apply to the task 'sr': no scheme for this task here"
    assert row.restored is None and row.psnr is None
    assert row.budget_fraction is None


def test_other_errors_still_fail(monkeypatch):
    def broken(self, obs, ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(Identity, "restore", broken)
    row = execute_cell(cell(), MetricSuite(lpips=False))
    assert row.status == "failed" and "boom" in row.error


def test_not_applicable_survives_a_worker_process_boundary():
    import pickle

    err = pickle.loads(pickle.dumps(NotApplicable("bm3d", "sr", "no sr scheme")))
    assert isinstance(err, NotApplicable) and (err.method, err.task, err.reason) == ("bm3d", "sr", "no sr scheme")


def test_budget_share_of_a_method_with_a_reference(monkeypatch):
    monkeypatch.setattr(TotalVariation, "reference_budget", Budget("iterations", 1000, source="test"))
    planned = cell_budget(cell("tv", overrides={"iterations": "10"}))
    assert planned["budget_fraction"] == pytest.approx(0.01)
    assert json.loads(planned["budget"]) == {"used": 10, "reference": 1000, "unit": "iterations", "source": "test"}
    c = cell("tv", overrides={"iterations": "10"})
    obs = c.degradation.plugin.degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
    row = compute_cell(c, obs, MetricSuite(lpips=False))
    assert row.status == "ok" and row.budget_fraction == pytest.approx(0.01)  # the 10 iterations it ran


def test_no_budget_without_a_declaration():
    assert cell_budget(cell("identity")) == {"budget_fraction": None, "budget": None, "weights": None}


def test_packaged_weights_are_described_in_their_own_column_and_other_weights_are_not():
    """A learned prior's packaged CPU weights travel with each cell (the ``weights`` column), so reports can say
    what they are; the budget column holds the budget only."""
    packaged = cell_budget(cell("flowprior", profile="quick"))
    assert json.loads(packaged["budget"])["reference"] == 200 and "trained here on one CPU core" in packaged["weights"]
    assert "weights" not in json.loads(packaged["budget"])
    own = cell_budget(cell("flowprior", overrides={"checkpoint": "mine.pt"}, profile="quick"))
    assert own["weights"] is None and json.loads(own["budget"])["reference"] == 200
    srflow = cell_budget(cell("srflow4x", "sr"))  # no iteration budget: no budget, but the note
    assert srflow["budget_fraction"] is None and srflow["budget"] is None and "39.5 M" in srflow["weights"]


def test_task_dependent_reference_and_auto_scale():
    """DIP's published budget depends on the task (and the sr factor); profiles scale it."""
    dip_sr = instantiate("method", "dip", {}, "quick")[0]
    for factor, reference in ((4, 2000), (8, 4000)):
        sr = instantiate("degradation", "sr", {"factor": str(factor)}, "quick")[0]
        image = ImageItem("x", np.zeros((64, 64, 3), np.float32))
        budget = cell_budget(Cell.make(dip_sr, sr, image, 0, "quick", "demo"))
        assert budget["budget_fraction"] == pytest.approx(0.1)
        assert json.loads(budget["budget"])["reference"] == reference


def test_an_automatic_count_is_predicted_as_the_reference_and_measured_when_run():
    """pnp's iterations=0 means DPIR's schedule: planned as the reference, recorded as the steps it ran."""
    pnp_blur = cell("pnp", "blur", profile="quick")
    assert cell_budget(pnp_blur)["budget_fraction"] == pytest.approx(1.0)
    assert cell_budget(pnp_blur, steps=4)["budget_fraction"] == pytest.approx(0.5)
    assert cell_budget(pnp_blur, steps=0)["budget_fraction"] == pytest.approx(0.0)  # ran nothing: 0 %, not 100 %


def test_a_cached_jpeg_observation_is_simulated_again_with_its_file():
    """The JPEG file's coefficients are part of the observation: a cached y does not drop them."""
    from bench.compute import make_observation

    c = cell("identity", "jpeg")
    clean = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fresh = make_observation(c.degradation.plugin, clean, 0, "d", "jpeg")
    cached_y = fresh.y[0].permute(1, 2, 0).numpy()
    again = make_observation(c.degradation.plugin, clean, 0, "d", "jpeg", cached_y=cached_y)
    assert torch.equal(again.y, fresh.y)
    assert torch.equal(again.operator.quantization.coefficients[0], fresh.operator.quantization.coefficients[0])
