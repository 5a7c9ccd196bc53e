"""Deep Mean-Shift Priors (Bigdeli, Jin, Favaro & Zwicker, NIPS 2017) through the degradation's operator.

A denoising auto-encoder ``D`` trained with noise σ_dae has the error
``D(x) − x ≈ σ_dae² ∇ log p_σ(x)`` (a mean-shift vector), so ``x − D(x + n)``
is a stochastic gradient of the negative log prior. The momentum-descent loop
shared with ``daep`` is :class:`bench.families.dae_prior.DAEPriorMethod`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Budget, RestoreContext, Tensor
from bench.checkpoints import packaged_weights_note
from bench.families.dae_prior import DAEPriorMethod, DAEPriorParams, dae_weights_version
from bench.nets.dae import DAE
from bench.registry import register_method


@register_method("dmsp")
class DMSP(DAEPriorMethod):
    """Deep mean-shift prior (σ_dae = 11 DAE): momentum descent on data term + DAE mean-shift vector.

    Prior gradient ``x − D(x + n)``, ``n ~ N(0, σ_dae²)`` drawn from the cell's
    generator; data gradient ``Aᵀ M (A(x) − y)`` through the operator (autograd);
    non-blind weight ``w = σ_d⁻² / (σ_d⁻² + σ_dae⁻²)``; ``noise_blind=true``
    estimates σ_d per iteration (official rule). Step 0.1, momentum 0.9,
    initialised from the operator's estimate (masked pixels filled in). σ_d is
    floored at ``sigma_min`` (1/255) so noise-free operators (sr, inpaint)
    keep a prior term.

    Iterations by profile: smoke 8, quick 100, paper 300 (the paper's count).
    The default network is the packaged CPU variant (12 layers, 32 channels,
    ``methods/weights/dae_sigma11.md``); ``checkpoint=PATH`` selects another
    (cached results are keyed by the file's content).

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
        >>> ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
        >>> x = DMSP(DMSP.Params(iterations=8)).restore(obs, ctx)
        >>> float((x - 0.5).abs().mean()) < float((obs.y - 0.5).abs().mean())
        True
    """

    @dataclass
    class Params(DAEPriorParams):
        """``checkpoint`` (.pt of `bench train dae`; empty = packaged σ 11), ``iterations``, ``step``,
        ``momentum``, ``sigma_dae`` (0 = the checkpoint's σ), ``noise_blind``, ``sigma_min``, ``init_fill``."""

    profiles = {"smoke": {"iterations": 8}, "quick": {"iterations": 100}, "paper": {"iterations": 300}}
    reference_budget = Budget("iterations", 300, source="Bigdeli et al. 2017 (DMSP), the paper's count")
    default_sigma = 11
    version = dae_weights_version(11)
    weights_note = packaged_weights_note(
        "the packaged dae_sigma11.pt, trained here on one CPU core (12 layers × 32 channels, 11 min; official: 20 × 64)"
    )

    def prior_gradient(self, model: DAE, x: Tensor, sigma: float, ctx: RestoreContext) -> Tensor:
        with torch.no_grad():
            return x - model(x + sigma * ctx.randn(*x.shape, like=x))

    def data_weight(self, inv_var: float, sigma: float) -> float:
        return inv_var / (inv_var + 1.0 / sigma**2)
