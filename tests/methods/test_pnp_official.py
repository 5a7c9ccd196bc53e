"""DPIR as published in ``pnp`` (issue 26): the official DRUNet layout loads strictly, wrong layouts get one line,
DPIR's ρ rule and self-ensemble, and the caption's denoiser size.

``drunet_official_keys.txt`` lists the key names and shapes of the official network, recorded by running DPIR's own
``models/network_unet.py`` (``UNetRes`` as the ``main_dpir_*.py`` scripts build it); the official weights themselves
cannot be downloaded here, so a random state dict in that layout stands in for ``drunet_color.pth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import RestoreContext
from bench.errors import CheckpointError
from bench.images import save_png
from bench.nets.drunet import DRUNet, UNetRes, load_denoiser
from bench.physics.operator import Observation, Operator
from bench.registry import get_degradation_class
from bench.solvers.pnp import augment, deaugment, denoise, get_rho_sigma, hqs_restore
from methods.pnp import PlugAndPlay

KEYS_FILE = Path(__file__).with_name("drunet_official_keys.txt")
OFFICIAL_NOTE = "DRUNet official architecture (32.6 M parameters), weights drunet_color.pth"


def official_layout() -> dict[str, tuple[int, ...]]:
    """Key → shape of the official drunet_color.pth, as recorded from DPIR's code."""
    lines = [line.split() for line in KEYS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return {name: tuple(int(n) for n in dims) for name, *dims in lines}


def save_layout(path: Path, layout: dict[str, tuple[int, ...]]) -> Path:
    """A small file in ``layout``: every tensor a zero expanded to its shape (torch.save keeps one element each)."""
    torch.save({k: torch.zeros(1).expand(shape) for k, shape in layout.items()}, path)
    return path


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> Path:
    """A random state dict in the official names and shapes, saved as the release is (a plain dict, torch.save)."""
    generator = torch.Generator().manual_seed(0)
    state = {k: 0.02 * torch.randn(shape, generator=generator) for k, shape in official_layout().items()}
    path = tmp_path_factory.mktemp("official") / "drunet_color.pth"
    torch.save(state, path)
    return path


def degrade(name, clean, **params):
    cls = get_degradation_class(name)
    return cls(cls.Params(**params)).degrade(clean, torch.Generator().manual_seed(0))


def ctx():
    return RestoreContext(generator=torch.Generator().manual_seed(0), profile="smoke")


def test_official_layout_is_the_one_recorded_from_dpir():
    layout = official_layout()
    with torch.device("meta"):
        net = UNetRes()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == layout
    assert list(net.state_dict()) == list(layout)  # the same order too
    assert len(layout) == 64 and sum(int(np.prod(s)) for s in layout.values()) == 32_640_960
    assert "m_down1.4.weight" in layout and "m_up3.0.weight" in layout  # B.sequential flattens the strided convs


def test_official_file_loads_strictly_and_runs_through_the_plugin(official_file):
    model, info = load_denoiser(official_file)
    assert isinstance(model, UNetRes) and info["arch"] == "official" and info["parameters"] == 32_640_960
    state = torch.load(official_file, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # every weight is the file's
    assert isinstance(load_denoiser(official_file, "official")[0], UNetRes)
    clean = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    for name, params in (("noise", {"sigma": 25}), ("sr", {"factor": 4})):
        obs = degrade(name, clean, **params)
        c = ctx()
        out = PlugAndPlay(PlugAndPlay.Params(checkpoint=str(official_file), iterations=2, cg_steps=2)).restore(obs, c)
        assert out.shape == clean.shape and bool(torch.isfinite(out).all())
        assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert PlugAndPlay.weights_note({"checkpoint": str(official_file), "arch": "auto"}) == OFFICIAL_NOTE


def test_caption_names_the_denoiser_and_its_size(official_file, tmp_path):
    packaged = PlugAndPlay.weights_note({"checkpoint": "", "arch": "auto"})
    assert "drunet_cpu.pt" in packaged and "4.3 M parameters" in packaged and "32.6 M" in packaged
    suite = tmp_path / "mine.pt"
    from bench.nets.drunet import save_checkpoint

    save_checkpoint(DRUNet((8, 8, 16, 16), 1), suite)
    note = PlugAndPlay.weights_note({"checkpoint": str(suite), "arch": "auto"})
    assert note.startswith("DRUNet of this suite (") and "channels 8-16, 1 blocks per scale" in note
    assert note.endswith("weights mine.pt")
    assert PlugAndPlay.weights_note({"checkpoint": str(tmp_path / "none.pth"), "arch": "auto"}) == ""


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda s: s.pop("m_tail.weight"), "missing 1 key(s): m_tail.weight"),
        (lambda s: s.update({"m_tail.bias": (3,)}), "1 unexpected key(s): m_tail.bias"),
        (lambda s: s.update({"m_head.weight": (64, 2, 3, 3)}),
         "m_head.weight has shape [64, 2, 3, 3], expected [64, 4, 3, 3] (a grayscale drunet_gray.pth?"),
        (lambda s: s.update({"m_down2.4.weight": (256, 128, 3, 3)}),
         "m_down2.4.weight has shape [256, 128, 3, 3], expected [256, 128, 2, 2]"),
    ],
)
def test_a_wrong_layout_is_one_line_naming_the_file_and_the_difference(tmp_path, change, says):
    layout = official_layout()
    change(layout)
    path = save_layout(tmp_path / "drunet_color.pth", layout)
    obs = degrade("noise", torch.rand(1, 3, 16, 16))
    with pytest.raises(CheckpointError) as info:
        PlugAndPlay(PlugAndPlay.Params(checkpoint=str(path))).restore(obs, ctx())
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"DRUNet checkpoint '{path}' does not match the official DRUNet")
    assert says in message, message
    assert PlugAndPlay.weights_note({"checkpoint": str(path), "arch": "auto"}) == ""


