"""First estimates that several restoration methods start from (no method-specific code).

Example:
    >>> import torch
    >>> mask = torch.zeros(1, 3, 4, 4)
    >>> mask[..., ::2, ::2] = 1
    >>> filled = fill_missing(torch.full((1, 3, 4, 4), 0.5) * mask, mask)
    >>> bool((filled == 0.5).all())
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.physics.operator import Tensor


def fill_missing(y: Tensor, mask: Tensor, passes: int = 8) -> Tensor:
    """Observed pixels of ``y`` kept, missing ones filled by repeated normalised 3×3 averaging.

    The official DMSP code initialises masked problems the same way (one pass);
    repeating reaches pixels without an observed neighbour.
    """
    box = torch.ones(y.shape[1], 1, 3, 3, device=y.device, dtype=y.dtype)
    known, values = mask.clone(), y * mask
    for _ in range(passes):
        if bool(known.min() > 0):
            break
        total = F.conv2d(F.pad(values, (1, 1, 1, 1), mode="replicate"), box, groups=y.shape[1])
        weight = F.conv2d(F.pad(known, (1, 1, 1, 1), mode="replicate"), box, groups=y.shape[1])
        fill = total / weight.clamp_min(1e-8)
        new = (weight > 0).to(y.dtype)
        values = torch.where(known > 0, values, fill * new)
        known = torch.maximum(known, new)
    return values
