"""DeFlow (Wolf et al., CVPR 2021): a conditional flow whose latent space is shared by two domains.

Every latent (the split-off halves of levels 1..L-1, finest first, and the top
latent last) has a conditional prior ``N(μ(f), diag σ(f)²)`` computed from the
conditioning features ``f`` only; in standardised coordinates
``ε = (z − μ)/σ`` clean images are ``N(0, I)``, as in DeFlow. A degraded
image's latents are the clean ones plus an independent Gaussian ``u``
(:class:`DomainShift`). Unlike DeFlow's per-level shifts, ``u`` is one joint
Gaussian over all latents of a top-level position (a 2^L × 2^L pixel block:
``D = 3·4^L`` numbers, every level's positions inside it), with a full D×D
factor: white pixel noise reaches every level of a flow that is not
orthogonal, with strong correlations between levels, and independent
per-level shifts decoded to noise with far too much low-frequency power
(measured: the paired latent differences of one noisy image decode to the
right spectrum; the same per-level covariances drawn independently do not).
The priors do not see the kept half of the latent: it is noisy for degraded
inputs, and a prior that saw it would explain the noise by its own σ.

The couplings are conditional on ``f`` only (``coupling="conditional"``, the
default), so the flow is affine in the image given its conditioning and
``f(y) − f(x)`` is the same linear map of ``y − x`` wherever the content is:
with SRFlow/DeFlow's ``affine`` coupling (its net also sees ``z_a``) the
latent image of a noise pattern depends on the content under it, and noise
``u`` added to a clean image's latents decoded to much more (and coarser)
noise than the degraded folder has. The content model is weaker (a
conditional Gaussian per block); what DeFlow needs here is the degradation.

The flow is conditioned on the image downsampled ``cond_downscale``× by area
averaging (which divides i.i.d. noise by ``cond_downscale``, so the
conditioning is nearly degradation-free, the role of DeFlow's bicubic,
noise-augmented conditioning): features of a small conv encoder are injected
into every step (affine injector and coupling) and into the priors. The image
averaged down ``base_downscale``× and upsampled back is subtracted before the
flow, a volume-preserving shift fixed by the conditioning, so the flow models
the detail and the two folders' different coarse content does not leak into
the domain shift. It is coarser than the conditioning on purpose (16×, JPEG's
4:2:0 colour block): whatever the base explains is never modelled, and 4× and
8× bases swallowed the low-frequency part of the degradation (JPEG's
subsampled-chroma errors), which translations then lacked. Bits/dim are those
of ``p(x | x↓)``.

Translation clean → degraded: encode with the clean label, add
``u = m + heat · Σ n`` (``n ~ N(0, I)`` from the caller's generator, one
``D``-vector per top-level position) to the latents, decode with the clean
image's conditioning.

Example:
    >>> import torch
    >>> net = DeFlowNet(get_config("tiny")).eval()
    >>> x = torch.rand(2, 3, 16, 16)
    >>> eps, logp, cond = net.encode(x, degraded=torch.tensor([False, True]))
    >>> [tuple(e.shape) for e in eps]
    [(2, 6, 8, 8), (2, 24, 4, 4)]
    >>> bool(torch.allclose(net.decode(eps, cond), x, atol=1e-4))
    True
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._flow import LOG_2PI, ActNorm, InvConv1x1, bits_per_dim, gaussian_log_prob, zero_conv

Tensor = torch.Tensor
log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "restoration-bench/deflow-v1"
TRAIN_HINT = (
    "train one with `bench train deflow --clean DIR --degraded DIR --out FILE` "
    "and pass --set deflow.checkpoint=FILE"
)


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


def _small_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    # zero-initialised output: every conditional layer starts as the identity
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                         nn.ReLU(), zero_conv(hidden, c_out))


def _shift_and_scale(h: Tensor) -> tuple[Tensor, Tensor]:
    # bounded shift and a scale in [0.25, 1) (Glow's sigmoid, floored): translated latents lie off the
    # training data, and an unbounded inverse (÷ scale → 0) overflowed to NaN there
    return 4.0 * torch.tanh(h[:, 0::2] / 4.0), 0.25 + 0.75 * torch.sigmoid(h[:, 1::2] + 2.0)


class CondAffineInjector(nn.Module):
    """``z ↦ (z + t(f))·s(f)``: an affine map whose parameters depend on the conditioning only."""

    def __init__(self, channels: int, cond_channels: int, hidden: int):
        super().__init__()
        self.net = _small_net(cond_channels, 2 * channels, hidden)

    def forward(self, z: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = _shift_and_scale(self.net(cond))
        return (z + shift) * scale, torch.log(scale).flatten(1).sum(1)

    def inverse(self, y: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = _shift_and_scale(self.net(cond))
        return y / scale - shift, -torch.log(scale).flatten(1).sum(1)


class CondAffineCoupling(nn.Module):
    """``z_b ↦ (z_b + t)·s``, ``t, s`` from the conditioning ``f`` (``conditional``) or ``(z_a, f)`` (``affine``).

    ``affine`` is SRFlow/DeFlow's coupling; ``conditional`` (the default) keeps
    the whole flow affine in the image given ``f``, see the module docstring.
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, mode: str = "conditional"):
        super().__init__()
        self.half = channels // 2
        self.sees_za = mode == "affine"
        self.net = _small_net(cond_channels + (self.half if self.sees_za else 0), 2 * (channels - self.half), hidden)

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
    """ActNorm → invertible 1×1 conv → conditional affine injector → conditional affine coupling."""

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
    """What the flow is conditioned on: the upsampled low-resolution image and encoder features per level."""

    base: Tensor
    feats: list[Tensor]


