"""The DRUNet trainer (bench/training/drunet.py): learning, `bench train drunet`, guard, resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.errors import BenchError
from bench.images import save_png
from bench.nets.drunet import load_checkpoint
from bench.training import drunet as trainer


@pytest.fixture(autouse=True, scope="module")
def tiny_tensors_on_one_thread(one_thread):
    """Tiny networks: one thread (the ``one_thread`` fixture of tests/conftest.py)."""


def _smooth_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return [(im.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in up]


def _tiny(data, **kw) -> trainer.TrainConfig:
    base = dict(
        data=[str(data)],
        steps=6,
        channels=[4, 4, 8, 8],
        blocks=1,
        batch_size=2,
        patch=16,
        val_images=1,
        val_crop=32,
        val_every=3,
        progress=False,
    )
    return trainer.TrainConfig(**{**base, **kw})


def _folder(tmp_path, n: int = 4, size: int = 48):
    data = tmp_path / "train"
    data.mkdir()
    for i, im in enumerate(_smooth_images(n, size)):
        save_png(im.astype(np.float32) / 255, data / f"{i}.png")
    return data


def test_training_learns_to_denoise_at_every_validation_level():
    torch.manual_seed(0)
    images = [(f"im{i}", im) for i, im in enumerate(_smooth_images(6, 64))]
    cfg = trainer.TrainConfig(
        data=["synthetic"],
        steps=60,
        channels=[8, 8, 16, 16],
        blocks=1,
        batch_size=8,
        patch=32,
        lr=2e-3,
        val_images=2,
        val_crop=48,
        val_every=30,
        progress=False,
    )
    _, meta = trainer.train_drunet(cfg, images)
    assert meta["steps"] == 60 and [h["step"] for h in meta["history"]] == [30, 60]
    for s in ("15", "25", "50"):  # one network for all levels: better than its noisy input at each
        assert meta["val_psnr"][s] > meta["val_input_psnr"][s] + 1.0, (s, meta["val_psnr"], meta["val_input_psnr"])


def test_train_command_writes_a_resumable_checkpoint_and_a_release_with_cards(tmp_path):
    data, out, release = _folder(tmp_path), tmp_path / "d.pt", tmp_path / "ship" / "w.pt"
    args = ["--data", str(data), "--steps", "4", "--out", str(out), "--channels", "4,4,4,4", "--blocks", "1"]
    args += ["--patch", "16", "--batch-size", "2", "--val-every", "2", "--no-progress", "--release", str(release)]
    result = CliRunner().invoke(trainer.train_drunet_command, args)
    assert result.exit_code == 0, result.output
    _, info = load_checkpoint(out)
    _, shipped = load_checkpoint(release)
    assert info["config"] == shipped["config"] == {"channels": [4, 4, 4, 4], "blocks": 1} and info["meta"]["steps"] == 4
    assert "optimizer" in str(list(torch.load(out, weights_only=True))) or out.stat().st_size > release.stat().st_size
    assert set(torch.load(release, weights_only=True)) == {"format", "version", "config", "meta", "state_dict"}
    card = (tmp_path / "ship" / "w.md").read_text()
    assert hashlib.sha256(release.read_bytes()).hexdigest() in card and "σ=25:" in card
    assert "--channels 4,4,4,4 --blocks 1 --batch-size 2 --patch 16 --release w.pt --out d.pt" in card


def test_refuses_evaluation_folders(tmp_path):
    folder = tmp_path / "eval" / "set"
    folder.mkdir(parents=True)
    with pytest.raises(BenchError, match="evaluation folder"):
        trainer.train_drunet(_tiny(folder))


def test_resume_continues_bit_identically(tmp_path, monkeypatch):
    data = _folder(tmp_path)
    straight, _ = trainer.train_drunet(_tiny(data, out=str(tmp_path / "a.pt")))
    calls = {"n": 0}
    sample = trainer.sample_patches

    def interrupted(*args, **kwargs):  # stop during step 5, after the save at step 3
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(trainer, "sample_patches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_drunet(_tiny(data, out=str(tmp_path / "b.pt")))
    monkeypatch.setattr(trainer, "sample_patches", sample)
    resumed, meta = trainer.train_drunet(_tiny(data, out=str(tmp_path / "b.pt"), resume=True))
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and [h["step"] for h in meta["history"]] == [3, 6]


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sigma_max=0 must be > 0"):
        _tiny(tmp_path, sigma_max=0)
    with pytest.raises(ValueError, match="multiple of 8"):
        _tiny(tmp_path, patch=20)
