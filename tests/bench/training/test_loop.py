"""The shared training loop: resume, time budget, atomic periodic saves, the schedule hook and the log."""

from __future__ import annotations

import json

import pytest
import torch

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.training.loop import LoopOptions, TrainingLoop, cosine_decay


def run(out, steps, resume=False, max_minutes=None, save_every=2, schedule=None):
    """A one-parameter model fitted to 3 by SGD; checkpoints hold w, the optimiser and the step."""
    w = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1)
    loop = TrainingLoop(LoopOptions(steps=steps, out=out, save_every=save_every, resume=resume,
                                    max_minutes=max_minutes, progress=False, echo=False))
    if loop.checkpoint_to_resume():
        payload = load_checkpoint(out)
        w.data.copy_(payload["w"])
        loop.resume_from(payload, optimizer=optimizer)
    seen = []

    def step(state):
        seen.append(state.step)
        loss = (w - 3).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def save(record):
        save_checkpoint({"w": w.detach().clone(), **loop.checkpoint_fields(optimizer=optimizer)}, out)

    record = loop.run(step, lambda state: {"w": float(w.detach())}, save, schedule)
    return record, seen, w.detach().clone()


def test_resume_continues_the_step_count_and_the_result(tmp_path):
    straight = tmp_path / "straight.pt"
    _, _, w_straight = run(straight, 5)
    out = tmp_path / "m.pt"
    run(out, 3)
    record, seen, w = run(out, 5, resume=True)
    assert seen == [3, 4] and record["step"] == 5 and load_checkpoint(out)["step"] == 5
    assert torch.equal(w, w_straight)
    records = [json.loads(line) for line in (tmp_path / "m.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3, 4, 5] and set(records[0]) == {"step", "seconds", "w"}


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, capsys):
    _, seen, _ = run(tmp_path / "new.pt", 2, resume=True)
    assert seen == [0, 1] and "no checkpoint" in capsys.readouterr().out


def test_time_budget_stops_and_saves(tmp_path):
    out = tmp_path / "m.pt"
    record, seen, _ = run(out, 1000, max_minutes=1e-9, save_every=500)
    assert seen == [0] and record["step"] == 1 and load_checkpoint(out)["step"] == 1


def test_only_the_last_step_is_recorded_without_save_every(tmp_path):
    run(tmp_path / "m.pt", 3, save_every=None)
    assert [json.loads(x)["step"] for x in (tmp_path / "m.pt.log.jsonl").read_text().splitlines()] == [3]


def test_saves_are_atomic(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    run(out, 2)
    before = out.read_bytes()
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run(out, 4)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.log.jsonl"]


def test_schedule_sees_the_fraction_before_each_step(tmp_path):
    fractions = []
    run(tmp_path / "m.pt", 4, schedule=lambda state: fractions.append(state.fraction(4)))
    assert fractions == [0.0, 0.25, 0.5, 0.75]
    assert cosine_decay(0.0, 0.02) == 1.0 and cosine_decay(2.0, 0.02) == 0.02
    with pytest.raises(ValueError, match="steps"):
        LoopOptions(steps=0)
