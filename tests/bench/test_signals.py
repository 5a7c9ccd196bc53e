"""Stopping a run from outside: SIGTERM behaves like Ctrl-C, and no worker outlives the `bench` process.

Each test starts `bench run` on two cells of a test method that sleeps: one returns at once, the other
sleeps for minutes, so the run is certainly mid-cell when the signal comes, and the cores stay free.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

SLEEPER = textwrap.dedent(
    '''
    """A test method that sleeps for ``seconds`` (a cell that is still running when the test signals)."""
    import time
    from dataclasses import dataclass

    from bench.api import Method
    from bench.registry import register_method


    @register_method("sleeper")
    class Sleeper(Method):
        """Sleeps, then returns the observation's initial estimate."""

        @dataclass
        class Params:
            seconds: float = 0.0

        def restore(self, obs, ctx):
            time.sleep(self.params.seconds)
            return obs.operator.init(obs.y)
    '''
)


family: dict[int, list[psutil.Process]] = {}  # pid of a `bench run` -> its descendants, recorded before a kill


@pytest.fixture
def bench_run(tmp_path):
    """Start `bench run` (the sleeper plugin importable in it and its workers); kill what survives at the end."""
    (tmp_path / "sleeper_plugin.py").write_text(SLEEPER)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    started: list[psutil.Process] = []

    def start(*extra: str) -> subprocess.Popen:
        # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt
        # handler: restore it, as a terminal's Ctrl-C finds it, so the test also holds under `pytest &`.
        boot = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); import sleeper_plugin; "
        cmd = [sys.executable, "-c", boot + "from bench.cli import main; main()", "run",
               "-m", "sleeper", "-d", "noise", "--set", "sleeper.seconds=0,300", "--profile", "smoke",
               "--limit", "1", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"), *extra]
        # Output to files, not pipes: workers that outlive their parent would hold a pipe open.
        with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        proc.err_path = tmp_path / "err.txt"
        started.append(psutil.Process(proc.pid))
        return proc

    yield start
    for parent in started:  # a failing test must not leave sleeping workers behind
        for proc in [parent, *family.get(parent.pid, [])]:
            try:
                proc.kill()
            except psutil.Error:
                pass


def stored_ok(results) -> int:
    try:
        with sqlite3.connect(f"file:{results / 'results.sqlite'}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or being written
        return 0


def wait_for_first_cell(proc, results, workers: int, timeout: float = 120.0) -> list[psutil.Process]:
    """Wait until one cell is stored and ``workers`` worker processes run; return the descendants."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.err_path.read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        if stored_ok(results) >= 1 and len(children) >= workers:
            family[proc.pid] = children
            return children
        time.sleep(0.2)
    raise AssertionError("no cell was stored in time")


def survivors(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """The processes still running (zombies count as gone) after up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for proc in processes:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def stop(proc, sig) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"`bench run` did not stop within 30 s of {sig!r}") from None
    return proc.returncode, proc.err_path.read_text()


def assert_clean_stop(code: int, err: str, expected_code: int, message: str, tmp_path) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(message), err
    assert stored_ok(tmp_path / "res") == 1  # the finished cell is kept; the sleeping one is not stored


@pytest.mark.timeout(300)
def test_sigterm_stops_workers_keeps_completed_cells_and_exits_143(tmp_path, bench_run):
    proc = bench_run("--jobs", "2")
    children = wait_for_first_cell(proc, tmp_path / "res", workers=2)
    code, err = stop(proc, signal.SIGTERM)
    assert_clean_stop(code, err, 143, "terminated (SIGTERM); completed cells are saved", tmp_path)
    assert survivors(children, within=5) == []


@pytest.mark.timeout(300)
def test_workers_die_with_a_sigkilled_parent(tmp_path, bench_run):
    proc = bench_run("--jobs", "2")
    children = wait_for_first_cell(proc, tmp_path / "res", workers=2)
    proc.kill()
    proc.wait(timeout=30)
    assert survivors(children, within=5) == []
    assert stored_ok(tmp_path / "res") == 1


@pytest.mark.timeout(300)
def test_ctrl_c_stops_workers_at_once_and_exits_130(tmp_path, bench_run):
    """SIGINT to the parent only (as `kill -INT` sends it): the sleeping cell is not waited for."""
    proc = bench_run("--jobs", "2")
    children = wait_for_first_cell(proc, tmp_path / "res", workers=2)
    code, err = stop(proc, signal.SIGINT)
    assert_clean_stop(code, err, 130, "aborted", tmp_path)
    assert survivors(children, within=5) == []


@pytest.mark.timeout(300)
def test_sigterm_stops_a_serial_run_and_exits_143(tmp_path, bench_run):
    proc = bench_run()
    wait_for_first_cell(proc, tmp_path / "res", workers=0)
    code, err = stop(proc, signal.SIGTERM)
    assert_clean_stop(code, err, 143, "terminated (SIGTERM); completed cells are saved", tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_closes_the_dask_local_cluster(tmp_path, bench_run):
    pytest.importorskip("dask.distributed")
    proc = bench_run("--executor", "dask", "--jobs", "2")
    children = wait_for_first_cell(proc, tmp_path / "res", workers=2)
    code, err = stop(proc, signal.SIGTERM)
    assert_clean_stop(code, err, 143, "terminated (SIGTERM); completed cells are saved", tmp_path)
    assert survivors(children, within=10) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dask_workers_die_with_a_sigkilled_parent(tmp_path, bench_run):
    """Dask's own parent-alive pipe ends LocalCluster workers: checked here so that a Dask change shows."""
    pytest.importorskip("dask.distributed")
    proc = bench_run("--executor", "dask", "--jobs", "2")
    children = wait_for_first_cell(proc, tmp_path / "res", workers=2)
    proc.kill()
    proc.wait(timeout=30)
    assert survivors(children, within=10) == []
