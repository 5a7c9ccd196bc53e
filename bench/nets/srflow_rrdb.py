"""SRFlow's low-resolution encoder: the ESRGAN RRDB network, with the official release's module names.

:meth:`RRDBNet.features` returns the feature maps SRFlow conditions on
(:mod:`bench.nets.srflow`).

Example:
    >>> import torch
    >>> net = RRDBNet(nf=8, nb=2, gc=4, scale=4)
    >>> feats = net.features(torch.rand(1, 3, 4, 4), blocks=(0,))
    >>> tuple(feats["out"].shape), tuple(feats[1.0].shape)
    ((1, 3, 16, 16), (1, 16, 4, 4))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs, residual scaled by 0.2 (ESRGAN).

    >>> tuple(ResidualDenseBlock(8, 4)(torch.rand(1, 8, 5, 5)).shape)
    (1, 8, 5, 5)
    """

    def __init__(self, nf: int, gc: int):
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", nn.Conv2d(nf + (i - 1) * gc, gc, 3, 1, 1))
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        for i in range(1, 6):  # ESRGAN init: Kaiming scaled by 0.1 keeps the residual path small
            conv = getattr(self, f"conv{i}")
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            conv.bias.data.zero_()

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block.

    >>> tuple(RRDB(8, 4)(torch.rand(1, 8, 5, 5)).shape)
    (1, 8, 5, 5)
    """

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator; :meth:`features` returns the maps SRFlow conditions on (example: the module docstring)."""

    def __init__(self, nf: int, nb: int, gc: int, scale: int):
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconv2 = nn.Conv2d(nf, nf, 3, 1, 1)
        if scale >= 8:
            self.upconv3 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def features(self, lr: Tensor, blocks: tuple[int, ...]) -> dict[float, Tensor]:
        """Feature maps keyed by their scale relative to ``lr`` (0.5, 1, 2, 4[, 8]) plus ``"out"``."""
        fea = self.conv_first(lr)
        stacked = []
        for idx, block in enumerate(self.RRDB_trunk):
            fea = block(fea)
            if idx in blocks:
                stacked.append(fea)
        last_lr = fea + self.trunk_conv(fea)
        out: dict[Any, Tensor] = {1.0: last_lr}
        fea = last_lr
        ups = [self.upconv1, self.upconv2] + ([self.upconv3] if self.scale >= 8 else [])
        for i, conv in enumerate(ups):
            pre = conv(F.interpolate(fea, scale_factor=2, mode="nearest"))
            out[float(2 ** (i + 1))] = pre  # the release conditions on the pre-activation map
            fea = F.leaky_relu(pre, 0.2)
        out["out"] = self.conv_last(F.leaky_relu(self.HRconv(fea), 0.2))
        out[0.5] = F.interpolate(
            last_lr, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True
        )
        if stacked:
            concat = torch.cat(stacked, 1)
            for key in [k for k in out if k != "out"]:
                out[key] = torch.cat([out[key], F.interpolate(concat, size=out[key].shape[-2:])], 1)
        return out
