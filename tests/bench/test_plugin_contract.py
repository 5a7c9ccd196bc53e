"""The plugin contract is declared on the base classes of bench.api (issue 27): every attribute the harness reads
has a default and a comment there, noise is simulated only where a degradation asks for it, and parameter help
comes from field metadata before comments."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import bench
from bench.api import Degradation, Method, Operator, Plugin
from bench.physics.operator import apply_protocol
from bench.registry import available, describe_parameters, field_comments, field_help

BENCH = Path(bench.__file__).parent

# Every class attribute the harness reads from a plugin class, and the base class that declares it.
CONTRACT: dict[type, tuple[str, ...]] = {
    Plugin: ("name", "Params", "kind", "version"),
    Degradation: ("task", "noise_param", "simulate_when_cached"),
    Method: ("profiles", "reference_budget", "memory_bytes_per_pixel"),
}
HOOKS: dict[type, tuple[str, ...]] = {
    Plugin: ("resolve_params", "summary"),
    Degradation: ("make_operator", "simulate", "add_noise", "check_shape", "describe", "protocol"),
    Method: ("restore", "weights_note"),
}
TOLERATED_GETATTR: set[tuple[str, str]] = set()  # (file, attribute) pairs allowed to stay getattr reads: none


def declared_line(base: type, name: str) -> str:
    """The source line of ``base``'s body that declares ``name``."""
    source, _ = inspect.getsourcelines(base)
    lines = [line.strip() for line in source if line.strip().startswith(f"{name}:")]
    assert len(lines) == 1, f"{base.__name__}.{name} is not declared once in its class body"
    return lines[0]


@pytest.mark.parametrize("base,name", [(b, n) for b, names in CONTRACT.items() for n in names])
def test_every_contract_attribute_is_a_commented_classvar_with_a_default(base, name):
    assert name in vars(base), f"{name} is not declared on {base.__name__}"
    hints = typing.get_type_hints(base)
    assert typing.get_origin(hints[name]) is typing.ClassVar, f"{base.__name__}.{name} is not a ClassVar"
    assert "#" in declared_line(base, name), f"{base.__name__}.{name} has no comment saying what it is"


@pytest.mark.parametrize("base,name", [(b, n) for b, names in HOOKS.items() for n in names])
def test_every_hook_is_defined_on_its_base_and_listed_in_its_docstring(base, name):
    assert callable(getattr(base, name)) and name in vars(base)
    doc = base.__doc__ or ""
    assert name in doc, f"{base.__name__}'s docstring omits {name}"


def test_the_base_defaults_are_the_neutral_ones():
    assert Plugin.version == "" and Degradation.noise_param is None and Degradation.simulate_when_cached is False
    assert Method.profiles == {} and Method.reference_budget is None and Method.memory_bytes_per_pixel is None
    assert Method.weights_note({"checkpoint": ""}) == ""


def getattr_names(path: Path) -> set[str]:
    """The attribute names ``getattr(obj, "NAME", ...)`` reads with a literal name in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)
    return names


def test_the_harness_reads_no_undeclared_plugin_attribute_and_no_contract_attribute_through_getattr():
    """An attribute a plugin class defines beyond the bases, read by name anywhere in bench/, would be a hidden
    part of the contract; a contract attribute read with a getattr default hides that the base declares it."""
    plugins = [*available("method").values(), *available("degradation").values()]
    extras = {
        name
        for cls in plugins
        for klass in cls.__mro__
        if klass not in (Plugin, Method, Degradation, object)
        for name in vars(klass)
        if not name.startswith("_")
    } - {n for b in (Method, Degradation) for n in dir(b)}
    contract = {name for names in (*CONTRACT.values(), *HOOKS.values()) for name in names}
    for path in sorted(BENCH.rglob("*.py")):
        read = getattr_names(path)
        where = path.relative_to(BENCH).as_posix()
        assert not read & extras - {"Params"}, f"bench/{where} reads undeclared plugin attributes {read & extras}"
        hidden = {name for name in read & contract if (where, name) not in TOLERATED_GETATTR}
        assert not hidden, f"bench/{where} reads {sorted(hidden)} with getattr; the bases declare them"


@dataclass
class SigmaParams:
    sigma: float = 25.0


def identity(shape: tuple[int, int]) -> Operator:
    return Operator(lambda x: x, shape, shape, sigma=0.1, name="identity", linear=True)


class SigmaOnly(Degradation):
    """A degradation with a field called sigma and no request for noise."""

    task = "noise"
    Params = SigmaParams

    def make_operator(self, shape, generator):
        return identity(shape)


class AskedNoise(SigmaOnly):
    """The same, asking for the noise of its sigma field."""

    noise_param = "sigma"


def test_a_sigma_field_alone_adds_no_noise_and_draws_nothing():
    clean = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(5)
    obs = SigmaOnly().degrade(clean, generator)
    assert torch.equal(obs.y, apply_protocol(clean, True, True))  # A(x) under the 8-bit protocol, nothing added
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_noise_param_adds_the_noise_add_noise_draws():
    clean = torch.full((1, 3, 8, 8), 0.5)
    asked = AskedNoise().degrade(clean, torch.Generator().manual_seed(5))
    by_hand = Degradation.add_noise(clean, 25.0, torch.Generator().manual_seed(5))
    assert torch.equal(asked.y, apply_protocol(by_hand, True, True))
    assert not torch.equal(asked.y, clean)


def test_noise_param_must_name_a_params_field():
    with pytest.raises(TypeError, match="noise_param = 'noise_sigma' is not a field of its Params"):

        class Misnamed(SigmaOnly):
            """Names a field that does not exist."""

            noise_param = "noise_sigma"


def test_every_builtin_degradation_with_a_sigma_field_says_what_it_does_with_it():
    """Noise is asked for explicitly: through ``noise_param``, or by a ``simulate`` of its own."""
    for name, cls in available("degradation").items():
        if "sigma" in {f.name for f in dataclasses.fields(cls.Params)}:
            assert cls.noise_param == "sigma" or cls.simulate is not Degradation.simulate, name


@dataclass
class Helped:
    weight: float = field(default=0.5, metadata={"help": "from metadata"})  # from a comment
    steps: int = 10  # from a comment
    plain: int = 1


def test_field_metadata_help_appears_and_wins_over_the_comment():
    assert field_help(Helped) == {"weight": "from metadata", "steps": "from a comment"}
    assert describe_parameters(Helped) == [
        "weight (float) = 0.5  # from metadata",
        "steps (int) = 10  # from a comment",
        "plain (int) = 1",
    ]


def test_metadata_help_reads_auto_like_a_comment():
    @dataclass
    class Auto:
        iterations: int = field(default=0, metadata={"help": "0 = auto: the task's count"})

    assert describe_parameters(Auto) == ["iterations (int) = auto: the task's count  [0 means auto]"]


def test_builtin_plugins_give_their_parameter_help_as_field_metadata():
    """Comments stay a fallback (third-party plugins, the shared dataclasses of bench/solvers that some Params
    extend); the fields a built-in plugin declares itself carry their help as metadata."""
    for kind in ("method", "degradation"):
        for name, cls in available(kind).items():
            shared = [k for k in cls.Params.__mro__[1:] if dataclasses.is_dataclass(k)]
            inherited = set().union(*(field_comments(k) for k in shared))
            commented = set(field_comments(cls.Params)) - inherited
            assert not commented, f"{kind} {name}: help of {sorted(commented)} in comments instead of field metadata"
