"""PatchNR restoration (the ``patchnr`` method's solver): Adam on the image with a patch-flow regulariser.

As in the official reconstruction scripts (github.com/FabianAltekrueger/patchNR,
``patchNR_deblurring.py`` and ``patchNR_superres.py``), every iteration draws a
fresh random subset of patch positions of the current estimate, evaluates their
mean negative log-likelihood under the flow and takes one Adam step on the
image ``x`` for ``data term + λ·regulariser``. The image is reflect-padded by
``k − 1`` px before the patches are cut, as deepinv's ``PatchPrior(pad=True)``
does, so border pixels are covered as often as interior ones. Normalisation
used here: ``data_term(x) + λ·(H·W)·mean_patches NLL`` with the data term
``‖A(x) − y‖²/(2σ²)`` (:mod:`bench.solvers.data_terms`), i.e. the mean patch NLL
counted once per pixel position, so ``λ`` does not depend on the image size or
the noise level; the official ``‖A(x) − y‖² + λ_off·mean NLL`` is ``λ =
λ_off/(2σ²·H·W)``. Pixel values ``v/255`` are fed to the flow as ``(255·x + 0.5)/256``,
the centre of the dequantisation bin the flow was trained on.

Example:
    >>> import torch
    >>> from bench.nets.patchnr import PatchFlow, PatchNRConfig
    >>> flow = PatchFlow(PatchNRConfig(patch=4, layers=1, hidden=8)).eval().requires_grad_(False)
    >>> y = torch.rand(1, 3, 12, 12)
    >>> x = patchnr_map(flow, y, lambda x: (x - y).pow(2).sum(), 3, 0.01, 0.1, 20, torch.Generator().manual_seed(0))
    >>> tuple(x.shape), x.requires_grad
    ((1, 3, 12, 12), False)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from bench.nets.patchnr import PatchFlow

Tensor = torch.Tensor
log = logging.getLogger(__name__)


def flow_scale(x: Tensor) -> Tensor:
    """Image values on [0, 1] (8-bit ``v/255``) → the flow's dequantised scale, ``(v + 0.5)/256``."""
    return (x * 255 + 0.5) / 256


class PatchSampler:
    """Random ``k``×``k`` patches of an image reflect-padded by ``k − 1`` px, by flat index (differentiable).

    Example:
        >>> sampler = PatchSampler((8, 10), patch=3)
        >>> sampler.positions  # (8 + 2·2 − 2) × (10 + 2·2 − 2)
        120
        >>> idx = sampler.draw(5, torch.Generator().manual_seed(0))
        >>> tuple(sampler.extract(torch.rand(1, 3, 8, 10), idx).shape)
        (5, 27)
    """

    def __init__(self, shape: tuple[int, int], patch: int, device: torch.device | str = "cpu"):
        h, w = int(shape[0]), int(shape[1])
        if min(h, w) < patch:
            raise ValueError(f"patchnr needs images of at least {patch}×{patch} px (the flow's patch), got {h}×{w}")
        self.patch, self.pad = patch, patch - 1
        self.width = w + 2 * self.pad
        self.cols = self.width - patch + 1
        self.positions = (h + 2 * self.pad - patch + 1) * self.cols
        ar = torch.arange(patch)
        self.offsets = (ar[:, None] * self.width + ar[None, :]).flatten().to(device)  # (k²,)
        self.device = device

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """Flat indices ``(n, k²)`` of ``n`` distinct random patch positions (all of them when ``n`` ≥ their count)."""
        if n >= self.positions:
            pos = torch.arange(self.positions)
        else:
            pos = torch.randperm(self.positions, generator=generator)[:n]
        base = (pos // self.cols) * self.width + pos % self.cols
        return base.to(self.device)[:, None] + self.offsets[None, :]

    def extract(self, x: Tensor, index: Tensor) -> Tensor:
        """Patches ``(n, C·k²)`` (channel-major, as the flow is trained) of ``x`` ``(1, C, H, W)`` at ``index``."""
        p = self.pad
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        flat = padded.reshape(x.shape[1], -1)[:, index]  # (C, n, k²)
        return flat.permute(1, 0, 2).reshape(index.shape[0], -1)


def patchnr_map(
    flow: PatchFlow,
    x0: Tensor,
    data_term: Callable[[Tensor], Tensor],
    iterations: int,
    lr: float,
    prior_weight: float,
    patches_per_iteration: int,
    generator: torch.Generator,
    iterate: Callable[[int], Iterable[int]] = range,
    trace: Callable[[str, float], None] | None = None,
) -> Tensor:
    """Adam on ``x`` from ``x0`` for ``data_term(x) + prior_weight·H·W·mean NLL(random patches of x)``.

    Patch positions come from ``generator`` only (a fresh subset every
    iteration). The step decays with a cosine schedule to 0 over the run, which
    averages out the noise of the random patch subsets at the end. A non-finite
    objective stops early with the last finite iterate. Returns ``x`` (detached, not clipped).
    """
    h, w = x0.shape[-2:]
    sampler = PatchSampler((h, w), flow.config.patch, device=x0.device)
    x = x0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(iterations, 1))
    last = x.detach().clone()
    for _ in iterate(iterations):
        index = sampler.draw(patches_per_iteration, generator)
        nll = flow.nll(sampler.extract(flow_scale(x), index)).mean()
        loss = data_term(x) + prior_weight * (h * w) * nll
        if not math.isfinite(loss.item()):
            log.warning("patchnr: non-finite objective, stopping at the last finite iterate")
            if trace is not None:
                trace("diverged", 1.0)
            break
        last = x.detach().clone()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if trace is not None:
            trace("nll", nll.item())
    else:
        return x.detach()
    return last
