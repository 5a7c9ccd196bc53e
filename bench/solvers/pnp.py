"""Plug-and-play restoration with a learned denoiser by half-quadratic splitting (DPIR, Zhang et al. 2021).

HQS alternates, for a decreasing sequence of denoiser levels ``σ_1 > … > σ_K``:

- **data step** (:func:`bench.solvers.linear.x_step`): ``x = argmin ‖A(x) − y‖² + ρ_k‖x − z‖²`` by conjugate
  gradients on the normal equations, ``Aᵀ`` from autograd (exact for the suite's linear operators; DPIR uses the
  closed FFT forms of its blur and bicubic operators instead, same minimiser);
- **prior step**: ``z = D(x, σ_k)``, the noise-level-conditioned denoiser; with ``x8`` (DPIR's periodical
  geometric self-ensemble) the denoiser sees ``x`` flipped/rotated by transform ``k mod 8`` and its output is
  turned back (:func:`denoise_pgse`).

``ρ_k`` and ``σ_k`` are DPIR's (:func:`get_rho_sigma`, a port of ``utils/utils_pnp.py``): ``σ_k`` log-spaced
from ``modelSigma1`` = 49/255 to ``modelSigma2``, ``ρ_k = 0.23·σ²/σ_k²`` with ``σ = max(0.255/255, σ_noise)``,
``σ_noise`` the noise actually added to the observation (``Operator.noise_level``: never a floor a degradation
keeps for MAP data terms, such as sr's 1/255). Denoising (identity operator: noise, JPEG as noise) is one denoiser
call at ``σ``, as DPIR's denoising; its ``x8`` is the averaged 8-transform ensemble (:func:`denoise`).

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
from bench.solvers.linear import x_step

SIGMA_START = 49 / 255  # DPIR's modelSigma1
SIGMA_FLOOR = 0.255 / 255  # DPIR's smallest noise level: σ of ρ is max(0.255/255, σ_noise)
LAMBDA = 0.23  # DPIR's trade-off λ (deblurring and super-resolution)


def get_rho_sigma(
    sigma: float, iter_num: int, model_sigma1: float = 49.0, model_sigma2: float = 2.55, w: float = 1.0
) -> tuple[list[float], list[float]]:
    """DPIR's ``get_rho_sigma`` (``utils/utils_pnp.py``, lines 27-36), literally: ``iter_num`` denoiser levels from
    ``model_sigma1`` to ``model_sigma2`` (0-255 scale; log-spaced for ``w`` = 1, as every DPIR script calls it, in
    float32 as there) returned on the [0, 1] scale, and ``ρ_k = 0.23·sigma²/σ_k²`` (``sigma`` on [0, 1]).

    >>> rhos, sigmas = get_rho_sigma(max(0.255 / 255, 0.0), 24, 49, 4)
    >>> round(sigmas[0] * 255, 4), round(sigmas[-1] * 255, 4), f"{rhos[0]:.3g}", f"{rhos[-1]:.3g}"
    (49.0, 4.0, '6.23e-06', '0.000935')
    """
    log_levels = np.logspace(np.log10(model_sigma1), np.log10(model_sigma2), iter_num).astype(np.float32)
    lin_levels = np.linspace(model_sigma1, model_sigma2, iter_num).astype(np.float32)
    sigmas = (log_levels * w + lin_levels * (1 - w)) / 255.0
    rhos = [float(LAMBDA * (sigma**2) / (s**2)) for s in sigmas]
    return rhos, [float(s) for s in sigmas]


def schedule(sigma: float, iterations: int, floor: float = SIGMA_FLOOR, start: float = SIGMA_START) -> list[float]:
    """DPIR's denoiser levels: ``iterations`` values log-spaced from ``start`` to ``max(sigma, floor)``.

    >>> [round(s * 255, 2) for s in schedule(10 / 255, 3)]
    [49.0, 22.14, 10.0]
    """
    end = min(max(sigma, floor), start)
    return [float(s) for s in np.logspace(np.log10(start), np.log10(end), max(iterations, 1))]


def augment(x: Tensor, mode: int) -> Tensor:
    """DPIR's ``augment_img_tensor4`` (``utils/utils_image.py``): the ``mode``-th of the 8 flips/rotations.

    >>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
    >>> all(torch.equal(deaugment(augment(x, m), m), x) for m in range(8))
    True
    """
    if mode == 0:
        return x
    if mode == 1:
        return x.rot90(1, [2, 3]).flip([2])
    if mode == 2:
        return x.flip([2])
    if mode == 3:
        return x.rot90(3, [2, 3])
    if mode == 4:
        return x.rot90(2, [2, 3]).flip([2])
    if mode == 5:
        return x.rot90(1, [2, 3])
    if mode == 6:
        return x.rot90(2, [2, 3])
    if mode == 7:
        return x.rot90(3, [2, 3]).flip([2])
    raise ValueError(f"mode={mode} must be 0..7")


def deaugment(x: Tensor, mode: int) -> Tensor:
    """The inverse of :func:`augment`, as DPIR writes it: modes 3 and 5 are undone by ``8 − mode``, the others are
    their own inverse."""
    return augment(x, 8 - mode if mode in (3, 5) else mode)


def _call(model: nn.Module, y: Tensor, sigma: float) -> Tensor:
    return model(y, torch.full((y.shape[0],), float(sigma), dtype=y.dtype, device=y.device))


def denoise(model: nn.Module, y: Tensor, sigma: float, x8: bool = False) -> Tensor:
    """``D(y, σ)`` without gradients, in the model's precision; ``x8``: the mean over the 8 flips/rotations of
    ``y``, each output turned back (DPIR's ``utils_model.test_x8``, ``test_mode(mode=3)`` of its denoising script).
    """
    with torch.no_grad():
        if not x8:
            return _call(model, y, sigma)
        return torch.stack([deaugment(_call(model, augment(y, m), sigma), m) for m in range(8)]).mean(dim=0)


def denoise_pgse(model: nn.Module, x: Tensor, sigma: float, k: int) -> Tensor:
    """The prior step of HQS iteration ``k`` with DPIR's periodical geometric self-ensemble (``x8`` in
    ``main_dpir_deblur.py`` / ``main_dpir_sisr.py``): one denoiser call on ``x`` under transform ``k mod 8``,
    turned back; no averaging."""
    mode = k % 8
    return deaugment(denoise(model, augment(x, mode), sigma), mode)


def hqs_restore(
    obs: Observation,
    model: nn.Module,
    sigmas: list[float],
    init: Tensor | None = None,
    cg_steps: int = 10,
    lam: float = LAMBDA,
    log: Callable[[str, float], None] | None = None,
    iterate: Callable[[int], Iterable[int]] = range,
    rhos: list[float] | None = None,
    x8: bool = False,
) -> Tensor:
    """DPIR's half-quadratic splitting (module docstring) over the levels ``sigmas``; returns ``x`` in [0, 1].

    ``rhos``: the data steps' ``ρ_k``; None: DPIR's rule ``lam·max(0.255/255, σ_noise)²/σ_k²`` with ``σ_noise`` the
    operator's ``noise_level``. ``x8``: DPIR's periodical geometric self-ensemble (:func:`denoise_pgse`).
    ``iterate(n)`` yields the iteration indices (a progress-reporting, budget-counting ``range``).
    """
    y = obs.y
    if rhos is None:
        sigma = max(float(getattr(obs.operator, "noise_level", obs.sigma)), SIGMA_FLOOR)
        rhos = [lam * sigma**2 / level**2 for level in sigmas]
    if len(rhos) != len(sigmas):
        raise ValueError(f"{len(rhos)} values of rho for {len(sigmas)} denoiser levels")
    x = (obs.operator.init(y) if init is None else init).detach().float()

    def residual(v: Tensor) -> Tensor:
        return obs.operator.data_residual(v, y)

    z = x
    for k in iterate(len(sigmas)):
        level = sigmas[k]
        # ‖A(x) − y‖² + ρ_k‖x − z‖² (x_step's ‖A(x) − y‖²/σ² + β‖x − z‖² with σ = 1, β = ρ_k)
        x = x_step(residual, z, z, 1.0, rhos[k], cg_steps, obs.operator.linear)
        z = denoise_pgse(model, x, level, k) if x8 else denoise(model, x, level)
        if log is not None:
            log("sigma_k", level * 255)
            log("data_rmse", float(residual(z).detach().pow(2).mean().sqrt()))
    return z.clamp(0, 1)
