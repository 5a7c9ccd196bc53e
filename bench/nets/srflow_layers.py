"""SRFlow's flow layers with the official release's parameter names (``flow.py``, ``FlowStep.py``, ``Split.py``, ...).

They differ from :mod:`bench.nets.flow_layers` on purpose: an unconstrained
1×1 convolution, ActNorm'ed convolutions inside the couplings, an affine
injector, so that ``SRFlow_DF2K_*X.pth`` loads with ``strict=True``. Every
layer maps ``(z, logdet) ↦ (z', logdet')`` and back with ``reverse=True``.

Example:
    >>> import torch
    >>> step = FlowStep(12, cond_channels=8, hidden=8, eps=1e-4).eval()
    >>> z, ft = torch.randn(1, 12, 4, 4), torch.randn(1, 8, 4, 4)
    >>> y, logdet = step(z, torch.zeros(1), ft)
    >>> back, _ = step(y, logdet, ft, reverse=True)
    >>> bool(torch.allclose(back, z, atol=1e-4))
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.nets.flow_layers import LOG_2PI

Tensor = torch.Tensor


def _sum_chw(x: Tensor) -> Tensor:
    return x.flatten(1).sum(1)


class ActNorm2d(nn.Module):
    """Per-channel affine ``(x + bias)·exp(logs)``, data-initialised on the first training batch.

    Like the release, the "initialised" flag is a plain attribute (not in the
    state dict); a loaded model has non-zero biases and is not re-initialised.

    >>> layer = ActNorm2d(3).train()
    >>> y, _ = layer(torch.randn(8, 3, 4, 4))
    >>> layer.inited, bool(y.mean(dim=(0, 2, 3)).abs().max() < 1e-5)
    (True, True)
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.inited = False

    def _maybe_init(self, x: Tensor) -> None:
        if self.inited or not self.training:
            return
        self.inited = True
        if bool((self.bias != 0).any()):
            return
        with torch.no_grad():
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
            self.bias.data.copy_(-mean)
            self.logs.data.copy_(torch.log(1.0 / (std + 1e-6)))

    def forward(self, x: Tensor, logdet: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Any]:
        self._maybe_init(x)
        dlogdet = self.logs.sum() * x.shape[2] * x.shape[3]
        if not reverse:
            y = (x + self.bias) * torch.exp(self.logs)
            return y, None if logdet is None else logdet + dlogdet
        y = x * torch.exp(-self.logs) - self.bias
        return y, None if logdet is None else logdet - dlogdet


class InvertibleConv1x1(nn.Module):
    """Glow's invertible 1×1 convolution with an unconstrained (non-LU) weight, as released.

    >>> conv, x = InvertibleConv1x1(4), torch.randn(1, 4, 3, 3)
    >>> y, logdet = conv(x, torch.zeros(1))
    >>> bool(torch.allclose(conv(y, logdet, reverse=True)[0], x, atol=1e-5))
    True
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward(self, x: Tensor, logdet: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
        c = self.weight.shape[0]
        dlogdet = torch.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        if not reverse:
            return F.conv2d(x, self.weight.view(c, c, 1, 1)), logdet + dlogdet
        inverse = torch.inverse(self.weight.double()).float()  # double: inversion error stays < 1e-6
        return F.conv2d(x, inverse.view(c, c, 1, 1)), logdet - dlogdet


class NormConv2d(nn.Conv2d):
    """Bias-free conv followed by ActNorm (the release's ``flow.Conv2d``), N(0, 0.05²) init.

    >>> tuple(NormConv2d(3, 8)(torch.rand(1, 3, 5, 5)).shape)
    (1, 8, 5, 5)
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=False)
        self.weight.data.normal_(0.0, 0.05)
        self.actnorm = ActNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.actnorm(super().forward(x))[0]


