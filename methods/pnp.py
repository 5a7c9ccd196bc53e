"""Plug-and-play restoration with a learned denoiser (DPIR: Zhang et al., TPAMI 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.api import Budget, Method, Observation, RestoreContext, Tensor
from bench.checkpoints import packaged_weights_note, weights_version
from bench.nets.drunet import DEFAULT_CHECKPOINT, load_checkpoint
from bench.physics.operator import is_identity
from bench.registry import register_method
from bench.solvers.dae_prior import fill_missing
from bench.solvers.pnp import SIGMA_FLOOR, denoise, hqs_restore, schedule

# HQS iterations by task when ``iterations`` is 0 (automatic): DPIR's 8 for deblurring, 24 for
# super-resolution; inpainting starts far from a solution and gets as many as super-resolution
AUTO_ITERATIONS = {"blur": 8, "multi": 8, "sr": 24, "inpaint": 24}


@register_method("pnp")
class PlugAndPlay(Method):
    """DPIR-style plug-and-play: HQS with a noise-level-conditioned DRUNet through the degradation's operator.

    The denoiser (``methods/weights/drunet_cpu.md``) is a small DRUNet trained here on
    BSDS200 + Yang91 for all noise levels in [0, 50]/255 (``bench train drunet``). With
    the identity operator (noise, JPEG treated as noise of its measured level) the
    restoration is one denoiser call at the operator's σ (for JPEG, whose error is
    not white noise, at σ·``jpeg_sigma_scale``: 1.5, chosen on BSDS training crops by
    ``benchmarks/tune_pnp.py``); otherwise
    half-quadratic splitting (:mod:`bench.solvers.pnp`) alternates a data step
    ``argmin ‖A(x) − y‖² + ρ_k‖x − z‖²`` (conjugate gradients, ``cg_steps``) and a
    denoiser step at ``σ_k``, with DPIR's schedule: ``σ_k`` log-spaced from 49/255 to
    σ, ``ρ_k = 0.23σ²/σ_k²``. ``iterations`` 0 means automatic: 8 for blur and Multi,
    24 for sr and inpaint (DPIR's deblurring and super-resolution settings).
    Inpainting starts from the observed pixels diffused into the holes.

    Profiles: smoke 3 iterations and 3 CG steps; quick and paper the automatic
    iterations with 10 and 20 CG steps.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> clean = torch.full((1, 3, 32, 32), 0.5)
        >>> obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
        >>> x = PlugAndPlay().restore(obs, RestoreContext(generator=torch.Generator()))
        >>> float((x - clean).abs().mean()) < 0.3 * float((obs.y - clean).abs().mean())
        True
    """

    @dataclass
    class Params:
        checkpoint: str = ""  # a denoiser written by `bench train drunet`; empty: the packaged drunet_cpu.pt
        iterations: int = 0  # HQS iterations; 0 = automatic by task (8 blur/multi, 24 sr/inpaint)
        cg_steps: int = 10
        jpeg_sigma_scale: float = 1.5  # the denoiser's σ for JPEG, × the operator's (chosen on training crops)

        def __post_init__(self) -> None:
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 0 (0 = automatic by task)")
            if self.cg_steps < 1:
                raise ValueError(f"cg_steps={self.cg_steps} must be >= 1")
            if not self.jpeg_sigma_scale > 0:
                raise ValueError(f"jpeg_sigma_scale={self.jpeg_sigma_scale} must be > 0")
            if self.checkpoint and not self.checkpoint.endswith((".pt", ".pth")):
                raise ValueError(f"checkpoint='{self.checkpoint}' must be a .pt file written by `bench train drunet`")

    reference_budget = Budget(
        "iterations",
        AUTO_ITERATIONS,
        source="HQS iterations of Zhang et al. 2021 (DPIR): 8 for deblurring, 24 for super-resolution; inpainting: this suite's 24",
    )
    profiles = {"smoke": {"iterations": 3, "cg_steps": 3}, "quick": {"cg_steps": 10}, "paper": {"cg_steps": 20}}
    version = "weights:" + weights_version(DEFAULT_CHECKPOINT)
    weights_note = packaged_weights_note(
        "the packaged drunet_cpu.pt, trained here on one CPU core (channels 32-256, 2 blocks per scale, 5 061 steps; published DRUNet: 64-512, 4 blocks, trained on GPUs)"
    )

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        model, _ = load_checkpoint(Path(p.checkpoint).expanduser() if p.checkpoint else DEFAULT_CHECKPOINT)
        shape = tuple(obs.y.shape[-2:])
        if obs.task in ("noise", "jpeg", "") and is_identity(obs.operator, shape):
            sigma = obs.sigma * (p.jpeg_sigma_scale if obs.task == "jpeg" else 1.0)
            ctx.log("sigma", sigma * 255)
            return denoise(model, obs.y, sigma).clamp(0, 1)
        x0 = obs.operator.init(obs.y)
        if obs.operator.mask is not None:
            x0 = fill_missing(x0, obs.operator.mask)
        iterations = p.iterations or AUTO_ITERATIONS.get(obs.task, 8)
        # DPIR's super-resolution ends at σ_K = max(σ, scale factor/255)
        scale = obs.operator.in_shape[0] / obs.operator.out_shape[0] if obs.task == "sr" else 0.0
        sigmas = schedule(obs.sigma, iterations, floor=max(SIGMA_FLOOR, scale / 255))
        return hqs_restore(
            obs,
            model,
            sigmas,
            init=x0,
            cg_steps=p.cg_steps,
            log=ctx.log,
            iterate=lambda n: ctx.iterations(n, desc="pnp"),
        )
