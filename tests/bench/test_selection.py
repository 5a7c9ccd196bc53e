"""One row filter, one choice of the rows shown (issue 14, defect 1) and one record per metric, shared by reports,
statistics, baselines, figures and the CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.metric_specs import METRIC_NAMES, METRIC_SPECS, default_tolerances, spec, spec_for_label
from bench.selection import current_rows, match_settings, select, select_rows


@pytest.fixture
def rows():
    return pd.DataFrame({
        "method": ["tv", "tv", "identity", "tv"],
        "method_label": ["tv[w=1]", "tv[w=2]", "identity", "tv[w=1]"],
        "degradation": ["noise", "noise", "jpeg", "jpeg"],
        "degradation_label": ["noise", "noise", "jpeg", "jpeg"],
        "dataset": ["builtin", "builtin", "builtin", "folder:x"],
        "profile": ["smoke", "quick", "smoke", "smoke"],
        "image": ["a", "b", "a", "a"],
        "image_digest": ["ha", "hb", "ha", "ha"],
        "seed": [0, 1, 0, 0],
        "status": ["ok", "failed", "ok", "ok"],
    }, index=[10, 11, 12, 13])


def test_no_filter_keeps_everything(rows):
    assert select_rows(rows).equals(rows)
    assert select_rows(rows, methods=[], degradations=None, dataset="", profile=None).equals(rows)


def test_methods_match_labels_or_names(rows):
    assert list(select_rows(rows, methods=["tv"]).index) == [10, 11, 13]
    assert list(select_rows(rows, methods=["tv[w=2]", "identity"]).index) == [11, 12]
    assert list(select_rows(rows, methods=["tv"], labels_only=True).index) == []
    assert list(select_rows(rows, degradations=["jpeg"], methods=["tv"]).index) == [13]


def test_dataset_profile_images_digests_seeds_status(rows):
    assert list(select_rows(rows, dataset="builtin", profile="smoke").index) == [10, 12]
    assert list(select_rows(rows, images=["b"]).index) == [11]
    assert list(select_rows(rows, image_digests={"ha"}, seeds=[0]).index) == [10, 12, 13]
    assert list(select_rows(rows, status="ok").index) == [10, 12, 13]


def test_metric_records_agree_with_the_metric_suite():
    import torch

    from bench.metrics import HIGHER_IS_BETTER, METRICS, MetricSuite

    x = torch.rand(1, 3, 16, 16)
    assert tuple(MetricSuite(lpips=False)(x, x)) == METRIC_NAMES == METRICS
    assert HIGHER_IS_BETTER == {s.name: s.higher_is_better for s in METRIC_SPECS}
    assert [s.label for s in METRIC_SPECS] == ["PSNR ↑", "SSIM ↑", "MS-SSIM ↑", "LPIPS ↓", "PSNR-Y ↑"]
    assert default_tolerances() == {"psnr": 0.05, "ssim": 0.002, "ms_ssim": 0.002, "lpips": 0.005, "psnr_y": 0.05}
    assert all(spec_for_label(s.label) is s for s in METRIC_SPECS)
    assert spec("lpips").gain(0.3, 0.2) == pytest.approx(0.1) and spec("psnr").gain(20.0, 21.0) == 1.0


def test_metric_specs_import_no_torch():
    import subprocess
    import sys

    code = "import sys, bench.metric_specs, bench.selection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def cells(**columns):
    """A results frame: one row per value of the longest column (others repeat their single value)."""
    n = max(len(v) if isinstance(v, list) else 1 for v in columns.values())
    base = {"method": "tv", "method_label": "tv", "method_params": "{}", "method_version": "m1",
            "degradation": "noise", "degradation_label": "noise", "degradation_params": '{"sigma": 25.0}',
            "degradation_description": "σ=25", "dataset": "builtin", "profile": "smoke", "image": "a",
            "image_digest": "da", "seed": 0, "status": "ok", "psnr": 20.0, "created": "2024-01-01T00:00:00"}
    base.update(columns)
    return pd.DataFrame({k: v if isinstance(v, list) else [v] * n for k, v in base.items()})


def test_current_code_version_wins_else_the_newest_and_older_versions_are_labelled():
    df = cells(method_version=["m0", "m1", "m2"], psnr=[1.0, 2.0, 3.0],
               created=["2024-01-01T00:00:00", "2024-01-03T00:00:00", "2024-01-02T00:00:00"])
    sel = select(df, versions={("method", "tv"): "m2"})
    assert list(sel.rows["psnr"]) == [3.0] and list(sel.hidden["reason"]) == ["older code"] * 2 and not sel.stale
    newest = select(df, versions={})  # plugin not installed: the newest version in the store is current
    assert list(newest.rows["psnr"]) == [2.0] and not newest.stale
    stale = select(df, versions={("method", "tv"): "m9"})  # current code never ran: newest shown, and said
    assert list(stale.rows["psnr"]) == [2.0] and stale.stale == ["tv"] and "re-run to refresh" in stale.notes()[1]
    every = select(df, all_versions=True, versions={("method", "tv"): "m2"})
    assert list(every.rows["method_label"]) == ["tv[code=m0]", "tv[code=m1]", "tv"] and every.hidden.empty


def test_settings_under_one_label_become_labels_naming_what_differs():
    df = cells(method_params=['{"iterations": 5, "weight": 0.9}', '{"iterations": 5, "weight": 9.0}'],
               degradation_params='{"sigma": 25.0}')
    assert list(current_rows(df, versions={})["method_label"]) == ["tv[weight=0.9]", "tv[weight=9]"]
    grid = df.assign(method_label=["tv[weight=0.9]", "tv[weight=9]"])  # a grid's own labels are kept
    assert list(current_rows(grid, versions={})["method_label"]) == ["tv[weight=0.9]", "tv[weight=9]"]
    split = cells(method_label=["tv[weight=0.9]", "tv"], image=["a", "b"], image_digest=["da", "db"])
    assert list(current_rows(split, versions={})["method_label"]) == ["tv", "tv"]  # one setting, one column


def test_replaced_images_are_hidden_or_their_own_dataset():
    df = cells(image_digest=["old", "new"], psnr=[1.0, 2.0], created=["2024-01-01T00:00:00", "2024-01-02T00:00:00"])
    sel = select(df, versions={})
    assert list(sel.rows["psnr"]) == [2.0] and "1 result(s) of replaced images (a)" in sel.notes()[0]
    every = select(df, all_versions=True, versions={}).rows
    assert list(every["dataset"]) == ["builtin [replaced images]", "builtin"] and list(every["image"]) == ["a@old", "a"]
    pinned = select(df, versions={}, image_digests={"old"}).rows  # `bench check`: the baseline's images
    assert list(pinned["psnr"]) == [1.0]
    profiles = df.assign(profile=["smoke", "quick"])  # another profile crops another digest: not a replacement
    assert len(current_rows(profiles, versions={})) == 2


def test_duplicates_show_the_newest_ok_row_and_are_reported():
    df = cells(psnr=[1.0, 2.0, None], status=["ok", "ok", "failed"],
               created=["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"])
    sel = select(df, versions={})
    assert list(sel.rows["psnr"]) == [2.0] and list(sel.hidden["reason"]) == ["duplicate"] * 2
    assert len(sel.ambiguous) == 1 and "the newest is shown" in sel.notes()[0] and "tv/noise/a/seed 0" in sel.notes()[0]


def test_selection_is_idempotent_and_keeps_the_index():
    df = cells(degradation_params=['{"sigma": 25.0}', '{"sigma": 50.0}']).set_axis([7, 3])
    once = current_rows(df, versions={})
    assert list(once.index) == [7, 3] and current_rows(once) is once
    assert list(once["stored_degradation_label"]) == ["noise", "noise"]


def test_match_settings_pairs_equal_parameters_then_the_only_one_left():
    rows = cells(method_params=['{"weight": 0.9}', '{"weight": 9.0}'], method_label=["tv[w=0.9]", "tv[w=9]"])
    assert match_settings(rows, "method", {"tv": ("tv", {"weight": 9})}) == {"tv": "tv[w=9]"}
    one = rows.iloc[:1]
    assert match_settings(one, "method", {"tv": ("tv", {"weight": 5})}) == {"tv": "tv[w=0.9]"}
    assert match_settings(rows, "method", {"tv": ("tv", {"weight": 5})}) == {}  # two candidates: no guess


def test_an_edited_degradation_hides_its_older_rows_without_unhiding_older_methods():
    """Both plugins' versions count: an outdated method row stays hidden whatever its degradation's version."""
    df = cells(method_version=["m0", "m1", "m1"], degradation_version=["d1", "d0", "d1"], psnr=[1.0, 2.0, 3.0],
               created=["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"])
    sel = select(df, versions={("method", "tv"): "m1", ("degradation", "noise"): "d1"})
    assert list(sel.rows["psnr"]) == [3.0] and list(sel.hidden["reason"]) == ["older code"] * 2
    assert sel.ambiguous.empty


def test_na_rows_filter_by_status_and_win_over_a_failed_duplicate():
    """An "n/a" row is a result (the method does not apply), not a failure: shown before a failed duplicate."""
    base = {"method": "bm3d", "method_label": "bm3d", "degradation": "sr", "degradation_label": "sr",
            "dataset": "builtin", "profile": "smoke", "image": "a", "image_digest": "ha", "seed": 0}
    df = pd.DataFrame([{**base, "status": "n/a", "created": "1"}, {**base, "status": "failed", "created": "2"}])
    assert list(select_rows(df, status="n/a")["status"]) == ["n/a"] and select_rows(df, status="ok").empty
    sel = select(df, versions={})
    assert list(sel.rows["status"]) == ["n/a"] and list(sel.hidden["reason"]) == ["duplicate"]
