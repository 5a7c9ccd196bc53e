"""Memory (issue 25): a grid whose cells cannot fit is refused before any cell runs, with the estimate and the fix;
large images are scored in row bands with the values of one piece. Available memory is faked (an environment
variable or a patched model), never allocated; the measured figures are in benchmarks/bench_memory.py."""

import math

import numpy as np
import pytest
import torch

import bench.memory as memory
import bench.metric_bands as bands
from bench.images import save_png
from bench.store import DB_NAME, Store


@pytest.fixture
def photo(tmp_path):
    """A folder holding one 96×96 image."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    save_png(rng.random((96, 96, 3)).astype(np.float32), folder / "photo.png")
    return folder


def run_paper(run_cli, tmp_path, folder, *extra):
    return run_cli("run", "--profile", "paper", "--methods", "identity", "--degradations", "noise", "--no-lpips",
                   "--no-progress", "--dataset", f"folder:{folder}", "--results-dir", str(tmp_path / "res"), *extra)


@pytest.fixture
def heavy_identity(monkeypatch):
    """identity as a method of 200 000 bytes per pixel: its 96×96 cell needs 1.6 GB + 1.7 GB."""
    monkeypatch.setitem(memory.MEASURED_BYTES_PER_PIXEL, "identity", 200_000.0)
    monkeypatch.delenv("BENCH_MEMORY_CHECK", raising=False)
    from bench.api import Method

    return memory.estimate_bytes(Method, "identity", 96, 96)


def test_a_grid_that_cannot_fit_is_refused_before_any_cell_runs(monkeypatch, tmp_path, photo, heavy_identity, run_cli):
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "6GB")
    code, out, err = run_paper(run_cli, tmp_path, photo, "--jobs", "2")
    assert code == 1 and out == ""
    assert err == (f"error: identity on image 'photo' (96×96) needs about {heavy_identity / 2**30:.1f} GB but this "
                   "machine has 3.0 GB available for each of 2 job(s); use --crop 64, fewer --jobs, or a smaller "
                   "image.\n")
    assert heavy_identity / 2**30 == pytest.approx(3.32, abs=0.01)
    assert Store(tmp_path / "res").rows() == []  # nothing computed, nothing stored


def test_the_fix_the_message_names_works(monkeypatch, tmp_path, photo, heavy_identity, run_cli):
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "6GB")
    code, _, err = run_paper(run_cli, tmp_path, photo, "--jobs", "2", "--crop", "64")
    assert code == 0 and "computed 1, cached 0, failed 0" in err, err
    code, _, err = run_paper(run_cli, tmp_path, photo)  # one job: 6 GB for the whole cell
    assert code == 0 and "computed 1, cached 0, failed 0" in err, err


def test_one_job_with_too_little_memory_for_any_crop(monkeypatch, tmp_path, photo, heavy_identity, run_cli):
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "1.5GB")  # less than the base: no crop helps, no jobs to drop
    code, _, err = run_paper(run_cli, tmp_path, photo)
    assert code == 1 and err.endswith("has 1.5 GB available for each of 1 job(s); use a smaller image.\n"), err


def test_cached_cells_need_no_memory_and_the_check_can_be_switched_off(monkeypatch, tmp_path, photo, heavy_identity,
                                                                         run_cli):
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "1GB")
    monkeypatch.setenv("BENCH_MEMORY_CHECK", "off")
    code, _, err = run_paper(run_cli, tmp_path, photo)
    assert code == 0 and "computed 1" in err, err
    monkeypatch.delenv("BENCH_MEMORY_CHECK")
    code, _, err = run_paper(run_cli, tmp_path, photo)  # only cells to compute are checked
    assert code == 0 and "computed 0, cached 1" in err, err
    assert (tmp_path / "res" / DB_NAME).is_file()


def test_the_model_reads_a_method_class_declaration_first():
    from bench.api import Method

    class Declared(Method):
        memory_bytes_per_pixel = 1234

    assert memory.bytes_per_pixel(Declared, "identity") == 1234.0
    assert memory.bytes_per_pixel(Method, "identity") == memory.MEASURED_BYTES_PER_PIXEL["identity"]
    assert memory.bytes_per_pixel(Method, "no-such-method") == memory.DEFAULT_BYTES_PER_PIXEL
    assert memory.estimate_bytes(Declared, "x", 1000, 1000) == memory.BASE_BYTES + 1234 * 10**6


def test_available_memory_from_the_variable_psutil_or_proc_meminfo(monkeypatch):
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "512MB")
    assert memory.available_bytes() == 512 * 2**20
    monkeypatch.setenv("BENCH_MEMORY_AVAILABLE", "lots")
    with pytest.raises(memory.UsageError, match="BENCH_MEMORY_AVAILABLE='lots'"):
        memory.available_bytes()
    monkeypatch.delenv("BENCH_MEMORY_AVAILABLE")
    with_psutil = memory.available_bytes()
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)  # not installed: /proc/meminfo
    without = memory.available_bytes()
    if with_psutil is not None and without is not None:
        assert with_psutil > 0 and without > 0 and abs(with_psutil - without) < 2**30  # the same figure, moments apart


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of a few thousand pixels, so that small images take the large-image path."""
    monkeypatch.setattr(bands, "SSIM_BAND_PIXELS", 20_000)
    monkeypatch.setattr(bands, "LPIPS_BAND_PIXELS", 30_000)


