"""What a JPEG decoder knows: the quantisation tables and quantised DCT coefficients, read from the encoded bytes.

A JPEG file stores, for each colour component (Y, Cb, Cr; chroma 2×2-subsampled
by Pillow's default 4:2:0, full size with 4:4:4), the 8×8 block DCT coefficients of the level-shifted
component divided by the quantisation table and rounded. Every image whose
coefficients fall in the same cells ``[(k − ½)·Q, (k + ½)·Q]`` encodes to the
same file: that set is the *quantisation constraint set* (QCS). This module
reads the tables and coefficients exactly (``jpeglib``), computes the same
transform differentiably for any estimate ``x`` (JFIF YCbCr, chroma averaged
over 2×2 like libjpeg's downsampler, orthonormal 8×8 DCT-II, which is JPEG's
FDCT) and measures how far ``x`` lies outside the cells
(:meth:`JpegQuantization.residual`; the cells may be narrowed, as in the
"narrow QCS" of the deblocking literature).

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> decoded, quant = jpeg_with_quantization(x, quality=10)
    >>> tuple(quant.tables.shape), [tuple(c.shape) for c in quant.coefficients]
    ((3, 8, 8), [(4, 4, 8, 8), (2, 2, 8, 8), (2, 2, 8, 8)])
    >>> float(quant.residual(x).abs().max()) < 1 / 255  # the original is in the set (up to the integer DCT)
    True
    >>> float(quant.residual(torch.full_like(x, 0.5)).abs().max()) > 0.1  # a flat grey image is far outside it
    True
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.physics.jpeg import check_subsampling
from bench.physics.operator import Operator, Tensor

# JFIF RGB -> YCbCr (0-255 scale; Cb and Cr offset by 128)
YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_OFFSET = torch.tensor([0.0, 128.0, 128.0])
# noise floor of the pure-JPEG constraint: the encoder's integer DCT and 8-bit rounding (0-1 scale)
ENCODER_SIGMA = 1.0 / 255.0


def dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` (``C @ block @ C.T`` is JPEG's 2-D FDCT of an ``n×n`` block).

    >>> c = dct_matrix()
    >>> bool(torch.allclose(c @ c.T, torch.eye(8), atol=1e-6))
    True
    """
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.float()