def test_arch_selects_one_format(official_file, tmp_path):
    suite = tmp_path / "mine.pt"
    from bench.nets.drunet import save_checkpoint

    save_checkpoint(DRUNet((8, 8, 16, 16), 1), suite)
    assert isinstance(load_denoiser(suite)[0], DRUNet) and isinstance(load_denoiser(suite, "suite")[0], DRUNet)
    with pytest.raises(CheckpointError, match="is a restoration-bench file .* not the official drunet_color.pth"):
        load_denoiser(suite, "official")
    with pytest.raises(CheckpointError, match="not a restoration-bench DRUNet checkpoint.*loads with arch=official"):
        load_denoiser(official_file, "suite")
    with pytest.raises(ValueError, match="arch=official needs checkpoint=FILE"):
        PlugAndPlay.Params(arch="official")
    with pytest.raises(ValueError, match="x8='yes' must be auto, on or off"):
        PlugAndPlay.Params(x8="yes")


def test_bench_run_with_the_official_file_and_with_a_wrong_one(official_file, tmp_path, run_cli):
    folder = tmp_path / "data"
    save_png(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), folder / "pic.png")

    def run(checkpoint: Path, results: str):
        return run_cli("run", "--dataset", f"folder:{folder}", "--methods", "pnp", "--degradations", "noise,sr",
                       "--profile", "smoke", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / results),
                       "--set", f"pnp.checkpoint={checkpoint}")

    code, out, err = run(official_file, "res")
    assert code == 0, err
    assert "computed 2, cached 0, failed 0" in err
    code, report, err = run_cli("report", "--format", "markdown", "--results-dir", str(tmp_path / "res"))
    assert code == 0, err
    assert f"Weights of pnp: {OFFICIAL_NOTE}." in report
    layout = official_layout()
    layout.pop("m_up1.4.res.2.weight")
    (tmp_path / "bad").mkdir()
    bad = save_layout(tmp_path / "bad" / "drunet_color.pth", layout)
    code, _, err = run(bad, "res_bad")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(lines) == 2 and all(line.startswith("failed: pnp on ") for line in lines)
    assert lines[0].endswith(
        f"CheckpointError: DRUNet checkpoint '{bad}' does not match the official DRUNet (DPIR/KAIR UNetRes: in_nc 4, "
        "out_nc 3, nc 64-512, nb 4, bias-free): missing 1 key(s): m_up1.4.res.2.weight; expected the official "
        "drunet_color.pth (plain state dict) or a file written by `bench train drunet`."
    ), lines[0]
    assert "Traceback" not in err


