"""The DRUNet denoiser network (bench/nets/drunet.py): shapes, conditioning, identity start, checkpoints."""

from __future__ import annotations

import pytest
import torch

from bench.errors import CheckpointError
from bench.nets.drunet import DRUNet, load_checkpoint, save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def tiny_tensors_on_one_thread(one_thread):
    """Tiny networks: one thread (the ``one_thread`` fixture of tests/conftest.py)."""


def _trained_looking(net: DRUNet) -> DRUNet:
    """Non-zero output layer, so the noise-level input changes the output."""
    torch.manual_seed(0)
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    return net.eval()


@pytest.mark.parametrize("size", [(8, 8), (13, 10), (33, 17)])
def test_any_size_in_same_size_out(size):
    net = DRUNet((4, 4, 8, 8), 1)
    y = torch.rand(2, 3, *size)
    assert net(y, 0.1).shape == y.shape


def test_untrained_network_is_the_identity_and_noise_level_conditions_the_output():
    y = torch.rand(1, 3, 16, 16)
    assert torch.equal(DRUNet((4, 4, 4, 4), 1)(y, 0.2), y)
    net = _trained_looking(DRUNet((4, 4, 4, 4), 1))
    with torch.no_grad():
        low, high = net(y, 0.0), net(y, 0.2)
        batch = net(torch.cat([y, y]), torch.tensor([0.0, 0.2]))
    assert not torch.allclose(low, high)
    assert torch.allclose(batch[0], low[0], atol=1e-6) and torch.allclose(batch[1], high[0], atol=1e-6)


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    net = _trained_looking(DRUNet((4, 4, 4, 8), 2))
    path = tmp_path / "d.pt"
    sha = save_checkpoint(net, path, {"steps": 3})
    loaded, info = load_checkpoint(path)
    y = torch.rand(1, 3, 16, 16)
    assert len(sha) == 64 and info["meta"] == {"steps": 3} and info["config"] == {"channels": [4, 4, 4, 8], "blocks": 2}
    assert torch.equal(loaded(y, 0.1), net(y, 0.1)) and not loaded.training
    with pytest.raises(CheckpointError, match="does not exist.*bench train drunet"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a restoration-bench DRUNet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")


def test_bad_architecture_is_refused():
    with pytest.raises(ValueError, match="4 positive numbers"):
        DRUNet((4, 4, 4))
    with pytest.raises(ValueError, match="blocks=0"):
        DRUNet((4, 4, 4, 4), 0)
