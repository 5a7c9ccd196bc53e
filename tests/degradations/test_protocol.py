"""The observation protocol (issue 26, docs/protocol.md): ``clip`` and ``quantize`` of every degradation that adds
noise, their defaults (unclipped float, the literature's synthetic protocol), the key, the caption, the store, and
JPEG's chroma subsampling."""

import numpy as np
import pytest
import torch

from bench.cells import Cell, degradation_generator, instantiate
from bench.compute import execute_cell, make_observation, to_array
from bench.datasets import ImageItem
from bench.errors import ParameterError
from bench.metrics import MetricSuite
from bench.params import build_params
from bench.physics.jpeg import jpeg_effective_sigma, jpeg_encoder
from bench.physics.jpeg_qcs import jpeg_with_quantization
from bench.physics.operator import apply_protocol
from bench.registry import get_degradation_class

NOISY = ["noise", "blur", "sr", "inpaint"]  # float by default; multi's JPEG stage makes it 8-bit by nature
PROTOCOLS = {"unclipped float": (False, False), "clipped to [0, 1], float": (True, False),
             "clipped to [0, 1] and rounded to 8 bits": (True, True)}


def bright(size=64):
    """A smooth image with values near 0 and 1 (noise pushes many pixels out of [0, 1]) and sharp edges (bicubic
    overshoot)."""
    ramp = torch.linspace(0.02, 0.98, size)
    image = ramp.view(1, 1, 1, size).expand(1, 3, size, size).clone()
    image[..., size // 4: size // 2, :] = torch.tensor([0.0, 1.0, 0.5]).view(1, 3, 1, 1)
    return image


def degradation(name, **params):
    cls = get_degradation_class(name)
    if name in ("inpaint", "sr"):
        params.setdefault("sigma", 10.0)  # noise, so the protocol matters
    return cls(build_params(cls.Params, params, name))


def observe(name, **params):
    return degradation(name, **params).degrade(bright(), degradation_generator(0, "img", name))


def is_8bit(y):
    return bool(torch.equal(torch.round(y * 255) / 255, y))


@pytest.mark.parametrize("name", NOISY)
def test_the_default_is_unclipped_float(name):
    cls = get_degradation_class(name)
    assert (cls.Params().clip, cls.Params().quantize) == (False, False)
    y = observe(name).y
    assert float(y.min()) < 0 and float(y.max()) > 1, "unclipped: noise leaves [0, 1]"
    assert not is_8bit(y)


@pytest.mark.parametrize("name", NOISY)
def test_clip_keeps_the_range_and_quantize_the_8_bit_levels(name):
    free = observe(name).y
    clipped = observe(name, clip=True).y
    stored = observe(name, clip=True, quantize=True).y
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1 and not is_8bit(clipped)
    assert float(stored.min()) >= 0 and float(stored.max()) <= 1 and is_8bit(stored)
    # the same draws under every protocol: only the last step differs
    assert torch.equal(clipped, free.clamp(0, 1))
    assert torch.equal(stored, torch.round(free.clamp(0, 1) * 255) / 255)


def test_noise_is_exactly_the_drawn_awgn_without_clipping():
    x = bright()
    obs = degradation("noise", sigma=25).degrade(x, degradation_generator(0, "img", "noise"))
    assert (obs.y - x).std().item() * 255 == pytest.approx(25, rel=0.05)
    assert (obs.y - x).mean().abs().item() * 255 < 1  # clipping would bias it towards the image's inside


def test_the_unclipped_sr_observation_keeps_the_bicubic_overshoot():
    y = observe("sr", sigma=0.0).y  # no noise: the antialiased bicubic alone leaves [0, 1] at the sharp edges
    assert float(y.min()) < 0 or float(y.max()) > 1
    assert float(observe("sr", sigma=0.0, clip=True).y.min()) >= 0


@pytest.mark.parametrize("name", NOISY)
def test_quantize_without_clip_is_refused_in_one_line(name):
    cls = get_degradation_class(name)
    with pytest.raises(ParameterError) as err:
        build_params(cls.Params, {"quantize": True}, name)
    assert str(err.value) == (f"{name}: quantize=true needs clip=true: 8-bit levels exist only in [0, 1] "
                              "(set clip=true too, or quantize=false)")


def test_multi_encodes_8_bit_pixels_so_its_protocol_is_fixed():
    cls = get_degradation_class("multi")
    assert (cls.Params().clip, cls.Params().quantize) == (True, True)
    with pytest.raises(ParameterError, match="multi: clip and quantize are fixed at true"):
        build_params(cls.Params, {"clip": False, "quantize": False}, "multi")
    obs = cls().degrade(bright(), degradation_generator(0, "img", "multi"))
    assert is_8bit(obs.y) and float(obs.y.min()) >= 0 and float(obs.y.max()) <= 1


@pytest.mark.parametrize("name", NOISY)
def test_every_caption_states_the_protocol(name):
    for text, (clip, quantize) in PROTOCOLS.items():
        description = observe(name, clip=clip, quantize=quantize).description
        assert description.endswith(text), description
    assert observe("noise").description == "Gaussian noise σ=25/255, unclipped float"


def test_jpeg_captions_name_the_encoder_and_the_subsampling():
    encoder = jpeg_encoder()
    assert encoder.startswith("Pillow ") and "libjpeg" in encoder
    jpeg = get_degradation_class("jpeg")
    assert jpeg().describe() == f"JPEG quality 10 ({encoder}, 4:2:0)"
    assert jpeg(jpeg.Params(subsampling="4:4:4")).describe() == f"JPEG quality 10 ({encoder}, 4:4:4)"
    multi = get_degradation_class("multi")().describe()
    assert multi == ("Gaussian blur σ=1 (9×9) → noise σ=10/255 → clipped to [0, 1] and rounded to 8 bits "
                     f"→ JPEG quality 40 ({encoder}, 4:2:0)")


def test_protocols_and_subsamplings_are_separate_cells():
    method = instantiate("method", "identity", {}, "smoke")[0]
    image = ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32))
    grid = instantiate("degradation", "noise", {"clip": [False, True]}, "smoke")  # unclipped, clipped float
    grid += instantiate("degradation", "noise", {"clip": True, "quantize": True}, "smoke")  # stored 8-bit image
    cells = [Cell.make(method, d, image, 0, "smoke", "demo") for d in grid]
    assert len({c.key for c in cells}) == len({c.degraded_key for c in cells}) == len(cells) == 3
    jpeg = instantiate("degradation", "jpeg", {"subsampling": ["4:2:0", "4:4:4"]}, "smoke")
    assert len({Cell.make(method, d, image, 0, "smoke", "demo").key for d in jpeg}) == 2


