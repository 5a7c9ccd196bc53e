"""Every storage fault is one `error:` line and loses nothing (issue 25): a read-only target, a full disk (a PNG or
SQLite), a database with damaged pages, stored images deleted or truncated."""

import errno
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.store import DB_NAME, Store, read_stored_image

RUN = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise", "--set",
       "tv.iterations=10", "--no-lpips", "--no-progress"]
NOTE = re.compile(r"note: (\d+) stored image\(s\) are missing or damaged \((images/[^)]*)\); run `bench run` again "
                  r"with the same options to recompute them\.")


def ok_rows(results):
    store = Store(results, read_only=True)
    try:
        return {(r["image"], r["method"], r["seed"]): r for r in store.rows("ok")}
    finally:
        store.close()


def one_error_line(err):
    """The single `error:` line of a failed command (and nothing that looks like a traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def leftovers(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".tmp-*"))


@pytest.fixture
def results(tmp_path, run_cli):
    """A store of identity and tv on noise, two images (four cells)."""
    res = tmp_path / "res"
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", res)
    assert code == 0 and "computed 4, cached 0, failed 0" in err, err
    return res


# read-only or unwritable target --------------------------------------------------------------------------------
@pytest.mark.parametrize("number, text", [(errno.EROFS, "read-only file system (EROFS: Read-only file system); "
                                                        "choose another --out."),
                                          (errno.EACCES, "permission denied (EACCES: Permission denied); choose "
                                                         "another --out or fix its permissions.")])
def test_export_into_a_folder_that_refuses_writes(monkeypatch, tmp_path, results, run_cli, number, text):
    import bench.bundle

    def refuse(dir=None, prefix="", suffix=""):
        path = os.path.join(dir, f"{prefix}x{suffix}")
        raise OSError(number, os.strerror(number), path)  # what mkstemp raises in such a folder

    monkeypatch.setattr(bench.bundle.tempfile, "mkstemp", refuse)
    out = tmp_path / "shared" / "b.zip"
    code, stdout, err = run_cli("export", "--out", out, "--results-dir", results)
    assert code == 1 and one_error_line(err) == f"error: cannot write '{out}': {text}" and not out.exists()


def test_export_that_runs_out_of_space_leaves_no_partial_bundle(monkeypatch, tmp_path, results, run_cli):
    import zipfile

    real = zipfile.ZipFile.writestr
    written = []

    def writestr(self, name, data, *args, **kwargs):
        written.append(name)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk (no file name)
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    out = tmp_path / "out" / "b.zip"
    code, _, err = run_cli("export", "--out", out, "--results-dir", results)
    assert code == 1 and one_error_line(err) == (f"error: disk full while writing '{out}' (ENOSPC: No space left on "
                                                 "device); free space or choose another --out.")
    assert list((tmp_path / "out").iterdir()) == []  # no bundle, no temporary file


def unshare_works():
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


MANY = str(Path(__file__).resolve().parents[1] / "bench_many.py")  # runs several bench commands in one process


def test_outputs_into_a_real_read_only_mount(tmp_path, results):
    """`export`, `report --out`, `figures --out` and `baseline save --out` into a read-only bind mount (a private
    mount namespace: root writes anywhere else): one line each, naming the file."""
    if not unshare_works():
        pytest.skip("`unshare -rm` (a read-only bind mount in a private mount namespace) is not available")
    folder = tmp_path / "ro"
    folder.mkdir()
    commands = [["export", "--out", folder / "b.zip"], ["report", "--out", folder / "r.md"],
                ["figures", "--out", folder / "figs", "--format", "png"], ["baseline", "save", "--out", folder / "b.json"]]
    argv = json.dumps([[str(a) for a in [*args, "--results-dir", results]] for args in commands])
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, MANY, argv],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    targets = [folder / "b.zip", folder / "r.md", folder / "figs", folder / "b.json"]
    fixes = ["choose another --out.", "choose another --out.", "choose another --out.", "write somewhere else."]
    for (code, _, err), target, fix in zip(json.loads(done.stdout.splitlines()[-1]), targets, fixes):
        line = one_error_line(err)
        assert code == 1 and line.startswith("error: cannot write '") and str(target) in line, err
        assert line.endswith(f": read-only file system (EROFS: Read-only file system); {fix}"), line
    assert list(folder.iterdir()) == []


# disk full during a run ----------------------------------------------------------------------------------------
def test_disk_full_while_saving_a_png_keeps_every_completed_cell(monkeypatch, tmp_path, run_cli):
    """Pillow's write fails half-way through the third PNG (the second image's degraded input): one line, the first
    image's two cells stay readable, no partial PNG is left, the next run computes only the two missing cells."""
    real = Image.Image.save
    saves = []

    def save(self, fp, format=None, **params):
        saves.append(format)
        if len(saves) == 3:
            buffer = io.BytesIO()
            real(self, buffer, format=format, **params)
            fp.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, format=format, **params)

    res = tmp_path / "res"
    monkeypatch.setattr(Image.Image, "save", save)
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", res)
    line = one_error_line(err)
    match = re.fullmatch(r"error: disk full while writing '(.*)' \(ENOSPC: No space left on device\); free space or "
                         r"choose another --results-dir\. Completed cells are kept\.", line)
    assert code == 1 and match and match[1].startswith(f"{res}/images/"), line
    assert not os.path.exists(match[1]) and leftovers(res) == []
    kept = ok_rows(res)
    assert sorted(kept) == [("astronaut", "identity", 0), ("astronaut", "tv", 0)]
    for row in kept.values():
        read_stored_image(res, row["output_path"])
    monkeypatch.setattr(Image.Image, "save", real)
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", res)
    assert code == 0 and "computed 2, cached 2, failed 0" in err, err
    assert all(ok_rows(res)[k] == row for k, row in kept.items())


