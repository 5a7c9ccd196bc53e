"""The PatchNR trainer (bench/training/patchnr.py): likelihood learning, `bench train patchnr`, guard, resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.errors import BenchError
from bench.images import save_png
from bench.nets.patchnr import load_checkpoint
from bench.training import patchnr as trainer


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
        patch=4,
        layers=2,
        hidden=16,
        batch_size=32,
        val_images=1,
        val_every=3,
        val_patches=200,
        progress=False,
    )
    return trainer.TrainConfig(**{**base, **kw})


def _folder(tmp_path, n: int = 4, size: int = 48):
    data = tmp_path / "train"
    data.mkdir()
    for i, im in enumerate(_smooth_images(n, size)):
        save_png(im.astype(np.float32) / 255, data / f"{i}.png")
    return data


def test_training_lowers_held_out_bits_and_prefers_smooth_to_noisy_patches():
    torch.manual_seed(0)
    images = [(f"im{i}", im) for i, im in enumerate(_smooth_images(6, 64))]
    cfg = _tiny("synthetic", steps=150, hidden=32, batch_size=64, lr=2e-3, val_images=2, val_every=50, val_patches=500)
    flow, meta = trainer.train_patchnr(cfg, images)
    bits = [h["val_bpd"] for h in meta["history"]]
    assert meta["steps"] == 150 and [h["step"] for h in meta["history"]] == [50, 100, 150]
    assert bits[-1] < bits[0] - 0.2 and meta["val_bpd"] == bits[-1], bits
    held_out = trainer.dequantised_patches([images[-1][1]], 300, 4, np.random.default_rng(5))
    noisy = held_out + 25 / 255 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(flow.log_prob(held_out).mean()) > float(flow.log_prob(noisy).mean()) + 10.0


def test_dequantised_patches_stay_in_their_8_bit_bins():
    image = np.random.default_rng(0).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    x = trainer.dequantised_patches([image], 50, 5, np.random.default_rng(1))
    values = torch.floor(x * 256)
    assert torch.equal(values, values.clamp(0, 255)) and float((x * 256 - values).std()) > 0.2
    assert set(values.unique().int().tolist()) <= set(np.unique(image).tolist())


def test_train_command_writes_a_resumable_checkpoint_and_a_release_with_cards(tmp_path):
    data, out, release = _folder(tmp_path), tmp_path / "n.pt", tmp_path / "ship" / "w.pt"
    args = ["--data", str(data), "--steps", "4", "--out", str(out), "--patch", "4", "--layers", "2", "--hidden", "8"]
    args += ["--batch-size", "16", "--val-every", "2", "--val-patches", "100", "--no-progress"]
    args += ["--release", str(release)]
    result = CliRunner().invoke(trainer.train_patchnr_command, args)
    assert result.exit_code == 0, result.output
    assert "validation" in result.output and "bits/dim" in result.output
    _, info = load_checkpoint(out)
    _, shipped = load_checkpoint(release)
    assert info["config"] == shipped["config"] == {"patch": 4, "channels": 3, "layers": 2, "hidden": 8, "clamp": 1.6}
    assert info["meta"]["steps"] == 4 and out.stat().st_size > release.stat().st_size
    assert set(torch.load(release, weights_only=True)) == {"format", "version", "config", "meta", "state_dict"}
    card = (tmp_path / "ship" / "w.md").read_text()
    assert hashlib.sha256(release.read_bytes()).hexdigest() in card and "bits/dim" in card
    assert "--patch 4 --layers 2 --hidden 8 --batch-size 16 --val-patches 100 --release w.pt --out n.pt" in card
    assert (tmp_path / "n.pt.log.jsonl").read_text().count("\n") == 2


def test_refuses_evaluation_folders(tmp_path):
    folder = tmp_path / "eval" / "set"
    folder.mkdir(parents=True)
    with pytest.raises(BenchError, match="evaluation folder"):
        trainer.train_patchnr(_tiny(folder))


def test_resume_continues_bit_identically(tmp_path, monkeypatch):
    data = _folder(tmp_path)
    straight, _ = trainer.train_patchnr(_tiny(data, out=str(tmp_path / "a.pt")))
    calls = {"n": 0}
    sample = trainer.dequantised_patches

    def interrupted(*args, **kwargs):  # calls: validation set, ActNorm init, then one per step: stop in step 5
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(trainer, "dequantised_patches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_patchnr(_tiny(data, out=str(tmp_path / "b.pt")))
    monkeypatch.setattr(trainer, "dequantised_patches", sample)
    resumed, meta = trainer.train_patchnr(_tiny(data, out=str(tmp_path / "b.pt"), resume=True))
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and [h["step"] for h in meta["history"]] == [3, 6]


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
        _tiny(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="patch=1 must be >= 2"):
        _tiny(tmp_path, patch=1)
    with pytest.raises(ValueError, match="lr=0 must be > 0"):
        _tiny(tmp_path, lr=0)
    result = CliRunner().invoke(
        trainer.train_patchnr_command, ["--data", str(tmp_path), "--out", "x.pt", "--clip", "0"]
    )
    assert result.exit_code == 2 and "clip=0.0 must be > 0" in result.output
