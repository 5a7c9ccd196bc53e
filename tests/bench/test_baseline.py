"""`bench baseline save` / `bench check`: regressions, improvements, missing cells, bad input."""

import json
import math
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.baseline import compare, format_check, load_baseline, make_baseline, parse_tolerances
from bench.cli import cli, main
from bench.errors import BenchError

RUN = ["run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise", "--limit", "2",
       "--no-lpips", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """identity,tv on 2 builtin smoke crops (noise), and its baseline."""
    root = tmp_path_factory.mktemp("baseline")
    res = root / "res"
    assert invoke(*RUN, "--results-dir", res).exit_code == 0
    out = invoke("baseline", "save", "--out", root / "b.json", "--results-dir", res)
    assert out.exit_code == 0, out.output
    return res, root / "b.json"


def test_save_writes_sorted_json_with_metadata(store):
    _, path = store
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    meta = data["metadata"]
    assert (meta["dataset"], meta["profile"], meta["seeds"]) == ("builtin", "smoke", [0])
    assert sorted(meta["images"]) == ["astronaut", "chelsea"] and len(meta["dataset_hash"]) == 20
    assert meta["bench_version"] and meta["torch_version"] and meta["created"]
    assert meta["methods"]["tv"]["params"]["weight"] == 0.7
    assert data["cells"]["tv"]["noise"]["psnr"]["count"] == 2
    assert data["cells"]["tv"]["noise"]["ms_ssim"] == {"count": 0, "mean": None}  # 64 px: no MS-SSIM


def test_check_passes_on_the_same_store(store):
    res, path = store
    out = invoke("check", "--baseline", path, "--results-dir", res)
    assert out.exit_code == 0, out.output
    assert "check passed" in out.output and "MISSING" not in out.output
    # MS-SSIM is NaN in both: unchanged, not missing
    assert any(line.split()[:3] == ["tv", "noise", "ms_ssim"] and line.endswith("unchanged")
               for line in out.output.splitlines())


def test_worsened_run_fails_naming_the_cells(store, tmp_path):
    res, path = store
    fresh = tmp_path / "res"  # the grid re-run with other parameters: the only tv setting is compared
    assert invoke(*RUN, "--set", "tv.weight=9", "--results-dir", fresh).exit_code == 0
    out = invoke("check", "--baseline", path, "--results-dir", fresh)
    assert out.exit_code == 1
    rows = {tuple(line.split()[:3]): line.split()[-1] for line in out.output.splitlines() if line.startswith("tv ")}
    assert rows[("tv", "noise", "psnr")] == "REGRESSED"
    assert "weight 0.7 -> 9.0" in out.output and "check FAILED" in out.output and "tv/noise/psnr" in out.output


def test_check_compares_like_with_like_when_the_store_holds_several_settings(store, tmp_path):
    """A second tv setting in the same store is a column of its own: the baseline's setting is the one checked."""
    res, path = store
    copy = tmp_path / "res"
    shutil.copytree(res, copy)
    assert invoke(*RUN, "--methods", "tv", "--set", "tv.weight=9", "--results-dir", copy).exit_code == 0
    out = invoke("check", "--baseline", path, "--results-dir", copy)
    assert out.exit_code == 0, out.output
    assert "not in the baseline (not checked): tv[weight=9]" in out.output and "check passed" in out.output


def _edited(path, tmp_path, edit):
    data = json.loads(path.read_text())
    edit(data)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(data))
    return out


def test_strict_fails_on_improvements(store, tmp_path):
    res, path = store

    def lower(data):
        data["cells"]["tv"]["noise"]["psnr"]["mean"] -= 1.0

    edited = _edited(path, tmp_path, lower)
    relaxed = invoke("check", "--baseline", edited, "--results-dir", res)
    assert relaxed.exit_code == 0 and "improved" in relaxed.output
    strict = invoke("check", "--baseline", edited, "--results-dir", res, "--strict")
    assert strict.exit_code == 1 and "IMPROVED" in strict.output


def test_missing_cells_fail(store, tmp_path):
    res, path = store

    def add_ghost(data):
        data["cells"]["ghost"] = {"noise": {"psnr": {"count": 2, "mean": 20.0}}}
        data["cells"]["tv"]["jpeg"] = data["cells"]["tv"]["noise"]

    out = invoke("check", "--baseline", _edited(path, tmp_path, add_ghost), "--results-dir", res)
    assert out.exit_code == 1
    lines = out.output.splitlines()
    assert any(line.split()[:3] == ["ghost", "noise", "psnr"] and "MISSING" in line for line in lines)
    assert any(line.split()[:3] == ["tv", "jpeg", "psnr"] and "MISSING" in line for line in lines)


def _frame(psnr, lpips, methods=("a",), images=("x", "y")):
    rows = [{"method": m, "method_label": m, "method_params": "{}", "method_version": "1", "degradation": "noise",
             "degradation_label": "noise", "degradation_params": "{}", "dataset": "d", "profile": "smoke",
             "image": i, "image_digest": "h" + i, "seed": 0, "status": "ok", "psnr": psnr, "ssim": 0.5,
             "ms_ssim": math.nan, "lpips": lpips, "created": "2024"} for m in methods for i in images]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("lpips, verdict", [(0.31, "REGRESSED"), (0.29, "improved"), (0.302, "within tol")])
