"""``bench train srflow``: a tiny run writes a checkpoint the srflow methods load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.families.srflow import load_model
from bench.images import save_png
from bench.nets.srflow import SRFlowConfig
from bench.training.srflow import srflow_trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trainer_writes_a_loadable_checkpoint(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        save_png(rng.random((40, 40, 3)).astype(np.float32), data / f"im{i}.png")
    out = tmp_path / "tiny.pt"
    result = CliRunner().invoke(
        srflow_trainer,
        [
            "--scale",
            "4",
            "--data",
            str(data),
            "--steps",
            "2",
            "--config",
            "tiny",
            "--batch",
            "2",
            "--patch",
            "16",
            "--save-every",
            "1",
            "--val-fraction",
            "0.34",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "val_bpd" in result.output
    net = load_model(out, 4)
    assert net.cfg == SRFlowConfig.tiny(4)
    records = [json.loads(line) for line in out.with_name("tiny.pt.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
