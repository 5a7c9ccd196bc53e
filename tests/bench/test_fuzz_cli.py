"""Malformed input for ``bench run`` (options and config files), generated with hypothesis.

Every example either runs (exit 0, or exit 1 after a completed run with failed cells) or stops with one
``error:`` line on stderr, no traceback, exit 1 or 2, and the store exactly as it was. Options that would
make a run expensive (the executor, worker processes, the results folder, the dataset) are pinned on the
command line, so almost every example fails validation before any image is read.
"""

from __future__ import annotations

import json
import re
import sqlite3
import string
import sys
from unittest import mock

import pytest
from click.testing import CliRunner

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.config import KEYS  # noqa: E402

SUMMARY = re.compile(r"^computed \d+, cached \d+, failed (\d+)$")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PINNED = ["--profile", "smoke", "--limit", "1", "--methods", "identity", "--degradations", "noise", "--no-lpips",
          "--no-progress", "--dataset", "builtin", "--jobs", "1", "--executor", "local"]

texts = st.text(alphabet=string.ascii_letters + string.digits + ",.-_=:/[] " + "é\u00a0", max_size=12)
numbers = st.one_of(st.integers(-5, 5), st.integers(), st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63)]),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(texts, numbers, st.booleans())
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(texts, scalars, max_size=2))


def bench(args: list[str]) -> tuple[int, str, str]:
    """``bench ARGS`` through the console entry point, its streams captured by click's CliRunner."""
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    with runner.isolation() as streams, mock.patch.object(sys, "argv", ["bench", *args]):
        try:
            main()
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        return code, streams[0].getvalue().decode(errors="replace"), streams[1].getvalue().decode(errors="replace")


def snapshot(results) -> tuple:
    with sqlite3.connect(results / "results.sqlite") as conn:
        rows = conn.execute("SELECT key, status, psnr, created FROM cells ORDER BY key").fetchall()
    return rows, sorted(p.name for p in (results / "images").rglob("*.png"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A store holding one cell, so 'unchanged' means something."""
    path = tmp_path_factory.mktemp("fuzz") / "res"
    code, out, err = bench(["run", *PINNED, "--results-dir", str(path)])
    assert code == 0, out + err
    return path


def check(results, args: list[str]) -> None:
    before = snapshot(results)
    code, out, err = bench(["run", *args, "--results-dir", str(results)])
    assert "Traceback" not in out + err, err
    last = err.strip().splitlines()[-1] if err.strip() else ""  # the closing count goes to stderr
    summary = SUMMARY.match(last)
    if summary and code == (1 if int(summary.group(1)) else 0):
        return  # a valid run (failed cells, e.g. for an extreme noise level, are reported and exit 1)
    assert code in (1, 2), (code, out, err)
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert len([line for line in lines if line.startswith("error:")]) == 1, err
    assert snapshot(results) == before  # nothing stored by a run that stopped


option_values = st.one_of(texts, numbers.map(str), st.lists(numbers, min_size=1, max_size=3).map(
    lambda xs: ",".join(map(str, xs))))
options = st.sampled_from(["--seed", "--limit", "--crop", "--device", "--profile", "--gpus-per-cell", "--methods",
                           "--degradations", "--scheduler", "--jobs", "--executor", "--dataset", "--set"])


def unsafe(option: str, value: str) -> bool:
    """Values that would start workers or a Dask cluster, or read a folder: not what this test is about."""
    try:
        workers = option == "--jobs" and int(value) > 1
    except ValueError:
        workers = False
    return workers or (option == "--executor" and value == "dask") or (option == "--dataset" and value.startswith("folder:"))


@FUZZ
@given(st.lists(st.tuples(options, option_values), min_size=1, max_size=3))
@example(pairs=[("--seed", "3")])  # valid: a new cell
@example(pairs=[("--seed", "abc")])
def test_malformed_options(results, pairs):
    args = list(PINNED)
    for option, value in pairs:
        if unsafe(option, value):
            continue
        if option == "--set":
            value = f"noise.{value}" if "=" in value else f"noise.sigma={value}"
        args += [option, value]  # a later option wins over the pinned one
    check(results, args)


def toml_value(value) -> str:
    """A TOML literal (inline tables for dicts; JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


config_keys = st.one_of(st.sampled_from(sorted(KEYS)), texts,
                        st.sampled_from(["limt", "seed", "method", "no-lpips", "param"]))
params_tables = st.dictionaries(st.sampled_from(["noise", "identity", "tv", "nois"]),
                                st.dictionaries(st.sampled_from(["sigma", "sigmaa", "weight"]), values, max_size=2),
                                max_size=2)


@FUZZ
@given(st.dictionaries(config_keys, values, min_size=1, max_size=4), params_tables)
@example(table={"methods": "identity", "seeds": [0, 1]}, params={"noise": {"sigma": [15, 25]}})  # valid
@example(table={"seeds": [0, "a"]}, params={})
def test_malformed_config_files(results, tmp_path_factory, table, params):
    if params:
        table = {**table, "params": params}
    text = "\n".join(f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items())
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_text(text + "\n", encoding="utf-8")
    check(results, ["--config", str(path), *PINNED])


@FUZZ
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_garbage_config_files(results, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    check(results, ["--config", str(path), *PINNED])
