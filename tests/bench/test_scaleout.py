"""Parallel and distributed runs: same numbers, concurrent writers, dying workers."""

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from bench.runner import RunConfig, run_grid
from bench.store import Store

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def config(results, **kw):
    base = dict(methods=["identity", "tv"], degradations=["noise", "jpeg"], profile="smoke", limit=2,
                results_dir=str(results), lpips=False, progress=False, overrides={"tv": {"iterations": "20"}})
    base.update(kw)
    return RunConfig(**base)


def metrics_of(results):
    df = Store(results).dataframe().sort_values("key")
    return df[["key", "psnr", "ssim"]].to_records(index=False).tolist()


def test_local_processes_give_the_same_metrics(tmp_path):
    serial = run_grid(config(tmp_path / "a"))
    parallel = run_grid(config(tmp_path / "b", jobs=2))
    assert serial.computed == parallel.computed == 8
    assert metrics_of(tmp_path / "a") == metrics_of(tmp_path / "b")


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_metrics(tmp_path):
    pytest.importorskip("dask.distributed")
    run_grid(config(tmp_path / "a"))
    summary = run_grid(config(tmp_path / "b", executor="dask", jobs=2))
    assert summary.computed == 8 and summary.failed == 0
    assert metrics_of(tmp_path / "a") == metrics_of(tmp_path / "b")


def test_dask_missing_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    from bench.errors import BenchError

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.startswith("dask"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(BenchError, match=r"pip install 'restoration-bench\[dask\]'"):
        run_grid(config(tmp_path, executor="dask"))


def bench_cmd(results, methods, degradations):
    return [sys.executable, "-c", "from bench.cli import main; main()", "run", "--profile", "smoke", "--methods",
            methods, "--degradations", degradations, "--set", "tv.iterations=60", "--no-lpips", "--no-progress",
            "--results-dir", str(results)]


@pytest.mark.slow
def test_two_concurrent_runs_on_one_store(tmp_path):
    results = tmp_path / "res"
    procs = [
        subprocess.Popen(bench_cmd(results, "identity,tv", "noise,jpeg"), env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
        subprocess.Popen(bench_cmd(results, "tv,identity", "jpeg,multi"), env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "failed 0" in err
    with sqlite3.connect(results / "results.sqlite") as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM cells WHERE status='ok'")]
    assert len(keys) == 12 and max(Counter(keys).values()) == 1  # 2 methods × 3 degradations × 2 images
    again = subprocess.run(bench_cmd(results, "identity,tv", "noise,jpeg,multi"), env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert "computed 0, cached 12, failed 0" in again.stderr


KILLER = textwrap.dedent(
    '''
    """A test method that SIGKILLs its own worker process (optionally only on the first attempt)."""
    import os
    import signal
    from dataclasses import dataclass
    from pathlib import Path

    from bench.api import Method
    from bench.registry import register_method


    @register_method("killer")
    class Killer(Method):
        """Kills the worker computing it."""

        @dataclass
        class Params:
            marker: str = ""
            always: bool = False

        def restore(self, obs, ctx):
            marker = Path(self.params.marker)
            if self.params.always or not marker.exists():
                marker.write_text("killed once")
                os.kill(os.getpid(), signal.SIGKILL)
            return obs.operator.init(obs.y)
    '''
)


@pytest.fixture
def killer(tmp_path, monkeypatch):
    (tmp_path / "killer_plugin.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    import importlib

    import killer_plugin

    importlib.reload(killer_plugin)
    yield
    from bench.registry import unregister

    unregister("method", "killer")
    sys.modules.pop("killer_plugin", None)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dask_worker_killed_mid_cell_is_retried(tmp_path, killer):
    pytest.importorskip("dask.distributed")
    marker = tmp_path / "marker"
    summary = run_grid(config(tmp_path / "res", methods=["killer", "identity"], degradations=["noise"], limit=1,
                              executor="dask", jobs=1, overrides={"killer": {"marker": str(marker)}}))
    assert marker.exists(), "the worker was killed once"
    assert (summary.computed, summary.failed) == (2, 0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dask_worker_killed_every_time_is_recorded_as_failed(tmp_path, killer):
    dask = pytest.importorskip("dask")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        summary = run_grid(config(tmp_path / "res", methods=["killer"], degradations=["noise"], limit=1,
                                  executor="dask", jobs=1,
                                  overrides={"killer": {"marker": str(tmp_path / "m"), "always": "true"}}))
    assert (summary.computed, summary.failed) == (0, 1)
    error = Store(tmp_path / "res").rows(status="failed")[0]["error"]
    assert error.startswith("worker failed: KilledWorker"), error


def test_local_worker_killed_mid_cell_is_retried_once(tmp_path, killer):
    marker = tmp_path / "marker"
    summary = run_grid(config(tmp_path / "res", methods=["killer"], degradations=["noise"], limit=1, jobs=2,
                              overrides={"killer": {"marker": str(marker)}}))
    assert marker.exists() and (summary.computed, summary.failed) == (1, 0)


# A parent that starts a grandchild calling die_with_parent, then waits to be killed. The grandchild prints
# its pid and the mechanism it got through the inherited stdout.
GRANDCHILD = ("import os, sys, time; from bench.executors import die_with_parent; "
              "how = die_with_parent(int(sys.argv[1]), use_prctl=sys.argv[2] == '1', interval=0.2); "
              "print(os.getpid(), how, flush=True); time.sleep(300)")
PARENT = ("import os, subprocess, sys, time; "
          f"subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}, str(os.getpid()), sys.argv[1]]); time.sleep(300)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("use_prctl", [True, False], ids=["prctl", "watchdog"])
def test_die_with_parent_ends_the_process_when_its_parent_is_killed(use_prctl):
    import psutil

    if use_prctl and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "1" if use_prctl else "0"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        pid, how = parent.stdout.readline().split()
        assert how == ("prctl" if use_prctl else "watchdog")
        child = psutil.Process(int(pid))
        parent.kill()
        parent.wait()
        gone, alive = psutil.wait_procs([child], timeout=5)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], "the grandchild outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.stdout.close()


def test_die_with_parent_exits_at_once_when_the_parent_is_already_gone():
    """The race: a parent that died before the kernel was told never sends the death signal."""
    code = "from bench.executors import die_with_parent; die_with_parent(-1); print('still running')"
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "still running" not in done.stdout
