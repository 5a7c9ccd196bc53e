"""The ``deflow`` degradation and a small learning demonstration (network and trainer: tests/bench)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import CheckpointError, ParameterError
from bench.nets.deflow import DeFlowNet, get_config, save_deflow
from bench.params import build_params
from bench.training.deflow import TrainOptions, train_deflow
from bench.training.deflow_demo import hidden_degradation, load_png, log_spectrum_distance, random_crop, save_png
from degradations.deflow import DeFlow

SHARED = Path(os.environ.get("BENCH_SHARED", Path(__file__).resolve().parents[3] / "shared"))

# the hidden degradation of the demonstration: signal-dependent Gaussian noise, then JPEG
NOISE_A, NOISE_B, JPEG_QUALITY = 0.01, 0.0004, 60


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_checkpoint(path: Path, sigma: float = 0.02) -> Path:
    torch.manual_seed(0)
    save_deflow(path, DeFlowNet(get_config("tiny")), {"effective_sigma": {"heat0": 0.0, "heat1": sigma}})
    return path


# --------------------------------------------------------------------------- the demonstration


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Unpaired folders from bsd200 + yang91 (disjoint images: clean / hidden-degraded), a tiny DeFlow.

    Trained for a fixed number of steps with a fixed seed (~1 min on one core), so the result does
    not depend on the machine's speed.
    """
    sources = [SHARED / "data" / "train" / name for name in ("bsd200", "yang91")]
    if not all(source.is_dir() for source in sources):
        pytest.skip(f"{sources[0].parent} not found: shared research data is not checked out beside the project")
    root = tmp_path_factory.mktemp("deflow")
    files = [path for source in sources for path in sorted(source.glob("*.png"))]
    images = [image for image in map(load_png, files) if min(image.shape[-2:]) >= 96]
    g = torch.Generator().manual_seed(0)
    images = [images[i] for i in torch.randperm(len(images), generator=g).tolist()]
    (root / "clean").mkdir()
    (root / "degraded").mkdir()
    n = 135
    for i, image in enumerate(images[:n]):
        save_png(random_crop(image, 96, g), root / "clean" / f"{i}.png")
    for i, image in enumerate(images[n : 2 * n]):
        degraded = hidden_degradation(random_crop(image, 96, g), g, NOISE_A, NOISE_B, JPEG_QUALITY)
        save_png(degraded, root / "degraded" / f"{i}.png")
    # held-out clean crops from images in neither folder
    held_out = torch.cat([random_crop(image, 64, g) for image in images[2 * n : 2 * n + 24]])
    out = root / "deflow.pt"
    options = TrainOptions(clean=(str(root / "clean"),), degraded=(str(root / "degraded"),), out=str(out),
                           config="tiny", steps=1000, patch=48, lr=1e-3, seed=0, max_minutes=None,
                           save_every=1000, val_fraction=0.1, progress=False)
    record = train_deflow(options)
    return out, held_out, record


def test_learned_degradation_matches_hidden_noise_level_and_spectrum(demo):
    checkpoint, clean, record = demo
    hidden = hidden_degradation(clean, torch.Generator().manual_seed(1), NOISE_A, NOISE_B, JPEG_QUALITY)
    hidden_residual = hidden - clean
    d = DeFlow(DeFlow.Params(checkpoint=str(checkpoint)))
    learned = torch.cat([d.degrade(x[None], torch.Generator().manual_seed(i)).y for i, x in enumerate(clean)])
    learned_residual = learned - clean
    ratio = float(learned_residual.std() / hidden_residual.std())
    assert 0.7 <= ratio <= 1.3, f"learned residual std / hidden = {ratio:.3f} (record {record})"
    white = torch.randn(hidden_residual.shape, generator=torch.Generator().manual_seed(2)) * hidden_residual.std()
    learned_distance = log_spectrum_distance(learned_residual, hidden_residual)
    white_distance = log_spectrum_distance(white, hidden_residual)
    assert learned_distance < white_distance, (learned_distance, white_distance)
    # the operator's effective σ was measured on held-out clean patches at the end of training
    assert d.make_operator((64, 64), torch.Generator()).sigma == pytest.approx(record["sigma_heat1"], rel=1e-6)


# --------------------------------------------------------------------------- unit tests


def test_same_seed_gives_same_degraded_image(tmp_path):
    d = DeFlow(DeFlow.Params(checkpoint=str(tiny_checkpoint(tmp_path / "t.pt"))))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = d.degrade(x, torch.Generator().manual_seed(3)).y
    b = d.degrade(x, torch.Generator().manual_seed(3)).y
    c = d.degrade(x, torch.Generator().manual_seed(4)).y
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.round(a * 255) / 255, a) and a.min() >= 0 and a.max() <= 1
    assert d.degrade(x, torch.Generator()).sigma == pytest.approx(0.02)


@pytest.mark.parametrize("size", [(70, 66), (64, 64), (256, 256)])
def test_any_size_is_padded_and_cropped_back(tmp_path, size):
    d = DeFlow(DeFlow.Params(checkpoint=str(tiny_checkpoint(tmp_path / "t.pt"))))
    obs = d.degrade(torch.rand(1, 3, *size), torch.Generator().manual_seed(0))
    assert tuple(obs.y.shape) == (1, 3, *size) and bool(torch.isfinite(obs.y).all())


def test_empty_checkpoint_and_bad_params_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"bench train deflow --clean DIR --degraded DIR --out FILE.*"
                                              r"--set deflow.checkpoint=FILE"):
        DeFlow().degrade(torch.rand(1, 3, 16, 16), torch.Generator())
    with pytest.raises(ParameterError, match="heat=-1.0 must be >= 0"):
        build_params(DeFlow.Params, {"heat": -1}, "deflow")
    with pytest.raises(CheckpointError, match="does not exist.*bench train deflow"):
        DeFlow(DeFlow.Params(checkpoint=str(tmp_path / "missing.pt"))).degrade(torch.rand(1, 3, 16, 16),
                                                                                torch.Generator())
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        DeFlow(DeFlow.Params(checkpoint=str(tmp_path / "other.pt"))).degrade(torch.rand(1, 3, 16, 16),
                                                                              torch.Generator())


def test_cli_run_end_to_end(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "t.pt")
    result = CliRunner().invoke(cli, ["run", "--degradations", "deflow", "--set", f"deflow.checkpoint={checkpoint}",
                                      "--methods", "identity", "--dataset", "builtin", "--limit", "1", "--profile",
                                      "smoke", "--results-dir", str(tmp_path / "res"), "--no-progress", "--no-lpips"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "computed 1, cached 0, failed 0" in result.output
