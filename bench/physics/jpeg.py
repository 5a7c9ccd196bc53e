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


# Chroma subsampling of the JPEG encoder: 4:2:0 is libjpeg's (and so Pillow's and OpenCV's) default for colour
SUBSAMPLINGS = ("4:2:0", "4:4:4")


def check_subsampling(subsampling: str) -> None:
    """Refuse a chroma subsampling the suite does not define.

    >>> check_subsampling("4:2:2")
    Traceback (most recent call last):
    ...
    ValueError: subsampling='4:2:2' is not supported; use 4:2:0 (libjpeg's default) or 4:4:4
    """
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling={subsampling!r} is not supported; use 4:2:0 (libjpeg's default) or 4:4:4")


def jpeg_encoder() -> str:
    """The encoder that makes the suite's JPEG files, with its versions (for captions), e.g.
    ``"Pillow 13.0.0/libjpeg-turbo 3.2.0"`` (``"Pillow 10.4.0/libjpeg 9"`` where Pillow links plain libjpeg)."""
    import PIL
    from PIL import features

    turbo = features.version("libjpeg_turbo")
    library = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg') or '?'}"
    return f"Pillow {PIL.__version__}/{library}"


def pillow_jpeg(x: Tensor, quality: int, subsampling: str = "4:2:0") -> Tensor:
    """Real JPEG (Pillow, ``subsampling`` chroma, default 4:2:0) of a ``(N, 3, H, W)`` batch; the encoder's
    input is clipped to [0, 1] and rounded to 8 bits, its output is 8-bit."""
    from PIL import Image

    check_subsampling(subsampling)
    out = []
    for img in x:
        array = np.round(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


def jpeg_effective_sigma(quality: int, subsampling: str = "4:2:0") -> float:
    """RMS error (0-1 scale) of Pillow JPEG at ``quality`` on natural images.

    Measured on 30 BSDS training images (never evaluation images), 4:2:0: 16.8/255 at
    quality 5, 12.3 at 10, 9.4 at 20, 8.1 at 30, 6.6 at 50, 4.9 at 75, 3.2 at 90,
    0.9 at 100; interpolated in log-quality. 4:4:4 keeps the chroma at full size: its error is that
    times the ratio 4:4:4 / 4:2:0 measured by ``benchmarks/jpeg_subsampling_sigma.py`` (the first 30 BSDS200
    training images, full size; 0.984 at quality 5 … 0.435 at 100).

    >>> round(jpeg_effective_sigma(10, "4:4:4") * 255, 1)
    12.0
    """
    check_subsampling(subsampling)
    qs = np.log([5, 10, 20, 30, 50, 75, 90, 100])
    sig = np.array([16.8, 12.3, 9.4, 8.1, 6.6, 4.9, 3.2, 0.9]) / 255.0
    if subsampling == "4:4:4":
        sig = sig * np.array([0.984, 0.976, 0.965, 0.959, 0.947, 0.918, 0.870, 0.435])
    return float(np.interp(np.log(max(quality, 1)), qs, sig))


def kornia_jpeg(x: Tensor, quality: float) -> Tensor:
    """kornia's differentiable JPEG of a ``(N, 3, H, W)`` batch at ``quality`` (input clipped to [0, 1])."""
    import kornia

    q = torch.full((x.shape[0],), float(quality), device=x.device, dtype=x.dtype)
    return kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), q)
