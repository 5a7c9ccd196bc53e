"""The restoration loop of the denoising auto-encoder priors (``dmsp``, ``daep``) through the degradation's operator.

A denoising auto-encoder ``D`` trained with noise σ_dae has the error
``D(x) − x ≈ σ_dae² ∇ log p_σ(x)`` (a mean-shift vector), so ``x − D(x + n)``
is a stochastic gradient of the negative log prior. Restoration is gradient
descent with momentum on the data term plus a prior built from ``D``, with one
network for every degradation. :class:`DAEPriorMethod` holds the loop; a plugin
supplies the prior gradient and the data weight.

A method family (:mod:`bench.families`): the base class two plugins share, built on the generic steps of
:mod:`bench.solvers.linear` and :mod:`bench.solvers.initial`.

Example:
    >>> DAEPriorParams(iterations=8).iterations
    8
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.api import Method, Observation, RestoreContext, Tensor
from bench.checkpoints import weights_version
from bench.nets.dae import DAE, default_checkpoint, load_checkpoint
from bench.solvers.initial import fill_missing
from bench.solvers.linear import data_gradient, operator_gain


def validate_params(params: Any) -> None:
    """Raise ``ValueError`` for parameters of a DAE-prior method outside their valid range."""
    if params.iterations < 1:
        raise ValueError(f"iterations={params.iterations} must be >= 1")
    if not params.step > 0:
        raise ValueError(f"step={params.step} must be > 0")
    if not 0 <= params.momentum < 1:
        raise ValueError(f"momentum={params.momentum} must be in [0, 1)")
    if not params.sigma_dae >= 0:
        raise ValueError(f"sigma_dae={params.sigma_dae} must be >= 0 (0-255 scale; 0 = the checkpoint's σ)")
    if not params.sigma_min > 0:
        raise ValueError(f"sigma_min={params.sigma_min} must be > 0 (0-255 scale)")
    if params.checkpoint and not params.checkpoint.endswith((".pt", ".pth")):
        raise ValueError(f"checkpoint='{params.checkpoint}' must be a .pt file written by `bench train dae`")


def dae_weights_version(sigma: int) -> str:
    """Digest of the packaged σ = ``sigma`` weights, for a plugin's ``version`` (retrained weights invalidate cells).

    Example:
        >>> len(dae_weights_version(11))
        16
    """
    return weights_version(default_checkpoint(sigma))


@dataclass
class DAEPriorParams:
    """Parameters shared by the DAE-prior methods (σ values on the 0-255 scale).

    Example:
        >>> DAEPriorParams(iterations=8).step
        0.1
    """

    checkpoint: str = field(
        default="", metadata={"help": "a .pt of `bench train dae`; empty: the packaged one of the method's σ"}
    )
    iterations: int = 300
    step: float = 0.1
    momentum: float = 0.9
    sigma_dae: float = field(default=0.0, metadata={"help": "0 = auto: the checkpoint's σ"})
    noise_blind: bool = False
    sigma_min: float = 1.0
    init_fill: bool = True

    def __post_init__(self) -> None:
        validate_params(self)


class DAEPriorMethod(Method):
    """Shared loop of ``dmsp`` and ``daep``: momentum descent on w·data + (1 − w)·prior.

    Per iteration (official DMSP/DAEP code, on the [0, 1] scale, where both
    gradients scale with the image so the official step applies unchanged)::

        g = w · Aᵀ M (A(x) − y) + (1 − w) · prior_gradient(x)
        v = momentum · v − step · g
        x = clip(x + v, 0, 1)

    Subclasses define the prior gradient and the data weight ``w`` as a
    function of the inverse noise variance ``1/σ_d²`` (σ_d = the observation's
    effective noise, floored at ``sigma_min``); the noise-blind variant
    re-estimates ``1/σ_d²`` every iteration from the residual as in the
    official code: ``λ = N / (‖M (A(x) − y)‖² + N · 2σ_dae² · g_A)`` with ``g_A``
    the operator's noise gain (``‖k‖²`` for a blur kernel) and N the number of
    observed values.

    Example:
        >>> import torch
        >>> class Plain(DAEPriorMethod):  # the mean-shift prior with a fixed data weight
        ...     Params = DAEPriorParams
        ...     def prior_gradient(self, model, x, sigma, ctx):
        ...         with torch.no_grad():
        ...             return x - model(x + sigma * ctx.randn(*x.shape, like=x))
        ...     def data_weight(self, inv_var, sigma):
        ...         return 0.5
        >>> from bench.api import Observation, Operator
        >>> op = Operator(lambda x: x, in_shape=(8, 8), out_shape=(8, 8), sigma=0.1)
        >>> obs = Observation(y=torch.full((1, 3, 8, 8), 0.5), operator=op)
        >>> ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
        >>> tuple(Plain(DAEPriorParams(iterations=2)).restore(obs, ctx).shape)
        (1, 3, 8, 8)
    """

    default_sigma: ClassVar[int] = 11

    def prior_gradient(self, model: DAE, x: Tensor, sigma: float, ctx: RestoreContext) -> Tensor:
        raise NotImplementedError

    def data_weight(self, inv_var: float, sigma: float) -> float:
        raise NotImplementedError

    def checkpoint_path(self) -> Path:
        return Path(self.params.checkpoint) if self.params.checkpoint else default_checkpoint(self.default_sigma)

    def load(self, device: torch.device | str) -> tuple[DAE, float]:
        """The network and its noise level σ_dae on the [0, 1] scale."""
        model, info = load_checkpoint(self.checkpoint_path(), device)
        sigma = self.params.sigma_dae or float(info["sigma"])
        return model, sigma / 255.0

    def initial(self, obs: Observation) -> Tensor:
        op = obs.operator
        if self.params.init_fill and op.mask is not None and tuple(obs.y.shape[-2:]) == op.in_shape:
            return fill_missing(obs.y, op.mask.to(obs.y.device, obs.y.dtype))
        return op.init(obs.y)

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        y, op = obs.y, obs.operator
        model, sigma = self.load(y.device)
        x = self.initial(obs).detach().clamp(0, 1)
        sigma_d = max(obs.sigma, p.sigma_min / 255.0)
        inv_var = 1.0 / sigma_d**2
        if p.noise_blind:
            gain = operator_gain(op, x, ctx.randn(*x.shape, like=x))
            count = float(op.mask.sum()) if op.mask is not None else float(y.numel())
        velocity = torch.zeros_like(x)
        for _ in ctx.iterations(p.iterations, desc=self.name):
            prior = self.prior_gradient(model, x, sigma, ctx)
            data, residual = data_gradient(op, x, y)
            sq = float(residual.pow(2).sum())
            if p.noise_blind:
                inv_var = count / (sq + count * 2 * sigma**2 * gain)
            w = self.data_weight(inv_var, sigma)
            velocity = p.momentum * velocity - p.step * (w * data + (1 - w) * prior)
            x = (x + velocity).clamp(0, 1)
            ctx.log("loss", sq / residual.numel())
            if p.noise_blind:
                ctx.log("sigma_d", 255.0 / math.sqrt(inv_var))
        return x
