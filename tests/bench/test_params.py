from dataclasses import dataclass
from typing import Literal

import pytest

from bench.errors import ParameterError
from bench.params import build_params, expand_grid, split_grid_string


@dataclass
class P:
    sigma: float = 25.0
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    path: str | None = None

    def __post_init__(self):
        if self.sigma < 0:
            raise ValueError(f"sigma={self.sigma} must be >= 0")


def test_coercion_from_strings():
    p = build_params(P, {"sigma": "15", "steps": "3", "mode": "b", "flag": "yes", "sizes": "[4, 5]", "path": "none"}, "x")
    assert p == P(15.0, 3, "b", True, (4, 5), None)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sigmaa": 1}, "unknown parameter 'x.sigmaa'. Did you mean 'sigma'?"),
        ({"sigma": "-1"}, "sigma=-1.0 must be >= 0"),
        ({"steps": "1.5"}, "x.steps='1.5' is not a valid int"),
        ({"mode": "c"}, "choose one of a, b"),
        ({"flag": "maybe"}, "not a valid bool"),
    ],
)
def test_errors_name_the_parameter(overrides, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace("?", r"\?").replace(".", r"\.")):
        build_params(P, overrides, "x")


def test_grid_expansion():
    assert expand_grid({"a": [1, 2], "b": [3, 4]}) == [
        {"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3}, {"a": 2, "b": 4}]
    assert split_grid_string("15,25") == ["15", "25"]
    assert split_grid_string("[8,16]") == "[8,16]"
    assert split_grid_string("0.5") == "0.5"


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", float("inf"), float("nan")])
def test_non_finite_floats_are_rejected(value):
    """No parameter means inf or NaN: accepted, they failed every cell later (issue 14)."""
    with pytest.raises(ParameterError, match=r"x\.sigma=.* is not a valid \(finite\) float"):
        build_params(P, {"sigma": value}, "x")


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, True, None])
def test_wrong_types_are_parameter_errors(value):
    with pytest.raises(ParameterError, match="x.sigma="):
        build_params(P, {"sigma": value}, "x")
