"""The denoising auto-encoder: training, the `bench train dae` command and checkpoint I/O."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.errors import BenchError, CheckpointError
from bench.images import save_png
from methods import _dae


def _smooth_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Random smooth colour images (low-pass noise): learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return [(im.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in up]


def test_training_loss_decreases():
    torch.manual_seed(0)
    images = [(f"im{i}", im) for i, im in enumerate(_smooth_images(6, 64))]
    cfg = _dae.TrainConfig(
        sigma=25,
        data=["synthetic"],
        steps=80,
        depth=3,
        channels=16,
        batch_size=8,
        patch=24,
        lr=3e-3,
        val_images=2,
        val_crop=48,
        val_every=40,
        progress=False,
    )
    model, meta = _dae.train_dae(cfg, images)
    assert meta["steps"] == 80 and len(meta["history"]) == 2
    assert meta["loss_last"] < 0.6 * meta["loss_first"]
    assert meta["val_psnr"] > meta["val_input_psnr"] + 2


def test_train_command_writes_checkpoint_and_card(tmp_path):
    from methods.dae_train import train_dae_command

    data = tmp_path / "train"
    data.mkdir()
    for i, im in enumerate(_smooth_images(4, 48)):
        save_png(im.astype(np.float32) / 255, data / f"{i}.png")
    out = tmp_path / "dae.pt"
    result = CliRunner().invoke(
        train_dae_command,
        [
            "--sigma",
            "11",
            "--data",
            str(data),
            "--steps",
            "6",
            "--out",
            str(out),
            "--depth",
            "3",
            "--channels",
            "4",
            "--patch",
            "16",
            "--batch-size",
            "2",
            "--val-images",
            "1",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    model, info = _dae.load_checkpoint(out)
    assert info["sigma"] == 11 and info["config"] == {"depth": 3, "channels": 4, "batchnorm": True}
    card = (tmp_path / "dae.md").read_text()
    assert hashlib.sha256(out.read_bytes()).hexdigest() in card and "Validation denoising PSNR" in card


def test_train_command_refuses_eval_images(tmp_path):
    folder = tmp_path / "eval" / "set"
    folder.mkdir(parents=True)
    with pytest.raises(BenchError, match="evaluation folder"):
        _dae.load_training_images([str(folder)])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _dae.DAE(depth=4, channels=8)
    with torch.no_grad():  # non-trivial BatchNorm statistics and output layer
        model.body[-1].weight.normal_(0, 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = tmp_path / "m.pt"
    sha = _dae.save_checkpoint(model, path, sigma=25, meta={"steps": 3, "note": "x"})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded, info = _dae.load_checkpoint(path)
    assert info["meta"]["steps"] == 3 and info["sigma"] == 25.0
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    path = tmp_path / "m.pt"
    _dae.save_checkpoint(_dae.DAE(depth=3, channels=4), path, sigma=11)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        _dae.load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        _dae.load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a restoration-bench DAE checkpoint"):
        _dae.load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": _dae.FORMAT, "obj": _dae.TrainConfig(sigma=1, data=["x"])}, unsafe)
    with pytest.raises(CheckpointError, match="pickled code"):
        _dae.load_checkpoint(unsafe)


@pytest.mark.parametrize("sigma", [11, 25])
def test_shipped_weights(sigma):
    path = _dae.default_checkpoint(sigma)
    assert path.stat().st_size <= 10 * 2**20
    model, info = _dae.load_checkpoint(path)
    assert info["sigma"] == sigma
    card = path.with_suffix(".md").read_text()
    assert re.search(r"sha256\*\*: `([0-9a-f]{64})`", card).group(1) == _dae.sha256_file(path)
    assert "/eval" not in " ".join(info["meta"]["data"])
