"""A cache key pins its result: every random draw follows from what the key contains (issue 14, defect 2),
and machine-dependent choices are resolved into the key (defect 10)."""

from __future__ import annotations

import sqlite3

import pytest

from bench.cells import instantiate
from bench.datasets import load_dataset
from bench.images import save_png
from bench.runner import RunConfig, run_grid


def _rows(results) -> dict[str, tuple]:
    with sqlite3.connect(results / "results.sqlite") as db:
        return {key: (psnr, out, deg) for key, psnr, out, deg in
                db.execute("select key, psnr, output_path, degraded_path from cells where status = 'ok'")}


def _run(results, methods, overrides, dataset="builtin", degradations=("noise",)) -> dict[str, tuple]:
    run_grid(RunConfig(methods=list(methods), degradations=list(degradations), dataset=dataset, limit=1,
                       profile="smoke", overrides=overrides, results_dir=str(results), lpips=False, progress=False))
    return _rows(results)


def test_same_key_same_result_whatever_the_grid(tmp_path):
    """The method's generator was seeded from the display label (`dip` vs `dip[lr=0.01]`), not in the key."""
    grid = _run(tmp_path / "grid", ["dip"], {"dip": {"lr": ["0.01", "0.02"], "iterations": "3"}})
    alone = _run(tmp_path / "alone", ["dip"], {"dip": {"lr": "0.01", "iterations": "3"}})
    (key,) = alone
    assert key in grid
    assert grid[key][:2] == alone[key][:2]  # same PSNR, same restored image (content-addressed name)


def test_identical_images_with_different_names_draw_the_same_noise(tmp_path):
    """Two files with the same pixels share a key; the noise was seeded from the file name, so the key's result
    depended on which name computed it first."""
    (item,) = load_dataset("builtin", limit=1, crop=64)
    results = {}
    for name in ("first", "second"):
        save_png(item.image, tmp_path / name / f"{name}.png")
        results[name] = _run(tmp_path / f"res-{name}", ["identity"], {}, dataset=f"folder:{tmp_path / name}")
    assert results["first"].keys() == results["second"].keys()
    assert results["first"] == results["second"]  # same PSNR, same restored and degraded images


@pytest.mark.parametrize("method", ["dip", "doubledip"])
def test_precision_auto_is_resolved_into_the_key(monkeypatch, method):
    keys = {}
    for forced in ("on", "off"):
        monkeypatch.setenv("BENCH_BF16", forced)
        instance = instantiate("method", method, {}, "smoke", "cpu")[0]
        keys[forced] = instance.key_data()
        assert instance.params["precision"] == ("bfloat16" if forced == "on" else "float32")
        assert instance.params["channels_last"] == forced  # the layout follows the precision
    assert keys["on"] != keys["off"]
    layout = instantiate("method", method, {"precision": "float32", "channels_last": "on"}, "smoke", "cpu")[0]
    assert layout.params["channels_last"] == "on" and layout.key_data() != keys["off"]
    pinned = instantiate("method", method, {"precision": "float32"}, "smoke", "cpu")[0]
    assert pinned.key_data() == keys["off"]
    assert instantiate("method", method, {}, "smoke", "cuda")[0].params["precision"] == "float32"
