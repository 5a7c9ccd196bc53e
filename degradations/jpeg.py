"""JPEG compression with Pillow, and kornia's differentiable JPEG as the operator."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from bench.api import Degradation, Operator, Tensor
from bench.registry import register_degradation


def pillow_jpeg(x: Tensor, quality: int) -> Tensor:
    """Real JPEG (Pillow, 4:2:0 chroma subsampling) of a ``(N, 3, H, W)`` batch."""
    from PIL import Image

    out = []
    for img in x:
        array = np.round(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


def jpeg_effective_sigma(quality: int) -> float:
    """RMS error (0-1 scale) of Pillow JPEG at ``quality`` on natural images.

    Measured on 30 BSDS training images (never evaluation images): 16.8/255 at
    quality 5, 12.3 at 10, 9.4 at 20, 8.1 at 30, 6.6 at 50, 4.9 at 75, 3.2 at 90,
    0.9 at 100; interpolated in log-quality.
    """
    qs = np.log([5, 10, 20, 30, 50, 75, 90, 100])
    sig = np.array([16.8, 12.3, 9.4, 8.1, 6.6, 4.9, 3.2, 0.9]) / 255.0
    return float(np.interp(np.log(max(quality, 1)), qs, sig))


@register_degradation("jpeg")
class Jpeg(Degradation):
    """JPEG compression with Pillow at a quality factor (default 10, the paper's setting).

    The forward operator is chosen by ``operator``: ``identity`` (default) treats
    JPEG error as noise of the effective level :func:`jpeg_effective_sigma`;
    ``differentiable`` uses kornia's differentiable JPEG at the same quality
    (agrees with Pillow to about 37 dB and has gradients).

    Example:
        >>> import torch
        >>> obs = Jpeg(Jpeg.Params(quality=10)).degrade(torch.rand(1, 3, 32, 32), torch.Generator())
        >>> tuple(obs.y.shape)
        (1, 3, 32, 32)
    """

    @dataclass
    class Params:
        quality: int = 10
        operator: Literal["identity", "differentiable"] = "identity"

        def __post_init__(self) -> None:
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality={self.quality} is outside 1..100 (JPEG quality factor), e.g. quality=10")

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        quality = self.params.quality
        sigma = jpeg_effective_sigma(quality)
        if self.params.operator == "differentiable":
            import kornia

            def forward(x: Tensor) -> Tensor:
                q = torch.full((x.shape[0],), float(quality), device=x.device, dtype=x.dtype)
                return kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), q)

            # kornia vs Pillow: ~37 dB apart, i.e. ~3.6/255 RMS model error
            return Operator(forward, shape, shape, sigma=3.6 / 255.0, name="diffjpeg")
        return Operator(lambda x: x, shape, shape, sigma=sigma, name="identity")

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        return pillow_jpeg(clean, self.params.quality)

    def describe(self) -> str:
        return f"JPEG quality {self.params.quality} (Pillow)"
