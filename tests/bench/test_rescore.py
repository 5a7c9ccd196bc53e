"""`bench rescore`: missing metrics are filled in from the stored images, equal to a fresh run's, with the
implementation recorded (issue 14, defect 8)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench.images import save_png
from bench.store import Store

RUN = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise", "--limit", "1",
       "--set", "tv.iterations=10", "--no-progress"]



def rows(results):
    store = Store(results, read_only=True)
    try:
        return {r["key"]: r for r in store.rows()}
    finally:
        store.close()


def need_lpips_weights():
    path = os.environ.get("BENCH_LPIPS_ALEXNET")
    if not path or not Path(path).is_file():
        pytest.skip("LPIPS backbone not available: set BENCH_LPIPS_ALEXNET (e.g. ../shared/weights/"
                    "alexnet_features.pth)")


def test_rescore_fills_lpips_equal_to_a_fresh_run_and_records_it(monkeypatch, capsys, tmp_path, run_cli):
    need_lpips_weights()
    without, fresh = tmp_path / "without", tmp_path / "fresh"
    code, out, err = run_cli(*RUN, "--no-lpips", "--results-dir", without)
    assert code == 0, err
    assert all(r["lpips"] is None for r in rows(without).values())
    code, out, err = run_cli("rescore", "--results-dir", without)
    assert code == 0, err
    assert "rescored 2 row(s): 2 value(s) filled, 0 changed, 0 unchanged; skipped 0" in out
    code, out, err = run_cli(*RUN, "--results-dir", fresh)
    assert code == 0, err
    rescored, computed = rows(without), rows(fresh)
    assert rescored.keys() == computed.keys()
    for key, row in computed.items():
        assert rescored[key]["lpips"] == pytest.approx(row["lpips"], abs=1e-7)
        assert rescored[key]["psnr"] == row["psnr"] and rescored[key]["ssim"] == row["ssim"]
        impl, fresh_impl = json.loads(rescored[key]["metric_impl"]), json.loads(row["metric_impl"])
        assert impl["lpips"] == fresh_impl["lpips"] and impl["lpips"].startswith("lpips ")
        assert " alex v0.1 features:" in impl["lpips"]
        assert fresh_impl["psnr"] == "bench psnr rgb float64" and "pytorch_msssim" in fresh_impl["ssim"]
        assert "psnr" in impl  # the run recorded the others, rescoring merged LPIPS in
    code, out, err = run_cli("rescore", "--results-dir", without)  # nothing left to fill
    assert code == 0 and "rescored 0 row(s)" in out
    code, out, err = run_cli(*RUN, "--results-dir", without)  # the cache keeps them
    assert "computed 0, cached 2" in err and rows(without) == rescored


def test_rescore_recomputes_selected_metrics_of_selected_methods(monkeypatch, capsys, tmp_path, run_cli):
    results = tmp_path / "res"
    assert run_cli(*RUN, "--no-lpips", "--results-dir", results)[0] == 0
    before = rows(results)
    code, out, err = run_cli("rescore", "--metrics", "psnr,ssim", "--no-only-missing",
                             "--methods", "tv", "--results-dir", results)
    assert code == 0, err
    assert "rescored 1 row(s): 0 value(s) filled, 0 changed, 2 unchanged; skipped 0" in out
    after = rows(results)
    for key, row in before.items():
        assert {k: v for k, v in after[key].items() if k != "metric_impl"} == \
               {k: v for k, v in row.items() if k != "metric_impl"}


def test_rescore_skips_rows_whose_clean_image_changed(monkeypatch, capsys, tmp_path, run_cli):
    folder = tmp_path / "data"
    folder.mkdir()
    save_png(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), folder / "photo.png")
    results = tmp_path / "res"
    args = [*RUN, "--dataset", f"folder:{folder}", "--no-lpips", "--results-dir", results]
    assert run_cli(*args)[0] == 0
    save_png(np.random.default_rng(1).random((64, 64, 3)).astype(np.float32), folder / "photo.png")
    before = rows(results)
    code, out, err = run_cli("rescore", "--metrics", "psnr", "--no-only-missing",
                             "--results-dir", results)
    assert code == 1 and "rescored 0 row(s)" in out and "skipped 2" in out
    assert "clean image 'photo' not found in folder:" in err and "content changed since the run" in err
    assert rows(results) == before


def test_rescore_without_lpips_weights_changes_nothing(monkeypatch, capsys, tmp_path, run_cli):
    results = tmp_path / "res"
    assert run_cli(*RUN, "--no-lpips", "--results-dir", results)[0] == 0
    before = rows(results)
    monkeypatch.setenv("BENCH_LPIPS_ALEXNET", str(tmp_path / "absent.pth"))
    import bench.metrics

    monkeypatch.setattr(bench.metrics, "_warned", set())
    code, out, err = run_cli("rescore", "--results-dir", results)
    assert code == 1
    assert err.startswith("error: cannot compute LPIPS:") and "nothing was rescored" in err
    assert len(err.strip().splitlines()) == 1 and rows(results) == before


@pytest.mark.parametrize("args, message, exit_code", [
    (["--metrics", "lpipz"], "error: --metrics: unknown metric 'lpipz'. Did you mean 'lpips'?", 2),
    (["--device", "foo"], "error: --device 'foo' is not a torch device", 2),
    (["--methods", "nosuch"], "error: no successfully computed cells match the filters.", 1),
])
def test_rescore_bad_input(monkeypatch, capsys, tmp_path, args, message, exit_code, run_cli):
    results = tmp_path / "res"
    assert run_cli(*RUN, "--no-lpips", "--results-dir", results)[0] == 0
    code, out, err = run_cli("rescore", "--results-dir", results, *args)
    assert code == exit_code and err.startswith(message), err


def test_rescore_of_a_missing_store(monkeypatch, capsys, tmp_path, run_cli):
    code, out, err = run_cli("rescore", "--results-dir", tmp_path / "none")
    assert code == 1 and err.startswith("error: no results in") and not (tmp_path / "none").exists()
