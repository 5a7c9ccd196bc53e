"""The denoising auto-encoder network of bench/nets/dae.py: architecture, checkpoint I/O and its model cache."""

from __future__ import annotations

import argparse
import hashlib
import os

import pytest
import torch

from bench.errors import CheckpointError
from bench.nets import dae


def test_architecture_and_identity_start():
    net = dae.DAE(**dae.CPU_ARCH)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == dae.CPU_ARCH["depth"] and convs[1].out_channels == dae.CPU_ARCH["channels"]
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(net.eval()(x), x)  # zero last layer: D starts as the identity
    with pytest.raises(ValueError, match="depth"):
        dae.DAE(depth=1)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = dae.DAE(depth=4, channels=8)
    with torch.no_grad():  # non-trivial BatchNorm statistics and output layer
        model.body[-1].weight.normal_(0, 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    path = tmp_path / "m.pt"
    sha = dae.save_checkpoint(model, path, sigma=25, meta={"steps": 3, "note": "x"})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded, info = dae.load_checkpoint(path)
    assert info["meta"]["steps"] == 3 and info["sigma"] == 25.0
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    path = tmp_path / "m.pt"
    dae.save_checkpoint(dae.DAE(depth=3, channels=4), path, sigma=11)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        dae.load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        dae.load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a restoration-bench DAE checkpoint"):
        dae.load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": dae.FORMAT, "obj": argparse.Namespace(sigma=1)}, unsafe)
    with pytest.raises(CheckpointError, match="pickled code"):
        dae.load_checkpoint(unsafe)


def test_rewritten_checkpoint_is_loaded_again(tmp_path):
    path = tmp_path / "m.pt"
    dae.save_checkpoint(dae.DAE(depth=3, channels=4), path, sigma=11)
    first, _ = dae.load_checkpoint(path)
    assert dae.load_checkpoint(path)[0] is not first  # each caller gets its own network from the cached payload
    dae.save_checkpoint(dae.DAE(depth=3, channels=6), path, sigma=25)
    os.utime(path, ns=(1, 1))  # a new mtime even on coarse-clock file systems
    second, info = dae.load_checkpoint(path)
    assert info["sigma"] == 25.0 and second.channels == 6
