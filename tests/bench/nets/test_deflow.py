"""The DeFlow network: the conditional flow is invertible given its conditioning."""

from __future__ import annotations

import pytest
import torch

from bench.nets.deflow import DeFlowNet, get_config
from bench.training.deflow import nll_bits_per_dim

pytestmark = pytest.mark.usefixtures("one_thread")


def test_conditional_flow_is_invertible():
    torch.manual_seed(0)
    net = DeFlowNet(get_config("tiny")).train()
    x = torch.rand(4, 3, 32, 32)
    nll_bits_per_dim(net, x[:2], x[2:])  # ActNorm data initialisation, so the flow is not the identity
    net.eval()
    eps, _, cond = net.encode(x, torch.tensor([False, True, False, True]))
    assert (net.decode(eps, cond) - x).abs().max() < 1e-4
