"""MAP restoration in a trained flow's latent space (the ``flowprior`` method's solver) and the patch tiler.

:func:`map_latents` runs Adam over the latents ``u`` of a batch of patches on
``data_term(T(u)) − w·Σ log p(T(u))``; :class:`Tiler` cuts an image into
overlapping patches and blends them back differentiably, so the data term can
act on the assembled image. :data:`FLOWS` caches loaded (frozen) flows per file.

Example:
    >>> import torch
    >>> from bench.nets.flow import Flow, FlowConfig
    >>> flow = Flow(FlowConfig(levels=2, steps=1, hidden=8)).eval().requires_grad_(False)
    >>> tiler = Tiler((24, 24), patch=16, margin=2)
    >>> y = torch.rand(1, 3, 24, 24)
    >>> patches, latents = map_latents(flow, tiler.split(y), lambda p: (tiler.merge(p) - y).pow(2).sum(), 2, 0.01, 0.1)
    >>> tuple(tiler.merge(patches).shape), len(latents)
    ((1, 3, 24, 24), 2)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from bench.api import RestoreContext, Tensor
from bench.checkpoints import ModelCache
from bench.nets.flow import Flow, load_checkpoint

log = logging.getLogger(__name__)


class Tiler:
    """Cut an image into overlapping square patches and blend them back, differentiably.

    Patches start every ``patch - 2·margin`` px (neighbours overlap by
    ``2·margin``); the last row/column is flush with the border. In an overlap
    each patch's weight ramps linearly across the ``2·margin`` px facing its
    neighbour, and weights are normalised, so merging the unmodified patches
    of an image gives the image back exactly.

    Example:
        >>> import torch
        >>> tiler = Tiler((80, 72), patch=32, margin=4)
        >>> x = torch.rand(1, 3, 80, 72)
        >>> patches = tiler.split(x)
        >>> tuple(patches.shape)
        (9, 3, 32, 32)
        >>> bool(torch.allclose(tiler.merge(patches), x, atol=1e-6))
        True
    """

    def __init__(self, shape: tuple[int, int], patch: int = 64, margin: int = 4, device: Any = "cpu"):
        h, w = int(shape[0]), int(shape[1])
        if h < patch or w < patch:
            raise ValueError(
                f"flowprior restores {patch}×{patch} patches but the image is {h}×{w} px; use images or crops of "
                f"at least {patch} px (e.g. --crop {max(patch, 64)}), or a smaller patch with --set "
                f"flowprior.patch=N (N a multiple of the flow's 2^levels, at most {min(h, w)})"
            )
        if not 0 <= 2 * margin < patch:
            raise ValueError(f"margin={margin} must satisfy 0 <= 2·margin < patch={patch}")
        self.shape, self.patch, self.margin = (h, w), patch, margin
        rows, cols = self.starts(h, patch, margin), self.starts(w, patch, margin)
        self.offsets = [(r, c) for r in rows for c in cols]
        ar = torch.arange(patch)
        local = (ar[:, None] * w + ar[None, :]).flatten()
        self.index = torch.stack([local + r * w + c for r, c in self.offsets]).to(device)  # (P, p·p)
        weights = torch.stack([self._ramp(r, h)[:, None] * self._ramp(c, w)[None, :] for r, c in self.offsets])
        self.weights = weights.flatten(1)[:, None].to(device)  # (P, 1, p·p)
        norm = torch.zeros(h * w).index_add(0, self.index.flatten().cpu(), self.weights.flatten().cpu())
        self.norm = norm.to(device)

    @staticmethod
    def starts(size: int, patch: int, margin: int) -> list[int]:
        """Patch offsets along one axis: stride ``patch − 2·margin``, the last flush with the end."""
        stride = patch - 2 * margin
        starts = list(range(0, size - patch + 1, stride))
        if starts[-1] != size - patch:
            starts.append(size - patch)
        return starts

    def _ramp(self, start: int, size: int) -> Tensor:
        ramp = torch.ones(self.patch)
        k = 2 * self.margin
        if k:
            up = (torch.arange(k) + 0.5) / k
            if start > 0:
                ramp[:k] = up
            if start + self.patch < size:
                ramp[-k:] = torch.minimum(ramp[-k:], up.flip(0))
        return ramp

    def __len__(self) -> int:
        return len(self.offsets)

    def split(self, x: Tensor) -> Tensor:
        """``(1, C, H, W)`` → ``(P, C, patch, patch)``."""
        c = x.shape[1]
        flat = x.reshape(c, -1)[:, self.index]  # (C, P, p·p)
        return flat.permute(1, 0, 2).reshape(len(self), c, self.patch, self.patch)

    def merge(self, patches: Tensor) -> Tensor:
        """``(P, C, patch, patch)`` → ``(1, C, H, W)``, weighted by the margin ramps."""
        p, c = patches.shape[:2]
        contrib = (patches.reshape(p, c, -1) * self.weights).permute(1, 0, 2).reshape(c, -1)
        out = torch.zeros(c, self.shape[0] * self.shape[1], dtype=patches.dtype, device=patches.device)
        out = out.index_add(1, self.index.flatten(), contrib) / self.norm
        return out.reshape(1, c, *self.shape)


def load_frozen_flow(path: Path) -> Flow:
    """The flow of checkpoint ``path``, in eval mode, with frozen weights (only latents are optimised)."""
    flow, _ = load_checkpoint(path)
    flow.requires_grad_(False)
    return flow


FLOWS: ModelCache[Flow] = ModelCache(load_frozen_flow)
PRIOR_TERMS = ("nll", "latent_norm")


def latent_norm(zs: list[Tensor]) -> Tensor:
    """``Σ_b ‖ε_b‖``: the Euclidean norm of each sample's latents over all levels, summed over the batch
    (Asim et al., ICML 2020, regularise with ``γ·‖z‖`` instead of ``−log p(x)``).

    >>> float(latent_norm([torch.full((2, 1, 2, 2), 1.0), torch.zeros(2, 5)]))
    4.0
    """
    return torch.stack([z.flatten(1).pow(2).sum(1) for z in zs]).sum(0).sqrt().sum()


def to_flow_batch(patches: Tensor, channels: int) -> Tensor:
    """Patches as the flow's samples: a grayscale flow (the MNIST config) restores each colour channel as its own.

    >>> tuple(to_flow_batch(torch.rand(2, 3, 8, 8), 1).shape)
    (6, 1, 8, 8)
    """
    return patches if channels == patches.shape[1] else patches.reshape(-1, channels, *patches.shape[-2:])


def map_latents(
    flow: Flow,
    x0: Tensor,
    data_term: Any,
    iterations: int,
    lr: float,
    prior_weight: float,
    ctx: RestoreContext | None = None,
    standardized: bool = False,
    prior: str = "nll",
) -> tuple[Tensor, list[Tensor]]:
    """Adam over ``u`` from ``T⁻¹(x0)`` on ``data_term(T(u)) − prior_weight·Σ log p(T(u))`` (``prior`` "nll",
    the paper's), or on ``data_term(T(ε)) + prior_weight·Σ_patches ‖ε‖`` (``prior`` "latent_norm", Asim et
    al.; over the standardised latents ``ε``, which a Gaussian prior makes unit-scale, and without the
    log-determinant that makes flows favour flat images).

    The step decays with a cosine schedule: the data term (weight 1/σ²) is
    stiff and constant-step Adam oscillates around the minimum. The iterate
    with the lowest objective is returned; a non-finite objective (the inverse
    couplings can overflow far from the training data) stops early.
    ``standardized`` optimises ``ε = (u − μ(h))/σ(h)`` instead of ``u`` (same
    objective and minimisers, unit-scale coordinates): steadier for large
    steps but much slower to remove noise, and worse on BSDS training crops,
    so off by default. ``x0`` is a batch of patches; ``data_term`` maps the
    decoded batch to a scalar. Returns the decoded patches and the latents.
    """
    if prior not in PRIOR_TERMS:
        raise ValueError(f"prior={prior!r} is not one of {', '.join(PRIOR_TERMS)}")
    standardized = standardized or prior == "latent_norm"
    shape = x0.shape
    flat = to_flow_batch(x0, flow.config.in_channels)

    def objective(latents: list[Tensor]) -> tuple[Tensor, Tensor]:
        if prior == "latent_norm":
            decoded = flow.decode(latents, standardized=True)
            return decoded, data_term(decoded.reshape(shape)) + prior_weight * latent_norm(latents)
        decoded, log_p = flow.decode_with_log_prob(latents, standardized=standardized)
        return decoded, data_term(decoded.reshape(shape)) - prior_weight * log_p.sum()

    with torch.no_grad():
        zs, _ = flow.encode(flat, standardized=standardized)
    zs = [z.detach().clone().requires_grad_(True) for z in zs]
    optimizer = torch.optim.Adam(zs, lr=lr)
    # the data term is stiff (weight 1/σ²): a decaying step lets the oscillating iterates settle
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(iterations, 1))
    best = (math.inf, [z.detach().clone() for z in zs])
    steps = ctx.iterations(iterations, desc="flowprior") if ctx is not None else range(iterations)
    for _ in steps:
        optimizer.zero_grad(set_to_none=True)
        decoded, loss = objective(zs)
        value = loss.item()
        if not math.isfinite(value):
            # far from the training data the inverse couplings can overflow: keep the best iterate
            log.warning("flowprior: non-finite objective, stopping at the best iterate so far")
            if ctx is not None:
                ctx.log("diverged", 1.0)
            break
        if value < best[0]:
            best = (value, [z.detach().clone() for z in zs])
        loss.backward()
        optimizer.step()
        schedule.step()
        if ctx is not None:
            ctx.log("loss", value / x0.numel())
    else:
        with torch.no_grad():
            decoded, loss = objective(zs)
            value = loss.item()
        if math.isfinite(value) and value <= best[0]:
            return decoded.reshape(shape), [z.detach() for z in zs]
    with torch.no_grad():
        decoded = flow.decode(best[1], standardized=standardized).reshape(shape)
    return decoded, best[1]


def map_image(
    flow: Flow,
    x0: Tensor,
    data_term: Any,
    iterations: int,
    lr: float,
    prior_weight: float,
    ctx: RestoreContext | None = None,
) -> Tensor:
    """Adam over the patches ``x`` themselves (from ``x0``) on ``data_term(x) − prior_weight·Σ log p(x)``.

    The same objective as :func:`map_latents` with the prior's gradient taken through the encoding direction
    ``T⁻¹``, the one the flow is trained in (no inverse couplings to overflow); the step is in pixel units and
    decays with a cosine schedule. Returns the patches with the lowest objective.

    >>> from bench.nets.flow import FlowConfig
    >>> flow = Flow(FlowConfig(levels=2, steps=1, hidden=8)).eval().requires_grad_(False)
    >>> y = torch.rand(2, 3, 8, 8)
    >>> tuple(map_image(flow, y, lambda p: (p - y).pow(2).sum(), 2, 0.01, 0.1).shape)
    (2, 3, 8, 8)
    """
    shape = x0.shape
    x = x0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(iterations, 1))
    best = (math.inf, x.detach().clone())
    steps = ctx.iterations(iterations, desc="flowprior") if ctx is not None else range(iterations)
    for _ in steps:
        optimizer.zero_grad(set_to_none=True)
        log_p = flow.log_prob(to_flow_batch(x, flow.config.in_channels))
        loss = data_term(x) - prior_weight * log_p.sum()
        value = loss.item()
        if not math.isfinite(value):
            break
        if value < best[0]:
            best = (value, x.detach().clone())
        loss.backward()
        optimizer.step()
        schedule.step()
        if ctx is not None:
            ctx.log("loss", value / x0.numel())
    with torch.no_grad():
        value = (data_term(x) - prior_weight * flow.log_prob(to_flow_batch(x, flow.config.in_channels)).sum()).item()
    return (x.detach() if math.isfinite(value) and value <= best[0] else best[1]).reshape(shape)
