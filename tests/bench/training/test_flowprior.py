"""The flow prior's trainer: the paper's four losses, the command, resume and the log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.images import save_png
from bench.nets.flow import Flow, FlowConfig, load_checkpoint
from bench.registry import available
from bench.training.flowprior import LossWeights, flowprior_trainer, training_losses

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_flow(levels: int = 2, steps: int = 2, hidden: int = 8, **kw) -> Flow:
    torch.manual_seed(0)
    return Flow(FlowConfig(levels=levels, steps=steps, hidden=hidden, **kw))


def smooth_batch(n: int = 8, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 2, 2, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return torch.round(x * 255) / 255


def test_training_loss_decreases_on_tiny_data():
    flow = tiny_flow().train()
    x = smooth_batch()
    opt = torch.optim.Adam(flow.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(40):
        losses = training_losses(flow, x, generator=g)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append(losses["total"].item())
    assert set(losses) == {"nll", "ln", "ae", "in", "total"}
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 1.0  # ~10.5 -> ~8.1


@pytest.mark.parametrize("term", ["ln", "ae", "in_"])
def test_each_regulariser_changes_the_gradient(term):
    flow = tiny_flow().train()
    x = smooth_batch(4)
    flow.encode(x)  # ActNorm init outside the comparison

    def grads(weights):
        flow.zero_grad()
        training_losses(flow, x, weights, torch.Generator().manual_seed(0))["total"].backward()
        return torch.cat([p.grad.reshape(-1) for p in flow.parameters() if p.grad is not None])

    off = {"ln": 0.0, "ae": 0.0, "in_": 0.0}
    none = LossWeights(**off)
    only = LossWeights(**{**off, term: 1.0})
    g0, g1 = grads(none), grads(only)
    assert torch.isfinite(g1).all()
    assert (g1 - g0).norm() > 1e-6 * (1 + g0.norm())


def test_regularisers_on_a_sub_batch():
    flow = tiny_flow().train()
    losses = training_losses(flow, smooth_batch(6), generator=torch.Generator().manual_seed(0), reg_batch=2)
    assert torch.isfinite(losses["total"])


def random_images(folder, count: int, shape: tuple[int, int], seed: int):
    """``count`` random RGB PNGs of ``shape`` in ``folder`` (a training folder for the command)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        save_png(rng.random((*shape, 3)).astype(np.float32), folder / f"im{i}.png")
    return folder


def test_registered_trainer():
    assert available("trainer")["flowprior"] is flowprior_trainer


def test_trainer_runs_and_resumes(tmp_path):
    data = random_images(tmp_path / "data", 3, (24, 28), seed=0)
    out = tmp_path / "flow.pt"
    args = ["--data", str(data), "--config", "cpu", "--out", str(out), "--patch", "16", "--batch", "2",
            "--save-every", "2", "--val-fraction", "0.34", "--threads", "1"]
    runner = CliRunner()
    result = runner.invoke(flowprior_trainer, [*args, "--steps", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(flowprior_trainer, [*args, "--steps", "3", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed" in result.output
    flow, meta = load_checkpoint(out)
    assert meta["step"] == 3 and meta["train"]["val_images"] == 1
    records = [json.loads(line) for line in out.with_name("flow.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3] and "val_bpd" in records[-1]
    bad = runner.invoke(flowprior_trainer, ["--data", str(data), "--out", str(out), "--patch", "12"])
    assert bad.exit_code != 0 and "multiple of 8" in bad.output


def test_lr_floor_anneals_to_its_fraction_and_the_device_is_recorded(tmp_path):
    data = random_images(tmp_path / "data", 2, (24, 24), seed=2)
    out = tmp_path / "flow.pt"
    result = CliRunner().invoke(flowprior_trainer, ["--data", str(data), "--config", "cpu", "--out", str(out),
                                                    "--patch", "16", "--batch", "2", "--steps", "4", "--lr", "1e-3",
                                                    "--lr-floor", "0.1", "--device", "cpu", "--val-fraction", "0",
                                                    "--threads", "1"])
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out)
    # the schedule sets the step before each step: the last (4th) ran at fraction 3/4 of the cosine
    expected = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 0.75)))
    assert meta["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected)
    assert meta["train"]["device"] == "cpu" and meta["train"]["lr_floor"] == 0.1


@pytest.mark.parametrize("device, message", [("tpu:x", "not a torch device"), ("cuda", "CUDA is not available")])
def test_an_unusable_device_gets_a_one_line_error(tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(flowprior_trainer, ["--data", str(tmp_path), "--out", str(tmp_path / "f.pt"),
                                                    "--device", device])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_same_seed_gives_the_same_checkpoint(tmp_path):
    """The model's initialisation follows --seed (before, torch's unseeded global generator made every run differ)."""
    data = random_images(tmp_path / "data", 2, (24, 24), seed=1)
    states = []
    for run, seed in enumerate((5, 5, 6)):
        torch.manual_seed(1000 + run)  # whatever the global state was before the command
        out = tmp_path / f"flow{run}.pt"
        result = CliRunner().invoke(flowprior_trainer, ["--data", str(data), "--config", "cpu", "--out", str(out),
                                                        "--patch", "16", "--batch", "2", "--steps", "1", "--seed",
                                                        str(seed), "--val-fraction", "0", "--threads", "1"])
        assert result.exit_code == 0, result.output
        states.append(load_checkpoint(out)[0].state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_a_non_finite_batch_is_skipped_and_a_run_of_them_stops_training():
    from bench.errors import BenchError
    from bench.training.flowprior import MAX_SKIPPED_IN_A_ROW, training_losses_safe

    flow = tiny_flow().train()
    g = torch.Generator().manual_seed(0)
    x = smooth_batch()
    assert training_losses_safe(flow, x, LossWeights(), g, None) is not None
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert training_losses_safe(flow, bad, LossWeights(), g, None) is None
    with pytest.raises(BenchError, match="non-finite losses in a row"):
        training_losses_safe(flow, bad, LossWeights(), g, None, skipped_in_a_row=MAX_SKIPPED_IN_A_ROW - 1)
