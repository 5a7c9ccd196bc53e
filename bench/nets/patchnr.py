"""The patch normalizing flow of the ``patchnr`` method (PatchNR, Altekrüger et al., Inverse Problems 2023).

PatchNR ("PatchNR: learning from very few images by patch normalizing flow
regularization") learns the distribution of small image patches with a dense
normalizing flow and uses the patches' negative log-likelihood as a
regulariser. The official code (github.com/FabianAltekrueger/patchNR,
``model.py``: ``create_NF``) stacks ``num_layers = 5`` FrEIA
``GLOWCouplingBlock``\\ s (soft clamp 1.6) on flattened 6×6 grey patches, each
followed by a fixed random permutation (``PermuteRandom``, seed k+1); every
coupling sub-network is ``Linear(d, 512)–ReLU–Linear(512, 512)–ReLU–Linear(512, ·)``.
deepinv's ``PatchNR`` prior (``deepinv/optim/prior.py``) builds the same flow
with ``sub_net_size = 256`` and ``channels`` for colour patches.

This module is a torch-only re-implementation (no FrEIA) for RGB patches of
dimension ``3·k·k``: :class:`GlowCoupling` (both halves transformed in turn,
``s = 1.6·0.636·atan(s/1.6)`` as FrEIA's soft clamp), :class:`Permutation`
(fixed, seeded by the block index as in the official code and stored in the
state dict). Two changes, both for a short CPU training run: a data-initialised
per-dimension affine normalisation in front (ActNorm, as in Glow), and the last
layer of every sub-network starts at zero (each coupling starts as the identity).
Patches are flattened channel-major, ``(N, 3, k, k).reshape(N, -1)``, on [0, 1].

:meth:`PatchFlow.log_prob` is the log-density in nats per patch (standard normal
base, the ``½·dim·log 2π`` constant included); :func:`bits_per_dim` converts it to
bits per 8-bit sub-pixel for dequantised data. Checkpoints go through
:mod:`bench.nets.model_files` (``torch.load(weights_only=True)``). Training:
:mod:`bench.training.patchnr`; restoration: :mod:`bench.solvers.patchnr`.

Example:
    >>> import os, tempfile, torch
    >>> flow = PatchFlow(PatchNRConfig(patch=4, layers=2, hidden=16))
    >>> x = torch.rand(5, 3, 4, 4)
    >>> z, logdet = flow(x)
    >>> tuple(z.shape), tuple(flow.log_prob(x).shape)
    ((5, 48), (5,))
    >>> bool(torch.allclose(flow.inverse(z).reshape(x.shape), x, atol=1e-5))
    True
    >>> path = os.path.join(tempfile.mkdtemp(), "nr.pt")
    >>> len(save_checkpoint(flow, path, {"steps": 0}))
    64
    >>> loaded, info = load_checkpoint(path)
    >>> info["config"]["hidden"], bool(torch.allclose(loaded.log_prob(x), flow.log_prob(x)))
    (16, True)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import draws
from bench.checkpoints import ModelCache
from bench.nets.model_files import build_model, read_model, save_model

Tensor = torch.Tensor
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "methods" / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "patchnr_cpu.pt"
FORMAT = "restoration-bench/patchnr"
ATAN_SCALE = 0.636  # FrEIA's soft clamp: clamp·0.636·atan(s/clamp) stays within ±clamp


@dataclass
class PatchNRConfig:
    """Architecture of a :class:`PatchFlow` (defaults: the CPU variant shipped here).

    Official PatchNR: ``patch=6, layers=5, hidden=512, clamp=1.6`` on grey patches;
    deepinv's default ``hidden=256``.

    >>> PatchNRConfig().dim
    108
    >>> PatchNRConfig(patch=1)
    Traceback (most recent call last):
    ...
    ValueError: patch=1 must be >= 2 (PatchNR uses 6)
    """

    patch: int = 6
    channels: int = 3
    layers: int = 5
    hidden: int = 256
    clamp: float = 1.6

    def __post_init__(self) -> None:
        if self.patch < 2:
            raise ValueError(f"patch={self.patch} must be >= 2 (PatchNR uses 6)")
        for name in ("channels", "layers", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.clamp > 0:
            raise ValueError(f"clamp={self.clamp} must be > 0 (PatchNR uses 1.6)")

    @property
    def dim(self) -> int:
        """Dimension of a flattened patch: ``channels·patch²``."""
        return self.channels * self.patch * self.patch


def subnet(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    """PatchNR's coupling sub-network: two hidden ReLU layers; the last layer starts at zero (identity coupling)."""
    net = nn.Sequential(
        nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, c_out)
    )
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class GlowCoupling(nn.Module):
    """GLOW-style coupling on both halves: ``v₂ = u₂·e^{s₁(u₁)} + t₁(u₁)``, then ``v₁ = u₁·e^{s₂(v₂)} + t₂(v₂)``.

    >>> block = GlowCoupling(7, 8, 1.6)
    >>> x = torch.randn(3, 7)
    >>> y, logdet = block(x)
    >>> x2, back = block.inverse(y)
    >>> bool(torch.allclose(x2, x, atol=1e-6)), bool(torch.allclose(logdet, -back))
    (True, True)
    """

    def __init__(self, dim: int, hidden: int, clamp: float):
        super().__init__()
        self.split = (dim // 2, dim - dim // 2)
        self.clamp = clamp
        self.net1 = subnet(self.split[0], 2 * self.split[1], hidden)  # acts on the second half
        self.net2 = subnet(self.split[1], 2 * self.split[0], hidden)  # acts on the first half

    def scale_shift(self, net: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
        s, t = net(h).chunk(2, dim=1)
        return self.clamp * ATAN_SCALE * torch.atan(s / self.clamp), t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u1, u2 = x.split(self.split, dim=1)
        s1, t1 = self.scale_shift(self.net1, u1)
        v2 = u2 * torch.exp(s1) + t1
        s2, t2 = self.scale_shift(self.net2, v2)
        v1 = u1 * torch.exp(s2) + t2
        return torch.cat([v1, v2], dim=1), s1.sum(1) + s2.sum(1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        v1, v2 = y.split(self.split, dim=1)
        s2, t2 = self.scale_shift(self.net2, v2)
        u1 = (v1 - t2) * torch.exp(-s2)
        s1, t1 = self.scale_shift(self.net1, u1)
        u2 = (v2 - t1) * torch.exp(-s1)
        return torch.cat([u1, u2], dim=1), -(s1.sum(1) + s2.sum(1))


class Permutation(nn.Module):
    """A fixed random permutation of the dimensions (seeded, stored in the state dict), log-det 0."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y[:, self.inv], y.new_zeros(y.shape[0])


class PatchFlow(nn.Module):
    """PatchNR's dense flow on flattened patches: ActNorm, then ``layers`` × (GLOW coupling, permutation).

    ``forward(patches) -> (z, log|det ∂z/∂x|)``; ``patches`` is ``(N, C, k, k)`` or ``(N, C·k·k)``.
    """

    def __init__(self, config: PatchNRConfig | None = None):
        super().__init__()
        self.config = config or PatchNRConfig()
        dim = self.config.dim
        # ActNorm (Glow): per-dimension shift and log-scale, set from the first training batch
        self.shift = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        blocks: list[nn.Module] = []
        for k in range(self.config.layers):
            blocks += [GlowCoupling(dim, self.config.hidden, self.config.clamp), Permutation(dim, seed=k + 1)]
        self.blocks = nn.ModuleList(blocks)

    def flatten(self, patches: Tensor) -> Tensor:
        x = patches.reshape(patches.shape[0], -1)
        if x.shape[1] != self.config.dim:
            raise ValueError(
                f"the flow models patches of {self.config.channels}×{self.config.patch}×{self.config.patch} "
                f"= {self.config.dim} values, got {tuple(patches.shape[1:])}"
            )
        return x

    @torch.no_grad()
    def initialize(self, patches: Tensor) -> None:
        """Data-dependent ActNorm initialisation: the first batch maps to zero mean, unit variance per dimension."""
        x = self.flatten(patches)
        self.shift.copy_(-x.mean(0))
        self.log_scale.copy_(-torch.log(x.std(0).clamp_min(1e-3)))
        self.initialized.fill_(True)

    def forward(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        x = self.flatten(patches)
        z = (x + self.shift) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum().expand(x.shape[0])
        for block in self.blocks:
            z, ld = block(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        """Patches ``(N, C·k·k)`` of latents ``z``."""
        for block in reversed(self.blocks):
            z, _ = block.inverse(z)
        return z * torch.exp(-self.log_scale) - self.shift

    def log_prob(self, patches: Tensor) -> Tensor:
        """``log p(patch)`` in nats per patch, ``(N,)`` (continuous density on [0, 1]-valued patches)."""
        z, logdet = self(patches)
        return logdet - 0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def nll(self, patches: Tensor) -> Tensor:
        """``−log p(patch)`` in nats per patch, ``(N,)``: PatchNR's regulariser per patch (with the constant)."""
        return -self.log_prob(patches)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` patches ``(n, C, k, k)`` drawn from the flow (latents ``temperature·N(0, I)``)."""
        c = self.config
        z = temperature * draws.randn((n, c.dim), generator).to(self.shift.device)
        return self.inverse(z).reshape(n, c.channels, c.patch, c.patch)


def bits_per_dim(log_prob: Tensor | float, dim: int, bins: int = 256) -> float:
    """Mean bits per sub-pixel of 8-bit data from ``log_prob`` (nats per patch on [0, 1], dequantised data).

    A density on [0, 1] is ``bins^dim`` times one on the 8-bit scale, hence the ``+ log₂ bins``:

    >>> round(bits_per_dim(torch.zeros(4), 108), 3)  # the uniform density on [0, 1]: 8 bits
    8.0
    """
    mean = float(torch.as_tensor(log_prob, dtype=torch.float64).mean())
    return -mean / (dim * math.log(2)) + math.log2(bins)


def save_checkpoint(
    model: PatchFlow, path: str | os.PathLike, meta: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> str:
    """Write ``model`` atomically (``extra``: resume state, ignored when loading); returns the file's sha256."""
    return save_model(model, path, FORMAT, asdict(model.config), meta, extra)


HINT = "train one with `bench train patchnr` or point --set patchnr.checkpoint=PATH at a valid file"


def read_payload(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The checked info (config, meta, path) and state dict of the PatchNR checkpoint at ``path``, uncached."""
    return read_model(path, FORMAT, "PatchNR", HINT)


PAYLOADS: ModelCache[tuple[dict[str, Any], dict[str, Tensor]]] = ModelCache(read_payload)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[PatchFlow, dict[str, Any]]:
    """The flow stored at ``path`` (eval mode, frozen) and its info (config, meta, path).

    Raises :class:`bench.errors.CheckpointError` for a missing, truncated or foreign file.
    """
    info, state = PAYLOADS.get(Path(path))
    model = build_model(lambda c: PatchFlow(PatchNRConfig(**c)), info, state, "PatchNR")
    return model.to(device), info  # type: ignore[return-value]
