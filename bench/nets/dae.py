"""The denoising auto-encoder (DAE) of the ``dmsp`` and ``daep`` priors and its checkpoint format.

The network is the one of the official DMSP/DAEP code (Bigdeli et al.): a
DnCNN-like stack of 3×3 convolutions (first layer conv + ReLU, middle layers
conv + BatchNorm + ReLU, last layer conv to 3 channels) whose output is
subtracted from the input, ``D(x) = x − residual(x)``. The official network has
20 layers of 64 channels; the CPU default used for the shipped weights is 12
layers of 32 channels (about 7× fewer multiply-adds per pixel), see :data:`CPU_ARCH`.

Images are RGB on the [0, 1] scale; ``sigma`` is the training noise level on
the 0-255 scale. Checkpoints hold the state dict, a config dict of primitives
and training metadata, and are read with ``torch.load(weights_only=True)``.
Training lives in :mod:`bench.training.dae`, the restoration loop in
:mod:`bench.families.dae_prior`.

Example:
    >>> import torch
    >>> net = DAE(depth=3, channels=8).eval()
    >>> tuple(net(torch.rand(1, 3, 16, 16)).shape)
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

# the packaged weights ship with the ``methods`` package (package data); only their path is needed here
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "methods" / "weights"
FORMAT = "restoration-bench/dae"
OFFICIAL_ARCH = {"depth": 20, "channels": 64, "batchnorm": True}
CPU_ARCH = {"depth": 12, "channels": 32, "batchnorm": True}


class DAE(nn.Module):
    """DnCNN-like denoising auto-encoder with residual output ``D(x) = x − residual(x)``.

    Args:
        depth: number of 3×3 convolutions (>= 2); the official network has 20.
        channels: feature channels of the hidden layers; the official network has 64.
        batchnorm: BatchNorm after the middle convolutions (as in the official network).

    Example:
        >>> import torch
        >>> net = DAE(depth=3, channels=4)
        >>> net.config
        {'depth': 3, 'channels': 4, 'batchnorm': True}
        >>> x = torch.rand(1, 3, 8, 8)
        >>> torch.equal(net(x), x)  # the last layer starts at zero: the identity map
        True
    """

    def __init__(self, depth: int = 20, channels: int = 64, batchnorm: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth={depth} must be >= 2")
        if channels < 1:
            raise ValueError(f"channels={channels} must be >= 1")
        self.depth, self.channels, self.batchnorm = int(depth), int(channels), bool(batchnorm)
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():  # He init keeps deep ReLU stacks trainable from step 0
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.body[-1].weight)  # start as the identity map: D(x) = x

    @property
    def config(self) -> dict[str, Any]:
        return {"depth": self.depth, "channels": self.channels, "batchnorm": self.batchnorm}

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted noise ``x − D(x)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


# --------------------------------------------------------------------------- checkpoints


def default_checkpoint(sigma: int) -> Path:
    """The packaged weights for training noise ``sigma`` (0-255 scale).

    Example:
        >>> default_checkpoint(11).name
        'dae_sigma11.pt'
    """
    return WEIGHTS_DIR / f"dae_sigma{int(sigma)}.pt"


def save_checkpoint(
    model: DAE,
    path: str | os.PathLike,
    sigma: float,
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``model`` atomically; returns the file's sha256.

    ``extra``: more top-level entries (tensors and primitives), e.g. what a
    trainer needs to resume; loading ignores them.
    """
    return save_model(model, path, FORMAT, model.config, meta, {"sigma": float(sigma), **(extra or {})})


HINT = "retrain it with `bench train dae` or point --set <method>.checkpoint=PATH at a valid file"


def read_payload(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked info (config, sigma, meta, path) and state dict of the DAE checkpoint at ``path``, uncached."""
    return read_model(path, FORMAT, "DAE", HINT, fields=("sigma",))


# payloads (not modules) are cached: every caller gets a fresh network it may move or cast
PAYLOADS: ModelCache[tuple[dict[str, Any], dict[str, torch.Tensor]]] = ModelCache(read_payload)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[DAE, dict[str, Any]]:
    """The DAE stored at ``path`` (in eval mode) and its info (config, sigma, meta, path).

    Raises :class:`bench.errors.CheckpointError` for a missing, truncated or foreign file.

    Example:
        >>> model, info = load_checkpoint(default_checkpoint(25))
        >>> info["sigma"], model.training
        (25.0, False)
    """
    info, state = PAYLOADS.get(Path(path))
    model = build_model(lambda c: DAE(**{k: c[k] for k in ("depth", "channels", "batchnorm")}), info, state, "DAE")
    return model.to(device), info
