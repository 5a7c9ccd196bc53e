"""The Deep Image Prior "skip" network and its input codes, shared by ``dip`` and ``doubledip``.

:class:`SkipNet` is the encoder–decoder with skip connections of Ulyanov et al.
(``models/skip.py`` of the official Deep Image Prior code), rebuilt here as an
explicit recursive module: at each scale a stride-2 convolution goes down, the
deeper scales run, the result is upsampled and concatenated with a 1×1 "skip"
projection of the scale's input, then a 3×3 and a 1×1 convolution mix them.
Every convolution is followed by BatchNorm and LeakyReLU(0.2); padding is by
reflection; a 1×1 convolution and a sigmoid make the output.

The helpers build a net reproducibly (:func:`make_net`), pad odd image sizes
(:func:`working_size`, :func:`centre_crop`) and draw the codes and
per-iteration perturbations (:func:`code_noise`, :func:`noise_buffer`,
:func:`fill_normal`) from a given generator.

Example:
    >>> import torch
    >>> net = SkipNet.small(input_depth=3)
    >>> tuple(net(torch.rand(1, 3, 64, 64)).shape)
    (1, 3, 64, 64)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench import draws
from bench.nets.winograd import winograd_conv3x3, winograd_pays
from bench.physics.operator import Tensor

# The official configurations, as (channels_down, channels_up, channels_skip).
SKIP_128 = ((128,) * 5, (128,) * 5, (4,) * 5)  # denoising, super-resolution, restoration notebooks (get_net 'skip')
SKIP_SMALL = ((8, 16, 32, 64, 128), (8, 16, 32, 64, 128), (0, 0, 0, 4, 4))  # JPEG notebook, Double-DIP


CONV_ALGORITHMS = ("direct", "winograd")


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose 3×3 stride-1 float32 layers can run as Winograd F(4×4, 3×3).

    ``algorithm`` is ``direct`` (torch's convolution) or ``winograd``
    (:func:`bench.nets.winograd.winograd_conv3x3` for the layers where
    :func:`~bench.nets.winograd.winograd_pays`; the others stay direct). Same
    parameters and initialisation as ``nn.Conv2d``.

    >>> import torch
    >>> conv = Conv2d(64, 64, 3, padding=1, padding_mode="reflect")
    >>> x = torch.rand(1, 64, 32, 32)
    >>> direct = conv(x)
    >>> conv.algorithm = "winograd"
    >>> bool((conv(x) - direct).abs().max() < 1e-4)
    True
    """

    algorithm = "direct"

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (self.algorithm == "winograd" and x.dtype == torch.float32 and not _autocast_on(x.device.type)
                and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding == (1, 1)
                and winograd_pays(self.in_channels, self.out_channels, x.shape[-2], x.shape[-1])):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            return winograd_conv3x3(F.pad(x, (1, 1, 1, 1), mode=mode), weight, bias)
        return super()._conv_forward(x, weight, bias)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> Conv2d:
    # padding_mode="reflect" pads then convolves, exactly ReflectionPad2d + unpadded conv
    pad = (kernel - 1) // 2
    return Conv2d(c_in, c_out, kernel, stride, padding=pad, padding_mode="reflect" if pad else "zeros")


def _bn(channels: int) -> nn.BatchNorm2d:
    # the net always runs in train mode (batch statistics, as in the official code): running stats are unused
    return nn.BatchNorm2d(channels, track_running_stats=False)


def _conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [_conv(c_in, c_out, kernel, stride), _bn(c_out), nn.LeakyReLU(0.2, inplace=True)]


class _Scale(nn.Module):
    """One scale: ``up(cat(skip(x), upsample(inner(down(x)))))``."""

    def __init__(self, c_in: int, down: int, up: int, skip: int, inner: _Scale | None, inner_out: int,
                 kernel_down: int, kernel_up: int, kernel_skip: int, upsample: str, need1x1_up: bool):
        super().__init__()
        self.skip = nn.Sequential(*_conv_bn_act(c_in, skip, kernel_skip)) if skip else None
        self.down = nn.Sequential(*_conv_bn_act(c_in, down, kernel_down, 2), *_conv_bn_act(down, down, kernel_down))
        self.inner = inner
        self.upsample = upsample
        merged = skip + inner_out
        layers: list[nn.Module] = [_bn(merged), *_conv_bn_act(merged, up, kernel_up)]
        if need1x1_up:
            layers += _conv_bn_act(up, up, 1)
        self.up = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        if self.upsample == "nearest":
            deep = F.interpolate(deep, scale_factor=2.0, mode="nearest")
        else:
            deep = F.interpolate(deep, scale_factor=2.0, mode=self.upsample, align_corners=False)
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], dim=1)
        return self.up(deep)


