"""DeFlow's building blocks: configuration, conditional flow layers, the conditioning encoder, the domain shift.

The network that assembles them is :class:`bench.nets.deflow.DeFlowNet` (its
module docstring explains the design). Every conditional layer maps
``(z, f) ↦ (z', log|det|)`` and back, with ``f`` the conditioning features.

Example:
    >>> import torch
    >>> step = CondFlowStep(12, cond_channels=4, hidden=8)
    >>> z, f = torch.randn(1, 12, 4, 4), torch.randn(1, 4, 4, 4)
    >>> y, _ = step(z, f)
    >>> bool(torch.allclose(step.inverse(y, f)[0], z, atol=1e-5))
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench import draws
from bench.nets.flow_layers import LOG_2PI, ActNorm, InvConv1x1, gaussian_log_prob, zero_conv

Tensor = torch.Tensor


# --------------------------------------------------------------------------- configuration


@dataclass
class DeFlowConfig:
    """Architecture of :class:`DeFlowNet` and the batch size (per domain) it was designed for.

    ``levels`` (L) squeezes, ``steps`` (K) conditional flow steps per level,
    ``hidden`` channels in the coupling/injector nets; the conditioning encoder
    has ``cond_hidden`` channels and outputs ``cond_channels`` feature maps
    from the image downsampled ``cond_downscale``× (plus ``cond_noise``
    Gaussian noise in training); ``base_downscale``: the subtracted base (0:
    none); ``coupling``: ``conditional`` (nets see ``f`` only) or ``affine``
    (SRFlow/DeFlow: ``z_a`` and ``f``), see the module docstring.

    >>> DeFlowConfig(levels=3).multiple
    16
    """

    levels: int = 3
    steps: int = 4
    hidden: int = 64
    cond_hidden: int = 32
    cond_channels: int = 16
    cond_downscale: int = 4
    base_downscale: int = 16
    cond_noise: float = 0.03
    coupling: str = "conditional"
    in_channels: int = 3
    batch: int = 8

    def __post_init__(self) -> None:
        if self.coupling not in ("conditional", "affine"):
            raise ValueError(f"coupling={self.coupling!r} must be 'conditional' or 'affine'")
        if self.base_downscale < 0:
            raise ValueError(f"base_downscale={self.base_downscale} must be >= 0 (0: no base)")
        for name in ("levels", "steps", "hidden", "cond_hidden", "cond_channels", "cond_downscale", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (squeezes and the conditioning downscale)."""
        return math.lcm(2**self.levels, self.cond_downscale, max(self.base_downscale, 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeFlowConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown DeFlow config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


# "official" mirrors the paper's K = 16, L = 3 and SRFlow/DeFlow's affine couplings (its conditioning
# encoder is an RRDB net, ours a small conv net; its joint shift is 192×192 per 8×8 block, a GPU-sized
# likelihood; not trained here). "cpu" (~10-15 min
# on one core) and "tiny" (tests and examples) use L = 2: the shift is joint over 4×4 blocks (D = 48),
# cheap on a CPU (a 192-dimensional one made a CPU step ~5× slower; an L = 3 tiny flow with a
# rank-32 + diagonal shift instead did not learn the noise spectrum).
CONFIGS: dict[str, DeFlowConfig] = {
    "official": DeFlowConfig(levels=3, steps=16, hidden=64, cond_hidden=64, cond_channels=32, batch=8,
                             coupling="affine"),
    "cpu": DeFlowConfig(levels=2, steps=3, hidden=48, cond_hidden=32, cond_channels=16, batch=8),
    "tiny": DeFlowConfig(levels=2, steps=1, hidden=16, cond_hidden=16, cond_channels=8, batch=4),
}


def get_config(name: str) -> DeFlowConfig:
    """A copy of the named configuration (``official``, ``cpu``, ``tiny``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown DeFlow config '{name}'; choose one of {', '.join(CONFIGS)}")
    return DeFlowConfig(**CONFIGS[name].to_dict())


# --------------------------------------------------------------------------- conditional layers


def small_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    """3×3 conv → ReLU → 1×1 → ReLU → zero-initialised 3×3: every conditional layer starts as the identity."""
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                         nn.ReLU(), zero_conv(hidden, c_out))


def _shift_and_scale(h: Tensor) -> tuple[Tensor, Tensor]:
    # bounded shift and a scale in [0.25, 1) (Glow's sigmoid, floored): translated latents lie off the
    # training data, and an unbounded inverse (÷ scale → 0) overflowed to NaN there
    return 4.0 * torch.tanh(h[:, 0::2] / 4.0), 0.25 + 0.75 * torch.sigmoid(h[:, 1::2] + 2.0)


class CondAffineInjector(nn.Module):
    """``z ↦ (z + t(f))·s(f)``: an affine map whose parameters depend on the conditioning only.

    >>> layer, z, f = CondAffineInjector(4, 2, 8), torch.randn(1, 4, 3, 3), torch.randn(1, 2, 3, 3)
    >>> bool(torch.allclose(layer.inverse(layer(z, f)[0], f)[0], z, atol=1e-5))
    True
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int):
        super().__init__()
        self.net = small_net(cond_channels, 2 * channels, hidden)

    def forward(self, z: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = _shift_and_scale(self.net(cond))
        return (z + shift) * scale, torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = _shift_and_scale(self.net(cond))
        return y / scale - shift, -torch.log(scale).flatten(1).sum(1)


class CondAffineCoupling(nn.Module):
    """``z_b ↦ (z_b + t)·s``, ``t, s`` from the conditioning ``f`` (``conditional``) or ``(z_a, f)`` (``affine``).

    ``affine`` is SRFlow/DeFlow's coupling; ``conditional`` (the default) keeps
    the whole flow affine in the image given ``f``, see :mod:`bench.nets.deflow`.

    >>> layer, z, f = CondAffineCoupling(4, 2, 8, "affine"), torch.randn(1, 4, 3, 3), torch.randn(1, 2, 3, 3)
    >>> bool(torch.allclose(layer.inverse(layer(z, f)[0], f)[0], z, atol=1e-5))
    True
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, mode: str = "conditional"):
        super().__init__()
        self.half = channels // 2
        self.sees_za = mode == "affine"
        self.net = small_net(cond_channels + (self.half if self.sees_za else 0), 2 * (channels - self.half), hidden)

    def _shift_and_scale(self, za: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        return _shift_and_scale(self.net(torch.cat([za, cond], 1) if self.sees_za else cond))

    def forward(self, z: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        za, zb = z[:, : self.half], z[:, self.half :]
        shift, scale = self._shift_and_scale(za, cond)
        return torch.cat([za, (zb + shift) * scale], 1), torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        ya, yb = y[:, : self.half], y[:, self.half :]
        shift, scale = self._shift_and_scale(ya, cond)
        return torch.cat([ya, yb / scale - shift], 1), -torch.log(scale).flatten(1).sum(1)


class CondFlowStep(nn.Module):
    """ActNorm → invertible 1×1 conv → conditional affine injector → conditional affine coupling.

    Example: the module docstring.
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, coupling: str = "conditional"):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.conv = InvConv1x1(channels)
        self.injector = CondAffineInjector(channels, cond_channels, hidden)
        self.coupling = CondAffineCoupling(channels, cond_channels, hidden, coupling)

    def forward(self, z: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        z, ld1 = self.actnorm(z)
        z, ld2 = self.conv(z)
        z, ld3 = self.injector(z, cond)
        z, ld4 = self.coupling(z, cond)
        return z, ld1 + ld2 + ld3 + ld4

    def inverse(self, y: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        y, ld4 = self.coupling.inverse(y, cond)
        y, ld3 = self.injector.inverse(y, cond)
        y, ld2 = self.conv.inverse(y)
        y, ld1 = self.actnorm.inverse(y)
        return y, ld1 + ld2 + ld3 + ld4


@dataclass
class Condition:
    """What the flow is conditioned on: the upsampled low-resolution image and encoder features per level.

    >>> cond = ConditionEncoder(get_config("tiny"))(torch.rand(1, 3, 16, 16))
    >>> tuple(cond.base.shape), [tuple(f.shape) for f in cond.feats]
    ((1, 3, 16, 16), [(1, 8, 8, 8), (1, 8, 4, 4)])
    """

    base: Tensor
    feats: list[Tensor]


class ConditionEncoder(nn.Module):
    """Image → :class:`Condition`: features of the image area-downsampled ``cond_downscale``×.

    ``base`` (the image area-downsampled ``base_downscale``× and upsampled back,
    bilinear) is subtracted before the flow: a shift that is fixed given the
    image, so it is volume preserving, and the flow models the detail ``x − base``.
    Example: :class:`Condition`.
    """

    def __init__(self, config: DeFlowConfig):
        super().__init__()
        self.config = config
        c, hid = config.in_channels, config.cond_hidden
        self.net = nn.Sequential(nn.Conv2d(c, hid, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                 nn.Conv2d(hid, hid, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                 nn.Conv2d(hid, config.cond_channels, 3, padding=1, padding_mode="replicate"))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Condition:
        low = F.avg_pool2d(x, self.config.cond_downscale)  # averaging removes most of the noise
        if self.training and self.config.cond_noise:
            # what averaging leaves of the degradation would let the priors tell the domains apart and
            # explain the noise by their own σ (nothing left for the shift); noise on both hides it
            low = low + self.config.cond_noise * draws.randn(low.shape, generator).to(low.device)
        h, w = x.shape[-2:]
        if self.config.base_downscale:
            coarse = F.avg_pool2d(x, self.config.base_downscale)
            base = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        else:
            base = torch.full_like(x, 0.5)
        feats = self.net(low - 0.5)
        return Condition(base, [
            F.interpolate(feats, size=(h >> (lv + 1), w >> (lv + 1)), mode="bilinear", align_corners=False,
                          antialias=True)
            for lv in range(self.config.levels)
        ])


class DomainShift(nn.Module):
    """The degraded domain's shift ``u ~ N(m, ΣΣᵀ)``, joint over all latents of one top-level position.

    The latents are gathered per ``2^L × 2^L`` pixel block (the finest split's
    ``4^(L-1)`` positions, the next one's ``4^(L-2)``, ..., one top position:
    ``D = in_channels·4^L`` numbers per block). Clean: ``z ~ N(μ, diag σ²)``;
    degraded: ``z = μ + σ·ε + u`` with ``u`` independent of ``ε``, i.e.
    ``N(μ + m, diag σ² + ΣΣᵀ)`` per block, with a learned mean ``m`` (D,) and a
    full factor ``Σ`` (D×D) shared by all blocks, started at 0.2·I (``Σ = 0`` is a
    stationary point of the likelihood; ActNorm makes latents unit-scale at the
    start). Additive in ``z``, so the noise level does not follow the clean
    content's σ (tiny in flat regions).

    >>> shift = DomainShift([6], 12)  # L = 2: one split of 6 channels (2×2 positions per block), top of 12
    >>> latents = [torch.zeros(1, 6, 4, 4), torch.zeros(1, 12, 2, 2)]
    >>> [tuple(u.shape) for u in shift.sample(latents, 1.0, torch.Generator().manual_seed(0))]
    [(1, 6, 4, 4), (1, 12, 2, 2)]
    """

    def __init__(self, split_channels: list[int], top_channels: int):
        super().__init__()
        self.split_channels, self.top_channels = list(split_channels), top_channels
        self.factors = [2 ** (len(split_channels) - level) for level in range(len(split_channels))]
        dim = sum(c * f * f for c, f in zip(split_channels, self.factors)) + top_channels
        self.mean_shift = nn.Parameter(torch.zeros(dim))
        self.cov_shift = nn.Parameter(0.2 * torch.eye(dim))

    def gather(self, latents: list[Tensor]) -> Tensor:
        """Per-level latents (finest split first, top last) → (B, D, H/2^L, W/2^L)."""
        parts = [F.pixel_unshuffle(z, f) for z, f in zip(latents[:-1], self.factors)]
        return torch.cat([*parts, latents[-1]], 1)

    def scatter(self, blocks: Tensor) -> list[Tensor]:
        """Inverse of :meth:`gather`."""
        sizes = [c * f * f for c, f in zip(self.split_channels, self.factors)] + [self.top_channels]
        parts = blocks.split(sizes, 1)
        return [F.pixel_shuffle(p, f) for p, f in zip(parts[:-1], self.factors)] + [parts[-1]]

    def log_prob(self, latents: list[Tensor], priors: list[Tensor], degraded: Tensor) -> Tensor:
        """Per-sample log density of the latents under their domain's law (priors: μ, log σ interleaved)."""
        out = sum(gaussian_log_prob(z, p[:, 0::2], p[:, 1::2]) for z, p in zip(latents, priors))
        index = degraded.nonzero().flatten()
        if len(index) == 0:
            return out
        centred = self.gather([(z - p[:, 0::2])[index] for z, p in zip(latents, priors)])
        variance = self.gather([torch.exp(2 * p[index, 1::2]) for p in priors])
        b, d, h, w = centred.shape
        centred = (centred - self.mean_shift.view(1, d, 1, 1)).permute(0, 2, 3, 1).reshape(-1, d, 1)
        cov = torch.diag_embed(variance.permute(0, 2, 3, 1).reshape(-1, d) + 1e-6) + self.cov_shift @ self.cov_shift.T
        chol = torch.linalg.cholesky(cov)
        whitened = torch.linalg.solve_triangular(chol, centred, upper=False)
        per_block = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) + whitened.pow(2).flatten(1).sum(1)
        degraded_lp = -0.5 * (d * h * w * LOG_2PI + per_block.view(b, h * w).sum(1))
        return out.index_put((index,), degraded_lp)

    def sample(self, latents: list[Tensor], heat: float, generator: torch.Generator | None) -> list[Tensor]:
        """Per-level ``u = m + heat·Σ n`` shaped like ``latents``; ``n ~ N(0, I)`` drawn on the CPU (``generator``)."""
        top = latents[-1]
        noise = draws.randn((top.shape[0], self.cov_shift.shape[0], *top.shape[-2:]), generator)
        noise = noise.to(self.cov_shift.device)
        correlated = torch.einsum("ij,bjhw->bihw", self.cov_shift, noise)
        return self.scatter(self.mean_shift.view(1, -1, 1, 1) + heat * correlated)
