"""Conventions in every report (issue 26): one caption line with the metric conventions in Markdown, LaTeX and HTML,
the observation protocol in each degradation's definition, and the SR literature's PSNR-Y (BT.601 luma, a border of
the scale factor cropped) as an extra metric of ``sr`` cells only."""

from __future__ import annotations

import math
import sqlite3
import warnings

import numpy as np
import pytest
import torch

from bench.metric_specs import CONVENTIONS, PSNR_Y_CONVENTION, spec, spec_for_label
from bench.metrics import MetricSuite, psnr_y
from bench.report import per_image_frame, render
from bench.rescore import rescore
from bench.runner import RunConfig, run_grid
from bench.store import Store
from bench.tables import build_tables


def hand_psnr_y(ref: np.ndarray, dist: np.ndarray, crop: int) -> float:
    """PSNR-Y as SR evaluation code writes it (BasicSR's bgr2ycbcr(y_only) on float RGB in [0, 1], then
    calculate_psnr on 0-255 with crop_border): numpy, float64, the offset 16 included."""
    def y(image):  # (H, W, 3) RGB in [0, 1] -> Y on 0-255
        return 16.0 + image[..., 0] * 65.481 + image[..., 1] * 128.553 + image[..., 2] * 24.966

    a = y(ref.astype(np.float64))[crop:-crop, crop:-crop]
    b = y(dist.astype(np.float64))[crop:-crop, crop:-crop]
    return 20 * math.log10(255.0 / math.sqrt(np.mean((a - b) ** 2)))


def test_psnr_y_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (40, 36, 3)).astype(np.float64) / 255
    dist = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1).round(3)
    dist[:4] = 0  # a damaged border: cropped away with crop 4, not with crop 2
    as_tensor = [torch.from_numpy(a).permute(2, 0, 1)[None] for a in (ref, dist)]
    for crop in (2, 4):
        assert psnr_y(*as_tensor, crop) == pytest.approx(hand_psnr_y(ref, dist, crop), abs=1e-9)
    assert psnr_y(*as_tensor, 4) > psnr_y(*as_tensor, 2) + 3
    # studio-swing luma: a one-level error in every channel is 219/255 of a level in Y
    one_level = as_tensor[0] + 1 / 255
    assert psnr_y(as_tensor[0], one_level, 2) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-6)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr_y(*as_tensor, 18)


