"""The Python API (bench/python_api.py): bench.run, bench.restore and bench.report against `bench run`, the store
and `bench report` on the same grid; errors as BenchError; a cheap `import bench`; the example script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage import data

import bench
import bench.report as report_module
from bench import python_api
from bench.errors import BenchError, ImageError, ParameterError, UnknownNameError, UsageError
from bench.metric_specs import METRIC_NAMES
from bench.python_api import LEAD_COLUMNS
from bench.store import Store

ROOT = Path(__file__).resolve().parents[2]
GRID = dict(methods=["identity", "tv"], degradations=["noise"], dataset="builtin", limit=1, profile="smoke",
            overrides={"tv.weight": [0.5, 0.9]}, lpips=False, progress=False)
CLI_GRID = ("--methods", "identity,tv", "--degradations", "noise", "--dataset", "builtin", "--limit", "1",
            "--profile", "smoke", "--set", "tv.weight=0.5,0.9", "--no-lpips", "--no-progress")


def stored(results: Path) -> pd.DataFrame:
    store = Store(results, read_only=True)
    try:
        return store.dataframe().set_index("key")
    finally:
        store.close()


def same(a: object, b: object) -> bool:
    """Equal, or both missing (NaN/None)."""
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    return (missing(a) and missing(b)) or a == b


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    """The same grid through `bench run` (its real entry point) and through bench.run, in two stores."""
    from bench.cli import main

    cli_dir, api_dir = tmp_path_factory.mktemp("cli"), tmp_path_factory.mktemp("api")
    main(["run", *CLI_GRID, "--results-dir", str(cli_dir)])  # returns on success (exits 1 if a cell failed)
    df = bench.run(**GRID, results_dir=api_dir)
    return cli_dir, api_dir, df


def test_run_returns_the_cells_bench_run_stores(grids):
    cli_dir, api_dir, df = grids
    assert isinstance(df, pd.DataFrame) and len(df) == 3  # identity, tv[weight=0.5], tv[weight=0.9]
    assert df.attrs["computed"] == 3 and df.attrs["cached"] == 0 and df.attrs["failed"] == 0
    # columns: the lead ones, the overridden parameter, then every stored column, once
    assert list(df.columns[:3]) == ["method", "degradation", "tv.weight"]
    assert list(df.columns[3:len(LEAD_COLUMNS) + 1]) == list(LEAD_COLUMNS[2:])
    store_api, store_cli = stored(api_dir), stored(cli_dir)
    assert set(df.columns) == {*store_api.columns, "key", "tv.weight"} and df.columns.is_unique
    # rows in grid order, with their parameters
    assert df["method_label"].tolist() == ["identity", "tv[weight=0.5]", "tv[weight=0.9]"]
    assert df["tv.weight"].tolist()[1:] == [0.5, 0.9] and math.isnan(df["tv.weight"][0])
    assert [json.loads(p).get("weight") for p in df["method_params"]] == [None, 0.5, 0.9]
    assert (df["status"] == "ok").all() and (df["image"] == "astronaut").all() and (df["seed"] == 0).all()
    # every value is the store's; the cells are those `bench run` computed for the same grid (same keys and scores)
    assert set(df["key"]) == set(store_api.index) == set(store_cli.index)
    for _, row in df.iterrows():
        for column in store_api.columns:
            assert same(row[column], store_api.loc[row["key"], column]), column
        for column in (*METRIC_NAMES, "input_psnr", "method_params", "degradation_params", "status"):
            assert same(row[column], store_cli.loc[row["key"], column]), column
    assert df["psnr"].notna().all() and (df["psnr"][1:] > df["psnr"][0]).all()  # TV denoises


def test_cached_second_call_computes_nothing(grids, run_cli):
    cli_dir, api_dir, df = grids
    before = stored(api_dir)["created"]
    again = bench.run(**GRID, results_dir=api_dir)
    assert (again.attrs["computed"], again.attrs["cached"], again.attrs["failed"]) == (0, 3, 0)
    pd.testing.assert_frame_equal(again, df)
    assert stored(api_dir)["created"].equals(before)  # no row written again
    # the command line and the API share the store and its remembered keys
    code, out, err = run_cli("run", *CLI_GRID, "--results-dir", api_dir)
    assert code == 0 and "computed 0, cached 3, failed 0" in err
    again = bench.run(**GRID, results_dir=cli_dir)
    assert (again.attrs["computed"], again.attrs["cached"]) == (0, 3)


def test_cached_run_needs_neither_torch_nor_the_plugins(grids):
    _, api_dir, _ = grids
    code = ("import sys, bench; df = bench.run(methods=['identity', 'tv'], degradations=['noise'], limit=1, "
            f"profile='smoke', overrides={{'tv.weight': [0.5, 0.9]}}, lpips=False, progress=False, "
            f"results_dir={str(api_dir)!r}); print(len(df), df.attrs['computed'], 'torch' in sys.modules, "
            "any(m.startswith('methods') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "0", "False", "False"]
    assert "computed 0, cached 3, failed 0" in done.stderr


def test_bad_input_raises_bench_errors(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown method 'tvv'\. Did you mean 'tv'\?"):
        bench.run(methods=["identity", "tvv"], degradations=["noise"], profile="smoke", results_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="Did you mean 'noise'"):
        bench.run(methods="tv", degradations="nosie", profile="smoke", results_dir=tmp_path)
    with pytest.raises(UsageError, match="--limit 0: must be at least 1"):
        bench.run(methods="tv", degradations="noise", limit=0, results_dir=tmp_path)
    with pytest.raises(UsageError, match="--profile 'smok'.*Did you mean 'smoke'"):
        bench.run(methods="tv", degradations="noise", profile="smok", results_dir=tmp_path)
    with pytest.raises(ParameterError, match="Did you mean 'weight'"):
        bench.run(methods="tv", degradations="noise", profile="smoke", overrides={"tv.wieght": 0.5},
                  results_dir=tmp_path)
    with pytest.raises(ParameterError, match="must look like 'NAME.PARAM'"):
        bench.run(methods="tv", degradations="noise", overrides={"weight": 0.5}, results_dir=tmp_path)
    with pytest.raises(UsageError, match="must be at least 0"):
        bench.run(methods="tv", degradations="noise", seeds=-1, results_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing stored from a bad request
    with pytest.raises(UsageError, match="format 'pdf'"):
        bench.report(tmp_path, "pdf")
    with pytest.raises(BenchError, match="no results in"):
        bench.report(tmp_path / "none")
    with pytest.raises(ImageError, match="at least 16×16"):
        bench.restore("tv", np.zeros((8, 8, 3)), "noise", profile="smoke")
    with pytest.raises(ParameterError, match="grid of 2"):
        bench.restore("tv", data.astronaut(), "noise", profile="smoke", crop=64, lpips=False, weight=[0.5, 0.9])
    with pytest.raises(UnknownNameError, match="Did you mean 'tv'"):
        bench.restore("tvv", data.astronaut(), "noise", profile="smoke", crop=64)


def test_restore_is_the_runs_cell(grids):
    _, api_dir, df = grids
    cell = df[df["method_label"] == "tv[weight=0.9]"].iloc[0]
    # the builtin dataset's astronaut at the smoke profile is this array's 64 px centre crop
    result = bench.restore("tv", data.astronaut(), "noise", seed=0, profile="smoke", crop=64, lpips=False,
                           weight=0.9)
    assert isinstance(result, bench.Restoration)
    assert result.key == cell["key"]  # the same cell: same key, hence the same draws
    assert result.metrics["psnr"] == cell["psnr"] and result.metrics["ssim"] == cell["ssim"]
    assert result.input_psnr == cell["input_psnr"]
    assert result.metrics["lpips"] is None and result.metrics["ms_ssim"] is None  # --no-lpips; 64 px: no MS-SSIM
    store = Store(api_dir, read_only=True)
    try:
        assert np.array_equal(result.restored, store.read_image(cell["output_path"]))  # the stored output, exactly
        degraded = store.read_image(cell["degraded_path"])
    finally:
        store.close()
    assert result.observation.shape == (64, 64, 3) and result.observation.min() < 0  # unclipped float noise
    assert np.array_equal(np.round(np.clip(result.observation, 0, 1) * 255) / 255, degraded.astype(np.float64))
    assert result.method_params == json.loads(cell["method_params"]) and result.method_params["weight"] == 0.9
    assert result.degradation_params == json.loads(cell["degradation_params"])
    assert repr(result).startswith("Restoration(tv on noise, seed 0, profile smoke: psnr=")


def test_restore_takes_arrays_paths_and_tensors(tmp_path):
    crop = data.astronaut()[224:288, 224:288]  # the 64 px centre crop of the 512 px photo
    reference = bench.restore("identity", crop, "noise", seed=3, profile="smoke", lpips=False,
                              degradation_params={"sigma": 50})
    as_float = bench.restore("identity", crop.astype(np.float32) / 255, "noise", seed=3, profile="smoke", lpips=False,
                             degradation_params={"sigma": 50})
    tensor = torch.from_numpy(crop).permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W)
    as_tensor = bench.restore("identity", tensor, "noise", seed=3, profile="smoke", lpips=False,
                              degradation_params={"sigma": 50})
    Image.fromarray(crop).save(tmp_path / "photo.png")
    as_path = bench.restore("identity", tmp_path / "photo.png", "noise", seed=3, profile="smoke", lpips=False,
                            degradation_params={"sigma": 50})
    for other in (as_float, as_tensor, as_path):
        assert other.key == reference.key and other.metrics == reference.metrics
        assert np.array_equal(other.restored, reference.restored)
    assert as_path.row["image"] == "photo" and reference.degradation_params["sigma"] == 50
    other_seed = bench.restore("identity", crop, "noise", seed=4, profile="smoke", lpips=False,
                               degradation_params={"sigma": 50})
    assert other_seed.key != reference.key and not np.array_equal(other_seed.observation, reference.observation)


def test_report_is_bench_reports_text(grids, run_cli, tmp_path):
    _, api_dir, _ = grids
    for fmt in ("markdown", "latex", "csv"):
        code, out, _ = run_cli("report", "--results-dir", api_dir, "--format", fmt)
        assert code == 0 and bench.report(api_dir, fmt) + "\n" == out
    code, out, _ = run_cli("report", "--results-dir", api_dir, "--format", "csv", "--per-image",
                           "--methods", "tv[weight=0.5]")
    assert bench.report(api_dir, "csv", per_image=True, methods=["tv[weight=0.5]"]) + "\n" == out
    html = bench.report(str(api_dir), format="html", figures=False, out=tmp_path / "r.html")
    assert html.startswith("<!DOCTYPE html>") and (tmp_path / "r.html").read_text(encoding="utf-8") == html
    assert callable(report_module) and report_module.render  # still the module, also callable
    assert bench.report(api_dir) == python_api.report(api_dir)


def test_import_bench_stays_cheap():
    code = ("import sys, bench; before = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('bench', 'numpy', 'pandas', 'torch', 'click')); bench.run; "
            "print(before, 'torch' in sys.modules, 'pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['bench']", "False", "False"]  # the API module loads neither until it runs


@pytest.mark.slow
def test_example_script_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook_api.py"), str(tmp_path / "res")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "computed 6, cached 0" in out and "tv[weight=0.9]" in out and "noise.sigma" in out
    assert "Restoration(tv on noise, seed 0, profile smoke: psnr=" in out
    assert "| noise[sigma=50] | PSNR ↑ |" in out
    again = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook_api.py"), str(tmp_path / "res")],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert again.returncode == 0 and "computed 0, cached 6" in again.stdout