def test_rho_follows_dpir_not_the_data_term_floor(monkeypatch):
    """sr keeps σ = 1/255 for MAP data terms, but adds no noise: DPIR's ρ uses max(0.255/255, 0) (about 15× less)."""
    obs = degrade("sr", torch.rand(1, 3, 32, 32), factor=4)
    assert obs.sigma == pytest.approx(1 / 255) and obs.operator.noise_level == 0.0
    rhos, sigmas = get_rho_sigma(0.255 / 255, 24, 49, 4)  # main_dpir_sisr.py, sf 4, noise 0
    assert sigmas[0] * 255 == pytest.approx(49) and sigmas[-1] * 255 == pytest.approx(4)
    assert rhos[0] == pytest.approx(0.23 * (0.255 / 49) ** 2, rel=1e-6)
    used: list[float] = []

    class Recorder(torch.nn.Module):
        def forward(self, y, sigma):
            return y

    import bench.solvers.pnp as solver

    original = solver.x_step

    def spy(residual, x, target, sigma, beta, *rest):
        used.append(beta * sigma**2)  # the ρ of ‖A(x) − y‖² + ρ‖x − z‖²
        return original(residual, x, target, sigma, beta, *rest)

    monkeypatch.setattr(solver, "x_step", spy)
    hqs_restore(obs, Recorder(), sigmas[:3], cg_steps=1)
    assert used == pytest.approx(rhos[:3], rel=1e-5)  # the default rule is DPIR's, from noise_level
    blur = degrade("blur", torch.rand(1, 3, 16, 16))  # noise 2.55/255: ρ's σ is the noise level
    assert blur.operator.noise_level == pytest.approx(blur.sigma)


def test_self_ensemble_is_dpirs():
    x = torch.rand(1, 3, 5, 7)
    assert all(torch.equal(deaugment(augment(x, m), m), x) for m in range(8))
    assert len({tuple(augment(x, m).flatten().tolist()) for m in range(8)}) == 8  # 8 distinct transforms

    class Position(torch.nn.Module):
        """Not equivariant: adds a ramp over the rows, so each transform gives another output."""

        def forward(self, y, sigma):
            return y + torch.linspace(0, 1, y.shape[-2]).reshape(1, 1, -1, 1)

    net = Position()
    plain, ensemble = denoise(net, x, 0.1), denoise(net, x, 0.1, x8=True)
    turned = [deaugment(net(augment(x, m), 0.1), m) for m in range(8)]
    assert torch.allclose(ensemble, torch.stack(turned).mean(0)) and not torch.allclose(ensemble, plain)
    # HQS (x8 on by default there): iteration k uses transform k mod 8 once, no averaging
    calls: list[tuple[int, int]] = []

    class Shapes(torch.nn.Module):
        def forward(self, y, sigma):
            calls.append(tuple(y.shape[-2:]))
            return y

    op = Operator(lambda v: v, (5, 7), (5, 7), sigma=0.01)
    hqs_restore(Observation(x, op, task="blur"), Shapes(), [0.1] * 3, cg_steps=1, x8=True)
    assert calls == [(5, 7), (7, 5), (5, 7)]  # modes 0, 1 (rotated), 2 (flipped)


def test_x8_defaults_follow_dpirs_scripts(monkeypatch):
    seen: dict[str, bool] = {}
    import methods.pnp as plugin

    monkeypatch.setattr(plugin, "denoise", lambda model, y, sigma, x8=False: seen.__setitem__("noise", x8) or y)
    monkeypatch.setattr(plugin, "hqs_restore", lambda *a, x8=False, **k: seen.__setitem__("hqs", x8) or a[0].y)
    clean = torch.rand(1, 3, 16, 16)
    for params, expected in (({}, (False, True)), ({"x8": "on"}, (True, True)), ({"x8": "off"}, (False, False))):
        PlugAndPlay(PlugAndPlay.Params(**params)).restore(degrade("noise", clean), ctx())
        PlugAndPlay(PlugAndPlay.Params(**params)).restore(degrade("blur", clean), ctx())
        assert (seen["noise"], seen["hqs"]) == expected, params