def test_a_grid_that_asks_for_quantize_without_clip_is_refused():
    with pytest.raises(ParameterError, match="quantize=true needs clip=true"):
        instantiate("degradation", "noise", {"quantize": True}, "smoke")


@pytest.mark.parametrize("name", NOISY)
def test_a_float_observation_is_simulated_again_never_read_back_from_its_png(name):
    """The store keeps a degraded PNG (for figures: clipped and rounded); a cell that finds it gets the float
    observation bit for bit, simulated again from its seed, not the PNG's 8-bit picture."""
    d = degradation(name)
    x = bright()
    fresh = make_observation(d, x, 0, "digest", name)
    png = np.round(to_array(fresh.y.clamp(0, 1)) * 255).astype(np.uint8).astype(np.float32) / 255
    again = make_observation(d, x, 0, "digest", name, cached_y=png)
    assert torch.equal(again.y, fresh.y)
    eight_bit = degradation(name, clip=True, quantize=True)
    stored = make_observation(eight_bit, x, 0, "digest", name)
    png = to_array(stored.y)
    assert torch.equal(make_observation(eight_bit, x, 0, "digest", name, cached_y=png).y, stored.y)  # read back


def test_the_stored_degraded_png_is_the_observation_clipped_for_display():
    method = instantiate("method", "identity", {}, "smoke")[0]
    noise = instantiate("degradation", "noise", {"sigma": 50.0}, "smoke")[0]
    image = ImageItem("bright", to_array(bright(32)).astype(np.float32))
    cell = Cell.make(method, noise, image, 0, "smoke", "demo")
    row = execute_cell(cell, MetricSuite(lpips=False))
    obs = make_observation(noise.plugin, bright(32), 0, image.digest, "noise")
    shown = row.degraded
    assert shown.dtype == np.uint8
    expected = np.round(to_array(obs.y.clamp(0, 1)) * 255).astype(np.uint8)
    assert np.array_equal(shown, expected)  # below 0 shows black, above 1 white: no wrap-around
    assert (to_array(obs.y) < 0).any() and (shown[to_array(obs.y) < 0] == 0).all()
    # identity's output and the input PSNR follow the metric conventions: clipped and rounded to 8 bits
    assert row.status == "ok" and row.psnr == row.input_psnr


def test_apply_protocol_refuses_quantize_without_clip():
    with pytest.raises(ValueError, match="quantize=true needs clip=true"):
        apply_protocol(torch.zeros(1), clip=False, quantize=True)


def test_jpeg_subsampling_reaches_the_file_and_the_qcs_data_term():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for subsampling, factors, chroma_blocks in (("4:2:0", (2, 2), (2, 2)), ("4:4:4", (1, 1), (4, 4))):
        _, quantization = jpeg_with_quantization(x, 10, subsampling=subsampling)
        assert quantization.factors == factors
        assert tuple(quantization.coefficients[1].shape[:2]) == chroma_blocks
        assert float(quantization.residual(x).abs().max()) < 1 / 255  # the encoder's input lies in its cells
    jpeg = get_degradation_class("jpeg")
    a = jpeg().degrade(x, torch.Generator())
    b = jpeg(jpeg.Params(subsampling="4:4:4")).degrade(x, torch.Generator())
    assert b.operator.quantization.factors == (1, 1) and not torch.equal(a.y, b.y)
    assert (b.y - x).pow(2).mean() < (a.y - x).pow(2).mean()  # full-size chroma: closer to the original
    assert b.sigma < a.sigma == pytest.approx(jpeg_effective_sigma(10))
    with pytest.raises(ParameterError, match="4:2:2"):
        build_params(jpeg.Params, {"subsampling": "4:2:2"}, "jpeg")
