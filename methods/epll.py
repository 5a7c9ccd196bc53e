"""EPLL (Zoran & Weiss, "From Learning Models of Natural Image Patches to Whole Image Restoration", ICCV 2011)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.api import Method, Observation, RestoreContext, Tensor
from bench.checkpoints import weights_version
from bench.nets.gmm import DEFAULT_MODEL
from bench.registry import register_method
from bench.solvers.epll import PRIORS, beta_schedule, epll_restore
from bench.solvers.initial import fill_missing


@register_method("epll")
class EPLL(Method):
    """EPLL: half-quadratic splitting with a 200-component GMM of 8×8 patches, through the degradation's operator.

    The prior (``methods/weights/epll_gmm200.md``) is trained here on BSDS200 + Yang91 by
    ``bench train epll``: zero-mean full-covariance components over the DC-free 8×8
    patches of the opponent colour channels, as the original ``noDC_zeromean`` model.
    Each β alternates a z-step (every overlapping patch Wiener-filtered with its most
    likely component at noise 1/β) and an x-step (``‖A(x) − y‖²/σ² + β‖x − x̄‖²`` by
    ``cg_steps`` Gauss–Newton conjugate-gradient steps, Aᵀ from autograd), with the
    original β schedules: ``[1, 4, 8, 16, 32]/σ²`` for noise and JPEG,
    ``50·[1, 2, 4, …, 64]`` for blur, Multi, sr and inpaint (``schedule`` forces
    one). A declared task without a built-in recipe (not one of :data:`bench.api.TASKS`, e.g. a third-party
    ``impulse``) gets the second, the general restoration schedule through its operator, never the
    Gaussian-denoising one (which an identity operator alone does not justify).
    σ is the operator's effective level ``obs.sigma``. Inpainting starts from
    the observed pixels diffused into the holes; other tasks from ``A``'s initial
    estimate.

    Profiles: smoke ``stride`` 4 (every 4th patch position each way, plus the last
    ones: ~16× faster) and 5 CG steps; quick 20 and paper 50 CG steps, both with all
    overlapping patches (``stride`` 1, as the original). Images need ≥ 8×8 px.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> clean = torch.full((1, 3, 24, 24), 0.5)
        >>> obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
        >>> x = EPLL(EPLL.Params(stride=4, cg_steps=5)).restore(obs, RestoreContext(generator=torch.Generator()))
        >>> float((x - clean).abs().mean()) < 0.3 * float((obs.y - clean).abs().mean())
        True
    """

    @dataclass
    class Params:
        checkpoint: str = field(
            default="", metadata={"help": "a model written by `bench train epll`; empty: the packaged epll_gmm200.pt"}
        )
        stride: int = 1
        cg_steps: int = 20
        schedule: Literal["auto", "denoise", "deblur"] = field(
            default="auto", metadata={"help": "auto: from the task (obs.task)"}
        )

        def __post_init__(self) -> None:
            if self.stride < 1:
                raise ValueError(f"stride={self.stride} must be >= 1 (1 = all overlapping patches)")
            if self.cg_steps < 1:
                raise ValueError(f"cg_steps={self.cg_steps} must be >= 1")
            if self.schedule not in ("auto", "denoise", "deblur"):
                raise ValueError(f"schedule='{self.schedule}' must be auto, denoise or deblur")
            if self.checkpoint and not self.checkpoint.endswith((".pt", ".pth")):
                raise ValueError(f"checkpoint='{self.checkpoint}' must be a .pt file written by `bench train epll`")

    profiles = {"smoke": {"stride": 4, "cg_steps": 5}, "quick": {"cg_steps": 20}, "paper": {"cg_steps": 50}}
    version = weights_version(DEFAULT_MODEL)

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        prior = PRIORS.get(Path(p.checkpoint) if p.checkpoint else DEFAULT_MODEL)
        task = {"auto": obs.task, "denoise": "noise", "deblur": "blur"}[p.schedule]
        x0 = obs.operator.init(obs.y)
        if obs.operator.mask is not None:
            x0 = fill_missing(x0, obs.operator.mask)
        return epll_restore(obs, prior, beta_schedule(task, obs.sigma), p.stride, p.cg_steps, init=x0, log=ctx.log)
