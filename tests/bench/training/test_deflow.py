"""``bench train deflow``: the NLL of both domains, checkpoints, resume and the log."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.api import quantize
from bench.cli import cli
from bench.nets.deflow import DeFlowNet, get_config, load_deflow
from bench.training.deflow import nll_bits_per_dim
from bench.training.deflow_demo import save_png

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_folder(folder: Path, count: int, seed: int, size: int = 40) -> Path:
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        save_png(torch.rand(1, 3, size, size, generator=g), folder / f"{i}.png")
    return folder


def test_nll_decreases_on_tiny_data():
    torch.manual_seed(0)
    net = DeFlowNet(get_config("tiny")).train()
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 3, 16, 16, generator=g) * 0.5 + 0.25
    degraded = quantize(clean.flip(0) + 0.05 * torch.randn(clean.shape, generator=g))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        bc, bd = nll_bits_per_dim(net, clean, degraded, torch.Generator().manual_seed(1))
        optimizer.zero_grad()
        (bc + bd).backward()
        optimizer.step()
        losses.append(float((bc + bd).detach()))
    assert losses[-1] < losses[0] - 0.1, losses


def test_trainer_checkpoint_round_trip_and_resume(tmp_path):
    clean = synthetic_folder(tmp_path / "clean", 6, seed=0)
    degraded = synthetic_folder(tmp_path / "degraded", 6, seed=1)
    out = tmp_path / "m.pt"
    args = ["train", "deflow", "--clean", str(clean), "--degraded", str(degraded), "--out", str(out),
            "--config", "tiny", "--patch", "16", "--batch", "2", "--save-every", "2", "--no-progress",
            "--val-fraction", "0.3"]
    result = CliRunner().invoke(cli, [*args, "--steps", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    net, data = load_deflow(out)
    assert data["step"] == 3 and data["format"] == "restoration-bench/deflow-v1"
    assert data["config"] == get_config("tiny").to_dict()
    assert data["effective_sigma"]["heat1"] > 0 and "val_bpd_clean" in data["last"]
    assert (tmp_path / "m.pt.log.jsonl").read_text().count("\n") == 2
    result = CliRunner().invoke(cli, [*args, "--steps", "5", "--resume"], catch_exceptions=False)
    assert "resumed" in result.output and load_deflow(out)[1]["step"] == 5
    bad = CliRunner().invoke(cli, [*args[:-2], "--patch", "12"])
    assert bad.exit_code == 2 and "multiple of 16" in bad.output


