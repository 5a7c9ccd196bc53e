"""The Double-DIP losses: gradient exclusion between two layers and local variance of one.

They follow ``net/losses.py`` of the official code (Gandelsman et al.,
github.com/yossigandelsman/DoubleDIP).

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 16, 16)
    >>> bool(exclusion_loss(x, x) > exclusion_loss(x, torch.zeros_like(x))), bool(std_loss(x) > 0)
    (True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.physics.operator import Tensor


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[:, :, 1:, :] - x[:, :, :-1, :], x[:, :, :, 1:] - x[:, :, :, :-1]


def _cross_channel(a: Tensor, b: Tensor) -> Tensor:
    # mean over pixels of a_j² · b_i² for all 3×3 channel pairs, each to the power ¼, summed
    prod = torch.einsum("njhw,nihw->nji", a * a, b * b) / (a.shape[-1] * a.shape[-2])
    return prod.mean(0).clamp_min(1e-20).pow(0.25).sum()  # clamp: finite gradient at 0


def exclusion_loss(x: Tensor, y: Tensor, levels: int = 3) -> Tensor:
    """Double-DIP's gradient exclusion between two layers over ``levels`` scales (2× average pooling).

    Gradients are squashed by ``2·sigmoid(g) − 1``; each scale contributes the
    ¼ power of the mean product of squared squashed gradients for every pair of
    colour channels; x and y directions are averaged. Zero when the two layers
    never have gradients at the same place.

    >>> import torch
    >>> round(float(exclusion_loss(torch.zeros(1, 3, 16, 16), torch.rand(1, 3, 16, 16))), 4)
    0.0
    >>> round(float(exclusion_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))), 1)
    0.1
    """
    total_x = x.new_zeros(())
    total_y = x.new_zeros(())
    for level in range(levels):
        if level:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        if min(x.shape[-2:]) < 2:
            break
        gx1, gy1 = _gradients(x)
        gx2, gy2 = _gradients(y)
        total_x = total_x + _cross_channel(2 * torch.sigmoid(gx1) - 1, 2 * torch.sigmoid(gx2) - 1)
        total_y = total_y + _cross_channel(2 * torch.sigmoid(gy1) - 1, 2 * torch.sigmoid(gy2) - 1)
    pairs = levels * x.shape[1] * y.shape[1]
    return (total_x / pairs + total_y / pairs) / 2


def std_loss(x: Tensor) -> Tensor:
    """Double-DIP's StdLoss: mean squared difference between the grey image and its 5×5 box blur.

    Zero for a locally constant image (valid convolution, no padding).

    >>> import torch
    >>> round(float(std_loss(torch.full((1, 3, 8, 8), 0.3))), 6)
    0.0
    """
    grey = x.mean(dim=1, keepdim=True) if x.shape[1] == 3 else x
    blurred = F.avg_pool2d(grey, 5, stride=1)
    return (grey[..., 2:-2, 2:-2] - blurred).pow(2).mean()
