import csv
import math
import warnings

import numpy as np
import pytest
import torch

from bench.compute import to_tensor
from bench.images import load_image
from bench.metrics import LpipsMetric, MetricSuite, intra_op_threads, ms_ssim, psnr, ssim


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


def test_lpips_reuses_the_reference_features_without_changing_a_value(shared):
    shared("weights", "alexnet_features.pth")
    suite = MetricSuite()
    assert suite.lpips.available
    g = torch.Generator().manual_seed(3)
    refs = [torch.rand(1, 3, 64, 80, generator=g) for _ in range(2)]
    for ref in (refs[0], refs[0], refs[1], refs[0]):  # a hit, a miss, a miss back
        dist = (ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
        # the suite computes metrics on one intra-op thread; reduction order, hence the last bits, follows the
        # thread count, so the official value is computed on one thread too and must then be equal bit for bit
        with torch.no_grad(), intra_op_threads(1):
            official = float(suite.lpips._model(dist * 2 - 1, ref * 2 - 1).item())  # lpips.LPIPS.forward
        assert suite(ref, dist)["lpips"] == official


def test_metrics_use_one_thread_and_restore_the_setting():
    import bench.metrics as m

    threads = torch.get_num_threads()
    seen = []
    original = m.psnr
    try:
        m.psnr = lambda ref, dist: seen.append(torch.get_num_threads()) or original(ref, dist)
        torch.set_num_threads(2)
        MetricSuite(lpips=False)(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        m.psnr = original
        torch.set_num_threads(threads)


def test_offline_lpips_is_one_warning_line_and_nothing_on_stdout(monkeypatch, tmp_path, capsys):
    import urllib.error

    import bench.metrics as m

    def offline(url, **kwargs):
        print(f'Downloading: "{url}" to {tmp_path}')  # what torch hub prints before it fails
        raise urllib.error.URLError("no network")

    monkeypatch.delenv("BENCH_LPIPS_ALEXNET", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(m, "_warned", set())
    with pytest.warns(UserWarning) as caught:
        assert math.isnan(LpipsMetric()(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)))
    assert capsys.readouterr().out == ""
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("LPIPS is missing:") and "BENCH_LPIPS_ALEXNET" in message
    # no flag: this message reaches bench run, rescore and metrics alike; bench run adds its own (--no-lpips)
    assert "README: Offline weights" in message and "--" not in message and "\n" not in message


@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (2, 3, 161, 203), (1, 3, 64, 64)])
def test_shared_first_scale_gives_the_library_values_bit_for_bit(shape):
    from pytorch_msssim import ms_ssim as library_ms_ssim
    from pytorch_msssim import ssim as library_ssim

    from bench.metrics import luma, ssim_and_ms_ssim_of_luma

    g = torch.Generator().manual_seed(shape[-1])
    ref = torch.rand(shape, generator=g)
    ref_y, dist_y = luma(ref), luma((ref + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 64² case: MS-SSIM missing, warned once
        joint_ssim, joint_ms_ssim = ssim_and_ms_ssim_of_luma(ref_y, dist_y)
    assert joint_ssim == float(library_ssim(ref_y, dist_y, data_range=255.0))
    if min(shape[-2:]) >= 161:
        assert joint_ms_ssim == float(library_ms_ssim(ref_y, dist_y, data_range=255.0))
    else:
        assert math.isnan(joint_ms_ssim)


def test_suite_scores_any_subset_and_the_lpips_thread_changes_no_value(shared):
    shared("weights", "alexnet_features.pth")
    g = torch.Generator().manual_seed(5)
    ref = torch.rand(1, 3, 176, 176, generator=g)
    dist = (ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    everything = MetricSuite()(ref, dist)
    one_by_one = {name: MetricSuite().score(ref, dist, [name])[name] for name in everything}
    assert list(everything) == ["psnr", "ssim", "ms_ssim", "lpips", "psnr_y"]
    # PSNR-Y is the SR literature's metric: scored only with the border crop of an sr cell, NaN otherwise
    assert math.isnan(everything.pop("psnr_y")) and math.isnan(one_by_one.pop("psnr_y"))
    assert one_by_one == everything
    assert everything["ssim"] == ssim(ref, dist) and everything["ms_ssim"] == ms_ssim(ref, dist)
    assert 0 < everything["lpips"] < 1


def test_an_error_on_the_lpips_thread_reaches_the_caller(shared):
    shared("weights", "alexnet_features.pth")
    suite = MetricSuite()
    assert suite.lpips.available

    def broken(self, ref, dist):
        raise RuntimeError("lpips broke")

    suite.lpips.__class__ = type("Broken", (LpipsMetric,), {"__call__": broken})
    with pytest.raises(RuntimeError, match="lpips broke"):
        suite(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
