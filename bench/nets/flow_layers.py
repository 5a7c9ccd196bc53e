"""Glow building blocks shared by the flow prior, SRFlow-style and DeFlow networks.

Every layer maps ``x ↦ (y, log|det ∂y/∂x|)`` per sample and has an exact
``inverse``. :func:`gaussian_log_prob` and :func:`bits_per_dim` turn latents
into likelihoods.

Example:
    >>> import torch
    >>> step = FlowStep(4, hidden=8).eval()
    >>> x = torch.randn(2, 4, 6, 6)
    >>> y, logdet = step(x)
    >>> back, _ = step.inverse(y)
    >>> bool(torch.allclose(back, x, atol=1e-5)), tuple(logdet.shape)
    (True, (2,))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Per-sample sum of ``log N(z; mean, exp(log_scale)²)``."""
    lp = -0.5 * (LOG_2PI + 2 * log_scale + ((z - mean) * torch.exp(-log_scale)) ** 2)
    return lp.flatten(1).sum(1)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + b)·exp(s)``, initialised from the first training batch.

    >>> layer = ActNorm(3).train()
    >>> y, logdet = layer(torch.randn(8, 3, 4, 4))
    >>> bool(layer.initialized), bool(y.mean(dim=(0, 2, 3)).abs().max() < 1e-5)
    (True, True)
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        # a buffer so that loaded checkpoints never re-initialise
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.bias.data.copy_(-mean)
        self.log_scale.data.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._init(x)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.log_scale.sum() * y.shape[2] * y.shape[3]
        return y * torch.exp(-self.log_scale) - self.bias, logdet.expand(y.shape[0])


class InvConv1x1(nn.Module):
    """Invertible 1×1 convolution, LU-parameterised: ``log|det| = H·W·Σ log|s|``.

    >>> layer = InvConv1x1(4)
    >>> x = torch.randn(1, 4, 3, 3)
    >>> bool(torch.allclose(layer.inverse(layer(x)[0])[0], x, atol=1e-5))
    True
    """

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = self.log_s.sum() * x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight()[:, :, None, None]), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.log_s.sum() * y.shape[2] * y.shape[3]
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(y, w_inv[:, :, None, None]), logdet.expand(y.shape[0])


def zero_conv(c_in: int, c_out: int, kernel: int = 3) -> nn.Conv2d:
    """A ``kernel``×``kernel`` convolution with zero weights and bias: layers built on it start as the identity."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class AffineCoupling(nn.Module):
    """``y_b = (x_b + t(x_a))·sigmoid(r(x_a) + 2)``; net 3×3 conv → ReLU → 1×1 → ReLU → 3×3 (zero init).

    The sigmoid scale (as in Glow's code) keeps the inverse well conditioned;
    zero initialisation makes every step start close to the identity.

    >>> layer = AffineCoupling(4, hidden=8)
    >>> x = torch.randn(1, 4, 3, 3)
    >>> y, logdet = layer(x)
    >>> bool(torch.allclose(layer.inverse(y)[0], x, atol=1e-5)), tuple(logdet.shape)
    (True, (1,))
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.half = channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.half, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            zero_conv(hidden, 2 * (channels - self.half)),
        )

    def _shift_scale(self, xa: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(xa)
        shift, raw = h[:, 0::2], h[:, 1::2]
        return shift, torch.sigmoid(raw + 2.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        shift, scale = self._shift_scale(xa)
        yb = (xb + shift) * scale
        return torch.cat([xa, yb], 1), torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        ya, yb = y[:, : self.half], y[:, self.half :]
        shift, scale = self._shift_scale(ya)
        xb = yb / scale - shift
        return torch.cat([ya, xb], 1), -torch.log(scale).flatten(1).sum(1)


class FlowStep(nn.Module):
    """ActNorm → invertible 1×1 conv → affine coupling (example: the module docstring)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels), AffineCoupling(channels, hidden)])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = y.new_zeros(y.shape[0])
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y)
            total = total + ld
        return y, total


def bits_per_dim(log_p: Tensor, dims: int) -> Tensor:
    """Discrete bits/dim of 8-bit data from the continuous ``log p`` of the [0, 1]-scaled image."""
    return -log_p / (dims * math.log(2)) + 8.0

