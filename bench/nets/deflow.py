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

Layers, configuration and the domain shift: :mod:`bench.nets.deflow_layers`;
training: :mod:`bench.training.deflow`; the degradation plugin: ``degradations/deflow.py``.

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

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.nets.deflow_layers import (
    CONFIGS,
    CondFlowStep,
    Condition,
    ConditionEncoder,
    DeFlowConfig,
    DomainShift,
    get_config,
    small_net,
)

Tensor = torch.Tensor
__all__ = ["CONFIGS", "CHECKPOINT_FORMAT", "TRAIN_HINT", "DeFlowConfig", "DeFlowNet", "get_config", "load_deflow",
           "pad_to_multiple", "save_deflow"]

CHECKPOINT_FORMAT = "restoration-bench/deflow-v1"
TRAIN_HINT = (
    "train one with `bench train deflow --clean DIR --degraded DIR --out FILE` "
    "and pass --set deflow.checkpoint=FILE"
)


class DeFlowNet(nn.Module):
    """Conditional multi-scale flow with a domain shift joint over all its latents (see :class:`DomainShift`).

    Example: the module docstring (encode, decode); ``net.translate(clean, heat, generator)`` degrades.
    """

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
                self.split_priors.append(small_net(cc, 2 * (c - kept), config.hidden))
                split_channels.append(c - kept)
                c = kept
        # conditional top prior N(μ(f), σ(f)), as in SRFlow: it must predict the coarse content from the
        # conditioning well, or the domain shifts absorb content differences between the two folders
        self.top_prior = small_net(cc, 2 * c, config.hidden)
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
