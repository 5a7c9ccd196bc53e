"""Result bundles (bench/bundle.py, bench/bundle_cli.py): export -> import round trip, repeated imports, bundles
of other code versions, and bad bundles (clear one-line errors, store unchanged)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest

from bench import __version__
from bench.bundle import export_bundle
from bench.runner import RunConfig, run_grid
from bench.store import Store

GRID = ["--methods", "identity,tv", "--degradations", "noise,jpeg", "--profile", "smoke", "--limit", "1",
        "--no-lpips", "--no-progress"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A store with identity and tv on noise and jpeg (smoke, one builtin image): 4 cells."""
    root = tmp_path_factory.mktemp("source") / "results"
    summary = run_grid(RunConfig(methods=["identity", "tv"], degradations=["noise", "jpeg"], limit=1, profile="smoke",
                                 results_dir=str(root), lpips=False, progress=False))
    assert (summary.computed, summary.failed) == (4, 0)
    return root


@pytest.fixture(scope="module")
def bundle(source, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "all.zip"
    assert export_bundle(source, path).cells == 4
    return path


def snapshot(root: Path) -> tuple:
    """Everything a store holds: its rows, its provenance table and every file under images/ with its content."""
    if not (root / "results.sqlite").exists():
        return ("no store", sorted(p.name for p in root.iterdir()) if root.exists() else None)
    store = Store(root)
    rows = sorted(json.dumps(r, sort_keys=True) for r in store.rows())
    store.close()
    with sqlite3.connect(root / "results.sqlite") as conn:
        provenance = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'provenance'").fetchone()[0] and \
            sorted(conn.execute("SELECT key, bundle FROM provenance").fetchall())
    files = sorted((str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                   for p in (root / "images").rglob("*") if p.is_file())
    return rows, provenance, files


def repack(src: Path, dst: Path, rows=None, manifest=None, members=None, rehash: bool = True) -> Path:
    """A copy of bundle ``src`` with edited rows / manifest / members; ``rehash`` recomputes the manifest's sums."""
    with zipfile.ZipFile(src) as zf:
        data = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(data.pop("manifest.json"))
    if rows:
        edited = [rows(json.loads(line)) for line in data["cells.jsonl"].decode().splitlines()]
        data["cells.jsonl"] = "".join(json.dumps(r) + "\n" for r in edited).encode()
    if members:
        members(data)
    if rehash:
        meta["files"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in data.items()}
    if manifest:
        manifest(meta)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("manifest.json", json.dumps(meta))
        for name, blob in data.items():
            zf.writestr(name, blob)
    return dst


def test_round_trip_report_identical_and_cached(run_cli, source, tmp_path):
    code, out, err = run_cli("export", "--results-dir", source, "--out", tmp_path / "b.zip")
    assert code == 0, err
    assert "4 cell(s), 4 image(s)" in out
    target = tmp_path / "target"
    code, out, err = run_cli("import", tmp_path / "b.zip", "--results-dir", target)
    assert code == 0, err
    assert out.startswith("imported 4 cell(s) from b.zip (4 image file(s) written); 0 already present")

    reports = [run_cli("report", "--results-dir", root) for root in (source, target)]
    assert reports[0][0] == reports[1][0] == 0
    rows = [[line.replace("‡", "") for line in r[1].splitlines() if line.startswith("| ")] for r in reports]
    assert rows[0] == rows[1]  # the same table, each imported cell marked ‡ and its bundle named (issue 28)
    assert "‡ tv (" in reports[1][1] and "imported from the reference bundle b.zip" in reports[1][1]
    assert "‡" not in reports[0][1]
    assert "| noise | PSNR ↑ |" in reports[1][1]
    assert "4 of the cells shown come from bundle b.zip" in reports[1][2]
    assert "bundle" not in reports[0][2]

    code, out, _ = run_cli("provenance", "--results-dir", target, "--cells")
    assert code == 0
    assert out.startswith("0 cell(s) computed here")
    assert "4 cell(s) from bundle b.zip" in out and f"by bench {__version__}" in out and "computed on CPU " in out
    assert "tv / jpeg / astronaut / seed 0: CPU " in out

    code, out, err = run_cli("run", "--results-dir", target, *GRID)  # the imported cells count as cached
    assert code == 0, err
    assert err.strip().endswith("computed 0, cached 4, failed 0")


def test_export_filters_and_damaged_images(run_cli, source, tmp_path):
    code, out, _ = run_cli("export", "--results-dir", source, "--out", tmp_path / "tv.zip", "-m", "tv", "-d", "jpeg")
    assert code == 0 and "wrote" in out and ": 1 cell(s), 2 image(s)" in out
    code, _, err = run_cli("export", "--results-dir", source, "--out", tmp_path / "x.zip", "-m", "tvv")
    assert code == 2 and "Did you mean 'tv'" in err and not (tmp_path / "x.zip").exists()

    copy = shutil.copytree(source, tmp_path / "copy")
    store = Store(copy)
    row = next(r for r in store.rows() if r["method"] == "tv" and r["degradation"] == "noise")
    store.close()
    (copy / row["output_path"]).write_bytes(b"not a png")
    code, out, err = run_cli("export", "--results-dir", copy, "--out", tmp_path / "c.zip")
    assert code == 0 and ": 3 cell(s)" in out
    assert "left out 1 cell(s) whose restored image is missing or corrupt (tv/noise/astronaut)" in err


def test_import_twice_adds_nothing(run_cli, bundle, tmp_path):
    target = tmp_path / "target"
    assert run_cli("import", bundle, "--results-dir", target)[0] == 0
    before = snapshot(target)
    code, out, _ = run_cli("import", bundle, "--results-dir", target)
    assert code == 0
    assert out.strip() == ("imported 0 cell(s) from all.zip (0 image file(s) written); 4 already present (same key), "
                           "kept as they were; the store is unchanged")
    assert snapshot(target) == before


def test_import_repairs_damaged_local_images(run_cli, bundle, tmp_path):
    target = tmp_path / "target"
    assert run_cli("import", bundle, "--results-dir", target)[0] == 0
    store = Store(target)
    damaged = next(r for r in store.rows() if r["method"] == "tv")["output_path"]
    store.close()
    (target / damaged).write_bytes(b"damaged")
    code, out, _ = run_cli("import", bundle, "--results-dir", target)
    assert code == 0 and out.startswith("imported 0 cell(s) from all.zip (1 image file(s) written); 4 already present")
    code, out, err = run_cli("run", "--results-dir", target, *GRID)
    assert err.strip().endswith("computed 0, cached 4, failed 0")


def test_columns_of_a_newer_bench_are_ignored_and_said(run_cli, bundle, tmp_path):
    newer = repack(bundle, tmp_path / "newer.zip", rows=lambda r: {**r, "future_column": 1},
                   manifest=lambda m: m.update(bench_version="9.0"))
    code, out, err = run_cli("import", newer, "--results-dir", tmp_path / "target")
    assert code == 0 and out.startswith("imported 4 cell(s)")
    assert "note: ignored column(s) this bench does not know (future_column); the bundle was made by bench 9.0." in err


def test_same_key_other_result_keeps_local(run_cli, bundle, tmp_path):
    target = tmp_path / "target"
    assert run_cli("import", bundle, "--results-dir", target)[0] == 0
    before = snapshot(target)

    def other_image(row):  # the same key, another restored image (e.g. computed on another device)
        return {**row, "output_path": row["degraded_path"]} if row["method"] == "tv" else row

    other = repack(bundle, tmp_path / "other.zip", rows=other_image)
    code, out, err = run_cli("import", other, "--results-dir", target)
    assert code == 0
    assert "4 already present" in out
    assert "warning: 2 cell(s) already here hold another result for the same key (tv/" in err
    assert "the local result was kept" in err
    assert snapshot(target) == before


def test_bundle_of_other_code_versions(run_cli, bundle, tmp_path):
    def older_tv(row):  # what another checkout of tv stores: another code version, hence another key
        if row["method"] != "tv":
            return row
        key = hashlib.sha256(row["key"].encode()).hexdigest()[:32]
        return {**row, "method_version": "0123456789abcdef", "key": key, "created": "2020-01-01T00:00:00+0000"}

    target = tmp_path / "target"
    code, out, err = run_cli("import", repack(bundle, tmp_path / "old.zip", rows=older_tv), "--results-dir", target)
    assert code == 0 and out.startswith("imported 4 cell(s)")
    assert "note: 2 imported cell(s) were made by other code versions than this checkout's (tv ×2)" in err
    code, out, err = run_cli("run", "--results-dir", target, *GRID)
    assert err.strip().endswith("computed 2, cached 2, failed 0")  # only identity's cells were current
    code, _, err = run_cli("report", "--results-dir", target)
    assert "not shown: 2 result(s) of older code versions (tv)" in err


def truncated(bundle, dst):
    dst.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    return dst


def tampered_png(bundle, dst):  # one pixel byte changed, the manifest's sum left as exported
    def flip(data):
        name = sorted(n for n in data if n.endswith(".png"))[0]
        blob = bytearray(data[name])
        blob[len(blob) // 2] ^= 0xFF
        data[name] = bytes(blob)
    return repack(bundle, dst, members=flip, rehash=False)


def repainted_png(bundle, dst):  # a valid PNG of other pixels under the old name, with a rebuilt manifest
    def repaint(data):
        names = sorted(n for n in data if n.endswith(".png"))
        data[names[0]] = data[names[1]]
    return repack(bundle, dst, members=repaint)


BAD = {
    "truncated": (truncated, "is not a result bundle, or is truncated"),
    "tampered png": (tampered_png, "does not match its sha256 in the manifest"),
    "repainted png": (repainted_png, "do not match the content hash in its name"),
    "edited row": (lambda b, d: repack(b, d, rows=lambda r: {**r, "psnr": 99.0}, rehash=False),
                   "cells.jsonl does not match its"),
    "wrong format": (lambda b, d: repack(b, d, manifest=lambda m: m.update(format="other-tool")),
                     "is not a result bundle (format 'other-tool'"),
    "newer version": (lambda b, d: repack(b, d, manifest=lambda m: m.update(format_version=99)),
                      f"has format version 99, made by bench {__version__}; this bench ({__version__}) reads "
                      "version 1"),
    "missing manifest": (lambda b, d: zipfile.ZipFile(d, "w").close() or d, "has no manifest.json"),
    "not a zip": (lambda b, d: (d.write_text("hello"), d)[1], "is not a result bundle"),
    "extra member": (lambda b, d: repack(b, d, members=lambda m: m.update({"../evil.png": b"x"}), rehash=False),
                     "holds unexpected or duplicated members (../evil.png)"),
    "missing member": (lambda b, d: repack(b, d, members=lambda m: m.pop(sorted(m)[-1]), rehash=False,
                                           manifest=lambda m: None), "lacks 1 member(s) its manifest lists"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bundle_clear_error_store_unchanged(run_cli, source, bundle, tmp_path, case):
    make, message = BAD[case]
    bad = make(bundle, tmp_path / "bad.zip")
    prior = tmp_path / "prior"  # a store holding some results: the jpeg half of the bundle
    assert export_bundle(source, tmp_path / "jpeg.zip", degradations=["jpeg"]).cells == 2
    assert run_cli("import", tmp_path / "jpeg.zip", "--results-dir", prior)[0] == 0
    for target in (prior, tmp_path / "new"):  # a store with other cells, and none yet
        before = snapshot(target)
        code, out, err = run_cli("import", bad, "--results-dir", target)
        assert code == 1
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
        assert message in err, err
        assert snapshot(target) == before


REFERENCE_BUNDLES = sorted((Path(__file__).resolve().parents[2] / "results" / "reference").glob("*.zip"))


@pytest.mark.parametrize("committed", REFERENCE_BUNDLES, ids=lambda path: path.name)
def test_committed_reference_bundles_import_cleanly_at_full_budget(run_cli, committed, tmp_path):
    """Every bundle under results/reference/ imports into an empty store, whole, and holds paper-budget cells only."""
    code, out, err = run_cli("import", committed, "--results-dir", tmp_path / "store")
    assert code == 0, err
    imported = int(out.split()[1])
    store = Store(tmp_path / "store")
    rows = store.rows()
    store.close()
    assert imported == len(rows) > 0
    assert {row["status"] for row in rows} == {"ok"} and {row["profile"] for row in rows} == {"paper"}
    assert all(row["budget_fraction"] is None or row["budget_fraction"] >= 1.0 for row in rows)  # no † in reports
    code, out, err = run_cli("report", "--results-dir", tmp_path / "store", "--all-versions")
    assert code == 0, err
    assert "†" not in out and "PSNR" in out