class SkipNet(nn.Module):
    """The DIP "skip" encoder–decoder; input size must be divisible by ``2**scales``.

    Args:
        input_depth: channels of the input code ``z``.
        out_channels: channels of the output image.
        channels_down / channels_up / channels_skip: one entry per scale, finest first.
        kernel_down / kernel_up / kernel_skip: convolution sizes.
        upsample: ``bilinear`` or ``nearest``.
        need1x1_up: the 1×1 convolution after each decoder block (official default).

    Example:
        >>> import torch
        >>> net = SkipNet(input_depth=4, channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))
        >>> net.multiple, tuple(net(torch.rand(1, 4, 16, 16)).shape)
        (4, (1, 3, 16, 16))
    """

    def __init__(self, input_depth: int = 32, out_channels: int = 3,
                 channels_down: Sequence[int] = SKIP_128[0], channels_up: Sequence[int] = SKIP_128[1],
                 channels_skip: Sequence[int] = SKIP_128[2], kernel_down: int = 3, kernel_up: int = 3,
                 kernel_skip: int = 1, upsample: str = "bilinear", need1x1_up: bool = True):
        super().__init__()
        if not len(channels_down) == len(channels_up) == len(channels_skip) >= 1:
            raise ValueError("channels_down, channels_up and channels_skip need one entry per scale")
        self.scales = len(channels_down)
        inner: _Scale | None = None
        inner_out = channels_down[-1]  # the deepest scale passes its own features up
        for i in reversed(range(self.scales)):
            c_in = input_depth if i == 0 else channels_down[i - 1]
            inner = _Scale(c_in, channels_down[i], channels_up[i], channels_skip[i], inner, inner_out,
                           kernel_down, kernel_up, kernel_skip, upsample, need1x1_up)
            inner_out = channels_up[i]
        self.body = inner
        self.head = nn.Conv2d(channels_up[0], out_channels, 1)

    @classmethod
    def small(cls, input_depth: int = 3, out_channels: int = 3, kernel: int = 3) -> SkipNet:
        """The light net of the JPEG notebook and of Double-DIP: [8, 16, 32, 64, 128], skips [0, 0, 0, 4, 4]."""
        down, up, skip = SKIP_SMALL
        return cls(input_depth, out_channels, down, up, skip, kernel_down=kernel, kernel_up=kernel)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return 2**self.scales

    def forward(self, z: Tensor) -> Tensor:
        features = self.body(z)
        # the output layer runs in the weights' precision (float32, or float64) even under bfloat16 autocast:
        # a bfloat16 sigmoid would quantise the image to ~1/255 steps
        with torch.autocast(device_type=features.device.type, enabled=False):
            return torch.sigmoid(self.head(features.to(self.head.weight.dtype)))


def working_size(shape: Sequence[int], multiple: int) -> tuple[int, int]:
    """Smallest ``(H, W)`` ≥ ``shape``, divisible by ``multiple`` and ≥ 2·multiple.

    The deepest scale then has at least 2×2 pixels, which reflection padding needs.

    >>> working_size((100, 64), 32)
    (128, 64)
    """
    return tuple(max(2 * multiple, math.ceil(s / multiple) * multiple) for s in shape[-2:])  # type: ignore[return-value]


def centre_crop(x: Tensor, shape: Sequence[int]) -> Tensor:
    """The central ``shape`` window of ``x`` (a view when no crop is needed)."""
    h, w = shape
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    if top == 0 and left == 0 and x.shape[-2] == h and x.shape[-1] == w:
        return x
    return x[..., top:top + h, left:left + w]


def seed_from(generator: torch.Generator) -> int:
    """A 63-bit seed drawn from ``generator`` (to seed weight init and noise streams)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def make_net(factory: Callable[[], SkipNet], seed: int, device: torch.device, channels_last: bool,
             conv: str = "direct") -> SkipNet:
    """Build ``factory()`` with its weights initialised under ``seed``, on ``device``, in train mode.

    The global RNG is forked, so initialisation is reproducible and leaves the
    caller's RNG state untouched. BatchNorm stays in train mode (batch
    statistics), as in the official code. ``conv`` is the convolution
    algorithm of its layers (:class:`Conv2d`); it does not change the weights.
    """
    if conv not in CONV_ALGORITHMS:
        raise ValueError(f"conv={conv!r}: expected one of {CONV_ALGORITHMS}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = draws.build(factory)  # default init drawn in float64: the same weights on every CPU kernel path
    net = net.to(device)
    for module in net.modules():
        if isinstance(module, Conv2d):
            module.algorithm = conv
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.train()


def code_noise(depth: int, shape: Sequence[int], generator: torch.Generator, scale: float = 0.1) -> Tensor:
    """The official DIP input: ``U(0, 1) · 0.1`` of ``depth`` channels (``get_noise(..., 'noise')``)."""
    return torch.rand((1, depth, *shape), generator=generator) * scale


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is fast here: CPUs with AVX512-BF16/AMX (oneDNN), never CUDA (TF32 there).

    ``BENCH_BF16=on`` / ``off`` overrides the detection (e.g. to reproduce another machine's numbers).
    """
    if device.type != "cpu":
        return False
    forced = os.environ.get("BENCH_BF16", "").strip().lower()
    if forced in ("on", "1", "true", "off", "0", "false"):
        return forced in ("on", "1", "true")
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def noise_buffer(depth: int, shape: Sequence[int], device: torch.device, channels_last: bool,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """A buffer for the per-iteration input perturbation, in the layout the net runs in.

    Drawn contiguously (``(1, H, W, C)`` viewed as channels-last ``(1, C, H, W)``):
    the CPU normal sampler is vectorised only for contiguous tensors, ~7× faster.
    """
    h, w = shape
    if channels_last:
        return torch.empty(1, h, w, depth, device=device, dtype=dtype).permute(0, 3, 1, 2)
    return torch.empty(1, depth, h, w, device=device, dtype=dtype)


def fill_normal(buffer: Tensor, generator: torch.Generator) -> Tensor:
    """Fill ``buffer`` (from :func:`noise_buffer`) with N(0, 1) draws in its storage order."""
    return draws.normal_(buffer, generator)
