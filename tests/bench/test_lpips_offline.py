"""Offline LPIPS explains itself (issue 25): reports say why LPIPS is "–", a run that finds the weights fills it in for
cached cells, messages name only flags their command has, one warning per run however many workers, and Dask's
INFO logging stays off."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from bench.store import Store

RUN = ["run", "--profile", "smoke", "--methods", "identity", "--degradations", "noise", "--limit", "1",
       "--no-progress"]
NO_WEIGHTS_LINE = ("LPIPS –: its AlexNet weights were not available when 1 cell(s) were computed (set "
                   "BENCH_LPIPS_ALEXNET, then run bench rescore --metrics lpips).")
FILLED = "filled LPIPS of 1 cached cell(s) stored without it (its AlexNet weights are available now)"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
WEIGHTS = os.environ.get("BENCH_LPIPS_ALEXNET") or str(Path(__file__).resolve().parents[3] / "shared" / "weights" /
                                                       "alexnet_features.pth")


def weights():
    path = WEIGHTS  # as the session started (the offline fixture changes the variable)
    if not Path(path).is_file():
        pytest.skip("LPIPS backbone not available: set BENCH_LPIPS_ALEXNET (e.g. ../shared/weights/"
                    "alexnet_features.pth)")
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No LPIPS weights: the variable names a file that does not exist (no download is tried), warnings reset."""
    import bench.metrics

    monkeypatch.setenv("BENCH_LPIPS_ALEXNET", str(tmp_path / "absent.pth"))
    monkeypatch.setattr(bench.metrics, "_warned", set())
    monkeypatch.setattr(bench.metrics, "_why", {})
    return tmp_path


def rows(results):
    store = Store(results, read_only=True)
    try:
        return store.rows()
    finally:
        store.close()


def test_reports_say_why_lpips_is_missing(offline, run_cli):
    results = offline / "res"
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert code == 0, err
    assert NO_WEIGHTS_LINE in out  # the run's own table
    (row,) = rows(results)
    assert row["lpips"] is None and json.loads(row["metric_impl"])["lpips"] == "missing: AlexNet weights unavailable"
    for fmt in ("markdown", "html"):
        code, out, err = run_cli("report", "--format", fmt, "--results-dir", results)
        assert code == 0 and NO_WEIGHTS_LINE in out, (fmt, out)
    code, out, err = run_cli("report", "--format", "latex", "--results-dir", results)
    assert "BENCH\\_LPIPS\\_ALEXNET, then run bench rescore -{}-metrics lpips" in out  # two hyphens, not an en dash
    code, out, err = run_cli(*RUN, "--no-lpips", "--results-dir", offline / "skipped")
    assert "LPIPS –: not computed for 1 cell(s) (bench run --no-lpips); bench rescore --metrics lpips fills it in." \
        in out


def test_a_run_that_finds_the_weights_fills_lpips_of_cached_cells(offline, monkeypatch, run_cli):
    path = weights()
    results, fresh = offline / "res", offline / "fresh"
    assert run_cli(*RUN, "--results-dir", results)[0] == 0
    assert run_cli(*RUN, "--no-lpips", "--set", "noise.sigma=10", "--results-dir", results)[0] == 0
    monkeypatch.setenv("BENCH_LPIPS_ALEXNET", path)
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert code == 0, err
    assert FILLED in err and err.rstrip().endswith("computed 0, cached 1, failed 0"), err
    assert "LPIPS –" not in out and "| noise | LPIPS ↓ | – |" not in out
    code, out, err = run_cli(*RUN, "--set", "noise.sigma=10", "--results-dir", results)  # --no-lpips cells too
    assert FILLED in err and "computed 0, cached 1" in err
    assert run_cli(*RUN, "--results-dir", fresh)[0] == 0
    filled = {r["degradation_params"]: r for r in rows(results)}
    (computed,) = rows(fresh)
    row = filled[computed["degradation_params"]]
    assert row["lpips"] == pytest.approx(computed["lpips"], abs=1e-7) and row["key"] == computed["key"]
    assert json.loads(row["metric_impl"])["lpips"] == json.loads(computed["metric_impl"])["lpips"]
    code, out, err = run_cli(*RUN, "--results-dir", results)  # nothing left to fill
    assert code == 0 and "filled" not in err
    assert run_cli(*RUN, "--no-lpips", "--seed", "1", "--results-dir", results)[0] == 0  # weights there, skipped
    code, out, err = run_cli(*RUN, "--seed", "1", "--results-dir", results)  # the same command without --no-lpips
    assert FILLED in err and "computed 0, cached 1" in err, err


