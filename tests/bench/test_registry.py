from dataclasses import dataclass

import pytest

from bench.api import Method
from bench.errors import UnknownNameError
from bench.registry import available, get_degradation_class, get_method_class, register_method, unregister


def test_builtin_plugins_are_registered():
    assert {"identity", "tv"} <= set(available("method"))
    assert {"noise", "jpeg", "blur", "sr", "inpaint", "multi"} <= set(available("degradation"))


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'noise'") as err:
        get_degradation_class("nosie")
    assert err.value.exit_code == 2


def test_register_and_duplicate_detection():
    @register_method("test-dummy")
    class Dummy(Method):
        """Dummy."""

        @dataclass
        class Params:
            a: int = 1

    try:
        assert get_method_class("test-dummy") is Dummy
        with pytest.raises(ValueError, match="registered twice"):
            @register_method("test-dummy")
            class Other(Method):
                pass
    finally:
        unregister("method", "test-dummy")


def test_every_plugin_has_dataclass_params_with_defaults():
    import dataclasses

    for kind in ("method", "degradation"):
        for name, cls in available(kind).items():
            assert dataclasses.is_dataclass(cls.Params), name
            cls.Params()  # all defaults
            assert cls.__doc__, f"{kind} {name} needs a docstring"


def test_entry_point_plugins_are_loaded(monkeypatch, tmp_path):
    """A third-party module named by an entry point is imported and registers itself."""
    import sys
    import types

    import bench.registry as registry

    module = types.ModuleType("thirdparty_plugin")
    exec(
        "from dataclasses import dataclass\n"
        "from bench.api import Method\n"
        "from bench.registry import register_method\n"
        "@register_method('thirdparty')\n"
        "class ThirdParty(Method):\n"
        "    '''From a plugin.'''\n"
        "    @dataclass\n"
        "    class Params:\n"
        "        pass\n",
        module.__dict__,
    )

    class EntryPoint:
        name = "thirdparty"

        def load(self):
            sys.modules["thirdparty_plugin"] = module
            return module

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group.endswith("methods") else [])
    monkeypatch.setattr(registry, "_loaded", set())
    try:
        assert "thirdparty" in registry.available("method")
    finally:
        registry.unregister("method", "thirdparty")


def test_parameter_listing_says_what_auto_defaults_mean_and_lists_choices():
    from bench.registry import describe_parameters

    dip = describe_parameters(get_method_class("dip").Params)
    assert "iterations (int) = auto: the task's official count × iteration_scale  [0 means auto]" in dip
    assert "reg_noise_std (float) = auto: per task  [< 0 means auto]" in dip
    assert "task (auto | noise | jpeg | blur | sr | inpaint | multi) = auto: obs.task" in dip
    assert any(line.startswith("precision (auto | float32 | bfloat16 | float64) = auto: bfloat16") for line in dip)
    daep = describe_parameters(get_method_class("daep").Params)  # inherited fields keep their comments
    assert "sigma_dae (float) = auto: the checkpoint's σ  [0 means auto]" in daep
    assert "gamma (float) = 27.5" in daep
    assert "kind (gaussian | motion) = 'gaussian'" in describe_parameters(get_degradation_class("blur").Params)
