"""Declared reference (published) budgets: who declares one, and whether the paper profile reaches it."""

from __future__ import annotations

from bench.api import TASKS, Budget
from bench.registry import available
from bench.solvers.dip import PAPER_SETTINGS
from bench.solvers.dip_double import PAPER_ITERATIONS
from methods.pnp import AUTO_ITERATIONS

ITERATIVE = {"dip", "doubledip", "flowprior", "dmsp", "daep", "pnp"}


def paper_count(name: str, task: str) -> int:
    """What the method runs at profile paper (DIP and Double-DIP: the recipe × iteration_scale 1)."""
    if name == "dip":
        return PAPER_SETTINGS["sr4" if task == "sr" else task][0]
    if name == "doubledip":
        return PAPER_ITERATIONS
    cls = available("method")[name]
    count = cls.profiles["paper"].get(cls.reference_budget.param, 0)
    return count or AUTO_ITERATIONS[task]  # pnp: 0 = DPIR's count for the task


def test_iterative_methods_declare_a_budget_and_the_others_none():
    methods = available("method")
    declared = {name for name, cls in methods.items() if cls.reference_budget is not None}
    assert ITERATIVE <= declared
    for name in ("identity", "bm3d", "epll", "tv", "srflow4x", "srflow8x"):
        assert name not in methods or methods[name].reference_budget is None, name
    for name in declared:
        budget = methods[name].reference_budget
        assert isinstance(budget, Budget) and budget.source and budget.unit == "iterations"
        assert hasattr(methods[name].Params(), budget.param)


def test_paper_profile_reaches_every_reference():
    """Every paper budget equals its reference (DIP inpainting: restoration.ipynb's 11000 iterations), so paper cells
    are never marked."""
    methods = available("method")
    short = {}
    for name in ITERATIVE:
        budget = methods[name].reference_budget
        for task in TASKS:
            reference = budget.reference(task)
            if reference is not None and paper_count(name, task) != reference:
                short[(name, task)] = (paper_count(name, task), reference)
    assert short == {}
    assert methods["dip"].reference_budget.reference("sr", 8) == PAPER_SETTINGS["sr8"][0]
