"""JPEG: real Pillow compression, its measured error level, and kornia's differentiable codec.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16)
    >>> tuple(pillow_jpeg(x, 10).shape), round(jpeg_effective_sigma(10) * 255, 1)
    ((1, 3, 16, 16), 14.2)
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

    Measured for each chroma subsampling on the tuning split (``bench/training/splits.py``: 22 training-folder
    images, full size, never evaluation images) as the mean over images of the per-image RMS error, by
    ``python benchmarks/tune_constants.py jpeg-sigma`` (log ``docs/tuning/jpeg-sigma.md``): 4:2:0 19.4/255 at
    quality 5, 14.2 at 10, 10.9 at 20, 9.3 at 30, 7.6 at 50, 5.5 at 75, 3.6 at 90, 1.1 at 100; 4:4:4 (the
    chroma at full size) 19.0, 13.8, 10.5, 8.9, 7.2, 5.1, 3.1, 0.5; interpolated in log-quality. The images
    spread widely (7.2 … 23.1/255 at quality 10, standard error of the mean 0.9): the earlier table (12.3/255
    at quality 10) came from the first 30 BSDS200 training images.

    >>> round(jpeg_effective_sigma(10, "4:4:4") * 255, 1)
    13.8
    """
    check_subsampling(subsampling)
    qs = np.log([5, 10, 20, 30, 50, 75, 90, 100])
    table = {  # docs/tuning/jpeg-sigma.md
        "4:2:0": [19.4, 14.2, 10.9, 9.3, 7.6, 5.5, 3.6, 1.1],
        "4:4:4": [19.0, 13.8, 10.5, 8.9, 7.2, 5.1, 3.1, 0.5],
    }
    sig = np.array(table[subsampling]) / 255.0
    return float(np.interp(np.log(max(quality, 1)), qs, sig))


def kornia_jpeg(x: Tensor, quality: float) -> Tensor:
    """kornia's differentiable JPEG of a ``(N, 3, H, W)`` batch at ``quality`` (input clipped to [0, 1])."""
    import kornia

    q = torch.full((x.shape[0],), float(quality), device=x.device, dtype=x.dtype)
    return kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), q)