def test_lpips_is_lower_is_better(lpips, verdict):
    base = make_baseline(_frame(20.0, 0.3))
    result = compare(base, _frame(20.0, lpips), parse_tolerances(None))
    assert {d.metric: d.verdict for d in result.deltas}["lpips"] == verdict


def test_fewer_images_is_incomplete_and_newest_of_identical_results_wins():
    base = make_baseline(_frame(20.0, 0.3))
    result = compare(base, _frame(20.0, 0.3, images=("x",)), parse_tolerances(None))
    assert {d.metric: d.verdict for d in result.deltas}["psnr"] == "INCOMPLETE" and result.failed
    newer = _frame(25.0, 0.3).assign(created="2025")
    result = compare(base, pd.concat([_frame(20.0, 0.3), newer]), parse_tolerances(None))
    assert {d.metric: d.verdict for d in result.deltas}["psnr"] == "improved"


def test_save_needs_one_dataset_profile():
    df = pd.concat([_frame(20.0, 0.3), _frame(20.0, 0.3).assign(profile="quick")])
    with pytest.raises(BenchError, match="--dataset and --profile"):
        make_baseline(df)
    assert make_baseline(df, profile="quick").metadata["profile"] == "quick"


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr("sys.argv", ["bench", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("psnr=abc", "--tolerance psnr='abc' is not a number"),
    ("pnsr=0.1", "unknown metric 'pnsr' in --tolerance. Did you mean 'psnr'?"),
    ("psnr", "must look like METRIC=VALUE"),
    ("lpips=-1", "must be a finite number >= 0"),
])
def test_tolerance_errors_are_clear(text, message, store, monkeypatch, capsys):
    res, path = store
    code, err = _main(monkeypatch, capsys, "check", "--baseline", path, "--results-dir", res, "--tolerance", text)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_tolerance_overrides_defaults():
    tol = parse_tolerances("psnr=0.5, ms-ssim=0.01")
    assert tol == {"psnr": 0.5, "ssim": 0.002, "ms_ssim": 0.01, "lpips": 0.005, "psnr_y": 0.05}


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "is not valid JSON"),
    ('{"format": "other"}', "is not a restoration-bench baseline"),
    ('{"format": "restoration-bench-baseline/1", "metadata": {"dataset": "d", "profile": "p"}, '
     '"cells": {"a": {"noise": {"psnr": {"mean": "x", "count": 1}}}}}', "malformed cell entry"),
])
def test_bad_baseline_file_is_one_line_error(content, message, store, tmp_path, monkeypatch, capsys):
    res, _ = store
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    code, err = _main(monkeypatch, capsys, "check", "--baseline", path, "--results-dir", res)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    if content is not None:
        with pytest.raises(BenchError):
            load_baseline(path)


def _na_frame(bm3d_sr: str = "n/a"):
    """identity and bm3d on noise and sr; bm3d on sr has the status ``bm3d_sr``."""
    rows = []
    for method in ("identity", "bm3d"):
        for degradation in ("noise", "sr"):
            status = bm3d_sr if (method, degradation) == ("bm3d", "sr") else "ok"
            ok = status == "ok"
            rows.append({"method": method, "method_label": method, "method_params": "{}", "method_version": "v",
                         "degradation": degradation, "degradation_label": degradation, "degradation_params": "{}",
                         "degradation_version": "v", "dataset": "builtin", "profile": "smoke", "image": "a",
                         "image_digest": "da", "seed": 0, "status": status, "created": "t",
                         "error": None if ok else "bm3d does not apply to the task 'sr': no sr scheme",
                         "psnr": 20.0 if ok else None, "ssim": 0.5 if ok else None, "ms_ssim": None, "lpips": None})
    return pd.DataFrame(rows)


def test_na_cells_are_in_the_baseline_and_pass_when_still_na():
    base = make_baseline(_na_frame())
    assert base.metadata["not_applicable"] == {"bm3d": {"sr": "bm3d does not apply to the task 'sr': no sr scheme"}}
    assert "sr" not in base.cells["bm3d"]
    result = compare(base, _na_frame(), parse_tolerances(""))
    assert not result.failed
    assert [(d.method, d.degradation, d.verdict) for d in result.deltas if d.metric == "n/a"] == [("bm3d", "sr", "n/a")]
    assert "1 n/a" in format_check(result)


def test_na_cell_that_fails_or_becomes_computed_is_reported():
    base = make_baseline(_na_frame())
    failed = compare(base, _na_frame("failed"), parse_tolerances(""))
    assert failed.failed and any(d.verdict == "MISSING" and d.note.startswith("was n/a") for d in failed.deltas)
    computed = compare(base, _na_frame("ok"), parse_tolerances(""))
    assert not computed.failed and any(d.metric == "n/a" and d.verdict == "new" for d in computed.deltas)
    assert compare(base, _na_frame("ok"), parse_tolerances(""), strict=True).failed


def test_computed_cell_that_becomes_na_is_missing_with_the_reason():
    base = make_baseline(_na_frame("ok"))
    result = compare(base, _na_frame(), parse_tolerances(""))
    assert result.failed
    assert {d.note for d in result.deltas if d.method == "bm3d" and d.degradation == "sr"} == \
        {"now n/a: bm3d does not apply to the task 'sr': no sr scheme"}
