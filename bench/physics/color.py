"""The orthonormal opponent colour transform: luminance and two colour differences, noise-preserving.

Rows: luminance (R+G+B)/√3, red–blue (R−B)/√2, green–magenta (R−2G+B)/√6. The
matrix is orthogonal, so white noise of variance σ² per RGB channel stays white
of variance σ² per opponent channel, and the inverse is the transpose.

Example:
    >>> import torch
    >>> x = torch.rand(1, 3, 4, 4)
    >>> bool(torch.allclose(from_opponent(to_opponent(x)), x, atol=1e-6))
    True
"""

from __future__ import annotations

import math

import torch

from bench.physics.operator import Tensor

# Orthonormal opponent colour transform (rows: luminance, red–blue, green–magenta): white noise of
# variance σ² per RGB channel stays white of variance σ² per opponent channel.
OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)


def to_opponent(x: Tensor) -> Tensor:
    """RGB ``(N, 3, H, W)`` to the orthonormal opponent space (:data:`OPPONENT`); :func:`from_opponent` inverts it."""
    return torch.einsum("ij,njhw->nihw", OPPONENT.to(x), x)


def from_opponent(x: Tensor) -> Tensor:
    """Opponent ``(N, 3, H, W)`` back to RGB (the transform is orthogonal: its inverse is its transpose)."""
    return torch.einsum("ji,njhw->nihw", OPPONENT.to(x), x)
