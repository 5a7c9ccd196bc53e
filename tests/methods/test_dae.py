"""The packaged denoising auto-encoder weights of the ``dmsp`` and ``daep`` methods (methods/weights/dae_sigma*.pt)."""

from __future__ import annotations

import re

import pytest

from bench.checkpoints import sha256_file
from bench.nets.dae import default_checkpoint, load_checkpoint


@pytest.mark.parametrize("sigma", [11, 25])
def test_shipped_weights(sigma):
    path = default_checkpoint(sigma)
    assert path.stat().st_size <= 10 * 2**20
    model, info = load_checkpoint(path)
    assert info["sigma"] == sigma
    card = path.with_suffix(".md").read_text()
    assert re.search(r"sha256\*\*: `([0-9a-f]{64})`", card).group(1) == sha256_file(path)
    assert "/eval" not in " ".join(info["meta"]["data"])
