"""JPEG: real Pillow compression, its measured error level, and kornia's differentiable codec.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16)
    >>> tuple(pillow_jpeg(x, 10).shape), round(jpeg_effective_sigma(10) * 255, 1)
    ((1, 3, 16, 16), 12.3)
"""

from __future__ import annotations

import io

import numpy as np
import torch

from bench.physics.operator import Tensor

# kornia's differentiable JPEG vs Pillow: ~37 dB apart, i.e. ~3.6/255 RMS model error
KORNIA_JPEG_SIGMA = 3.6 / 255.0


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


def kornia_jpeg(x: Tensor, quality: float) -> Tensor:
    """kornia's differentiable JPEG of a ``(N, 3, H, W)`` batch at ``quality`` (input clipped to [0, 1])."""
    import kornia

    q = torch.full((x.shape[0],), float(quality), device=x.device, dtype=x.dtype)
    return kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), q)