def options_of(command: click.Command) -> dict[str, set[str]]:
    """``{command path: its options}`` for ``command`` and every subcommand (``bench train NAME`` included)."""
    found = {command.name or "bench": {o for p in command.params if isinstance(p, click.Option)
                                       for o in p.opts + p.secondary_opts} | {"--help"}}
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                found.update({f"{name} {k}" if k != name else name: v for k, v in options_of(sub).items()})
    return found


def unknown_flags(text: str, command: str) -> list[str]:
    """The ``--flags`` of ``text`` that its command lacks: a flag after "bench NAME" on its line is NAME's, any
    other ``command``'s."""
    from bench.cli import cli

    known = options_of(cli)
    missing = []
    for line in text.splitlines():
        for found in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
            named = re.findall(r"bench ([a-z]+)", line[:found.start()])
            owner = named[-1] if named else command
            if found.group() not in known.get(owner, set()):
                missing.append(f"{owner}: {found.group()}")
    return missing


def test_messages_name_only_flags_their_command_has(offline, monkeypatch, run_cli):
    import bench.metrics

    results = offline / "res"
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert code == 0 and "warning: LPIPS is missing" in err and unknown_flags(out + err, "run") == [], err
    code, out, err = run_cli("rescore", "--metrics", "lpips", "--results-dir", results)
    assert code == 1 and err.startswith("error: cannot compute LPIPS: BENCH_LPIPS_ALEXNET="), err
    assert "--no-lpips" not in err and unknown_flags(err, "rescore") == [], err
    png = next((results / "images").rglob("*.png"))
    monkeypatch.setattr(bench.metrics, "_warned", set())  # warned once per process: this one warned already
    code, out, err = run_cli("metrics", png, png)
    assert code == 0 and "LPIPS is missing" in err and unknown_flags(err, "metrics") == [], err


def test_every_flag_named_in_the_source_exists():
    """Any ``--flag`` in a string of bench/, methods/ or degradations/ is an option of some bench command (Dask's
    own ``dask worker --resources`` aside)."""
    import ast

    from bench.cli import cli

    known = set().union(*options_of(cli).values()) | {"--resources"}
    root = Path(__file__).resolve().parents[2]
    unknown = []
    for path in [*root.glob("bench/**/*.py"), *root.glob("methods/*.py"), *root.glob("degradations/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                unknown += [f"{path.relative_to(root)}: {flag}" for flag in
                            re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value) if flag not in known]
    assert unknown == []


def bench_run(results, *extra, env=None):
    return subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", *RUN, "--limit", "2",
                           "--results-dir", str(results), *extra], env=env, capture_output=True, text=True,
                          timeout=600)


def test_workers_leave_the_lpips_warning_to_the_run(tmp_path):
    env = {**ENV, "BENCH_LPIPS_ALEXNET": str(tmp_path / "absent.pth")}
    done = bench_run(tmp_path / "res", "--jobs", "2", env=env)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "LPIPS is missing" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: "), done.stderr
    assert "computed 2, cached 0, failed 0" in done.stderr


@pytest.mark.slow
def test_dask_runs_print_no_info_logging(tmp_path):
    pytest.importorskip("dask.distributed")
    env = {k: v for k, v in ENV.items() if k != "DASK_LOGGING__DISTRIBUTED"}
    env["BENCH_LPIPS_ALEXNET"] = str(tmp_path / "absent.pth")
    done = bench_run(tmp_path / "res", "--executor", "dask", "--jobs", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if "INFO" in line], done.stderr
    assert sum("LPIPS is missing" in line for line in done.stderr.splitlines()) == 1, done.stderr


def test_distributed_logging_is_quieted_unless_verbose(monkeypatch):
    from bench.executors import DASK_LOGGING, quiet_distributed_logging

    monkeypatch.delenv(DASK_LOGGING, raising=False)
    logger = logging.getLogger("distributed")
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    assert quiet_distributed_logging() and os.environ[DASK_LOGGING] == "warning" and logger.level == logging.WARNING
    monkeypatch.delenv(DASK_LOGGING)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)  # bench -v
    assert not quiet_distributed_logging() and DASK_LOGGING not in os.environ and logger.level == logging.INFO
