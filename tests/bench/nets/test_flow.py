"""Flow building blocks and the flow prior network: invertibility, exact log-determinants, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import CheckpointError
from bench.nets.flow import Flow, FlowConfig, get_config, load_checkpoint, save_checkpoint
from bench.nets.flow_layers import ActNorm, AffineCoupling, InvConv1x1

pytestmark = pytest.mark.usefixtures("one_thread")


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Perturb every parameter so no layer is the identity (zero-init convs included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def tiny_flow(levels: int = 2, steps: int = 2, hidden: int = 8, **kw) -> Flow:
    torch.manual_seed(0)
    return Flow(FlowConfig(levels=levels, steps=steps, hidden=hidden, **kw))


def brute_logdet(fn, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1))
    return float(torch.linalg.slogdet(jac.double())[1])


@pytest.mark.parametrize("layer", [ActNorm(4), InvConv1x1(4), AffineCoupling(4, 6)])
def test_layer_logdet_matches_jacobian_and_inverts(layer):
    randomize(layer, scale=0.3)
    layer.eval()
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    y, ld = layer(x)
    assert float(ld.detach()) == pytest.approx(brute_logdet(lambda v: layer(v)[0], x), abs=1e-3)
    back, ld_inv = layer.inverse(y)
    assert torch.allclose(back, x, atol=1e-5)
    assert float(ld_inv.detach()) == pytest.approx(-float(ld.detach()), abs=1e-4)


@pytest.mark.parametrize("context", ["conv", "deep"])
def test_flow_is_invertible(context):
    flow = tiny_flow(context=context, context_hidden=8)
    flow.train()
    flow.encode(torch.rand(4, 3, 16, 16))  # data-dependent ActNorm init
    randomize(flow).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    zs, _ = flow.encode(x)
    assert (flow.decode(zs) - x).abs().max() < 1e-4
    # and the other way round: T⁻¹(T(u)) = u
    u = [torch.randn(z.shape, generator=torch.Generator().manual_seed(3)) * 0.5 for z in zs]
    for a, b in zip(flow.encode(flow.decode(u))[0], u):
        assert (a - b).abs().max() < 1e-4


def test_flow_log_prob_matches_brute_force_jacobian():
    flow = tiny_flow(levels=2, steps=1, hidden=4)
    # random steps; context encoders and top prior keep their zero init, so p(u) = N(0, I)
    for steps in flow.levels:
        randomize(steps, scale=0.2)
    flow.eval()
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    zs, log_p = flow.encode(x)

    def flat_latents(v):
        return torch.cat([z.reshape(-1) for z in flow.encode(v)[0]])

    log_pu = sum(float(-0.5 * (z.detach()**2 + math.log(2 * math.pi)).sum()) for z in zs)
    assert float(log_p.detach()) == pytest.approx(log_pu + brute_logdet(flat_latents, x), abs=1e-3)


def test_decode_log_prob_equals_encode_log_prob():
    flow = randomize(tiny_flow(context="deep", context_hidden=8)).eval()
    x = torch.rand(2, 3, 8, 8)
    zs, log_p = flow.encode(x)
    x_back, log_p_back = flow.decode_with_log_prob(zs)
    assert torch.allclose(log_p_back, log_p, atol=1e-2, rtol=1e-5)


def test_standardized_latents_are_the_same_point():
    flow = randomize(tiny_flow(context="deep", context_hidden=8)).eval()
    x = torch.rand(2, 3, 8, 8)
    eps, log_p = flow.encode(x, standardized=True)
    x_back, log_p_back = flow.decode_with_log_prob(eps, standardized=True)
    assert (x_back - x).abs().max() < 1e-4
    assert torch.allclose(log_p_back, log_p, atol=1e-2, rtol=1e-5)
    # ε = 0 in the split-off latents is decoding with the context-encoder means
    zs, _ = flow.encode(x)
    top = flow.encode(x, standardized=True)[0][-1]
    means = flow.decode(zs, use_means=True)
    assert torch.allclose(flow.decode([torch.zeros_like(e) for e in eps[:-1]] + [top], standardized=True), means, atol=1e-5)


def test_bad_shapes_and_configs_are_explained():
    flow = tiny_flow()
    with pytest.raises(ValueError, match="multiples of 4"):
        flow.encode(torch.rand(1, 3, 10, 10))
    with pytest.raises(ValueError, match="context"):
        FlowConfig(context="big")
    with pytest.raises(ValueError, match="unknown flow config"):
        get_config("imagenet")
    assert get_config("div2k").hidden == 256 and get_config("mnist").top_scale == "unit"


def test_unit_top_scale_is_not_trained():
    flow = tiny_flow(levels=1, steps=1, top_scale="unit", in_channels=1)
    assert not flow.top_log_scale.requires_grad
    zs, _ = flow.encode(torch.rand(2, 1, 8, 8))
    assert [tuple(z.shape) for z in zs] == [(2, 4, 4, 4)]


def test_checkpoint_roundtrip_and_bad_files(tmp_path):
    flow = randomize(tiny_flow(context="deep", context_hidden=8)).eval()
    path = tmp_path / "flow.pt"
    save_checkpoint(path, flow, {"step": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 3 and loaded.config == flow.config
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(loaded.log_prob(x), flow.log_prob(x))

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    pickled = tmp_path / "code.pt"
    torch.save({"format": "x", "obj": FlowConfig()}, pickled)  # an arbitrary object: refused, never unpickled
    with pytest.raises(CheckpointError):
        load_checkpoint(pickled)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a flowprior checkpoint"):
        load_checkpoint(other)
