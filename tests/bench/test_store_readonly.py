"""A read-only results directory can be reported, checked and plotted; opening it writes nothing (issue 14,
defect 9). Also: stores made before a column existed keep working (schema migration)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import BenchError
from bench.store import CELL_COLUMNS, DB_NAME, Store

RUN = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise", "--limit", "1",
       "--set", "tv.iterations=10", "--no-lpips", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


MANY = str(Path(__file__).resolve().parents[1] / "bench_many.py")  # runs several bench commands in one process


def bench_many(*commands):
    return [sys.executable, MANY, json.dumps([[str(a) for a in args] for args in commands])]


def listing(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    res = tmp_path_factory.mktemp("readonly") / "res"
    for args in ([*RUN, "--results-dir", res], ["baseline", "save", "--out", res.parent / "baseline.json",
                                                 "--results-dir", res]):
        done = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
    return res


def unshare_works():
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


def run_read_only(folder, *commands):
    """``[(exit code, stdout, stderr)]`` of ``bench`` commands run while ``folder`` cannot be written: chmod for a
    normal user; for root (who writes anywhere) a read-only bind mount in a private mount namespace; else skip."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        command = bench_many(*commands)
    elif unshare_works():
        script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", script, "sh", *bench_many(*commands)]
    else:
        pytest.skip("running as root, where chmod does not stop writes, and `unshare -rm` (for a read-only "
                    "bind mount) is not available")
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_report_check_and_figures_of_a_read_only_store(results, tmp_path):
    folder = tmp_path / "ro"
    shutil.copytree(results, folder)
    before = listing(folder)
    commands = (["run", *RUN[1:], "--results-dir", folder],
                ["report", "--results-dir", folder],
                ["report", "--format", "html", "--out", tmp_path / "r.html", "--results-dir", folder],
                ["check", "--baseline", results.parent / "baseline.json", "--results-dir", folder],
                ["figures", "--out", tmp_path / "figs", "--results-dir", folder])
    try:
        (code, _, err), *reads = run_read_only(folder, *commands)
        assert code == 1 and "is not writable" in err, err  # the folder really is read-only
        for args, (code, _, err) in zip(commands[1:], reads):
            assert code == 0 and "Traceback" not in err, (args, err)
        assert "| noise | PSNR ↑ |" in reads[0][1] and "<img" in (tmp_path / "r.html").read_text()
        assert (tmp_path / "figs" / "grid_builtin_smoke_noise_astronaut.png").is_file()
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert listing(folder) == before


def test_read_only_api_writes_nothing(results, tmp_path):
    """The explicit flag (works for root too): no WAL, no shm, no file touched; writing is refused."""
    folder = tmp_path / "ro"
    shutil.copytree(results, folder)
    before = listing(folder)
    store = Store(folder, read_only=True)
    rows = store.rows()
    assert len(rows) == 2 and len(store.dataframe()) == 2
    assert store.cached_keys(r["key"] for r in rows) == {r["key"] for r in rows}
    with pytest.raises(BenchError, match="read-only"):
        store.put_cell(rows[0])
    store.close()
    assert listing(folder) == before
    assert not list(folder.glob("*-wal")) and not list(folder.glob("*-shm"))


def test_read_only_reader_sees_rows_of_an_active_writer(results, tmp_path):
    folder = tmp_path / "rw"
    shutil.copytree(results, folder)
    writer = Store(folder)  # keeps the WAL open, as a running `bench run` does
    row = {**writer.rows()[0], "key": "k" * 32}
    writer.put_cell(row)
    assert (folder / f"{DB_NAME}-wal").exists()
    reader = Store(folder, read_only=True)
    assert "k" * 32 in {r["key"] for r in reader.rows()}
    reader.close()
    writer.close()


def test_missing_store_is_a_clear_error_in_read_only_mode(tmp_path):
    with pytest.raises(BenchError, match="no results in"):
        Store(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_store_of_an_older_version_gains_new_columns_and_keeps_its_rows(tmp_path):
    old_columns = {k: v for k, v in CELL_COLUMNS.items() if k != "metric_impl"}
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute(f"CREATE TABLE cells ({', '.join(f'{k} {v}' for k, v in old_columns.items())})")
        conn.execute("INSERT INTO cells (key, method, status, psnr) VALUES ('a', 'tv', 'ok', 25.5)")
    conn.close()
    reader = Store(tmp_path, read_only=True)  # read-only: no migration, the column is simply empty
    df = reader.dataframe()
    assert df.loc[0, "psnr"] == 25.5 and df.loc[0, "metric_impl"] is None
    reader.close()
    store = Store(tmp_path)
    assert store.rows()[0]["psnr"] == 25.5 and store.rows()[0]["metric_impl"] is None
    store.put_cell({"key": "b", "method": "tv", "status": "ok", "metric_impl": {"psnr": "bench psnr"}})
    assert store.rows()[1]["metric_impl"] == '{"psnr": "bench psnr"}'
    store.close()
    Store(tmp_path).close()  # migrating twice is a no-op


def test_garbage_database_is_a_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    for read_only in (False, True):
        with pytest.raises(BenchError, match="damaged or not a results store"):
            Store(tmp_path, read_only=read_only)
