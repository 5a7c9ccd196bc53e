"""SRFlow network: invertibility, NLL training and the official release's state-dict layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.nets.srflow import SRFlowConfig, SRFlowNet
from bench.physics.resize import bicubic_down

HERE = Path(__file__).parent

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.parametrize("scale", [4, 8])
def test_flow_is_invertible_for_fixed_condition(scale, perturbed_srflow):
    net = perturbed_srflow(SRFlowConfig.tiny(scale))
    m = net.cfg.multiple
    hr = torch.rand(2, 3, 2 * m, m)
    lr = torch.rand(2, 3, 2 * m // scale, m // scale)
    with torch.no_grad():
        z, epses, _ = net.encode(hr, lr)
        back = net.decode(z, epses, lr)
    assert len(epses) == sum(level < net.cfg.L - 1 for level in range(1, net.cfg.L + 1))
    assert float((back - hr).abs().max()) < 1e-4


def test_nll_decreases_on_tiny_data():
    torch.manual_seed(0)
    net = SRFlowNet(SRFlowConfig.tiny(4)).train()
    hr = torch.rand(4, 3, 16, 16)
    hr = (hr + hr.roll(1, -1) + hr.roll(1, -2)) / 3  # some structure to learn
    hr = torch.round(hr * 255) / 255
    lr = bicubic_down(hr, 4)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    values = []
    for _ in range(15):
        bpd, _ = net.nll_bpd(hr, lr)
        optimizer.zero_grad()
        bpd.mean().backward()
        optimizer.step()
        values.append(float(bpd.detach().mean()))
    assert all(np.isfinite(values))
    assert values[-1] < values[0] - 0.05


def _recorded_keys(scale: int) -> list[tuple[str, list[int]]]:
    lines = (HERE / f"srflow_official_keys_{scale}x.txt").read_text().splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return [(key, [int(s) for s in shape.strip("[]").split(",") if s.strip()]) for key, shape in rows]


@pytest.mark.parametrize("scale", [4, 8])
def test_official_configuration_matches_recorded_state_dict(scale):
    net = SRFlowNet(SRFlowConfig.official(scale))
    mine = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    recorded = _recorded_keys(scale)
    assert len(recorded) == {4: 1733, 8: 2080}[scale]
    assert dict(mine) == dict(recorded)
    assert [k for k, _ in mine] == [k for k, _ in recorded]  # module order too