class ConditionEncoder(nn.Module):
    """Image → :class:`Condition`: features of the image area-downsampled ``cond_downscale``×.

    ``base`` (the image area-downsampled ``base_downscale``× and upsampled back,
    bilinear) is subtracted before the flow: a shift that is fixed given the
    image, so it is volume preserving, and the flow models the detail ``x − base``.
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
            low = low + self.config.cond_noise * torch.randn(low.shape, generator=generator).to(low.device)
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
        noise = torch.randn((top.shape[0], self.cov_shift.shape[0], *top.shape[-2:]), generator=generator)
        noise = noise.to(self.cov_shift.device)
        correlated = torch.einsum("ij,bjhw->bihw", self.cov_shift, noise)
        return self.scatter(self.mean_shift.view(1, -1, 1, 1) + heat * correlated)


class DeFlowNet(nn.Module):
    """Conditional multi-scale flow with a domain shift joint over all its latents (see :class:`DomainShift`)."""

    def __init__(self, config: DeFlowConfig):
        super().__init__()
        self.config = config
        self.encoder = ConditionEncoder(config)
        self.levels = nn.ModuleList()
        self.split_priors = nn.ModuleList()
        split_channels: list[int] = []
        c, cc = config.in_channels, config.cond_channels
        for level in range(config.levels):
            c *= 4
            self.levels.append(nn.ModuleList([CondFlowStep(c, cc, config.hidden, config.coupling)
                                              for _ in range(config.steps)]))
            if level < config.levels - 1:
                kept = c // 2
                # split prior N(μ(f), σ(f)) from the conditioning only: were it to see the kept half, which is
                # noisy for degraded inputs, σ would explain the noise and the domain shift would learn nothing
                self.split_priors.append(_small_net(cc, 2 * (c - kept), config.hidden))
                split_channels.append(c - kept)
                c = kept
        # conditional top prior N(μ(f), σ(f)), as in SRFlow: it must predict the coarse content from the
        # conditioning well, or the domain shifts absorb content differences between the two folders
        self.top_prior = _small_net(cc, 2 * c, config.hidden)
        self.shift = DomainShift(split_channels, c)

    def _check(self, x: Tensor) -> None:
        m = self.config.multiple
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"DeFlow input must be (N, {self.config.in_channels}, H, W) with H, W multiples "
                             f"of {m}; got {tuple(x.shape)} (pad with pad_to_multiple)")

    def encode(self, x: Tensor, degraded: Tensor,
               generator: torch.Generator | None = None) -> tuple[list[Tensor], Tensor, Condition]:
        """Standardised latents ``ε`` (finest split first, top last), ``log p(x | domain)`` and the conditioning.

        ``degraded`` is a bool tensor (B,): which samples belong to the degraded domain.
        """
        self._check(x)
        cond = self.encoder(x, generator)
        feats = cond.feats
        z = x - cond.base
        log_p = x.new_zeros(x.shape[0])
        latents: list[Tensor] = []
        priors: list[Tensor] = []
        for level, steps in enumerate(self.levels):
            z = F.pixel_unshuffle(z, 2)
            for step in steps:
                z, ld = step(z, feats[level])
                log_p = log_p + ld
            if level < len(self.split_priors):
                kept, z_split = z[:, : z.shape[1] // 2], z[:, z.shape[1] // 2 :]
                latents.append(z_split)
                priors.append(self.split_priors[level](feats[level]))
                z = kept
        latents.append(z)
        priors.append(self.top_prior(feats[-1]))
        log_p = log_p + self.shift.log_prob(latents, priors, degraded)
        return [_standardise(z, p) for z, p in zip(latents, priors)], log_p, cond

    def decode(self, eps: list[Tensor], cond: Condition, shifts: list[Tensor] | None = None) -> Tensor:
        """The image of standardised latents ``eps`` (plus ``z``-space ``shifts`` per level) under ``cond``."""
        feats = cond.feats
        if len(eps) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} latent tensors, got {len(eps)}")
        shifts = shifts if shifts is not None else [torch.zeros_like(e) for e in eps]
        z = _unstandardise(eps[-1], self.top_prior(feats[-1])) + shifts[-1]
        for level in reversed(range(len(self.levels))):
            if level < len(self.split_priors):
                prior = self.split_priors[level](feats[level])
                z = torch.cat([z, _unstandardise(eps[level], prior) + shifts[level]], 1)
            for step in reversed(self.levels[level]):
                z, _ = step.inverse(z, feats[level])
            z = F.pixel_shuffle(z, 2)
        return z + cond.base

    @torch.no_grad()
    def translate(self, clean: Tensor, heat: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Clean → degraded (any size; padded by reflection to the flow's multiple and cropped back).

        Noise is drawn from ``generator`` (one ``D``-vector per top-level position); not clipped or quantised.
        """
        h, w = clean.shape[-2:]
        padded = pad_to_multiple(clean, self.config.multiple)
        eps, _, cond = self.encode(padded, torch.zeros(clean.shape[0], dtype=torch.bool, device=clean.device))
        shifts = self.shift.sample(eps, heat, generator)
        return self.decode(eps, cond, shifts)[..., :h, :w]