class ZeroConv2d(nn.Conv2d):
    """Zero-initialised 3×3 conv with output scale ``exp(3·logs)`` (``flow.Conv2dZeros``).

    >>> float(ZeroConv2d(3, 4)(torch.rand(1, 3, 5, 5)).detach().abs().max())
    0.0
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, 1, 1)
        self.logs = nn.Parameter(torch.zeros(c_out, 1, 1))
        self.weight.data.zero_()
        self.bias.data.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * torch.exp(self.logs * 3.0)


def _coupling_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    # indices 0, 2, 4 carry parameters, as in the release (ReLUs at 1 and 3)
    return nn.Sequential(
        NormConv2d(c_in, hidden), nn.ReLU(), NormConv2d(hidden, hidden, 1), nn.ReLU(), ZeroConv2d(hidden, c_out)
    )


def _shift_scale(h: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    # "cross" split: even channels shift, odd channels scale; sigmoid(·+2) starts near identity
    return h[:, 0::2], torch.sigmoid(h[:, 1::2] + 2.0) + eps


class CondAffineSeparatedAndCond(nn.Module):
    """Affine injector ``(z + t(u))·s(u)`` then conditional coupling on the second half.

    >>> layer, z, ft = CondAffineSeparatedAndCond(4, 6, 8, 1e-4), torch.randn(1, 4, 3, 3), torch.randn(1, 6, 3, 3)
    >>> y, logdet = layer(z, torch.zeros(1), ft)
    >>> bool(torch.allclose(layer(y, logdet, ft, reverse=True)[0], z, atol=1e-5))
    True
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, eps: float):
        super().__init__()
        self.n_nn = channels // 2
        self.eps = eps
        self.fAffine = _coupling_net(self.n_nn + cond_channels, (channels - self.n_nn) * 2, hidden)
        self.fFeatures = _coupling_net(cond_channels, channels * 2, hidden)

    def forward(self, z: Tensor, logdet: Tensor, ft: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
        shift_ft, scale_ft = _shift_scale(self.fFeatures(ft), self.eps)
        if not reverse:
            z = (z + shift_ft) * scale_ft
            logdet = logdet + _sum_chw(torch.log(scale_ft))
        z1, z2 = z[:, : self.n_nn], z[:, self.n_nn :]
        shift, scale = _shift_scale(self.fAffine(torch.cat([z1, ft], 1)), self.eps)
        if not reverse:
            z2 = (z2 + shift) * scale
            return torch.cat([z1, z2], 1), logdet + _sum_chw(torch.log(scale))
        z2 = z2 / scale - shift
        z = torch.cat([z1, z2], 1) / scale_ft - shift_ft
        return z, logdet - _sum_chw(torch.log(scale)) - _sum_chw(torch.log(scale_ft))


class FlowStep(nn.Module):
    """ActNorm → invertible 1×1 conv → optional conditional coupling.

    Example: the module docstring.
    """

    def __init__(self, channels: int, cond_channels: int | None, hidden: int, eps: float):
        super().__init__()
        self.actnorm = ActNorm2d(channels)
        self.invconv = InvertibleConv1x1(channels)
        if cond_channels is not None:
            self.affine = CondAffineSeparatedAndCond(channels, cond_channels, hidden, eps)

    def forward(self, z: Tensor, logdet: Tensor, ft: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
        has_affine = hasattr(self, "affine")
        if not reverse:
            z, logdet = self.actnorm(z, logdet)
            z, logdet = self.invconv(z, logdet)
            if has_affine:
                z, logdet = self.affine(z, logdet, ft)
            return z, logdet
        if has_affine:
            z, logdet = self.affine(z, logdet, ft, reverse=True)
        z, logdet = self.invconv(z, logdet, reverse=True)
        return self.actnorm(z, logdet, reverse=True)


class Squeeze(nn.Module):
    """Space-to-depth by 2 (channel index = c·4 + 2·dy + dx).

    >>> x = torch.rand(1, 3, 4, 6)
    >>> tuple(Squeeze()(x).shape), bool(torch.equal(Squeeze()(Squeeze()(x), reverse=True), x))
    ((1, 12, 2, 3), True)
    """

    def forward(self, x: Tensor, reverse: bool = False) -> Tensor:
        b, c, h, w = x.shape
        if not reverse:
            x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
            return x.reshape(b, c * 4, h // 2, w // 2)
        x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c // 4, h * 2, w * 2)


def gaussian_logp(x: Tensor, mean: Tensor | None = None, logs: Tensor | None = None) -> Tensor:
    """Per-sample log-density of a diagonal Gaussian (standard when ``mean`` is None)."""
    if mean is None or logs is None:
        return _sum_chw(-0.5 * (x**2 + LOG_2PI))
    return _sum_chw(-0.5 * (2 * logs + (x - mean) ** 2 * torch.exp(-2 * logs) + LOG_2PI))


class Split2d(nn.Module):
    """Factor out half the channels with a learned Gaussian prior conditioned on the kept half.

    >>> split, z = Split2d(12), torch.randn(1, 12, 2, 2)
    >>> kept, logdet, eps = split.encode(z, torch.zeros(1))
    >>> bool(torch.allclose(split.decode(kept, eps), z, atol=1e-6)), kept.shape[1], eps.shape[1]
    (True, 6, 6)
    """

    def __init__(self, channels: int):
        super().__init__()
        self.consume = int(round(channels * 0.5))
        self.keep = channels - self.consume
        self.conv = ZeroConv2d(self.keep, self.consume * 2)

    def prior(self, z1: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(z1)
        return h[:, 0::2], h[:, 1::2]

    def encode(self, z: Tensor, logdet: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the kept half, the log-likelihood-updated logdet and the standardised eps."""
        z1, z2 = z[:, : self.keep], z[:, self.keep :]
        mean, logs = self.prior(z1)
        return z1, logdet + gaussian_logp(z2, mean, logs), (z2 - mean) * torch.exp(-logs)

    def decode(self, z1: Tensor, eps: Tensor) -> Tensor:
        mean, logs = self.prior(z1)
        return torch.cat([z1, mean + torch.exp(logs) * eps], 1)
