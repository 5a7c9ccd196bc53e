"""The DAE trainer (bench/training/dae.py): training, `bench train dae`, the evaluation guard, reproducibility, resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.datasets import load_dataset
from bench.errors import BenchError
from bench.images import save_png
from bench.nets.dae import load_checkpoint
from bench.training import dae as trainer


@pytest.fixture(autouse=True, scope="module")
def tiny_tensors_on_one_thread(one_thread):
    """Tiny networks: one thread (the ``one_thread`` fixture of tests/conftest.py)."""


def _smooth_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Random smooth colour images (low-pass noise): learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return [(im.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in up]


def _folder(tmp_path, n: int = 4, size: int = 48):
    data = tmp_path / "train"
    data.mkdir()
    for i, im in enumerate(_smooth_images(n, size)):
        save_png(im.astype(np.float32) / 255, data / f"{i}.png")
    return data


def _tiny(data, **kw) -> trainer.TrainConfig:
    base = dict(
        sigma=11,
        data=[str(data)],
        steps=6,
        depth=3,
        channels=4,
        batch_size=2,
        patch=16,
        val_images=1,
        val_crop=32,
        val_every=3,
        progress=False,
    )
    return trainer.TrainConfig(**{**base, **kw})


def test_training_loss_decreases():
    torch.manual_seed(0)
    images = [(f"im{i}", im) for i, im in enumerate(_smooth_images(6, 64))]
    cfg = trainer.TrainConfig(
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
    model, meta = trainer.train_dae(cfg, images)
    assert meta["steps"] == 80 and len(meta["history"]) == 2
    assert meta["loss_last"] < 0.6 * meta["loss_first"]
    assert meta["val_psnr"] > meta["val_input_psnr"] + 2


def test_train_command_writes_checkpoint_and_card(tmp_path):
    data = _folder(tmp_path)
    out = tmp_path / "dae.pt"
    args = ["--sigma", "11", "--data", str(data), "--steps", "6", "--out", str(out), "--depth", "3"]
    args += ["--channels", "4", "--patch", "16", "--batch-size", "2", "--val-images", "1", "--no-progress"]
    result = CliRunner().invoke(trainer.train_dae_command, args)
    assert result.exit_code == 0, result.output
    model, info = load_checkpoint(out)
    assert info["sigma"] == 11 and info["config"] == {"depth": 3, "channels": 4, "batchnorm": True}
    assert info["meta"]["val_image_ids"] == ["train/0.png"] and "out" not in info["meta"]
    card = (tmp_path / "dae.md").read_text()
    assert hashlib.sha256(out.read_bytes()).hexdigest() in card and "Validation denoising PSNR" in card
    assert (tmp_path / "dae.pt.log.jsonl").read_text().count("\n") == 1  # one record: the last step


def test_train_command_refuses_eval_images(tmp_path):
    folder = tmp_path / "eval" / "set"
    folder.mkdir(parents=True)
    with pytest.raises(BenchError, match="evaluation folder"):
        trainer.train_dae(_tiny(folder))


def test_train_command_refuses_an_evaluation_image_by_content(tmp_path):
    data = _folder(tmp_path)
    save_png(load_dataset("builtin", limit=1)[0].image, data / "renamed_copy.png")
    args = ["--sigma", "11", "--data", str(data), "--steps", "2", "--out", str(tmp_path / "d.pt"), "--no-progress"]
    result = CliRunner().invoke(trainer.train_dae_command, args)
    assert result.exit_code != 0 and isinstance(result.exception, BenchError)
    assert "renamed_copy.png" in str(result.exception) and "evaluation image" in str(result.exception)
    assert not (tmp_path / "d.pt").exists()


def test_same_seed_same_weights(tmp_path):
    data = _folder(tmp_path)
    a, meta_a = trainer.train_dae(_tiny(data))
    b, meta_b = trainer.train_dae(_tiny(data))
    c, _ = trainer.train_dae(_tiny(data, seed=1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and meta_a["history"] == meta_b["history"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_continues_bit_identically(tmp_path, monkeypatch):
    data = _folder(tmp_path)
    straight, _ = trainer.train_dae(_tiny(data, out=str(tmp_path / "a.pt")))
    calls = {"n": 0}
    sample = trainer.sample_patches

    def interrupted(*args, **kwargs):  # stop during step 5, after the save at step 3
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(trainer, "sample_patches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_dae(_tiny(data, out=str(tmp_path / "b.pt")))
    monkeypatch.setattr(trainer, "sample_patches", sample)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3
    resumed, meta = trainer.train_dae(_tiny(data, out=str(tmp_path / "b.pt"), resume=True))
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["step"] for h in meta["history"]] == [3, 6] and meta["steps"] == 6
    with pytest.raises(ValueError, match="resume needs out"):
        _tiny(data, resume=True)
