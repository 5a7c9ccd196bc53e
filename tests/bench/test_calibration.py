"""A pinned piece of docs/calibration.md: CBM3D on a full-size Kodak24 image under the literature's protocol.

The calibration table (`benchmarks/calibration_table.py`) reports the mean over the 24 images at σ = 15, 25, 50;
this recomputes one of its cells the way `bench run` does (same seed, so the same noise) and checks the value
the table was made from. A change of the noise protocol, of its draws, of the metric conventions or of the
bm3d recipe moves it.
"""

from __future__ import annotations

import sqlite3

import pytest

# kodim01 (768×512), AWGN σ = 15 unclipped float (the `noise` default), seed 0, profile quick (bm3d profile np);
# measured on 2026-12-06 for docs/calibration.md (results of `bench run -m identity,bm3d -d noise
# --set noise.sigma=15,25,50 --dataset folder:../shared/data/eval/kodak24 --profile quick`)
PINNED = {"identity": (24.6488, 0.8222), "bm3d": (31.8315, 0.9373)}


@pytest.mark.slow
def test_cbm3d_on_kodim01_reproduces_the_calibration_table(run_cli, tmp_path, shared):
    image = shared("data", "eval", "kodak24", "kodim01.png")
    folder = tmp_path / "kodak"
    folder.mkdir()
    (folder / "kodim01.png").symlink_to(image)  # the shared file itself, not a copy
    code, out, err = run_cli("run", "-m", "identity,bm3d", "-d", "noise", "--set", "noise.sigma=15",
                             "--dataset", f"folder:{folder}", "--profile", "quick", "--no-lpips", "--no-progress",
                             "--results-dir", tmp_path / "res")
    assert code == 0, err
    assert "unclipped float" in out  # the caption states the protocol
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as db:
        rows = dict((m, (p, s)) for m, p, s in db.execute("select method, psnr, ssim from cells where status='ok'"))
    for method, (psnr, ssim) in PINNED.items():
        assert rows[method][0] == pytest.approx(psnr, abs=0.005), method
        assert rows[method][1] == pytest.approx(ssim, abs=0.0005), method