def test_psnr_y_is_scored_only_with_a_crop():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    suite = MetricSuite(lpips=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MS-SSIM: these are too small
        plain = suite(x, x.clamp(0.1, 0.9))
        scored = suite(x, x.clamp(0.1, 0.9), crop=4)
    assert math.isnan(plain["psnr_y"]) and "psnr_y" not in suite.implementations(plain)
    assert scored["psnr_y"] == pytest.approx(psnr_y(x, x.clamp(0.1, 0.9), 4))
    assert suite.implementations(scored, crop=4)["psnr_y"] == "bench psnr_y bt601 crop 4 float64"
    assert {k: v for k, v in scored.items() if k != "psnr_y"} == pytest.approx(
        {k: v for k, v in plain.items() if k != "psnr_y"}, nan_ok=True)


def test_psnr_y_labels_read_back_to_their_metric():
    assert spec("psnr_y").row_label("crop 4") == "PSNR-Y (crop 4) ↑"
    assert spec_for_label("PSNR-Y (crop 4) ↑") is spec("psnr_y") and spec_for_label("PSNR ↑") is spec("psnr")
    assert spec("psnr_y").tasks == ("sr",) and spec("psnr").tasks == ()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """identity on noise (float, the default), noise stored as 8-bit, and sr ×4: two builtin images, smoke."""
    root = tmp_path_factory.mktemp("conventions")
    common = dict(methods=["identity"], limit=2, profile="smoke", results_dir=str(root), lpips=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MS-SSIM: smoke crops are too small
        run_grid(RunConfig(degradations=["noise", "sr"], **common))
        run_grid(RunConfig(degradations=["noise"], overrides={"noise": {"clip": True, "quantize": True}}, **common))
    return root


def frame(root):
    store = Store(root, read_only=True)
    try:
        return store.dataframe()
    finally:
        store.close()


def test_only_sr_cells_have_psnr_y_and_it_is_the_hand_computed_value(results):
    df = frame(results)
    sr, others = df[df["degradation"] == "sr"], df[df["degradation"] != "sr"]
    assert len(sr) == 2 and sr["psnr_y"].notna().all() and others["psnr_y"].isna().all()
    store = Store(results, read_only=True)
    try:
        from bench.datasets import load_dataset

        images = {i.id: i.image for i in load_dataset("builtin", limit=2, crop=64)}
        for row in sr.to_dict("records"):
            restored = store.read_image(row["output_path"])
            assert row["psnr_y"] == pytest.approx(hand_psnr_y(images[row["image"]], restored, 4), abs=1e-9)
            assert "crop 4" in row["metric_impl"]
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["markdown", "latex", "html"])
def test_every_format_carries_the_conventions_and_the_protocols(results, fmt):
    text = render(frame(results), fmt)
    if fmt == "latex":
        assert "Metrics: PSNR on RGB (data range 255)" in text and r"LPIPS AlexNet v0.1" in text
        assert "no border cropped" in text and r"PSNR-Y (crop s), on sr cells only" in text
        assert "unclipped float" in text and "clipped to [0, 1] and rounded to 8 bits" in text
        assert r"PSNR-Y (crop 4) $\uparrow$" in text
        return
    if fmt == "html":
        import html

        text = html.unescape(text)
    assert CONVENTIONS + " " + PSNR_Y_CONVENTION in text
    assert "Gaussian noise σ=25/255, unclipped float" in text
    assert "Gaussian noise σ=25/255, clipped to [0, 1] and rounded to 8 bits" in text
    assert "bicubic ×4 downsampling (antialiased), unclipped float" in text
    assert "PSNR-Y (crop 4) ↑" in text


def test_the_psnr_y_row_is_in_the_sr_block_only(results):
    table = build_tables(frame(results))[0]
    labels = {d: [m for dd, m in table.values.index if dd == d] for d, _ in table.values.index}
    assert labels["sr"] == ["PSNR ↑", "SSIM ↑", "MS-SSIM ↑", "LPIPS ↓", "PSNR-Y (crop 4) ↑"]
    assert all("PSNR-Y" not in " ".join(m) for d, m in labels.items() if d != "sr")
    assert len(labels) == 3  # sr and the two noise protocols, each its own labelled block
    assert not math.isnan(table.values.loc[("sr", "PSNR-Y (crop 4) ↑"), "identity"])
    assert table.lines()[1].startswith("Metrics: PSNR on RGB")  # the caption, then the conventions line


def test_a_table_without_sr_states_the_conventions_without_psnr_y(results):
    df = frame(results)
    text = render(df[df["degradation"] == "noise"], "markdown")
    assert CONVENTIONS in text and "PSNR-Y" not in text


def test_the_per_image_csv_has_a_psnr_y_column_empty_outside_sr(results):
    per_image = per_image_frame(frame(results))
    assert list(per_image.columns[:9]) == ["method", "degradation", "image", "seed", "psnr", "ssim", "ms_ssim",
                                            "lpips", "psnr_y"]
    assert per_image.loc[per_image["degradation"] == "sr", "psnr_y"].notna().all()
    assert per_image.loc[per_image["degradation"] != "sr", "psnr_y"].isna().all()


def test_rescore_fills_psnr_y_of_sr_rows_only(results, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(results, root)
    with sqlite3.connect(root / "results.sqlite") as conn:  # a store made before PSNR-Y: no values
        expected = dict(conn.execute("SELECT key, psnr_y FROM cells WHERE psnr_y IS NOT NULL"))
        conn.execute("UPDATE cells SET psnr_y = NULL")
    summary = rescore(root, metrics=["psnr_y"])
    assert summary.filled == 2 and not summary.skipped
    after = frame(root)
    filled = after[after["psnr_y"].notna()]
    assert set(filled["degradation"]) == {"sr"}
    assert dict(zip(filled["key"], filled["psnr_y"])) == pytest.approx(expected)