def test_sqlite_disk_full_keeps_every_completed_cell(monkeypatch, tmp_path, run_cli):
    """SQLite's own "database or disk is full" (its page limit set to the file's size): one line, no traceback; the
    rows committed before stay and the next run computes only the others."""
    res = tmp_path / "res"
    grid = [*RUN, "--limit", "2", "--seed", ",".join(map(str, range(8))), "--results-dir", res]
    assert run_cli(*RUN, "--limit", "1", "--results-dir", res)[0] == 0
    real = Store.__init__

    def capped(self, root, read_only=False):
        real(self, root, read_only)
        if not read_only:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            self._conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()

    monkeypatch.setattr(Store, "__init__", capped)
    code, _, err = run_cli(*grid)
    assert code == 1 and one_error_line(err) == (
        f"error: disk full while writing '{res / DB_NAME}' (SQLite: database or disk is full); free space or choose "
        "another --results-dir. Completed cells are kept."), err
    monkeypatch.setattr(Store, "__init__", real)
    stored = len(ok_rows(res))
    assert 2 <= stored < 32
    code, _, err = run_cli(*grid)
    assert code == 0 and f"computed {32 - stored}, cached {stored}, failed 0" in err, err


# damaged database pages ----------------------------------------------------------------------------------------
def test_damaged_pages_are_one_error_line_on_every_command(tmp_path, results, run_cli):
    assert run_cli("baseline", "save", "--out", tmp_path / "base.json", "--results-dir", results)[0] == 0
    assert run_cli("export", "--out", tmp_path / "b.zip", "--results-dir", results)[0] == 0
    db = results / DB_NAME
    assert not db.with_name(DB_NAME + "-wal").exists()  # every row is in the file itself
    data = bytearray(db.read_bytes())
    page = struct.unpack(">H", data[16:18])[0]
    page = 65536 if page == 1 else page
    data[page:3 * page] = np.random.default_rng(0).integers(0, 256, 2 * page, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))  # pages 2 and 3 garbage, the header (page 1) intact
    before = sorted(p.name for p in results.iterdir())
    for args in (["report"], RUN + ["--limit", "2"], ["export", "--out", tmp_path / "again.zip"],
                 ["figures", "--out", tmp_path / "figs"], ["rescore"], ["check", "--baseline", tmp_path / "base.json"],
                 ["baseline", "save", "--out", tmp_path / "b2.json"], ["provenance"], ["import", tmp_path / "b.zip"],
                 ["report", "--format", "html", "--out", tmp_path / "r.html"]):
        code, _, err = run_cli(*args, "--results-dir", results)
        line = one_error_line(err)
        assert code == 1 and line.startswith(f"error: results database '{db}' is damaged or not a results store ("), \
            (args, err)
        assert line.endswith("move it aside and run `bench run` again to rebuild it."), line
        assert db.read_bytes() == data and sorted(p.name for p in results.iterdir()) == before, args


