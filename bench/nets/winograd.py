"""Winograd F(4×4, 3×3) convolution: a 3×3, stride-1 float32 convolution with 4× fewer multiplications.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): every 4×4 output tile is
``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` for its 6×6 input tile ``d`` and the 3×3 kernel ``g`` (interpolation
points 0, ±1, ±2, ∞). Summed over input channels, the 36 element-wise products become 36 matrix
products of (out channels × in channels) by (in channels × tiles): 36 multiply-adds per tile and channel
pair instead of 144. It is written with plain torch operations (a gather of the overlapping tiles and
four matrix products), so autograd differentiates it and the backward pass, two-thirds of a training
step, gets the same saving.

Why by hand: PyTorch's CPU convolutions (oneDNN) have no Winograd path for float32 training on AVX2
CPUs, and NNPACK's (``torch._nnpack_spatial_convolution``) fails on the AMD EPYC this suite was measured
on. cuDNN picks Winograd kernels itself, so on CUDA the direct call is kept.

Numerics: the transforms have entries up to 8, so the result differs from the direct float32
convolution by ~1e-5 of its largest value (float32 summation alone: ~1e-6; TF32, PyTorch's default
for CUDA convolutions, ~1e-3). :func:`winograd_pays` says where it is faster (measured, see the
function).

Example:
    >>> import torch, torch.nn.functional as F
    >>> x, w = torch.randn(1, 8, 18, 18), torch.randn(4, 8, 3, 3)
    >>> y = winograd_conv3x3(x, w)
    >>> tuple(y.shape), bool(((y - F.conv2d(x, w)).abs().max() / F.conv2d(x, w).abs().max()) < 1e-4)
    ((1, 4, 16, 16), True)
"""

from __future__ import annotations

import functools

import torch

from bench.physics.operator import Tensor

# F(4, 3) with points 0, 1, -1, 2, -2, ∞ (Lavin & Gray, section 4.2)
_B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
TILE = 4  # output pixels per tile side
_IN = TILE + 2  # input pixels per tile side


@functools.lru_cache(maxsize=8)
def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The 2-D transforms as Kronecker products (computed in float64): input 36×36, kernel 36×9, output 16×36."""
    mats = (torch.tensor(m, dtype=torch.float64) for m in (_B_T, _G, _A_T))
    return tuple(torch.kron(m, m).to(dtype=dtype, device=device) for m in mats)  # type: ignore[return-value]


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias)`` (stride 1, no padding: pad ``x`` first) for a 3×3 ``weight``.

    The output's height and width must be multiples of 4.
    """
    n, c, h_in, w_in = x.shape
    k = weight.shape[0]
    h, w = h_in - 2, w_in - 2
    if tuple(weight.shape[1:]) != (c, 3, 3):
        raise ValueError(f"winograd_conv3x3 needs a (out, {c}, 3, 3) weight, got {tuple(weight.shape)}")
    if h % TILE or w % TILE or h <= 0 or w <= 0:
        raise ValueError(f"winograd_conv3x3 needs an output size divisible by {TILE}, got {h}×{w}")
    to_v, to_u, to_y = _transforms(x.dtype, x.device)
    th, tw = h // TILE, w // TILE
    tiles = x.unfold(2, _IN, TILE).unfold(3, _IN, TILE)  # n, c, th, tw, 6, 6: a view, tiles overlap by 2
    d = tiles.permute(4, 5, 1, 0, 2, 3).reshape(_IN * _IN, -1)  # (6·6, c·n·th·tw): the one gather
    v = (to_v @ d).view(_IN * _IN, c, -1)  # Bᵀ d B per tile and channel
    u = (to_u @ weight.reshape(k * c, 9).t()).view(_IN * _IN, k, c)  # G g Gᵀ per kernel
    m = torch.bmm(u, v)  # 36 × (k × c)(c × tiles): the channel sums
    y = (to_y @ m.view(_IN * _IN, -1)).view(TILE, TILE, k, n, th, tw)  # Aᵀ m A
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, h, w)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def winograd_pays(c_in: int, c_out: int, height: int, width: int) -> bool:
    """Whether :func:`winograd_conv3x3` beats the direct float32 convolution (forward + backward) here.

    Measured on a 2-core AMD EPYC (AVX2, one thread; ``benchmarks/bench_winograd.py``, table in
    docs/dip.md): 0.57–0.67× the time for 128 channels at 64²–128², 0.71× at 256², 0.7–1.15× at 32², but
    slower at 16² or with 16 channels (about 2×), where the gather and the transforms outweigh the saved
    multiplications. So in DIP's ``skip`` net it
    serves the 128-channel layers at 32² pixels and larger, and leaves the small JPEG net alone.

    >>> winograd_pays(132, 128, 128, 128), winograd_pays(16, 16, 128, 128), winograd_pays(128, 128, 16, 16)
    (True, False, False)
    """
    return min(c_in, c_out) >= 64 and height * width >= 32 * 32 and height % TILE == 0 and width % TILE == 0
