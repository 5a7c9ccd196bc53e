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

Tensor = torch.Tensor

_LOG2PI = math.log(2 * math.pi)


@dataclass
class SRFlowConfig:
    """Hyper-parameters of :class:`SRFlowNet` (defaults: the official 4× model).

    ``residual`` (not in the release; False for official checkpoints) makes the
    flow model ``HR − bicubic_up(LR)`` instead of ``HR``, which lets a small,
    briefly trained model start from bicubic quality.
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


# --------------------------------------------------------------------------- low-resolution encoder


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs, residual scaled by 0.2 (ESRGAN)."""

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
    """Residual-in-residual dense block."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator; :meth:`features` returns the maps SRFlow conditions on."""

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


# --------------------------------------------------------------------------- flow layers


def _sum_chw(x: Tensor) -> Tensor:
    return x.flatten(1).sum(1)


class ActNorm2d(nn.Module):
    """Per-channel affine ``(x + bias)·exp(logs)``, data-initialised on the first training batch.

    Like the release, the "initialised" flag is a plain attribute (not in the
    state dict); a loaded model has non-zero biases and is not re-initialised.
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
    """Glow's invertible 1×1 convolution with an unconstrained (non-LU) weight, as released."""

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
    """Bias-free conv followed by ActNorm (the release's ``flow.Conv2d``), N(0, 0.05²) init."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__(c_in, c_out, kernel, 1, (kernel - 1) // 2, bias=False)
        self.weight.data.normal_(0.0, 0.05)
        self.actnorm = ActNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.actnorm(super().forward(x))[0]


class ZeroConv2d(nn.Conv2d):
    """Zero-initialised 3×3 conv with output scale ``exp(3·logs)`` (``flow.Conv2dZeros``)."""

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
    """Affine injector ``(z + t(u))·s(u)`` then conditional coupling on the second half."""

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
    """ActNorm → invertible 1×1 conv → optional conditional coupling."""

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
    """Space-to-depth by 2 (channel index = c·4 + 2·dy + dx)."""

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
        return _sum_chw(-0.5 * (x**2 + _LOG2PI))
    return _sum_chw(-0.5 * (2 * logs + (x - mean) ** 2 * torch.exp(-2 * logs) + _LOG2PI))


class Split2d(nn.Module):
    """Factor out half the channels with a learned Gaussian prior conditioned on the kept half."""

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


class FlowUpsamplerNet(nn.Module):
    """The conditional flow: ``layers`` in the release's order, plus its unused ``f`` conv."""

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
    """RRDB encoder + conditional flow; state-dict keys as in the official release."""

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
            return (torch.randn(shape, generator=generator) * heat).to(lr.device)

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
