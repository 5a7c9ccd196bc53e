"""Total-variation MAP restoration through the degradation's own operator."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.api import Method, Observation, RestoreContext, Tensor, check_finite_step
from bench.registry import register_method


def tv_smooth(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Isotropic total variation, smoothed as sum sqrt(dx² + dy² + eps²) (replicate boundary)."""
    dx = torch.diff(x, dim=-1, append=x[..., -1:])
    dy = torch.diff(x, dim=-2, append=x[..., -1:, :])
    return torch.sqrt(dx**2 + dy**2 + eps**2).sum()


@register_method("tv")
class TotalVariation(Method):
    """TV-regularised MAP: argmin_x ½‖A(x) − y‖² + λ·TV(x), λ = weight·σ_eff.

    σ_eff is the degradation's effective noise level (0-1 scale), so the
    regularisation follows the noise: for denoising this is the classical ROF
    model with λ ∝ σ. TV is smoothed (ε = 1e-3, isotropic) and minimised by
    Adam over pixels from the operator's initial estimate; iterations come from
    the profile. ``weight`` = 0.7 was chosen for noise σ = 25 on 128² crops of
    the tuning split (``bench/training/splits.py``, never evaluation images) by
    ``python benchmarks/tune_constants.py tv-weight``: log ``docs/tuning/tv-weight.md``
    (it is also the best of that grid on ``jpeg``; 0.9, chosen before on other
    BSDS training crops, was 0.25 dB lower on noise).

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
        >>> ctx = RestoreContext(generator=torch.Generator())
        >>> x = TotalVariation(TotalVariation.Params(iterations=50)).restore(obs, ctx)
        >>> float((x - 0.5).abs().mean()) < float((obs.y - 0.5).abs().mean())
        True
    """

    @dataclass
    class Params:
        weight: float = field(default=0.7, metadata={"help": "docs/tuning/tv-weight.md"})
        iterations: int = 300
        lr: float = 0.01
        eps: float = 1e-3

        def __post_init__(self) -> None:
            if not self.weight >= 0:
                raise ValueError(f"weight={self.weight} must be >= 0")
            if self.iterations < 1:
                raise ValueError(f"iterations={self.iterations} must be >= 1")
            if not self.lr > 0:
                raise ValueError(f"lr={self.lr} must be > 0")

    profiles = {"smoke": {"iterations": 40}, "quick": {"iterations": 300}, "paper": {"iterations": 1000}}

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        y = obs.y
        lam = p.weight * max(obs.sigma, 1e-3)
        # Adam's steps do not depend on the objective's scale, but its second moment (the squared gradient)
        # overflows float32 beyond ~1e19: dividing by max(1, λ) keeps huge weights finite (λ = 1e29 once
        # returned the input unchanged) and leaves every λ <= 1, the defaults included, exactly as it was.
        scale = 1.0 / max(1.0, lam)
        x = obs.operator.init(y).detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=p.lr)
        for it in ctx.iterations(p.iterations, desc="tv"):
            optimizer.zero_grad(set_to_none=True)
            data = 0.5 * obs.operator.data_residual(x, y).pow(2).sum()
            loss = data + lam * tv_smooth(x, p.eps)
            (loss * scale).backward()
            optimizer.step()
            check_finite_step("tv", it, loss, optimizer)
            ctx.log("loss", loss.item() / y.numel())
        return x.detach().clamp(0, 1)
