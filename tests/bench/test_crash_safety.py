"""SIGKILL the runner mid-run, re-run, and check that nothing was lost or corrupted."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench.images import read_png

ARGS = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise,jpeg,multi",
        "--set", "tv.iterations=200", "--no-lpips", "--no-progress"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def bench(results, *extra):
    return [sys.executable, "-c", "from bench.cli import main; main()", *ARGS, "--results-dir", str(results), *extra]


def ok_rows(results):
    db = results / "results.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT key, output_path FROM cells WHERE status='ok'").fetchall()
    except sqlite3.OperationalError:  # the first process has not created the table yet
        return []


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_rerun_loses_nothing(tmp_path, kill_after):
    results = tmp_path / "res"
    proc = subprocess.Popen(bench(results), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(ok_rows(results)) < kill_after and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    before = ok_rows(results)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(before) >= kill_after
    done = subprocess.run(bench(results), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "failed 0" in done.stdout
    rows = ok_rows(results)
    assert len(rows) == 12
    assert max(Counter(k for k, _ in rows).values()) == 1
    assert set(before) <= set(rows), "a completed cell was lost or recomputed"
    for _, path in rows:
        assert read_png(results / path).shape == (64, 64, 3)
    again = subprocess.run(bench(results), env=ENV, capture_output=True, text=True, timeout=120)
    assert "computed 0, cached 12, failed 0" in again.stdout
