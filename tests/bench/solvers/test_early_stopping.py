"""ES-WMV (bench/solvers/early_stopping.py) and its use by the DIP and Double-DIP fits."""

from __future__ import annotations

import pytest
import torch

from bench.api import RestoreContext
from bench.physics.operator import Observation, Operator
from bench.solvers.dip import DipFit, fit_dip
from bench.solvers.dip_double import DoubleDipFit, fit_double_dip
from bench.solvers.early_stopping import WindowedVariance
from methods.dip import DeepImagePrior
from methods.doubledip import DoubleDIP


@pytest.fixture(autouse=True, scope="module")
def tiny_tensors_on_one_thread(one_thread):
    """Tiny networks: one thread (the ``one_thread`` fixture of tests/conftest.py)."""


def test_rule_detects_the_stillest_window_and_waits_patience_iterations():
    rule = WindowedVariance(window=4, patience=3)
    values = [0, 4, 6, 7, 7.5, 7.6, 7.6, 7.6, 7.6, 9, 12, 16, 20, 25]
    stops = [rule.update(torch.full((2, 2), float(v)), i) for i, v in enumerate(values)]
    assert rule.best_iteration == 8 and rule.best_variance == pytest.approx(0.0)
    assert stops.index(True) == 11 and not any(stops[:11])  # 3 iterations after the minimum


def test_rule_needs_a_full_window_and_valid_options():
    rule = WindowedVariance(window=3, patience=1)
    assert not rule.update(torch.zeros(1), 0) and rule.best_iteration == -1
    with pytest.raises(ValueError, match="es_window=1 must be >= 2"):
        WindowedVariance(window=1)
    with pytest.raises(ValueError, match="early_stop='x' must be one of off, wmv"):
        DeepImagePrior.Params(early_stop="x")
    with pytest.raises(ValueError, match="es_patience=0"):
        DoubleDIP.Params(es_patience=0)


def _obs() -> Observation:
    y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return Observation(y, Operator(lambda x: x, (32, 32), (32, 32), sigma=0.1), task="noise")


@pytest.mark.parametrize("fit_fn", ["dip", "doubledip"])
def test_fits_stop_early_and_never_later_than_their_budget(fit_fn):
    obs = _obs()
    runs = {}
    for mode in ("off", "wmv"):
        ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
        if fit_fn == "dip":
            fit = DipFit(40, 1 / 30, "small", 3, early_stop=mode, es_window=3, es_patience=2, precision="float32")
            out = fit_dip(obs, ctx, fit)
        else:
            fit = DoubleDipFit(40, input_depth=2, early_stop=mode, es_window=3, es_patience=2, precision="float32")
            out = fit_double_dip(obs, ctx, fit)
        assert out.shape == obs.y.shape and 0 <= float(out.min()) and float(out.max()) <= 1
        runs[mode] = ctx
    assert runs["off"].steps == 40 and "es_iteration" not in runs["off"].trace
    detected = runs["wmv"].trace["es_iteration"][0]
    assert 2 <= detected < runs["wmv"].steps <= 40
