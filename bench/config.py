"""The run configuration: one schema for ``bench run``'s options and config files, checked before any work.

:class:`RunConfig` is the schema: each field's type hint is its type, its metadata
its constraints (minimum, maximum, choices, at least one item, no duplicates) and
its config-file key and command-line option (for messages). Building a
``RunConfig`` validates every field, so no cell is computed (and nothing stored)
from a bad value, whichever way the configuration came in:

* :func:`run_config_from` merges a parsed TOML file and command-line options
  (the command line wins; ``--set`` adds to ``[params]``). Unknown keys are an
  error with a did-you-mean; values in the file must have their TOML type
  (``limit = "3"`` is an error, not 3), except that a list key also accepts one
  string in the command-line syntax: ``methods = "tv,dip"`` is
  ``["tv", "dip"]``, ``seeds = "0,1"`` is ``[0, 1]`` (names never contain commas,
  so the split is unambiguous).
* constructing ``RunConfig(...)`` directly (the Python API) checks the same.

Every problem is a :class:`bench.errors.UsageError` (exit 2) that names the key or
option, the value and the fix. Whether a device is present is checked once per run
by :func:`check_device_available` (not here: a Dask run's device is on its workers).
:func:`run_config_from_options` is what ``bench run`` calls (TOML file + click
options); :func:`check_filters` checks the report commands' name filters against
the store.

Example:
    >>> run_config_from({"methods": "identity,tv", "seeds": [0, 1]}, {"limit": 1}).methods
    ['identity', 'tv']
    >>> run_config_from({"limt": 3}, {})
    Traceback (most recent call last):
    bench.errors.UsageError: config: unknown key 'limt'. Did you mean 'limit'? Keys: methods, degradations, ...
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import re
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError, ParameterError, UnknownNameError, UsageError
from bench.images import MIN_SIZE
from bench.params import split_grid_string, suggest
from bench.profiles import PROFILES

MAX_SEED = 2**63 - 1  # seeds are stored as SQLite INTEGERs (signed 64-bit); negative seeds break numpy's RNGs
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
EXECUTORS = ("local", "dask")
DEFAULT_METHODS = ["identity", "tv", "flowprior"]  # the headline: the flow prior against the baselines
DEFAULT_DEGRADATIONS = ["noise", "jpeg", "multi"]


def spec(default: Any = dataclasses.MISSING, *, option: str, key: str | None = None, **checks: Any) -> Any:
    """A schema field: ``option`` (the command-line spelling), ``key`` (the config-file key when it differs from
    the field name) and ``checks``: ``minimum``, ``maximum``, ``choices``, ``nonempty``, ``unique``, ``hint`` (added
    to a range error)."""
    metadata = {"option": option, "key": key, **checks}
    if isinstance(default, (list, dict)):  # mutable: each instance gets its own copy
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """Everything that defines a run; every field is validated on construction (see the module docstring).

    >>> RunConfig(methods=["tv"], degradations=["noise"]).profile
    'quick'
    >>> RunConfig(methods=["tv"], degradations=["noise"], limit=0)
    Traceback (most recent call last):
    bench.errors.UsageError: --limit 0: must be at least 1 (leave it out to use every image).
    """

    methods: list[str] = spec(option="--methods", nonempty=True, unique=True)
    degradations: list[str] = spec(option="--degradations", nonempty=True, unique=True)
    dataset: str = spec("builtin", option="--dataset", nonempty=True)
    limit: int | None = spec(None, option="--limit", minimum=1, hint="leave it out to use every image")
    crop: int | None = spec(None, option="--crop", minimum=MIN_SIZE, hint="images must be at least 16×16 px")
    profile: str = spec("quick", option="--profile", choices=tuple(PROFILES))
    seeds: list[int] = spec([0], option="--seed", minimum=0, maximum=MAX_SEED, nonempty=True, unique=True)
    overrides: dict[str, dict[str, Any]] = spec({}, option="--set", key="params")
    results_dir: str = spec("results", option="--results-dir", nonempty=True)
    data_root: str | None = spec(None, option="--data-root")
    lpips: bool = spec(True, option="--no-lpips", key="no_lpips")  # the file says no_lpips = true
    progress: bool = spec(True, option="--progress")
    device: str = spec("cpu", option="--device", nonempty=True)
    jobs: int = spec(1, option="--jobs", minimum=1)
    executor: str = spec("local", option="--executor", choices=EXECUTORS)
    scheduler: str | None = spec(None, option="--scheduler")
    gpus_per_cell: float = spec(0.0, option="--gpus-per-cell", minimum=0)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(RunConfig)
        for f in dataclasses.fields(self):
            where = f.metadata["option"]
            setattr(self, f.name, check_field(f, conform(getattr(self, f.name), hints[f.name], where), where))
        self.device = check_device_name(self.device)
        if self.scheduler and self.executor != "dask":
            raise UsageError("--scheduler needs --executor dask.")
        for name, table in self.overrides.items():
            for param, value in table.items():
                if value == []:  # would expand to a grid of no cells, and the run would do nothing
                    raise UsageError(f"{name}.{param} (--set or [params]): an empty list of values; give at least one.")


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
KEYS = {(f.metadata["key"] or f.name): f for f in FIELDS.values()}  # config-file key -> field


def describe(value: Any) -> str:
    """``'a'`` -> "the string 'a'", for messages."""
    kinds = {bool: "the boolean", int: "the integer", float: "the number", str: "the string", list: "the list",
             dict: "the table"}
    kind = next((name for t, name in kinds.items() if type(value) is t), f"a {type(value).__name__}")
    return f"{kind} {value!r}"


def conform(value: Any, kind: Any, where: str) -> Any:
    """``value`` checked against the type hint ``kind`` (no conversion, except int -> float); tuples -> lists."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return conform(value, inner, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {describe(value)}.")
        return [conform(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a table, got {describe(value)}.")
        return {conform(k, args[0], where): conform(v, args[1], f"{where}.{k}") for k, v in value.items()}
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind)
    if kind is Any or expected is None:
        return value
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is float and ok and not math.isfinite(value):
        raise UsageError(f"{where}: expected a finite number, got {value!r}.")
    if not ok:
        raise UsageError(f"{where}: expected {expected}, got {describe(value)}.")
    return value


def check_field(f: dataclasses.Field, value: Any, where: str) -> Any:
    """The field's constraints (metadata) on an already type-checked value."""
    meta = f.metadata
    items = value if isinstance(value, list) else [value]
    if meta.get("nonempty") and (value == [] or value == ""):
        raise UsageError(f"{where}: must not be empty.")
    if meta.get("unique"):
        repeated = sorted({str(v) for v in items if items.count(v) > 1})
        if repeated:
            raise UsageError(f"{where}: {repeated[0]} is given twice; list each value once.")
    for item in items:
        if item is None:
            continue
        shown = f"{where} {item}" if isinstance(item, (int, float)) else f"{where} {item!r}"
        if "minimum" in meta and item < meta["minimum"]:
            hint = f" ({meta['hint']})" if meta.get("hint") else ""
            raise UsageError(f"{shown}: must be at least {meta['minimum']}{hint}.")
        if "maximum" in meta and item > meta["maximum"]:
            bound = " (2**63 - 1: seeds are stored as 64-bit integers)" if meta["maximum"] == MAX_SEED else ""
            raise UsageError(f"{shown}: must be at most {meta['maximum']}{bound}.")
        if "choices" in meta and item not in meta["choices"]:
            raise UsageError(f"{shown}: choose one of {', '.join(meta['choices'])}.{suggest(str(item), meta['choices'])}")
    return value


def check_device_name(device: str) -> str:
    """A device torch can parse, of a type the suite runs on (cpu, cuda[:N], mps, xpu). The usual spellings are
    recognised without importing torch (a cached run never needs it); anything else is left to torch to parse."""
    if re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", device):
        return device
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise UsageError(f"--device {device!r}: not a device; use cpu, cuda, cuda:N (an index), mps or xpu.")
    return device


def check_device_available(device: str) -> None:
    """Fail once, before any cell, when ``device`` is not present on this machine (instead of every cell failing)."""
    if device.split(":")[0] == "cpu":
        return
    import torch

    parsed = torch.device(device)
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            found = f"{count} CUDA device(s)" if count else "no CUDA GPU (or a CPU-only torch build)"
            raise BenchError(f"--device {device}: this machine has {found}; use --device cpu"
                             + (f" or cuda:0..cuda:{count - 1}." if count else "."))
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"--device {device}: MPS is not available on this machine; use --device cpu.")
    elif parsed.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise BenchError(f"--device {device}: no XPU on this machine; use --device cpu.")


