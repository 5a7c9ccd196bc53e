"""Stored images that are damaged later are detected, recomputed and never crash a report (issue 14, defect 7)."""

import hashlib
import io
import logging

import numpy as np
import pytest
from PIL import Image

from bench.store import CorruptImageError, Store, read_stored_image

RUN = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise", "--limit", "1",
       "--set", "tv.iterations=10", "--no-lpips", "--no-progress"]



def rows_by_method(results):
    store = Store(results)
    try:
        return {r["method"]: r for r in store.rows()}
    finally:
        store.close()


def flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def other_pixels(path):
    """A valid PNG whose pixels do not match the hash in its name."""
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[0, 0] ^= 1
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def results(monkeypatch, capsys, tmp_path, run_cli):
    res = tmp_path / "res"
    code, out, err = run_cli(*RUN, "--results-dir", res)
    assert code == 0 and "computed 2, cached 0, failed 0" in err, err
    return res


@pytest.mark.parametrize("damage", [flip_bytes, other_pixels, truncate])
def test_corrupt_restored_image_is_recomputed_and_reported(monkeypatch, capsys, tmp_path, results, damage, run_cli):
    before = rows_by_method(results)
    rel = before["tv"]["output_path"]
    good = (results / rel).read_bytes()
    damage(results / rel)
    with pytest.raises(CorruptImageError, match="bench run"):
        read_stored_image(results, rel)
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert code == 0, err
    assert "computed 1, cached 1, failed 0" in err
    assert f"warning: 1 stored image(s) were corrupt and were recomputed ({rel})" in err
    assert (results / rel).read_bytes() == good  # rewritten: the same pixels, so the same name
    after = rows_by_method(results)
    assert after["tv"]["psnr"] == before["tv"]["psnr"] and after["identity"] == before["identity"]
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert "computed 0, cached 2, failed 0" in err and "corrupt" not in err
    code, out, err = run_cli("figures", "--out", tmp_path / "figs", "--results-dir", results)
    assert code == 0 and "note" not in err, err


def test_corrupt_degraded_image_recomputes_every_cell_that_uses_it(monkeypatch, capsys, results, run_cli):
    before = rows_by_method(results)
    rel = before["tv"]["degraded_path"]
    assert before["identity"]["output_path"] == rel  # identity returns its input: one file, two uses
    flip_bytes(results / rel)
    code, out, err = run_cli(*RUN, "--results-dir", results)
    assert code == 0 and "computed 2, cached 0, failed 0" in err, err
    assert err.count("stored image(s) were corrupt") == 1 and "warning: 1 stored image(s)" in err
    read_stored_image(results, rel)
    assert rows_by_method(results)["tv"]["psnr"] == before["tv"]["psnr"]


def test_figures_and_html_report_survive_a_corrupt_image(monkeypatch, capsys, caplog, tmp_path, results, run_cli):
    rel = rows_by_method(results)["tv"]["output_path"]
    flip_bytes(results / rel)
    code, out, err = run_cli("figures", "--out", tmp_path / "figs", "--results-dir", results)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "corrupt" in line]
    assert len(notes) == 1 and f"{rel}' is corrupt" in notes[0] and "run `bench run` again" in notes[0], err
    assert (tmp_path / "figs" / "grid_builtin_smoke_noise_astronaut.png").stat().st_size > 1000
    with caplog.at_level(logging.WARNING):
        code, out, err = run_cli("report", "--format", "html", "--out", tmp_path / "r.html",
                                 "--results-dir", results)
    assert code == 0, err
    assert f"{rel}' is corrupt" in caplog.text + err and "Traceback" not in err
    assert "<img" in (tmp_path / "r.html").read_text()


def test_put_image_rewrites_a_damaged_file_of_the_same_name(tmp_path):
    store = Store(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    rel = store.put_image(image)
    flip_bytes(tmp_path / rel)
    store.close()
    store = Store(tmp_path)  # a new process: nothing verified yet
    assert store.image_state(rel) == "corrupt" and list(store.corrupt) == [rel]
    assert store.put_image(image) == rel
    assert np.array_equal(read_stored_image(tmp_path, rel), image)
    digest = hashlib.sha256(str(image.shape).encode() + image.tobytes()).hexdigest()
    assert rel == f"images/{digest[:2]}/{digest}.png"


def test_intact_files_are_checked_by_their_bytes_not_decoded(monkeypatch, results):
    """A re-run hashes each PNG against the sha256 recorded when it was written or last verified; only a file
    whose bytes changed is decoded (and judged by its pixels)."""
    import bench.store

    keys = {r["key"] for r in Store(results).rows()}
    decoded = []

    def read(root, rel):
        decoded.append(rel)
        return read_stored_image(root, rel)

    monkeypatch.setattr(bench.store, "read_stored_image", read)
    store = Store(results)
    assert store.cached_keys(keys) == keys and decoded == []
    store.close()
    rel = rows_by_method(results)["tv"]["output_path"]
    good = (results / rel).read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(good)).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)  # other bytes, the same pixels: intact
    (results / rel).write_bytes(buffer.getvalue())
    store = Store(results)
    assert store.cached_keys(keys) == keys and decoded == [rel]
    store.close()
    store = Store(results)  # its new bytes were recorded: no decoding next time
    assert store.cached_keys(keys) == keys and decoded == [rel]
    flip_bytes(results / rel)
    assert store.image_state(rel) == "ok"  # verified once per Store
    store.close()
    store = Store(results)
    assert store.cached_keys(keys) == keys - {rows_by_method(results)["tv"]["key"]} and rel in store.corrupt
    store.close()
