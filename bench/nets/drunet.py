"""The noise-level-conditioned denoiser of the ``pnp`` method: a small DRUNet and its checkpoint format.

The architecture follows DRUNet (Zhang et al., "Plug-and-Play Image Restoration
with Deep Denoiser Prior", TPAMI 2021, the DPIR code): a U-Net whose input is
the noisy RGB image concatenated with a constant noise-level map ``σ`` (one
network for all noise levels); each scale has ``blocks`` bias-free residual
blocks (conv–ReLU–conv plus the input), scales are joined by 2×2 strided
convolutions down and 2×2 transposed convolutions up, and the skip connections
are additive. One change: the output is ``y + tail(…)``, a global skip from
the noisy input (as DnCNN's residual learning) with the last convolution
starting at zero, so training starts from the identity and converges within a
CPU budget; the published network predicts the image directly. The published network has 4 scales of (64, 128, 256, 512)
channels and 4 blocks per scale (32.6 M parameters); the CPU variant trained
here keeps the structure with (32, 64, 128, 256) channels and 2 blocks (4.3 M
parameters, about 8× fewer multiply-adds per pixel), see :data:`CPU_ARCH`.

Images are RGB on [0, 1]; ``sigma`` is on the [0, 1] scale as well (DPIR's
``σ/255``). Checkpoints are read with ``torch.load(weights_only=True)``.
Training lives in :mod:`bench.training.drunet`, restoration in :mod:`bench.solvers.pnp`.

Example:
    >>> import torch
    >>> net = DRUNet(channels=(4, 8, 8, 8), blocks=1).eval()
    >>> tuple(net(torch.rand(1, 3, 16, 16), 0.1).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.checkpoints import ModelCache
from bench.nets.model_files import build_model, read_model, save_model

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "methods" / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "drunet_cpu.pt"
FORMAT = "restoration-bench/drunet"
OFFICIAL_ARCH = {"channels": [64, 128, 256, 512], "blocks": 4}
CPU_ARCH = {"channels": [32, 64, 128, 256], "blocks": 2}


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, bias-free as in DRUNet."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3(channels, channels), nn.ReLU(inplace=True), conv3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DRUNet(nn.Module):
    """U-Net denoiser conditioned on a noise-level map: ``D(y, σ)`` with ``y`` RGB in [0, 1], ``σ`` on [0, 1].

    Args:
        channels: feature channels of the 4 scales (published: 64, 128, 256, 512).
        blocks: residual blocks per scale and direction (published: 4).

    Inputs whose sides are not multiples of 8 are padded by replication and cropped back.

    Example:
        >>> import torch
        >>> net = DRUNet(channels=(4, 8, 8, 8), blocks=1)
        >>> net.config
        {'channels': [4, 8, 8, 8], 'blocks': 1}
        >>> tuple(net(torch.rand(2, 3, 13, 10), torch.tensor([0.1, 0.2])).shape)
        (2, 3, 13, 10)
    """

    def __init__(self, channels: tuple[int, ...] | list[int] = (64, 128, 256, 512), blocks: int = 4):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels={channels} must be 4 positive numbers (one per scale)")
        if blocks < 1:
            raise ValueError(f"blocks={blocks} must be >= 1")
        self.channels, self.blocks = channels, int(blocks)
        c1, c2, c3, c4 = channels
        self.head = conv3(4, c1)
        self.down = nn.ModuleList(
            nn.Sequential(*[ResBlock(a) for _ in range(blocks)], nn.Conv2d(a, b, 2, stride=2, bias=False))
            for a, b in ((c1, c2), (c2, c3), (c3, c4))
        )
        self.body = nn.Sequential(*[ResBlock(c4) for _ in range(blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=False), *[ResBlock(a) for _ in range(blocks)])
            for a, b in ((c3, c4), (c2, c3), (c1, c2))
        )
        self.tail = conv3(c1, 3)
        nn.init.zeros_(self.tail.weight)  # with the global skip below, the untrained network is the identity

    @property
    def config(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "blocks": self.blocks}

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        level = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, 1, 1, 1).expand(n, 1, h, w)
        x = torch.cat([y, level], dim=1)
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        x1 = self.head(x)
        x2 = self.down[0](x1)
        x3 = self.down[1](x2)
        x4 = self.down[2](x3)
        x = self.body(x4)
        x = self.up[0](x + x4)
        x = self.up[1](x + x3)
        x = self.up[2](x + x2)
        return y + self.tail(x + x1)[..., :h, :w]


def save_checkpoint(
    model: DRUNet, path: str | os.PathLike, meta: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> str:
    """Write ``model`` atomically (``extra``: resume state, ignored when loading); returns the file's sha256."""
    return save_model(model, path, FORMAT, model.config, meta, extra)


HINT = "train one with `bench train drunet` or point --set pnp.checkpoint=PATH at a valid file"


def read_payload(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked info (config, meta, path) and state dict of the DRUNet checkpoint at ``path``, uncached."""
    return read_model(path, FORMAT, "DRUNet", HINT)


PAYLOADS: ModelCache[tuple[dict[str, Any], dict[str, torch.Tensor]]] = ModelCache(read_payload)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[DRUNet, dict[str, Any]]:
    """The DRUNet stored at ``path`` (eval mode, no gradients) and its info (config, meta, path).

    Raises :class:`bench.errors.CheckpointError` for a missing, truncated or foreign file.
    """
    info, state = PAYLOADS.get(Path(path))
    model = build_model(lambda c: DRUNet(c["channels"], c["blocks"]), info, state, "DRUNet")
    return model.to(device), info
