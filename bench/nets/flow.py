"""Glow-like multi-scale normalising flow with conditional split priors (Helminger et al.).

The prior of the ``flowprior`` method (layers: :mod:`bench.nets.flow_layers`). ``T_θ`` maps a latent ``u`` to an
image ``x``; :meth:`Flow.encode` computes ``T_θ⁻¹(x)`` and :meth:`Flow.decode`
computes ``T_θ(u)``, both with exact log-determinants. A latent is a list of
tensors: the halves split off at levels 1..L-1 (finest first) and the top
latent ``u_0`` last. Split-off latents have conditional base distributions
``N(μ(h_l), σ(h_l))`` from a context encoder on the kept half ``h_l``; the top
latent has learned per-channel ``μ, σ`` (or ``σ = 1`` for the MNIST config).

Images are in [0, 1]; the flow works on ``x - 0.5``. ``log_prob`` is the
continuous density of the [0, 1]-scaled image, so
``bits/dim = -log p / (D ln 2) + 8`` for 8-bit data dequantised with ``U(0, 1/256)``.

Example:
    >>> import torch
    >>> flow = Flow(FlowConfig(levels=2, steps=1, hidden=8)).eval()
    >>> x = torch.rand(2, 3, 16, 16)
    >>> zs, logp = flow.encode(x)
    >>> [tuple(z.shape) for z in zs]
    [(2, 6, 8, 8), (2, 24, 4, 4)]
    >>> bool(torch.allclose(flow.decode(zs), x, atol=1e-5))
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.nets.flow_layers import LOG_2PI, FlowStep, gaussian_log_prob, zero_conv

Tensor = torch.Tensor


@dataclass
class FlowConfig:
    """Architecture of the flow (and the training batch size it was designed for).

    ``context`` picks the split-prior encoder: ``"conv"`` is one zero-initialised
    3×3 conv (the paper's Sprites setting), ``"deep"`` is dropout then five 3×3
    convs with ReLUs, the last zero-initialised (the paper's DIV2K setting).
    ``top_scale`` is ``"learned"`` (``p(u_0) = N(μ, σ)``) or ``"unit"`` (``N(μ, 1)``).

    >>> FlowConfig(levels=2).multiple, get_config("div2k").context
    (4, 'deep')
    """

    levels: int = 3
    steps: int = 4
    hidden: int = 128
    in_channels: int = 3
    context: str = "conv"
    context_hidden: int = 64
    context_dropout: float = 0.2
    top_scale: str = "learned"
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("levels", "steps", "hidden", "in_channels", "context_hidden", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.context not in ("conv", "deep"):
            raise ValueError(f"context={self.context!r} must be 'conv' or 'deep'")
        if self.top_scale not in ("learned", "unit"):
            raise ValueError(f"top_scale={self.top_scale!r} must be 'learned' or 'unit'")
        if not 0 <= self.context_dropout < 1:
            raise ValueError(f"context_dropout={self.context_dropout} must be in [0, 1)")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (one 2×2 squeeze per level)."""
        return 2**self.levels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown flow config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


# Named configurations. The paper's three, plus "cpu": the default shipped
# checkpoint, sized for ~25 min of training on 2 CPU cores (see the model card).
CONFIGS: dict[str, FlowConfig] = {
    "div2k": FlowConfig(levels=3, steps=4, hidden=256, context="deep", context_hidden=128, batch=15),
    "sprites": FlowConfig(levels=3, steps=8, hidden=128, context="conv", batch=16),
    "mnist": FlowConfig(levels=1, steps=16, hidden=128, in_channels=1, context="conv", top_scale="unit", batch=16),
    "cpu": FlowConfig(levels=3, steps=4, hidden=64, context="conv", batch=16),
}


def get_config(name: str) -> FlowConfig:
    """A copy of the named configuration (``div2k``, ``sprites``, ``mnist``, ``cpu``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown flow config '{name}'; choose one of {', '.join(CONFIGS)}")
    return FlowConfig(**CONFIGS[name].to_dict())



class ContextEncoder(nn.Module):
    """``h_l ↦ (μ, log σ)`` of the split-off half; zero-initialised last layer (starts at N(0, 1)).

    >>> mean, log_scale = ContextEncoder(6, 6, FlowConfig())(torch.randn(1, 6, 4, 4))
    >>> tuple(mean.shape), float(log_scale.detach().abs().max())
    ((1, 6, 4, 4), 0.0)
    """

    def __init__(self, c_in: int, c_out: int, config: FlowConfig):
        super().__init__()
        if config.context == "conv":
            self.net: nn.Module = zero_conv(c_in, 2 * c_out)
        else:
            hid = config.context_hidden
            layers: list[nn.Module] = [nn.Dropout(config.context_dropout), nn.Conv2d(c_in, hid, 3, padding=1)]
            for _ in range(3):
                layers += [nn.ReLU(), nn.Conv2d(hid, hid, 3, padding=1)]
            layers += [nn.ReLU(), zero_conv(hid, 2 * c_out)]
            self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(h)
        return out[:, 0::2], out[:, 1::2]


class Flow(nn.Module):
    """Multi-scale flow: per level squeeze, K steps, then split (all but the last level).

    >>> flow = Flow(FlowConfig(levels=2, steps=1, hidden=8)).eval()
    >>> tuple(flow.log_prob(torch.rand(3, 3, 8, 8)).shape)
    (3,)
    """

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        c = config.in_channels
        for level in range(config.levels):
            c *= 4
            self.levels.append(nn.ModuleList([FlowStep(c, config.hidden) for _ in range(config.steps)]))
            if level < config.levels - 1:
                self.priors.append(ContextEncoder(c // 2, c - c // 2, config))
                c = c // 2
        self.top_mean = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.top_log_scale = nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=config.top_scale == "learned")

    def _check(self, x: Tensor) -> None:
        m = self.config.multiple
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"flow input must be (N, {self.config.in_channels}, H, W) with H, W multiples of {m}; got {tuple(x.shape)}"
            )

    def _top_log_prob(self, z: Tensor) -> Tensor:
        return gaussian_log_prob(z, self.top_mean, self.top_log_scale)

    def encode(self, x: Tensor, standardized: bool = False) -> tuple[list[Tensor], Tensor]:
        """``T⁻¹(x)``: latents (finest split first, top last) and ``log p(x)`` per sample.

        ``standardized`` returns ``ε = (u − μ)/σ`` per latent instead of ``u``
        (``μ, σ`` of its base distribution): the same point, in unit-scale coordinates.
        """
        self._check(x)
        z = x - 0.5
        log_p = x.new_zeros(x.shape[0])
        zs: list[Tensor] = []
        for level, steps in enumerate(self.levels):
            z = F.pixel_unshuffle(z, 2)
            for step in steps:
                z, ld = step(z)
                log_p = log_p + ld
            if level < len(self.priors):
                h, zl = z[:, : z.shape[1] // 2], z[:, z.shape[1] // 2 :]
                mean, log_scale = self.priors[level](h)
                log_p = log_p + gaussian_log_prob(zl, mean, log_scale)
                zs.append((zl - mean) * torch.exp(-log_scale) if standardized else zl)
                z = h
        log_p = log_p + self._top_log_prob(z)
        zs.append((z - self.top_mean) * torch.exp(-self.top_log_scale) if standardized else z)
        return zs, log_p

    def decode_with_log_prob(
        self, zs: list[Tensor], use_means: bool = False, standardized: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``T(u)`` and ``log p(T(u))`` in one pass.

        ``use_means`` replaces the split-off latents by their means ``μ(h_l)``;
        ``standardized`` reads ``zs`` as ``ε = (u − μ)/σ`` (see :meth:`encode`).
        """
        if len(zs) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} latent tensors, got {len(zs)}")

        def latent(eps_or_z: Tensor, mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
            if not standardized:
                return eps_or_z, gaussian_log_prob(eps_or_z, mean, log_scale)
            lp = -0.5 * (LOG_2PI + 2 * log_scale + eps_or_z**2)
            return mean + torch.exp(log_scale) * eps_or_z, lp.flatten(1).sum(1)

        z, log_p = latent(zs[-1], self.top_mean, self.top_log_scale)
        for level in reversed(range(len(self.levels))):
            if level < len(self.priors):
                mean, log_scale = self.priors[level](z)
                if use_means:
                    zl, lp = mean, gaussian_log_prob(mean, mean, log_scale)
                else:
                    zl, lp = latent(zs[level], mean, log_scale)
                log_p = log_p + lp
                z = torch.cat([z, zl], 1)
            for step in reversed(self.levels[level]):
                z, ld = step.inverse(z)
                log_p = log_p - ld  # log p(x) = log p(u) - log|det ∂x/∂u|
            z = F.pixel_shuffle(z, 2)
        return z + 0.5, log_p

    def decode(self, zs: list[Tensor], use_means: bool = False, standardized: bool = False) -> Tensor:
        """``T(u)``: the image of latents ``zs``."""
        return self.decode_with_log_prob(zs, use_means, standardized)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Continuous ``log p(x)`` per sample (x in [0, 1])."""
        return self.encode(x)[1]


CHECKPOINT_FORMAT = "restoration-bench/flowprior-v1"


def save_checkpoint(path: str | Path, flow: Flow, extra: dict[str, Any] | None = None) -> None:
    """Write a plain state dict + config of primitives (loadable with ``weights_only=True``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "config": flow.config.to_dict(), "state_dict": flow.state_dict()}
    payload.update(extra or {})
    from bench.checkpoints import save_checkpoint as save_atomically

    save_atomically(payload, path)


def load_checkpoint(path: str | Path) -> tuple[Flow, dict[str, Any]]:
    """Load a flow checkpoint without unpickling code; bad files raise :class:`CheckpointError`."""
    from bench.checkpoints import load_checkpoint as load_safely
    from bench.errors import CheckpointError

    path = Path(path)
    hint = "Train one with `bench train flowprior ...` or pass another with --set flowprior.checkpoint=PATH."
    try:
        data = load_safely(path)
    except CheckpointError as err:
        raise CheckpointError(f"flow {err} {hint}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not a flowprior checkpoint (expected format {CHECKPOINT_FORMAT!r}). {hint}")
    try:
        flow = Flow(FlowConfig.from_dict(dict(data["config"])))
        flow.load_state_dict(data["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"flow checkpoint '{path}' does not match its configuration: {err}") from None
    return flow.eval(), data
