"""One row filter and one record per metric, shared by reports, statistics, baselines, figures and the CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.metric_specs import METRIC_NAMES, METRIC_SPECS, default_tolerances, spec, spec_for_label
from bench.selection import select_rows


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
    assert [s.label for s in METRIC_SPECS] == ["PSNR ↑", "SSIM ↑", "MS-SSIM ↑", "LPIPS ↓"]
    assert default_tolerances() == {"psnr": 0.05, "ssim": 0.002, "ms_ssim": 0.002, "lpips": 0.005}
    assert all(spec_for_label(s.label) is s for s in METRIC_SPECS)
    assert spec("lpips").gain(0.3, 0.2) == pytest.approx(0.1) and spec("psnr").gain(20.0, 21.0) == 1.0


def test_metric_specs_import_no_torch():
    import subprocess
    import sys

    code = "import sys, bench.metric_specs, bench.selection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
