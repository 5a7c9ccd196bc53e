"""Plug-and-play restoration with a learned denoiser by half-quadratic splitting (DPIR, Zhang et al. 2021).

HQS alternates, for a decreasing sequence of denoiser levels ``σ_1 > … > σ_K``:

- **data step** (:func:`bench.solvers.epll.x_step`): ``x = argmin ‖A(x) − y‖² + ρ_k‖x − z‖²`` with
  ``ρ_k = λσ²/σ_k²`` (``σ`` the operator's effective noise level), by conjugate gradients on the
  normal equations, ``Aᵀ`` from autograd (exact for the suite's linear operators; DPIR uses the
  closed FFT forms of its blur and bicubic operators instead, same minimiser);
- **prior step**: ``z = D(x, σ_k)``, the noise-level-conditioned denoiser.

The schedule is DPIR's (:func:`schedule`): ``σ_k`` log-spaced from 49/255 to ``max(σ, floor)``
(``floor`` 0.255/255; the scale factor/255 for super-resolution, as DPIR's SR script), ``λ`` = 0.23.
Denoising (identity operator: noise, JPEG as noise) is one denoiser call at ``σ``, as DPIR's denoising.

Example (a tiny untrained denoiser, the identity map, leaves a noisy flat image almost unchanged):
    >>> import torch
    >>> from bench.nets.drunet import DRUNet
    >>> from bench.physics.operator import Observation, Operator
    >>> y = 0.5 + 0.1 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> obs = Observation(y, Operator(lambda x: x, (16, 16), (16, 16), sigma=0.1), task="blur")
    >>> x = hqs_restore(obs, DRUNet((4, 8, 8, 8), 1).eval(), schedule(0.1, 4))
    >>> float((x - y).abs().max()) < 0.2
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from bench.physics.operator import Observation, Tensor
from bench.solvers.epll import x_step

SIGMA_START = 49 / 255  # DPIR's modelSigma1
SIGMA_FLOOR = 0.255 / 255  # DPIR's smallest noise level
LAMBDA = 0.23  # DPIR's trade-off λ (deblurring and super-resolution)


def schedule(sigma: float, iterations: int, floor: float = SIGMA_FLOOR, start: float = SIGMA_START) -> list[float]:
    """DPIR's denoiser levels: ``iterations`` values log-spaced from ``start`` to ``max(sigma, floor)``.

    >>> [round(s * 255, 2) for s in schedule(10 / 255, 3)]
    [49.0, 22.14, 10.0]
    """
    end = min(max(sigma, floor), start)
    return [float(s) for s in np.logspace(np.log10(start), np.log10(end), max(iterations, 1))]


def denoise(model: nn.Module, y: Tensor, sigma: float) -> Tensor:
    """``D(y, σ)`` without gradients, in the model's precision."""
    with torch.no_grad():
        return model(y, torch.full((y.shape[0],), float(sigma), dtype=y.dtype, device=y.device))


def hqs_restore(
    obs: Observation,
    model: nn.Module,
    sigmas: list[float],
    init: Tensor | None = None,
    cg_steps: int = 10,
    lam: float = LAMBDA,
    log: Callable[[str, float], None] | None = None,
    iterate: Callable[[int], Iterable[int]] = range,
) -> Tensor:
    """DPIR's half-quadratic splitting (module docstring) over the levels ``sigmas``; returns ``x`` in [0, 1].

    ``iterate(n)`` yields the iteration indices (a progress-reporting, budget-counting ``range``).
    """
    y, sigma = obs.y, max(obs.sigma, SIGMA_FLOOR)
    x = (obs.operator.init(y) if init is None else init).detach().float()

    def residual(v: Tensor) -> Tensor:
        return obs.operator.data_residual(v, y)

    z = x
    for k in iterate(len(sigmas)):
        level = sigmas[k]
        # ‖A(x) − y‖²/σ² + β‖x − z‖² with β = ρ/σ² = λ/σ_k²: the minimiser of ‖A(x) − y‖² + ρ‖x − z‖²
        x = x_step(residual, z, z, sigma, lam / level**2, cg_steps, obs.operator.linear)
        z = denoise(model, x, level)
        if log is not None:
            log("sigma_k", level * 255)
            log("data_rmse", float(residual(z).detach().pow(2).mean().sqrt()))
    return z.clamp(0, 1)
