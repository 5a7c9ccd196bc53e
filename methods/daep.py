"""Auto-encoding priors (Bigdeli & Zwicker, "Image Restoration using Autoencoding Priors", 2017/2018).

The momentum-descent loop shared with ``dmsp`` is :class:`bench.families.dae_prior.DAEPriorMethod`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Budget, RestoreContext, Tensor
from bench.checkpoints import packaged_weights_note
from bench.families.dae_prior import DAEPriorMethod, DAEPriorParams, dae_weights_version
from bench.nets.dae import DAE
from bench.registry import register_method


@register_method("daep")
class DAEP(DAEPriorMethod):
    """Auto-encoding prior (σ = 25 DAE): descent on data term + ½‖x − D(x + η)‖², gradient through the network.

    The prior is the squared magnitude of the DAE's mean-shift vector
    ``e = x − D(x + η)``, ``η ~ N(0, σ_dae²)``; its gradient ``e − Jᵀe`` (J the
    Jacobian of D at ``x + η``) is back-propagated through the network. Data
    weight as in the official code: ``w = 1 − λ_p``, ``λ_p = (γ/σ_η²) / (γ/σ_η² +
    σ_d⁻²)``, ``σ_η = √2·σ_dae``, γ = 27.5 (the official 6.875, which the code
    multiplies by 4). Step 0.1 and momentum 0.9, as in ``dmsp``; ``noise_blind``
    estimates σ_d per iteration with the ``dmsp`` rule.

    Iterations by profile: smoke 8, quick 100, paper 300 (official default).
    The default network is the packaged CPU variant (``methods/weights/dae_sigma25.md``).

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
        >>> ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
        >>> x = DAEP(DAEP.Params(iterations=8)).restore(obs, ctx)
        >>> float((x - 0.5).abs().mean()) < float((obs.y - 0.5).abs().mean())
        True
    """

    @dataclass
    class Params(DAEPriorParams):
        """The ``dmsp`` parameters (empty ``checkpoint`` = packaged σ 25) and the prior weight ``gamma``."""

        gamma: float = 27.5

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.gamma > 0:
                raise ValueError(f"gamma={self.gamma} must be > 0 (prior weight; official 27.5)")

    profiles = {"smoke": {"iterations": 8}, "quick": {"iterations": 100}, "paper": {"iterations": 300}}
    reference_budget = Budget("iterations", 300, source="Bigdeli & Zwicker 2017 (DAEP), official code default")
    default_sigma = 25
    version = dae_weights_version(25)
    weights_note = packaged_weights_note(
        "the packaged dae_sigma25.pt, trained here on one CPU core (12 layers × 32 channels, 11 min; official: 20 × 64)"
    )

    def prior_gradient(self, model: DAE, x: Tensor, sigma: float, ctx: RestoreContext) -> Tensor:
        eta = sigma * ctx.randn(*x.shape, like=x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            error = xg - model(xg + eta)
            # d/dx ½‖x − D(x+η)‖² = e − Jᵀe; autograd does the vector–Jacobian product
            (grad,) = torch.autograd.grad(error, xg, grad_outputs=error.detach())
        return grad.detach()

    def data_weight(self, inv_var: float, sigma: float) -> float:
        prior = self.params.gamma / (2.0 * sigma**2)
        return 1.0 - prior / (prior + inv_var)
