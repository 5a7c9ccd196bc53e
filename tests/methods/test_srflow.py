"""The srflow4x / srflow8x methods: official checkpoints, output sizes, heat (network: tests/bench/nets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.api import RestoreContext
from bench.checkpoints import save_checkpoint
from bench.errors import CheckpointError
from bench.families.srflow import load_model
from bench.nets.srflow import SRFlowConfig, SRFlowNet
from bench.registry import available
from degradations.noise import Noise
from degradations.sr import SuperResolution
from methods.srflow4x import SRFlow4x
from methods.srflow8x import SRFlow8x


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory, perturbed_srflow) -> dict[int, Path]:
    out = {}
    for scale in (4, 8):
        net = perturbed_srflow(SRFlowConfig.tiny(scale), seed=scale)
        path = tmp_path_factory.mktemp("srflow") / f"tiny{scale}.pt"
        save_checkpoint({"state_dict": net.state_dict(), "config": net.cfg.to_dict()}, path)
        out[scale] = path
    return out


def test_official_layout_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(1)
    source = SRFlowNet(SRFlowConfig.official(4))
    with torch.no_grad():  # non-default values, so a successful load is visible
        source.flowUpsamplerNet.layers[1].actnorm.bias.fill_(0.25)
    # the release's .pth: a plain state dict, here with a DataParallel prefix
    path = tmp_path / "SRFlow_DF2K_4X.pth"
    save_checkpoint({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    method = SRFlow4x(SRFlow4x.Params(checkpoint=str(path), heat=0.0))
    net = method.network()
    assert net.cfg == SRFlowConfig.official(4)
    assert float(net.flowUpsamplerNet.layers[1].actnorm.bias.detach().mean()) == 0.25
    fresh = SRFlowNet(SRFlowConfig.official(4))
    assert not fresh.load_state_dict(net.state_dict(), strict=True).missing_keys
    obs = Noise().degrade(torch.rand(1, 3, 16, 16), torch.Generator().manual_seed(0))
    x = method.restore(obs, RestoreContext(generator=torch.Generator()), net=net)
    assert tuple(x.shape) == (1, 3, 16, 16)
    # a 4× file refuses to load as 8×, with a clear message
    with pytest.raises(CheckpointError, match="SRFlow 8×"):
        load_model(path, 8)


@pytest.mark.parametrize(
    "cls, degradation, size",
    [
        (SRFlow4x, Noise(), (21, 27)),
        (SRFlow4x, SuperResolution(SuperResolution.Params(factor=4)), (24, 36)),
        (SRFlow8x, Noise(), (19, 33)),
        (SRFlow8x, SuperResolution(SuperResolution.Params(factor=8)), (24, 48)),
        (SRFlow8x, SuperResolution(SuperResolution.Params(factor=4)), (64, 64)),  # was 16×16: sr of another factor
        (SRFlow4x, SuperResolution(SuperResolution.Params(factor=2)), (32, 40)),
    ],
)
def test_output_size_equals_input_size(tiny_checkpoints, cls, degradation, size):
    obs = degradation.degrade(torch.rand(1, 3, *size), torch.Generator().manual_seed(0))
    method = cls(cls.Params(checkpoint=str(tiny_checkpoints[cls.factor])))
    x = method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0)))
    assert tuple(x.shape) == (1, 3, *size)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_heat_zero_is_deterministic_and_heat_uses_the_generator(tiny_checkpoints):
    obs = Noise().degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(0))

    def run(heat: float, seed: int) -> torch.Tensor:
        method = SRFlow4x(SRFlow4x.Params(checkpoint=str(tiny_checkpoints[4]), heat=heat))
        return method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(seed)))

    assert torch.equal(run(0.0, 1), run(0.0, 2))
    assert torch.equal(run(0.9, 3), run(0.9, 3))
    assert not torch.equal(run(0.9, 3), run(0.9, 4))


def test_diverging_sample_is_redrawn_at_lower_heat(tiny_checkpoints):
    net = load_model(tiny_checkpoints[4], 4)

    class Diverging:
        """Blows up above heat 0.3, like an under-trained flow's inverse on unlikely latents."""

        cfg = net.cfg

        def to(self, device):
            return self

        def sample(self, lr, heat, generator):
            out = torch.full((1, 3, lr.shape[-2] * 4, lr.shape[-1] * 4), 0.5)
            return out * float("inf") if heat > 0.3 else out

    obs = Noise().degrade(torch.rand(1, 3, 16, 16), torch.Generator().manual_seed(0))
    ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
    x = SRFlow4x(SRFlow4x.Params(heat=0.9)).restore(obs, ctx, net=Diverging())
    assert bool(torch.isfinite(x).all())
    assert ctx.trace["heat_used"] == [0.225]


def test_params_are_validated():
    with pytest.raises(ValueError, match="heat"):
        SRFlow4x.Params(heat=-0.1)
    with pytest.raises(ValueError, match="scale"):
        SRFlowConfig(scale=3)


def test_packaged_defaults_exist_and_restore():
    assert {"srflow4x", "srflow8x"} <= set(available("method"))
    for cls in (SRFlow4x, SRFlow8x):
        path = cls.default_checkpoint
        assert path.is_file() and path.stat().st_size < 20 * 2**20
        net = load_model(path, cls.factor)
        assert net.cfg.residual and net.cfg.scale == cls.factor
    obs = SuperResolution().degrade(torch.rand(1, 3, 32, 32), torch.Generator())
    x = SRFlow4x().restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0)))
    assert tuple(x.shape) == (1, 3, 32, 32)