def _pad_to(t: Tensor, height: int, width: int) -> Tensor:
    """Replicate the last row/column (libjpeg's edge expansion) up to ``height × width``, or crop to it."""
    t = t[..., :height, :width]
    pad_h, pad_w = height - t.shape[-2], width - t.shape[-1]
    if pad_h or pad_w:
        t = torch.nn.functional.pad(t[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    return t


def _blocks_dct(plane: Tensor, blocks: tuple[int, int], c: Tensor) -> Tensor:
    """``(H, W)`` plane (level-shifted, 0-255 scale) -> ``(Hb, Wb, 8, 8)`` DCT coefficients."""
    hb, wb = blocks
    plane = _pad_to(plane, 8 * hb, 8 * wb)
    tiles = plane.reshape(hb, 8, wb, 8).permute(0, 2, 1, 3)
    return c @ tiles @ c.T


@dataclass
class JpegQuantization:
    """The quantisation tables and quantised coefficients of one JPEG image, and distances to their cells.

    ``tables``: ``(3, 8, 8)`` quantisation steps of Y, Cb, Cr (0-255 scale);
    ``coefficients``: per component, the ``(Hb, Wb, 8, 8)`` quantised DCT
    coefficients (integers, as floats); ``factors``: the chroma downsampling
    (vertical, horizontal), ``(2, 2)`` for 4:2:0; ``sigma``: the noise level
    before compression on the 0-1 scale (``ENCODER_SIGMA`` for pure JPEG),
    which a data term divides by.

    Example:
        >>> import torch
        >>> _, q = jpeg_with_quantization(torch.full((1, 3, 16, 16), 0.5), quality=50)
        >>> q.factors, round(q.sigma * 255, 3)
        ((2, 2), 1.0)
    """

    tables: Tensor
    coefficients: tuple[Tensor, Tensor, Tensor]
    factors: tuple[int, int]
    sigma: float = ENCODER_SIGMA

    def dct(self, x: Tensor) -> list[Tensor]:
        """The per-component block DCT of ``x`` (``(1, 3, H, W)`` in [0, 1]) as the encoder computes it."""
        if x.shape[0] != 1 or x.shape[1] != 3:
            raise ValueError(f"JPEG coefficients are per RGB image: expected (1, 3, H, W), got {tuple(x.shape)}")
        ycc = torch.einsum("ij,jhw->ihw", YCBCR.to(x), x[0] * 255.0) + (YCBCR_OFFSET.to(x) - 128.0)[:, None, None]
        c = dct_matrix().to(x)
        fv, fh = self.factors
        out = [_blocks_dct(ycc[0], tuple(self.coefficients[0].shape[:2]), c)]
        for i in (1, 2):
            blocks = tuple(self.coefficients[i].shape[:2])
            plane = ycc[i]
            if fv > 1 or fh > 1:
                full = _pad_to(plane, 8 * blocks[0] * fv, 8 * blocks[1] * fh)
                plane = torch.nn.functional.avg_pool2d(full[None], (fv, fh))[0]
            out.append(_blocks_dct(plane, blocks, c))
        return out

    def residual(self, x: Tensor, width: float = 1.0) -> Tensor:
        """How far each DCT coefficient of ``x`` lies outside its cell, narrowed to ``width`` × the step
        (1 = the exact cell), on the 0-1 pixel scale (the DCT is orthonormal); one flat tensor.

        >>> import torch
        >>> _, q = jpeg_with_quantization(torch.full((1, 3, 8, 8), 0.5), quality=50)
        >>> float(q.residual(torch.full((1, 3, 8, 8), 0.5)).abs().max())
        0.0
        >>> round(float(q.residual(torch.full((1, 3, 8, 8), 0.6)).abs().max()), 3)  # Y's DC: (8·25.5 − 16/2)/255
        0.753
        """
        if not 0 < width <= 1:
            raise ValueError(f"qcs width={width} must be in (0, 1] (a fraction of the quantisation step)")
        parts = []
        for coef, table, k in zip(self.dct(x), self.tables.to(x), self.coefficients):
            offset = coef / table - k.to(x)
            parts.append((offset.abs() - width / 2).clamp(min=0) * table / 255.0)
        return torch.cat([p.flatten() for p in parts])

    def to(self, device: torch.device | str) -> JpegQuantization:
        """A copy on ``device``."""
        coefficients = tuple(c.to(device) for c in self.coefficients)
        return JpegQuantization(self.tables.to(device), coefficients, self.factors, self.sigma)  # type: ignore[arg-type]


def read_quantization(data: bytes, sigma: float = ENCODER_SIGMA) -> JpegQuantization:
    """Tables and quantised coefficients of the baseline JPEG ``data`` (an RGB image), read with ``jpeglib``."""
    import jpeglib

    handle, path = tempfile.mkstemp(suffix=".jpg")  # jpeglib reads from a path
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        dct = jpeglib.read_dct(path)
        dct.load()
    finally:
        os.unlink(path)
    if dct.Cb is None or dct.Cr is None:
        raise ValueError("QCS needs a colour (YCbCr) JPEG; this one has a single component")
    factors = np.asarray(dct.samp_factor)
    fv, fh = int(factors[0][0] // factors[1][0]), int(factors[0][1] // factors[1][1])
    tables = torch.from_numpy(np.stack([dct.qt[int(i)] for i in dct.quant_tbl_no[:3]]).astype(np.float32))
    coefficients = tuple(torch.from_numpy(np.asarray(c, dtype=np.float32)) for c in (dct.Y, dct.Cb, dct.Cr))
    return JpegQuantization(tables, coefficients, (fv, fh), max(float(sigma), ENCODER_SIGMA))  # type: ignore[arg-type]


def encode_jpeg(x: Tensor, quality: int, subsampling: str = "4:2:0") -> bytes:
    """Pillow's JPEG (``subsampling`` chroma, default 4:2:0) of one ``(1, 3, H, W)`` image in [0, 1]."""
    from PIL import Image

    check_subsampling(subsampling)
    array = np.round(x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> Tensor:
    """Pillow's decoding of ``data`` as a ``(1, 3, H, W)`` tensor in [0, 1]."""
    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return torch.from_numpy(decoded.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def jpeg_with_quantization(x: Tensor, quality: int, sigma: float = ENCODER_SIGMA,
                           subsampling: str = "4:2:0") -> tuple[Tensor, JpegQuantization]:
    """Compress ``x`` (``(1, 3, H, W)``) with Pillow: the decoded image and what its file says (its chroma factors
    follow ``subsampling``: ``(2, 2)`` for 4:2:0, ``(1, 1)`` for 4:4:4)."""
    data = encode_jpeg(x, quality, subsampling)
    return decode_jpeg(data).to(x.device), read_quantization(data, sigma)


class QuantizedOperator(Operator):
    """An :class:`Operator` whose observation was JPEG-compressed: ``quantization`` holds what the file says
    (set by the degradation when it encodes; None before) and ``encoder_input`` maps a clean estimate to the
    image the encoder saw, noise aside (default: the forward operator; the identity when the forward operator
    is itself a differentiable codec).

    Example:
        >>> import torch
        >>> op = QuantizedOperator(lambda x: x, (8, 8), (8, 8), sigma=0.05, linear=True)
        >>> quantization_of(op) is None, qcs_residual(op, torch.zeros(1, 3, 8, 8)) is None
        (True, True)
    """

    def __init__(self, *args: Any, encoder_input: Callable[[Tensor], Tensor] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.encoder_input = encoder_input if encoder_input is not None else self.__call__
        self.quantization: JpegQuantization | None = None

    def to(self, device: torch.device | str) -> QuantizedOperator:
        super().to(device)
        if self.quantization is not None:
            self.quantization = self.quantization.to(device)
        return self


def quantization_of(operator: Operator) -> JpegQuantization | None:
    """The JPEG quantisation an observation's operator carries, or None (not a JPEG observation)."""
    return getattr(operator, "quantization", None)


def qcs_residual(operator: Operator, x: Tensor, width: float = 1.0) -> Tensor | None:
    """:meth:`JpegQuantization.residual` of the encoder's input for the estimate ``x``; None where
    ``operator`` carries no quantisation."""
    quantization = quantization_of(operator)
    if quantization is None:
        return None
    return quantization.residual(operator.encoder_input(x), width=width)  # type: ignore[attr-defined]
