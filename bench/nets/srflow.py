"""SRFlow (Lugmayr et al., ECCV 2020) with the official release's state-dict layout.

Written from a reading of github.com/andreas128/SRFlow (``code/models/modules``:
``SRFlowNet_arch.py``, ``RRDBNet_arch.py``, ``FlowUpsamplerNet.py``, ``FlowStep.py``,
``FlowAffineCouplingsAblation.py``, ``Split.py``, ``FlowActNorms.py``,
``Permutations.py``, ``flow.py``, ``glow_arch.py``) and the configs
``SRFlow_DF2K_4X.yml`` / ``SRFlow_DF2K_8X.yml``. Module names, module order and
parameter shapes follow the release so that ``SRFlow_DF2K_4X.pth`` loads with
``strict=True`` into ``SRFlowNet(SRFlowConfig.official(4))``.

Layout (for each level ``l = 1..L``, at resolution HR / 2^l):
squeeze → ``additional_steps`` × (ActNorm, invertible 1×1 conv) → ``K`` ×
(ActNorm, 1×1 conv, CondAffineSeparatedAndCond coupling) → Split2d, the
split present only for ``l < L - 1`` (the release's ``correct_splits: false``).
The conditioning of level ``l`` is the RRDB feature map at the flow's
resolution, concatenated with the (nearest-resized) features of the
``stack_blocks`` RRDB blocks.

Parts: :mod:`bench.nets.srflow_rrdb` (the LR encoder) and
:mod:`bench.nets.srflow_layers` (the flow layers).

Example:
    >>> import torch
    >>> net = SRFlowNet(SRFlowConfig.tiny(4)).eval()
    >>> lr = torch.rand(1, 3, 4, 4)
    >>> tuple(net.sample(lr, heat=0.0).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import draws
from bench.nets.srflow_layers import FlowStep, Split2d, Squeeze, gaussian_logp
from bench.nets.srflow_rrdb import RRDBNet

Tensor = torch.Tensor


@dataclass
class SRFlowConfig:
    """Hyper-parameters of :class:`SRFlowNet` (defaults: the official 4× model).

    ``residual`` (not in the release; False for official checkpoints) makes the
    flow model ``HR − bicubic_up(LR)`` instead of ``HR``, which lets a small,
    briefly trained model start from bicubic quality.

    >>> SRFlowConfig.official(8).cond_channels, SRFlowConfig.small(4).multiple
    (320, 8)
    """

    scale: int = 4
    nf: int = 64
    nb: int = 23
    gc: int = 32
    K: int = 16
    L: int = 3
    stack_blocks: tuple[int, ...] = (1, 8, 15, 22)
    hidden: int = 64
    additional_steps: int = 2
    affine_eps: float = 1e-4
    quant: int = 255
    residual: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack_blocks = tuple(int(b) for b in self.stack_blocks)
        if self.scale not in (4, 8):
            raise ValueError(f"scale={self.scale} must be 4 or 8")
        if self.L < 1 or 2**self.L > 2 * self.scale:
            raise ValueError(f"L={self.L} must be in 1..log2(2·scale) (the coarsest level is LR/2)")
        if self.K < 1 or self.nb < 1 or self.nf < 1 or self.hidden < 1:
            raise ValueError("K, nb, nf and hidden must be >= 1")
        if any(not 0 <= b < self.nb for b in self.stack_blocks):
            raise ValueError(f"stack_blocks={self.stack_blocks} must index RRDB blocks 0..{self.nb - 1}")
        if self.quant < 1:
            raise ValueError(f"quant={self.quant} must be >= 1")

    @property
    def cond_channels(self) -> int:
        """Channels of the conditioning features (official: (4 + 1) · 64 = 320)."""
        return (len(self.stack_blocks) + 1) * self.nf

    @property
    def multiple(self) -> int:
        """HR sizes must be multiples of this (2^L, and of the scale)."""
        return max(2**self.L, self.scale)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stack_blocks"] = list(self.stack_blocks)
        return data

    @classmethod
    def official(cls, scale: int) -> SRFlowConfig:
        """SRFlow_DF2K_4X.yml / SRFlow_DF2K_8X.yml (8×: L = 4, blocks 1,3,5,7, quant 32)."""
        if scale == 4:
            return cls(scale=4, L=3, stack_blocks=(1, 8, 15, 22), quant=255)
        if scale == 8:
            return cls(scale=8, L=4, stack_blocks=(1, 3, 5, 7), quant=32)
        raise ValueError(f"scale={scale}: official SRFlow configurations exist for 4 and 8")

    @classmethod
    def small(cls, scale: int) -> SRFlowConfig:
        """The CPU configuration shipped here (same structure, fewer blocks/steps/channels)."""
        return cls(
            scale=scale,
            nf=32,
            nb=4,
            gc=16,
            K=4,
            L=3 if scale == 4 else 4,
            stack_blocks=(1, 3),
            hidden=32,
            quant=255,
            residual=True,
        )

    @classmethod
    def tiny(cls, scale: int) -> SRFlowConfig:
        """For tests: seconds to build and run."""
        return cls(
            scale=scale,
            nf=8,
            nb=2,
            gc=4,
            K=1,
            L=3 if scale == 4 else 4,
            stack_blocks=(0,),
            hidden=8,
            additional_steps=1,
        )


class FlowUpsamplerNet(nn.Module):
    """The conditional flow: ``layers`` in the release's order, plus its unused ``f`` conv.

    >>> net = FlowUpsamplerNet(SRFlowConfig.tiny(4))
    >>> sum(isinstance(layer, Squeeze) for layer in net.layers), net.top_channels
    (3, 96)
    """

    def __init__(self, cfg: SRFlowConfig):
        super().__init__()
        self.layers = nn.ModuleList()
        self.levels: list[int] = []  # level of each layer (selects its conditioning)
        c = 3
        for level in range(1, cfg.L + 1):
            c *= 4
            self._add(Squeeze(), level)
            for _ in range(cfg.additional_steps):
                self._add(FlowStep(c, None, cfg.hidden, cfg.affine_eps), level)
            for _ in range(cfg.K):
                self._add(FlowStep(c, cfg.cond_channels, cfg.hidden, cfg.affine_eps), level)
            if level < cfg.L - 1:  # the release's split placement (correct_splits: false)
                split = Split2d(c)
                self._add(split, level)
                c = split.keep
        self.top_channels = c
        # present (and loaded) in the release, never used in its forward pass
        self.f = nn.Sequential(nn.Conv2d(cfg.cond_channels, 2 * 3 * 64 // 2 // 2, 3, 1, 1))

    def _add(self, layer: nn.Module, level: int) -> None:
        self.layers.append(layer)
        self.levels.append(level)

    def encode(self, x: Tensor, cond: dict[int, Tensor], logdet: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """``x`` → (top latent, standardised split latents, logdet incl. split log-likelihoods)."""
        epses = []
        for layer, level in zip(self.layers, self.levels):
            if isinstance(layer, Squeeze):
                x = layer(x)
            elif isinstance(layer, FlowStep):
                x, logdet = layer(x, logdet, cond[level])
            else:
                x, logdet, eps = layer.encode(x, logdet)
                epses.append(eps)
        return x, epses, logdet

    def decode(self, z: Tensor, epses: list[Tensor], cond: dict[int, Tensor]) -> Tensor:
        """Inverse of :meth:`encode` (``epses`` in encoding order)."""
        epses = list(epses)
        for layer, level in zip(reversed(self.layers), reversed(self.levels)):
            if isinstance(layer, Squeeze):
                z = layer(z, reverse=True)
            elif isinstance(layer, FlowStep):
                z, _ = layer(z, z.new_zeros(z.shape[0]), cond[level], reverse=True)
            else:
                z = layer.decode(z, epses.pop())
        return z


class SRFlowNet(nn.Module):
    """RRDB encoder + conditional flow; state-dict keys as in the official release.

    >>> next(iter(SRFlowNet(SRFlowConfig.tiny(4)).state_dict()))
    'RRDB.conv_first.weight'
    """

    def __init__(self, cfg: SRFlowConfig | None = None):
        super().__init__()
        self.cfg = cfg or SRFlowConfig()
        c = self.cfg
        self.RRDB = RRDBNet(c.nf, c.nb, c.gc, c.scale)
        self.flowUpsamplerNet = FlowUpsamplerNet(c)

    def conditions(self, lr: Tensor) -> tuple[dict[int, Tensor], Tensor]:
        """Per-level conditioning (level l sits at LR·scale/2^l) and the RRDB's own SR output."""
        feats = self.RRDB.features(lr, self.cfg.stack_blocks)
        cond = {level: feats[self.cfg.scale / 2**level] for level in range(1, self.cfg.L + 1)}
        return cond, feats["out"]

    def _base(self, lr: Tensor) -> Tensor | None:
        if not self.cfg.residual:
            return None
        h, w = lr.shape[-2:]
        return F.interpolate(lr, size=(h * self.cfg.scale, w * self.cfg.scale), mode="bicubic", align_corners=False)

    def _check(self, hr_shape: tuple[int, int]) -> None:
        m = self.cfg.multiple
        if hr_shape[0] % m or hr_shape[1] % m:
            raise ValueError(f"SRFlow needs HR sizes divisible by {m}, got {hr_shape[0]}×{hr_shape[1]}")

    def encode(self, hr: Tensor, lr: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """Deterministic encoding of ``hr`` given ``lr``: (top z, split epses, log|det| + split log-likelihoods)."""
        self._check(tuple(hr.shape[-2:]))
        cond, _ = self.conditions(lr)
        base = self._base(lr)
        x = hr if base is None else hr - base
        return self.flowUpsamplerNet.encode(x, cond, hr.new_zeros(hr.shape[0]))

    def decode(self, z: Tensor, epses: list[Tensor], lr: Tensor) -> Tensor:
        """Inverse of :meth:`encode`."""
        cond, _ = self.conditions(lr)
        x = self.flowUpsamplerNet.decode(z, epses, cond)
        base = self._base(lr)
        return x if base is None else x + base

    def nll_bpd(self, hr: Tensor, lr: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-sample negative log-likelihood in bits/dim of 8-bit ``hr`` (dequantised by ``noise`` ∈ [−½, ½)).

        Returns (bits/dim, RRDB output) — the latter for an optional L1 term.
        The release divides by H·W and counts log(quant) once per pixel; here the
        discrete NLL is per dimension (C·H·W), the usual bits/dim.
        """
        self._check(tuple(hr.shape[-2:]))
        if noise is not None:
            hr = hr + noise / self.cfg.quant
        cond, out = self.conditions(lr)
        base = self._base(lr)
        x = hr if base is None else hr - base
        dims = hr[0].numel()
        z, _, logdet = self.flowUpsamplerNet.encode(
            x, cond, hr.new_full((hr.shape[0],), -math.log(self.cfg.quant) * dims)
        )
        log_p = logdet + gaussian_logp(z)
        return -log_p / (math.log(2.0) * dims), out

    @torch.no_grad()
    def sample(self, lr: Tensor, heat: float = 0.9, generator: torch.Generator | None = None) -> Tensor:
        """Super-resolve ``lr`` (LR sizes even): latents ~ N(0, heat²) from ``generator`` (heat 0: all zeros)."""
        b, _, h, w = lr.shape
        hh, ww = h * self.cfg.scale, w * self.cfg.scale
        self._check((hh, ww))
        cond, _ = self.conditions(lr)

        def draw(c: int, level: int) -> Tensor:
            shape = (b, c, hh // 2**level, ww // 2**level)
            if heat == 0:
                return lr.new_zeros(shape)
            return (draws.randn(shape, generator) * heat).to(lr.device)

        epses, c = [], 3
        for layer, level in zip(self.flowUpsamplerNet.layers, self.flowUpsamplerNet.levels):
            if isinstance(layer, Squeeze):
                c *= 4
            elif isinstance(layer, Split2d):
                epses.append(draw(layer.consume, level))
                c = layer.keep
        z = draw(c, self.cfg.L)
        x = self.flowUpsamplerNet.decode(z, epses, cond)
        base = self._base(lr)
        return x if base is None else x + base


def strip_module_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove a DataParallel ``module.`` prefix from every key.

    >>> list(strip_module_prefix({"module.RRDB.conv_first.weight": 0}))
    ['RRDB.conv_first.weight']
    """
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state
