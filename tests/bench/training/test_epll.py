"""``bench train epll``: EM through the shared loop (log, saves, resume, early stop) and the evaluation guard."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bench.checkpoints import load_checkpoint
from bench.cli import cli
from bench.datasets import load_dataset
from bench.images import save_png
from bench.nets.gmm import PatchGMM
from bench.training.epll import sample_ac_patches

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six smooth random images (training data of no evaluation set)."""
    root = tmp_path_factory.mktemp("epll_train")
    rng = np.random.default_rng(0)
    for i in range(6):
        noise = rng.random((12, 12, 3))
        image = np.kron(noise, np.ones((4, 4, 1)))[:40, :44] * 0.8 + 0.1 * rng.random((40, 44, 3))
        save_png(image.astype(np.float32), root / f"img{i}.png")
    return root


def train(folder, out, *extra):
    args = ["train", "epll", "--data", str(folder), "--out", str(out), "--components", "3", "--patches", "2000",
            "--val-patches", "300", "--val-fraction", "0.34", "--save-every", "2", "--no-progress", *extra]
    return CliRunner().invoke(cli, args)


def test_trainer_fits_logs_saves_and_resumes(folder, tmp_path):
    out = tmp_path / "gmm.pt"
    result = train(folder, out, "--steps", "4", "--tol", "-1e9")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "gmm.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert records[1]["train_loglik"] > records[0]["train_loglik"] and math.isfinite(records[1]["val_loglik"])
    payload = load_checkpoint(out)
    prior = PatchGMM.from_payload(payload)
    assert prior.gmm.components == 3 and prior.patch == 8 and payload["step"] == 4
    assert prior.meta["em_iterations"] == 4 and len(prior.meta["history"]) == 2
    resumed = train(folder, out, "--steps", "6", "--tol", "-1e9", "--resume")
    assert resumed.exit_code == 0 and "resumed" in resumed.output, resumed.output
    assert load_checkpoint(out)["step"] == 6
    mismatch = train(folder, out, "--steps", "8", "--components", "4", "--resume")
    assert mismatch.exit_code != 0 and "3 components" in str(mismatch.exception)


def test_trainer_stops_when_the_likelihood_stops_improving(folder, tmp_path):
    result = train(folder, tmp_path / "gmm.pt", "--steps", "50", "--tol", "1e9")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "gmm.pt")["step"] == 2  # the first improvement (after step 1) is below it


def test_trainer_refuses_an_evaluation_image(tmp_path):
    training = tmp_path / "train"
    chelsea = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    save_png(chelsea.image, training / "cat.png")
    out = tmp_path / "out" / "gmm.pt"
    result = train(training, out, "--steps", "1")
    assert result.exit_code != 0
    assert "cat.png" in str(result.exception) and "'chelsea' of the builtin dataset" in str(result.exception)
    assert not out.parent.exists(), "nothing may be written before the guard"


def test_patches_are_dc_free_and_reproducible():
    images = [np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)]
    import torch

    a = sample_ac_patches(images, 50, 8, torch.Generator().manual_seed(0))
    b = sample_ac_patches(images, 50, 8, torch.Generator().manual_seed(0))
    assert a.shape == (50, 63) and torch.equal(a, b) and float(a.abs().max()) > 0