def _standardise(z: Tensor, prior: Tensor) -> Tensor:
    return (z - prior[:, 0::2]) * torch.exp(-prior[:, 1::2])


def _unstandardise(eps: Tensor, prior: Tensor) -> Tensor:
    return prior[:, 0::2] + torch.exp(prior[:, 1::2]) * eps


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad bottom/right so both sides are multiples of ``multiple`` (replicate where too small to reflect).

    >>> tuple(pad_to_multiple(torch.rand(1, 3, 70, 66), 8).shape)
    (1, 3, 72, 72)
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# --------------------------------------------------------------------------- checkpoints


def save_deflow(path: str | Path, net: DeFlowNet, extra: dict[str, Any] | None = None) -> None:
    """Write ``{"format", "config", "state_dict", ...extra}`` atomically (tensors and primitives only)."""
    from bench.checkpoints import save_checkpoint

    payload = {"format": CHECKPOINT_FORMAT, "config": net.config.to_dict(), "state_dict": net.state_dict()}
    payload.update(extra or {})
    save_checkpoint(payload, path)


def load_deflow(path: str | Path) -> tuple[DeFlowNet, dict[str, Any]]:
    """Load a DeFlow checkpoint with ``weights_only=True``; bad files raise :class:`CheckpointError`."""
    from bench.checkpoints import load_checkpoint
    from bench.errors import CheckpointError

    path = Path(path)
    try:
        data = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"DeFlow {err} Or {TRAIN_HINT}.") from None
    if data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'{path}' is not a DeFlow checkpoint (expected format {CHECKPOINT_FORMAT!r}); {TRAIN_HINT}."
        )
    try:
        net = DeFlowNet(DeFlowConfig.from_dict(dict(data["config"])))
        net.load_state_dict(data["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"DeFlow checkpoint '{path}' does not match its configuration ({first}); "
                              f"re-train it: {TRAIN_HINT}.") from None
    return net.eval(), data


# --------------------------------------------------------------------------- training


def nll_bits_per_dim(net: DeFlowNet, clean: Tensor, degraded: Tensor,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mean bits/dim of each domain's batch, dequantised with ``U(0, 1/256)`` (one joint flow pass)."""
    x = torch.cat([clean, degraded])
    noise = torch.rand(x.shape, generator=generator) if generator is not None else torch.full(x.shape, 0.5)
    labels = torch.arange(x.shape[0], device=x.device) >= clean.shape[0]
    _, log_p, _ = net.encode(x + noise.to(x.device) / 256.0, labels, generator)
    bpd = bits_per_dim(log_p, x[0].numel())
    return bpd[: clean.shape[0]].mean(), bpd[clean.shape[0] :].mean()


@torch.no_grad()
def effective_sigma(net: DeFlowNet, clean: Tensor, heat: float, seed: int = 0, batch: int = 16) -> float:
    """RMS of ``quantize(translate(x)) − x`` over the clean patches ``clean`` (a fixed noise seed)."""
    from bench.api import quantize

    was_training = net.training
    net.eval()
    generator = torch.Generator().manual_seed(seed)
    squared, count = 0.0, 0
    for chunk in clean.split(batch):
        residual = quantize(net.translate(chunk, heat, generator)) - chunk
        squared += float(residual.double().pow(2).sum())
        count += residual.numel()
    net.train(was_training)
    return math.sqrt(squared / max(count, 1))


@dataclass
class TrainOptions:
    """Options of :func:`train_deflow` (the ``bench train deflow`` flags)."""

    clean: tuple[str, ...]
    degraded: tuple[str, ...]
    out: str
    config: str = "cpu"
    steps: int = 5000
    batch: int | None = None
    patch: int = 48
    lr: float = 5e-4
    seed: int = 0
    max_minutes: float | None = None
    resume: bool = False
    save_every: int = 250
    val_fraction: float = 0.1
    val_patches: int = 32
    progress: bool = True


SHIFT_LR_FACTOR = 10.0


def make_optimizer(net: DeFlowNet, lr: float) -> torch.optim.Adam:
    """Adam; the domain shifts (few parameters that must travel far from their start) get a 10× step."""
    shift_ids = {id(p) for p in net.shift.parameters()}
    rest = [p for p in net.parameters() if id(p) not in shift_ids]
    return torch.optim.Adam([{"params": rest, "lr": lr},
                             {"params": list(net.shift.parameters()), "lr": lr * SHIFT_LR_FACTOR}])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, step: int, steps: int, elapsed: float,
                      max_minutes: float | None) -> None:
    """Cosine decay to 5 % over the run (steps or --max-minutes, whichever ends first): the NLL of
    the few shift parameters is noisy, and a decayed step lets the learned noise level settle."""
    progress = step / steps
    if max_minutes:
        progress = max(progress, elapsed / (60 * max_minutes))
    factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    for group, scale in zip(optimizer.param_groups, (1.0, SHIFT_LR_FACTOR)):
        group["lr"] = lr * scale * factor


def _load_domain(folders: tuple[str, ...], patch: int, val_fraction: float) -> tuple[list[Any], list[Any]]:
    from methods.flowprior import load_training_images, split_holdout

    images = [im for _, im in load_training_images(list(folders), patch)]
    train, val = split_holdout(images, val_fraction)
    if not train:
        import click

        raise click.UsageError(f"no training images of at least {patch}×{patch} px in {', '.join(folders)}")
    return train, val


def train_deflow(opts: TrainOptions) -> dict[str, Any]:
    """Train DeFlow on two unpaired folders by the NLL of both domains; returns the last log record.

    Writes a resumable checkpoint every ``save_every`` steps and at the end
    (with the effective noise level ``sigma_heat0``/``sigma_heat1`` measured on
    held-out clean patches) and a JSON-lines log next to ``out``.
    """
    from methods.flowprior import random_patches

    cfg = get_config(opts.config)
    batch = opts.batch or cfg.batch
    if opts.patch % cfg.multiple:
        raise ValueError(f"--patch {opts.patch} must be a multiple of {cfg.multiple} for config {opts.config}")
    out_path = Path(opts.out)
    log_path = out_path.with_name(out_path.name + ".log.jsonl")
    clean_train, clean_val = _load_domain(opts.clean, opts.patch, opts.val_fraction)
    degraded_train, degraded_val = _load_domain(opts.degraded, opts.patch, opts.val_fraction)
    fixed = torch.Generator().manual_seed(1234)
    val_clean = random_patches(clean_val, opts.val_patches, opts.patch, fixed) if clean_val else None
    val_degraded = random_patches(degraded_val, opts.val_patches, opts.patch, fixed) if degraded_val else None
    # the effective-σ estimate needs clean patches never trained on; without a split, training ones
    sigma_patches = val_clean if val_clean is not None else random_patches(clean_train, opts.val_patches,
                                                                             opts.patch, fixed)

    torch.manual_seed(opts.seed)  # weight initialisation (1×1 convs) is part of the run's seed
    generator = torch.Generator().manual_seed(opts.seed)
    net = DeFlowNet(cfg).train()
    optimizer = make_optimizer(net, opts.lr)
    step, elapsed = 0, 0.0
    if opts.resume and out_path.exists():
        net, state = load_deflow(out_path)
        net.train()
        cfg = net.config
        optimizer = make_optimizer(net, opts.lr)
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])  # --lr still wins: set every step
        step, elapsed = int(state.get("step", 0)), float(state.get("train_seconds", 0.0))
        if "generator" in state:
            generator.set_state(state["generator"])
        _echo(f"resumed {out_path} at step {step}")
    elif opts.resume:
        _echo(f"--resume: no checkpoint at {out_path} yet, starting from scratch")

    def save(record: dict[str, Any]) -> None:
        save_deflow(out_path, net, {
            "optimizer": optimizer.state_dict(), "step": step, "train_seconds": elapsed,
            "generator": generator.get_state(), "last": record,
            "effective_sigma": {"heat0": record["sigma_heat0"], "heat1": record["sigma_heat1"],
                                "source": "held-out clean patches" if val_clean is not None else "training patches"},
            "train": {"clean": [str(d) for d in opts.clean], "degraded": [str(d) for d in opts.degraded],
                      "config_name": opts.config, "batch": batch, "patch": opts.patch, "lr": opts.lr,
                      "seed": opts.seed, "clean_images": len(clean_train), "degraded_images": len(degraded_train)},
        })

    bar = None
    if opts.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=opts.steps, initial=step, desc="train deflow", unit="step", mininterval=2.0)
    record: dict[str, Any] = {}
    ema: list[float] | None = None
    start = time.perf_counter() - elapsed
    while step < opts.steps:
        clean = random_patches(clean_train, batch, opts.patch, generator)
        degraded = random_patches(degraded_train, batch, opts.patch, generator)
        bpd_clean, bpd_degraded = nll_bits_per_dim(net, clean, degraded, generator)
        loss = bpd_clean + bpd_degraded
        if not torch.isfinite(loss):
            raise FloatingPointError("DeFlow training diverged (non-finite NLL); resume from the last checkpoint "
                                     "with a lower --lr (--resume --lr ...)")
        set_learning_rate(optimizer, opts.lr, step, opts.steps, elapsed, opts.max_minutes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - start
        values = [bpd_clean.item(), bpd_degraded.item()]
        ema = values if ema is None else [0.95 * e + 0.05 * v for e, v in zip(ema, values)]
        if bar:
            bar.update(1)
            bar.set_postfix(clean=f"{ema[0]:.3f}", degraded=f"{ema[1]:.3f}", refresh=False)
        last = step >= opts.steps or (opts.max_minutes is not None and elapsed > 60 * opts.max_minutes)
        if step % opts.save_every == 0 or last:
            record = {"step": step, "seconds": round(elapsed, 1), "train_bpd_clean": round(ema[0], 4),
                      "train_bpd_degraded": round(ema[1], 4)}
            if val_clean is not None and val_degraded is not None:
                record.update(validation_bpd(net, val_clean, val_degraded))
            record["sigma_heat0"] = round(effective_sigma(net, sigma_patches, 0.0), 6)
            record["sigma_heat1"] = round(effective_sigma(net, sigma_patches, 1.0), 6)
            save(record)
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            (bar.write if bar else _echo)(json.dumps(record))
        if last:
            break
    if bar:
        bar.close()
    return record


@torch.no_grad()
def validation_bpd(net: DeFlowNet, clean: Tensor, degraded: Tensor, batch: int = 16) -> dict[str, float]:
    """Mean bits/dim of fixed validation patches of both domains (eval mode, dequantisation offset ½/256)."""
    was_training = net.training
    net.eval()
    totals = [0.0, 0.0]
    chunks = list(zip(clean.split(batch), degraded.split(batch)))
    for c, d in chunks:
        bc, bd = nll_bits_per_dim(net, c, d)
        totals[0] += bc.item() / len(chunks)
        totals[1] += bd.item() / len(chunks)
    net.train(was_training)
    return {"val_bpd_clean": round(totals[0], 4), "val_bpd_degraded": round(totals[1], 4)}


def _echo(message: str) -> None:
    import click

    click.echo(message)
