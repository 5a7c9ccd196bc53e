"""Tests of the DIP skip network and its helpers (bench/nets/dip.py)."""

from __future__ import annotations

import torch
from torch import nn

from bench.nets import dip as nets


def expected_skip_params(depth: int, down: int = 128, up: int = 128, skip: int = 4, scales: int = 5) -> int:
    """Parameter count of the official skip net, layer by layer (conv weights + biases, BN affine)."""
    total = 0
    for i in range(scales):
        c_in = depth if i == 0 else down
        k = up if i < scales - 1 else down
        total += c_in * skip + skip + 2 * skip  # 1×1 skip conv, BN
        total += c_in * down * 9 + down + 2 * down  # stride-2 3×3 conv, BN
        total += down * down * 9 + down + 2 * down  # 3×3 conv, BN
        total += 2 * (skip + k)  # BN of the concatenation
        total += (skip + k) * up * 9 + up + 2 * up  # 3×3 conv, BN
        total += up * up + up + 2 * up  # 1×1 conv, BN
    return total + up * 3 + 3  # 1×1 output conv


def test_official_skip_net_structure():
    net = nets.SkipNet(input_depth=32)
    count = sum(p.numel() for p in net.parameters())
    assert count == expected_skip_params(32) == 2_217_831  # the official notebook prints 2217831
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.stride == (2, 2) for c in convs) == 5  # stride-2 downsampling at each of 5 scales
    assert all(c.padding_mode == "reflect" for c in convs if c.kernel_size == (3, 3))
    assert sorted({c.out_channels for c in convs}) == [3, 4, 128]
    assert sum(c.out_channels == 4 and c.kernel_size == (1, 1) for c in convs) == 5  # 4-channel skips
    assert all(m.negative_slope == 0.2 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 5 * 6
    assert net.head.kernel_size == (1, 1)
    out = net(torch.rand(1, 32, 64, 64))
    assert out.shape == (1, 3, 64, 64) and 0 < float(out.detach().min()) and float(out.detach().max()) < 1  # sigmoid


def test_small_net_is_the_jpeg_notebook_net():
    net = nets.SkipNet.small(input_depth=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs if c.stride == (2, 2)] == [8, 16, 32, 64, 128]
    assert sorted(c.out_channels for c in convs if c.kernel_size == (1, 1) and c.out_channels == 4) == [4, 4]
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_working_size_and_centre_crop_round_trip():
    assert nets.working_size((40, 72), 32) == (64, 96)
    assert nets.working_size((100, 64), 32) == (128, 64)
    x = torch.arange(64 * 96, dtype=torch.float32).reshape(1, 1, 64, 96)
    crop = nets.centre_crop(x, (40, 72))
    assert crop.shape == (1, 1, 40, 72)
    assert torch.equal(crop, x[..., 12:52, 12:84])
    assert nets.centre_crop(x, (64, 96)) is x  # no copy when nothing is cropped


def test_make_net_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = nets.make_net(lambda: nets.SkipNet.small(3), 7, torch.device("cpu"), channels_last=True)
    b = nets.make_net(lambda: nets.SkipNet.small(3), 7, torch.device("cpu"), channels_last=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.training and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_noise_buffer_draws_in_storage_order():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    last = nets.fill_normal(nets.noise_buffer(4, (8, 8), torch.device("cpu"), channels_last=True), g1)
    first = nets.fill_normal(nets.noise_buffer(4, (8, 8), torch.device("cpu"), channels_last=False), g2)
    assert last.shape == first.shape == (1, 4, 8, 8)
    assert torch.equal(last.permute(0, 2, 3, 1).reshape(-1), first.reshape(-1))  # same draws, other layout
    assert nets.code_noise(2, (4, 4), torch.Generator()).max() <= 0.1
    assert isinstance(nets.seed_from(torch.Generator().manual_seed(0)), int)
