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
    assert "failed 0" in done.stderr
    rows = ok_rows(results)
    assert len(rows) == 12
    assert max(Counter(k for k, _ in rows).values()) == 1
    assert set(before) <= set(rows), "a completed cell was lost or recomputed"
    for _, path in rows:
        assert read_png(results / path).shape == (64, 64, 3)
    again = subprocess.run(bench(results), env=ENV, capture_output=True, text=True, timeout=120)
    assert "computed 0, cached 12, failed 0" in again.stderr


def lpips_rows(results):
    with sqlite3.connect(results / "results.sqlite", timeout=30) as conn:
        return {key: rest for key, *rest in conn.execute("SELECT key, psnr, ssim, output_path, lpips FROM cells")}


@pytest.mark.slow
def test_sigkill_during_rescore_loses_nothing(tmp_path):
    if not os.path.isfile(os.environ.get("BENCH_LPIPS_ALEXNET", "")):
        pytest.skip("LPIPS backbone not available: set BENCH_LPIPS_ALEXNET (e.g. ../shared/weights/alexnet_features.pth)")
    results = tmp_path / "res"
    assert subprocess.run(bench(results), env=ENV, capture_output=True, timeout=600).returncode == 0
    before = lpips_rows(results)
    rescore = [sys.executable, "-c", "from bench.cli import main; main()", "rescore", "--results-dir", str(results),
               "--no-progress"]
    proc = subprocess.Popen(rescore, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and all(r[3] is None for r in lpips_rows(results).values()):
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(results / "results.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    killed = lpips_rows(results)
    assert {k: r[:3] for k, r in killed.items()} == {k: r[:3] for k, r in before.items()}  # nothing else touched
    left = sum(r[3] is None for r in killed.values())
    done = subprocess.run(rescore, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"rescored {left} row(s): {left} value(s) filled" in done.stdout
    assert all(r[3] is not None for r in lpips_rows(results).values())
