"""Training data: the evaluation-image guard (by content), eval folders, holdout split and patch samplers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.images import save_png
from bench.training import data
from bench.training.data import (
    check_no_evaluation_images,
    load_training_images,
    pixel_digest,
    random_patches,
    sample_patches,
    split_holdout,
    split_validation,
)


def image(seed: int, shape=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape, 3)).astype(np.float32)


@pytest.fixture
def no_eval_env(monkeypatch):
    monkeypatch.delenv(data.EVAL_DIRS_ENV, raising=False)
    monkeypatch.delenv("BENCH_DIV2K_ROOT", raising=False)


def test_loads_sorted_uint8_and_skips_small_and_unreadable(tmp_path, no_eval_env, caplog):
    save_png(image(1), tmp_path / "b.png")
    save_png(image(0), tmp_path / "a.png")
    save_png(image(2, (20, 20)), tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    items = load_training_images([tmp_path], 32)
    assert [os.path.basename(p) for p, _ in items] == ["a.png", "b.png"]
    assert items[0][1].dtype == np.uint8 and items[0][1].shape == (40, 48, 3)
    assert "small.png" in caplog.text and "broken.png" in caplog.text


def test_refuses_a_folder_under_an_eval_component(tmp_path, no_eval_env):
    folder = tmp_path / "eval" / "set"
    save_png(image(0), folder / "a.png")
    with pytest.raises(BenchError, match="evaluation folder"):
        load_training_images([folder], 16)


@pytest.mark.parametrize("variable", [data.EVAL_DIRS_ENV, "BENCH_DIV2K_ROOT"])
def test_refuses_images_of_configured_evaluation_folders(tmp_path, monkeypatch, no_eval_env, variable):
    private = tmp_path / "private_set"
    evaluation = private / "DIV2K_valid_HR" if variable == "BENCH_DIV2K_ROOT" else private / "nested"
    save_png(image(7), evaluation / "secret.png")
    save_png(image(8, (30, 30)), evaluation / "other_size.png")
    training = tmp_path / "train"
    save_png(image(7), training / "copy.png")
    save_png(image(9), training / "fine.png")
    value = str(private) if variable == "BENCH_DIV2K_ROOT" else os.pathsep.join([str(tmp_path / "missing"), str(private)])
    monkeypatch.setenv(variable, value)
    with pytest.raises(BenchError, match=r"copy\.png.*secret\.png") as err:
        load_training_images([training], 16)
    assert "\n" not in str(err.value)
    monkeypatch.delenv(variable)
    assert len(load_training_images([training], 16)) == 2  # not an evaluation image without the setting


def test_only_same_pixels_are_refused(no_eval_env):
    from bench.datasets import load_dataset
    from bench.images import to_uint8

    astronaut = to_uint8(load_dataset("builtin", limit=1)[0].image)
    with pytest.raises(BenchError, match="'astronaut' of the builtin dataset"):
        check_no_evaluation_images([("x.png", astronaut)])
    changed = astronaut.copy()
    changed[0, 0, 0] ^= 1
    check_no_evaluation_images([("crop.png", astronaut[:64, :64]), ("changed.png", changed)])
    assert pixel_digest(astronaut) != pixel_digest(changed)
    assert pixel_digest(np.zeros((2, 6, 3), np.uint8)) != pixel_digest(np.zeros((4, 3, 3), np.uint8))


def test_split_holdout_and_validation_are_deterministic_and_disjoint():
    train, val = split_holdout(list(range(40)), 0.1)
    assert len(val) == 4 and not set(train) & set(val)
    assert split_holdout([1, 2], 0) == ([1, 2], [])
    train, val = split_validation(list(range(10)), 3)
    assert val == [0, 4, 9] and len(train) == 7


def test_patch_samplers_follow_their_generators():
    images = [(image(0, (24, 28)) * 255).astype(np.uint8)]
    a = random_patches(images, 3, 16, torch.Generator().manual_seed(5))
    b = random_patches(images, 3, 16, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and tuple(a.shape) == (3, 3, 16, 16) and 0 <= float(a.min()) <= float(a.max()) <= 1
    c = sample_patches(images, 2, 32, np.random.default_rng(0))  # larger than the image: reflect-padded
    assert torch.equal(c, sample_patches(images, 2, 32, np.random.default_rng(0))) and tuple(c.shape) == (2, 3, 32, 32)
