import csv
import math

import numpy as np
import pytest
import torch

from bench.cells import to_tensor
from bench.images import load_image
from bench.metrics import LpipsMetric, MetricSuite, ms_ssim, psnr, ssim


def test_calibration_pairs_match_official_values(shared):
    root = shared("calibration")
    with open(root / "official_values.csv") as handle:
        rows = {r["Method"]: r for r in csv.DictReader(handle)}
    names = [k for k in rows["psnr"] if k != "Method"]
    suite = MetricSuite()
    assert suite.lpips.available, "LPIPS backbone from ../shared/weights should load"
    for name in names:
        ref = to_tensor(load_image(root / "ref_dir" / name))
        dist = to_tensor(load_image(root / "dist_dir" / name))
        ours = suite(ref, dist)
        for metric in ("psnr", "ssim", "ms_ssim", "lpips"):
            official = float(rows[metric][name])
            assert abs(ours[metric] - official) <= 0.01, (name, metric, ours[metric], official)


def test_psnr_known_value():
    ref = torch.zeros(1, 3, 8, 8)
    dist = torch.full((1, 3, 8, 8), 0.1)
    assert psnr(ref, dist) == pytest.approx(20.0)
    assert psnr(ref, ref) == math.inf


def test_ssim_identity_and_degradation():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(x, noisy) < 0.9


def test_ms_ssim_small_images_are_missing_not_crashing():
    x = torch.rand(1, 3, 100, 200)
    with pytest.warns(UserWarning, match="161"):
        import bench.metrics as m

        m._warned.discard("ms_ssim-small")
        assert math.isnan(ms_ssim(x, x))
    y = torch.rand(1, 3, 161, 161)
    assert ms_ssim(y, y) == pytest.approx(1.0)


def test_lpips_missing_without_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_LPIPS_ALEXNET", str(tmp_path / "absent.pth"))
    import bench.metrics as m

    m._warned.clear()
    metric = LpipsMetric()
    with pytest.warns(UserWarning, match="missing"):
        assert math.isnan(metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_metric_suite_on_uint8_roundtrip():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64, 3)).astype(np.float32)
    scores = MetricSuite(lpips=False)(to_tensor(a), to_tensor(a))
    assert scores["psnr"] == math.inf and scores["ssim"] == pytest.approx(1.0)
