"""Tests of the Winograd F(4×4, 3×3) convolution (bench/nets/winograd.py) and its use in DIP's nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.nets import dip as nets
from bench.nets.winograd import winograd_conv3x3, winograd_pays


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


@pytest.mark.parametrize("n, c_in, c_out, h, w", [(1, 3, 5, 4, 4), (2, 7, 4, 12, 8), (1, 16, 9, 20, 28)])
def test_matches_the_direct_convolution_and_its_gradients(n, c_in, c_out, h, w):
    gen = torch.Generator().manual_seed(n * 100 + c_in)
    x = torch.randn(n, c_in, h + 2, w + 2, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, generator=gen, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(n, c_out, h, w, generator=gen, dtype=torch.float64)
    ref = F.conv2d(x, weight, bias)
    got = winograd_conv3x3(x, weight, bias)
    assert got.shape == ref.shape
    # in float64 the algorithm is exact up to rounding: any indexing slip would show as O(1) differences
    for a, b in zip(torch.autograd.grad(got, (x, weight, bias), grad), torch.autograd.grad(ref, (x, weight, bias), grad)):
        assert rel_diff(a, b) < 1e-12
    assert rel_diff(got, ref) < 1e-12


def test_float32_difference_is_small_but_real():
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1, 128, 34, 34, generator=gen), torch.randn(128, 128, 3, 3, generator=gen) * 0.05
    diff = rel_diff(winograd_conv3x3(x, weight), F.conv2d(x, weight))
    assert 0 < diff < 1e-4  # a different summation: not bitwise, but ~1e-5 of the largest value


@pytest.mark.parametrize("shape, weight, message", [
    ((1, 4, 11, 10), (2, 4, 3, 3), "divisible by 4"),
    ((1, 4, 10, 10), (2, 3, 3, 3), "weight"),
    ((1, 4, 10, 10), (2, 4, 5, 5), "weight"),
])
def test_rejects_shapes_it_cannot_compute(shape, weight, message):
    with pytest.raises(ValueError, match=message):
        winograd_conv3x3(torch.zeros(shape), torch.zeros(weight))


def test_pays_only_for_wide_layers_at_32_pixels_and_more():
    assert winograd_pays(132, 128, 32, 32) and winograd_pays(128, 128, 256, 64)
    assert not winograd_pays(128, 128, 16, 16)  # the gather outweighs the saving on small maps
    assert not winograd_pays(16, 16, 256, 256)  # and on narrow layers (the small JPEG net)
    assert not winograd_pays(128, 128, 34, 32)  # tiles of 4 must cover the map


def test_net_layers_switch_algorithm_without_changing_weights():
    factory = lambda: nets.SkipNet(input_depth=8)  # noqa: E731
    direct = nets.make_net(factory, 3, torch.device("cpu"), channels_last=False)
    wino = nets.make_net(factory, 3, torch.device("cpu"), channels_last=False, conv="winograd")
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(), wino.state_dict().values()))
    convs = [m for m in wino.modules() if isinstance(m, nets.Conv2d)]
    assert convs and all(m.algorithm == "winograd" for m in convs)
    z = torch.rand(1, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    a, b = direct(z), wino(z)
    assert not torch.equal(a, b) and rel_diff(b, a) < 1e-4  # the 128-channel layers at 64² and 32² ran Winograd
    small = nets.make_net(lambda: nets.SkipNet.small(3), 3, torch.device("cpu"), False, conv="winograd")
    small_direct = nets.make_net(lambda: nets.SkipNet.small(3), 3, torch.device("cpu"), False)
    z3 = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(small(z3), small_direct(z3))  # no layer of the small net qualifies: bitwise the same
    with pytest.raises(ValueError, match="conv='fft'"):
        nets.make_net(factory, 3, torch.device("cpu"), False, conv="fft")


def test_bfloat16_keeps_the_direct_path():
    conv = nets.Conv2d(64, 64, 3, padding=1, padding_mode="reflect")
    x = torch.rand(1, 64, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = conv(x)
        conv.algorithm = "winograd"
        assert torch.equal(conv(x), ref)  # Winograd is a float32 algorithm: autocast keeps torch's kernels