# stored images deleted or truncated ----------------------------------------------------------------------------
def test_deleted_images_are_recomputed_with_a_warning(tmp_path, results, run_cli):
    paths = {p for row in ok_rows(results).values() for p in (row["output_path"], row["degraded_path"])}
    assert len(paths) == 4  # identity's output is its degraded input
    shutil.rmtree(results / "images")
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", results)
    assert code == 0 and "computed 4, cached 0, failed 0" in err, err
    warning = [line for line in err.splitlines() if "were missing" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: 4 stored image(s) were missing and were recomputed "
                                                       "(images/"), err
    assert set(re.findall(r"images/\w\w/\w+\.png", warning[0])) <= paths
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", results)
    assert code == 0 and "computed 0, cached 4, failed 0" in err and "missing" not in err, err


def test_a_deleted_degraded_image_recomputes_the_cells_that_use_it(results, run_cli):
    row = ok_rows(results)[("chelsea", "tv", 0)]
    (results / row["degraded_path"]).unlink()
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", results)
    assert code == 0 and "computed 2, cached 2, failed 0" in err, err
    assert f"warning: 1 stored image(s) were missing and were recomputed ({row['degraded_path']})" in err
    read_stored_image(results, row["degraded_path"])


def test_reports_and_figures_say_that_images_are_missing(tmp_path, caplog, results, run_cli):
    shutil.rmtree(results / "images")
    for fmt in ("markdown", "latex", "html"):
        out = tmp_path / f"report.{fmt}"
        with caplog.at_level(logging.WARNING):
            code, _, err = run_cli("report", "--format", fmt, "--out", out, "--results-dir", results)
        assert code == 0, err
        notes = NOTE.findall(err)
        assert len(notes) == 1 and notes[0][0] == "4" and notes[0][1].endswith(", ..."), err
        text = out.read_text()
        assert "4 stored image(s) are missing or damaged (images/" in text, fmt
    assert "is missing; run `bench run` again" in caplog.text + err  # the html grids' empty panels, each named
    code, _, err = run_cli("figures", "--out", tmp_path / "figs", "--format", "png", "--results-dir", results)
    assert code == 0 and err.count("is missing; run `bench run` again with the same options to recompute it.") == 4, err
    code, out, err = run_cli("report", "--methods", "tv", "--results-dir", results)
    assert code == 0 and "note: 4 stored image(s)" in out and NOTE.search(err), err  # tv's outputs and inputs


def test_a_truncated_image_is_named_by_the_markdown_report(results, run_cli):
    rel = ok_rows(results)[("astronaut", "tv", 0)]["output_path"]
    code, out, err = run_cli("report", "--results-dir", results)
    assert code == 0 and "stored image(s)" not in out + err
    path = results / rel
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, out, err = run_cli("report", "--results-dir", results)
    assert code == 0 and f"note: 1 stored image(s) are missing or damaged ({rel}); run `bench run` again" in out, out
    assert NOTE.search(err)[2] == rel
    code, _, err = run_cli(*RUN, "--limit", "2", "--results-dir", results)
    assert f"warning: 1 stored image(s) were corrupt and were recomputed ({rel})" in err
    assert "stored image(s)" not in "".join(run_cli("report", "--results-dir", results)[1:])


def test_storage_errors_name_path_and_fix():
    from bench.errors import storage_error, write_fault

    full = sqlite3.OperationalError("database or disk is full")
    assert str(storage_error(full, "r/results.sqlite", "--results-dir", "Completed cells are kept.")) == (
        "disk full while writing 'r/results.sqlite' (SQLite: database or disk is full); free space or choose another "
        "--results-dir. Completed cells are kept.")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(storage_error(quota, "b.zip", "--out")).startswith("disk full while writing 'b.zip' (EDQUOT: Disk quota")
    unreadable = OSError(errno.EACCES, "Permission denied", "/data/in.png")  # a read, not the write
    assert storage_error(unreadable, "/out/b.zip", "--out") is None and write_fault(unreadable) is None
    assert storage_error(sqlite3.OperationalError("no such table: x"), "r", "--out") is None