def pair(height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 3, height, width, generator=g), 3, 1, 1)
    dist = ((ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(0, 1) * 255).round() / 255
    return ref, dist


@pytest.mark.parametrize("shape", [(300, 420), (517, 389)])
def test_psnr_ssim_and_ms_ssim_in_bands_equal_one_piece(monkeypatch, shape, one_thread):
    from bench.metrics import luma, ms_ssim, psnr, ssim

    ref, dist = pair(*shape)
    whole = psnr(ref, dist), ssim(ref, dist), ms_ssim(ref, dist), luma(ref)
    monkeypatch.setattr(bands, "SSIM_BAND_PIXELS", 20_000)
    assert len(bands.row_bands(*shape, bands.SSIM_BAND_PIXELS)) >= 5
    banded = psnr(ref, dist), ssim(ref, dist), ms_ssim(ref, dist), luma(ref)
    assert torch.equal(whole[3], banded[3])  # element-wise: the same numbers
    for a, b in zip(whole[:3], banded[:3]):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_lpips_in_bands_equals_one_piece_within_1e_6(monkeypatch, small_bands, one_thread):
    from bench.metrics import LpipsMetric

    monkeypatch.setattr(bands, "LPIPS_BAND_PIXELS", 2**22)
    metric = LpipsMetric()
    if not metric.available:
        pytest.skip("LPIPS backbone not available: set BENCH_LPIPS_ALEXNET")
    for shape in [(300, 420), (517, 389), (200, 1100)]:
        ref, dist = pair(*shape, seed=1)
        whole = metric(ref, dist)
        monkeypatch.setattr(bands, "LPIPS_BAND_PIXELS", 30_000)
        assert len(bands.row_bands(*shape, bands.LPIPS_BAND_PIXELS)) >= 3
        banded = LpipsMetric()(ref, dist)
        monkeypatch.setattr(bands, "LPIPS_BAND_PIXELS", 2**22)
        assert abs(whole - banded) < 1e-6 and math.isfinite(banded), shape


def test_small_images_are_scored_in_one_piece_exactly_as_the_libraries_do():
    from pytorch_msssim import ssim as library_ssim

    from bench.metrics import luma, ssim

    ref, dist = pair(256, 256)
    assert bands.in_one_piece(ref) and bands.in_one_piece(ref, lpips=True)
    assert ssim(ref, dist) == float(library_ssim(luma(ref), luma(dist), data_range=255.0, size_average=True))
    assert bands.row_bands(1024, 1024, bands.SSIM_BAND_PIXELS) == [(0, 1024)]
    assert bands.row_bands(2048, 2048, bands.LPIPS_BAND_PIXELS) == [(0, 2048)]
    assert len(bands.row_bands(8000, 8000, bands.LPIPS_BAND_PIXELS)) == 16