def parse_text(text: str, kind: Any, where: str) -> Any:
    """A command-line string (or a string for a list key in a file) as ``kind``; lists are comma-separated."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        (kind,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return [parse_text(part.strip(), args[0], where) for part in text.split(",") if part.strip()]
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise UsageError(f"{where} {text!r}: not an integer.") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{where} {text!r}: not a number.") from None
    return text


def run_config_from(file_values: Mapping[str, Any], cli_values: Mapping[str, Any], source: str = "config",
                    sets: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from a parsed config file and command-line values (field names; ``None``
    means not given; strings are parsed as on the command line), with ``sets`` (parsed ``--set``) added to the
    file's ``[params]``. Defaults: methods identity,tv,flowprior; degradations noise,jpeg,multi; device cuda when
    ``gpus_per_cell`` is set, else cpu."""
    hints = typing.get_type_hints(RunConfig)
    if not isinstance(file_values, Mapping):
        raise UsageError(f"{source}: expected a table of settings.")
    values: dict[str, Any] = {}
    for key, value in file_values.items():
        if key not in KEYS:
            raise UsageError(f"{source}: unknown key '{key}'.{suggest(key, list(KEYS))} Keys: {', '.join(KEYS)}.")
        f = KEYS[key]
        where = f"{source}: {key}"
        if isinstance(value, str) and typing.get_origin(hints[f.name]) is list:
            value = parse_text(value, hints[f.name], where)
        value = check_field(f, conform(value, hints[f.name], where), where)
        values[f.name] = (not value) if f.name == "lpips" else value  # the key is no_lpips
    for name, value in cli_values.items():
        if value is None:
            continue
        f = FIELDS[name]
        where = f.metadata["option"]
        if isinstance(value, str):
            value = parse_text(value, hints[f.name], where)
        values[name] = check_field(f, conform(value, hints[f.name], where), where)
    params = {name: dict(table) for name, table in values.get("overrides", {}).items()}
    for name, table in (sets or {}).items():
        params.setdefault(name, {}).update(table)
    values["overrides"] = params
    values.setdefault("methods", list(DEFAULT_METHODS))
    values.setdefault("degradations", list(DEFAULT_DEGRADATIONS))
    values.setdefault("device", "cuda" if values.get("gpus_per_cell") else "cpu")
    return RunConfig(**values)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["tv.weight=0.5", "noise.sigma=15,25"]`` -> ``{"tv": {"weight": "0.5"}, "noise": {"sigma": [...]}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ParameterError(f"--set '{item}' must look like NAME.PARAM=VALUE, e.g. --set tv.weight=0.5")
        target, value = item.split("=", 1)
        name, param = target.split(".", 1)
        out.setdefault(name.strip(), {})[param.strip()] = split_grid_string(value)
    return out


def load_config_file(path: str | None) -> dict[str, Any]:
    """The parsed TOML file ``path`` (``{}`` for none); an unreadable or invalid file is a :class:`UsageError`."""
    if not path:
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as err:
        raise UsageError(f"cannot read config '{path}': {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"config '{path}' is not valid TOML: {err}") from None


CLI_FIELDS = ("methods", "degradations", "dataset", "data_root", "limit", "crop", "profile", "results_dir", "seeds",
              "device", "jobs", "executor", "scheduler", "gpus_per_cell", "progress")


def run_config_from_options(options: Mapping[str, Any], sets: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """``bench run``'s click options (``config_path``, ``no_lpips`` and the :data:`CLI_FIELDS`) and its parsed
    ``--set`` values as a validated :class:`RunConfig`; progress bars default to on when stderr is a terminal.
    ``bench.run`` (:mod:`bench.python_api`) passes its arguments the same way, ``lpips`` (True, False or None) in
    place of ``no_lpips``."""
    path = options.get("config_path")
    file_values = load_config_file(path)
    given = {name: options.get(name) for name in CLI_FIELDS}
    given["lpips"] = False if options.get("no_lpips") else options.get("lpips")  # "lpips": the Python API's
    if given["progress"] is None and "progress" not in file_values:
        given["progress"] = sys.stderr.isatty()
    return run_config_from(file_values, given, source=f"config '{path}'", sets=sets)


def show_warnings_as_lines() -> None:
    """Python warnings as one line on stderr, ``warning: MESSAGE``, without the file and source line Python echoes
    (the command line's and its workers' setting; the Python API keeps Python's format).

    >>> show_warnings_as_lines(); warnings.warn("LPIPS is missing")  # doctest: +SKIP
    warning: LPIPS is missing
    """

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = f"warning: {' '.join(str(message).split())}"
        # progress bars on the terminal (main process only): clear them, print, redraw them. Never in a worker:
        # tqdm.write takes a multiprocessing lock, which a killed worker would leak (a resource_tracker warning)
        bars = sys.modules.get("tqdm") if multiprocessing.parent_process() is None else None
        try:
            bars.tqdm.write(text, file=file or sys.stderr) if bars else print(text, file=file or sys.stderr)
        except (OSError, ValueError):  # stderr closed: nothing to tell
            pass

    warnings.showwarning = show


def check_filters(df: Any, methods: list[str], degradations: list[str], dataset: str | None = None,
                  profile: str | None = None) -> tuple[list[str], list[str]]:
    """Report filters (``--methods``, ``--degradations``, ``--dataset``, ``--profile``) checked against the
    results ``df`` holds: a name it lacks is an error with a did-you-mean (exit 2), not an empty report that
    exits 0. Methods and degradations may be plugin names or labels (``tv[weight=0.5]``)."""
    for option, column, values in (("--methods", "method", methods), ("--degradations", "degradation", degradations),
                                   ("--dataset", "dataset", [dataset] if dataset else []),
                                   ("--profile", "profile", [profile] if profile else [])):
        names = sorted(set(df[column].dropna().astype(str)))
        labels = sorted(set(df[f"{column}_label"].dropna().astype(str))) if f"{column}_label" in df else []
        for value in values:
            if value not in names and value not in labels:
                raise UnknownNameError(f"{option} {value}: the store has no {column} '{value}'."
                                       f"{suggest(value, names + labels)} It holds: {', '.join(names)}.")
    return methods, degradations
