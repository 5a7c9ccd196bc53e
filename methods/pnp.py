"""Plug-and-play restoration with a learned denoiser (DPIR: Zhang et al., TPAMI 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.api import Budget, Method, Observation, RestoreContext, Tensor
from bench.checkpoints import file_version, weights_version
from bench.errors import CheckpointError
from bench.nets.drunet import DEFAULT_CHECKPOINT, DENOISERS, describe_denoiser, load_denoiser
from bench.physics.operator import TASKS, is_identity
from bench.registry import register_method
from bench.solvers.applicability import NotApplicable
from bench.solvers.initial import fill_missing
from bench.solvers.pnp import SIGMA_FLOOR, denoise, get_rho_sigma, hqs_restore

# HQS iterations by task when ``iterations`` is 0 (automatic): DPIR's 8 for deblurring (main_dpir_deblur.py,
# iter_num), 24 for super-resolution (main_dpir_sisr.py); inpainting starts far from a solution and gets as many
# as super-resolution
AUTO_ITERATIONS = {"blur": 8, "multi": 8, "sr": 24, "inpaint": 24}
MODEL_SIGMA1 = 49.0  # DPIR's modelSigma1 (0-255 scale), the same in every main_dpir_* script
UNREADABLE: set[tuple[str, str, int, int]] = set()  # (arch, file identity) of denoiser files that failed to load
PACKAGED_NOTE = (
    "the packaged drunet_cpu.pt, trained here on one CPU core (DRUNet of this suite, 4.3 M parameters: channels "
    "32-256, 2 blocks per scale, 5 061 steps; the published DRUNet has 32.6 M: 64-512, 4 blocks, trained on GPUs)"
)


@register_method("pnp")
class PlugAndPlay(Method):
    """DPIR plug-and-play: HQS with a noise-level-conditioned DRUNet through the degradation's operator.

    The denoiser (``methods/weights/drunet_cpu.md``) is a small DRUNet trained here on
    BSDS200 + Yang91 for all noise levels in [0, 50]/255 (``bench train drunet``, 4.3 M
    parameters); ``checkpoint`` = an official DPIR/KAIR ``drunet_color.pth`` loads strictly into
    the published architecture (``arch``: auto tells the two formats apart; 32.6 M parameters).
    With the identity operator (noise, JPEG treated as noise of its measured level) the
    restoration is one denoiser call at the operator's σ (for JPEG, whose error is
    not white noise, at σ·``jpeg_sigma_scale``: 1.5, chosen on the tuning split's crops that
    ``drunet_cpu.pt`` never saw by ``python benchmarks/tune_constants.py pnp-jpeg-scale``, log
    ``docs/tuning/pnp-jpeg-scale.md``: 1.25 to 1.5 within 0.02 dB), as DPIR's ``main_dpir_denoising.py``; otherwise
    half-quadratic splitting (:mod:`bench.solvers.pnp`) alternates a data step
    ``argmin ‖A(x) − y‖² + ρ_k‖x − z‖²`` (conjugate gradients, ``cg_steps``) and a
    denoiser step at ``σ_k``, with DPIR's ``get_rho_sigma``: ``σ_k`` log-spaced from 49/255 to
    ``modelSigma2``, ``ρ_k = 0.23·max(0.255/255, σ_noise)²/σ_k²``, ``σ_noise`` the noise actually
    added (never the data-term floor of sr). Per task, as DPIR's scripts:

    - blur (``main_dpir_deblur.py``): 8 iterations, ``modelSigma2`` = σ_noise (at least 0.255/255);
      multi the same (σ_noise: its effective σ, JPEG included);
    - sr (``main_dpir_sisr.py``): 24 iterations, ``modelSigma2`` = max(scale factor, σ_noise·255)/255;
      inpaint (no DPIR script): 24 iterations, ``modelSigma2`` as blur.

    ``x8`` (auto: DPIR's default per script) is the self-ensemble: off for noise and JPEG
    (``main_dpir_denoising.py``: ``x8 = False``; on: the mean of 8 flipped/rotated calls), on for every
    HQS task (``main_dpir_deblur.py`` / ``main_dpir_sisr.py``: ``x8 = True``, the periodical geometric
    self-ensemble: iteration k's denoiser call under transform k mod 8, turned back; no extra calls).
    ``iterations`` 0 means automatic (8 blur/multi, 24 sr/inpaint). Inpainting starts from the
    observed pixels diffused into the holes. A declared task without a built-in recipe (not one of
    :data:`bench.api.TASKS`, e.g. a third-party ``impulse``) is not applicable (``restore`` raises
    :class:`bench.solvers.applicability.NotApplicable`, n/a): both of DPIR's schemes assume Gaussian noise
    of level σ (a Gaussian denoiser, a least-squares data step), which such a task does not declare.

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
        checkpoint: str = field(
            default="",
            metadata={
                "help": "a denoiser file: `bench train drunet`'s or the official drunet_color.pth; empty: the packaged "
                "drunet_cpu.pt"
            },
        )
        arch: Literal["auto", "official", "suite"] = field(
            default="auto",
            metadata={
                "help": "auto: from the file (a plain state dict is the official UNetRes); official/suite accept only "
                "that layout"
            },
        )
        iterations: int = field(
            default=0, metadata={"help": "HQS iterations; 0 = automatic by task (8 blur/multi, 24 sr/inpaint)"}
        )
        cg_steps: int = 10
        jpeg_sigma_scale: float = field(
            default=1.5,
            metadata={"help": "the denoiser's σ for JPEG, × the operator's (docs/tuning/pnp-jpeg-scale.md)"},
        )
        x8: Literal["auto", "on", "off"] = field(
            default="auto",
            metadata={
                "help": "auto: DPIR's self-ensemble default per script, off for noise/jpeg (on: mean of 8 "
                "flips/rotations), on for HQS tasks (transform k mod 8 at iteration k)"
            },
        )

        def __post_init__(self) -> None:
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 0 (0 = automatic by task)")
            if self.cg_steps < 1:
                raise ValueError(f"cg_steps={self.cg_steps} must be >= 1")
            if not self.jpeg_sigma_scale > 0:
                raise ValueError(f"jpeg_sigma_scale={self.jpeg_sigma_scale} must be > 0")
            if self.checkpoint and not self.checkpoint.endswith((".pt", ".pth")):
                raise ValueError(
                    f"checkpoint='{self.checkpoint}' must be a .pt file written by `bench train drunet` or the "
                    "official drunet_color.pth"
                )
            if self.arch not in ("auto", "official", "suite"):
                raise ValueError(f"arch='{self.arch}' must be auto, official or suite")
            if self.arch == "official" and not self.checkpoint:
                raise ValueError(
                    "arch=official needs checkpoint=FILE, the official drunet_color.pth (the packaged "
                    "drunet_cpu.pt is this suite's DRUNet)"
                )
            if self.x8 not in ("auto", "on", "off"):
                raise ValueError(f"x8='{self.x8}' must be auto, on or off")

    reference_budget = Budget(
        "iterations",
        AUTO_ITERATIONS,
        source="HQS iterations of Zhang et al. 2021 (DPIR): 8 for deblurring, 24 for super-resolution; inpainting: this suite's 24",
    )
    profiles = {"smoke": {"iterations": 3, "cg_steps": 3}, "quick": {"cg_steps": 10}, "paper": {"cg_steps": 20}}
    version = "weights:" + weights_version(DEFAULT_CHECKPOINT)

    @staticmethod
    def weights_note(params: Any) -> str:
        """The caption's words for the denoiser a cell ran with: the packaged one, or the file's architecture and size."""
        p = dict(params)
        if not p.get("checkpoint"):
            return PACKAGED_NOTE
        path, arch = Path(str(p["checkpoint"])).expanduser(), str(p.get("arch") or "auto")
        key = (arch, *file_version(path))
        if key not in UNREADABLE:
            try:
                return describe_denoiser(DENOISERS[arch].get(path)[0])
            except (CheckpointError, KeyError, OSError, ValueError):
                UNREADABLE.add(key)  # read once: the cell fails with the loader's own error
        return ""

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        if obs.task and obs.task not in TASKS:
            raise NotApplicable(
                "pnp",
                obs.task,
                f"DPIR's recipes are for {', '.join(TASKS)} only: a Gaussian "
                "denoiser and a least-squares data step, which assume Gaussian noise of level σ",
            )
        path = Path(p.checkpoint).expanduser() if p.checkpoint else DEFAULT_CHECKPOINT
        model, _ = load_denoiser(path, p.arch, device=obs.y.device)
        shape = tuple(obs.y.shape[-2:])
        if obs.task in ("noise", "jpeg", "") and is_identity(obs.operator, shape):
            sigma = obs.sigma * (p.jpeg_sigma_scale if obs.task == "jpeg" else 1.0)
            ctx.log("sigma", sigma * 255)
            return denoise(model, obs.y, sigma, x8=p.x8 == "on").clamp(0, 1)  # auto: DPIR's denoising, x8 = False
        x0 = obs.operator.init(obs.y)
        if obs.operator.mask is not None:
            x0 = fill_missing(x0, obs.operator.mask)
        iterations = p.iterations or AUTO_ITERATIONS.get(obs.task, 8)
        noise = float(obs.operator.noise_level)  # the noise added: no data-term floor (sr keeps 1/255 in sigma)
        if obs.task == "sr":  # main_dpir_sisr.py: modelSigma2 = max(sf, noise_level_model*255.)
            model_sigma2 = max(obs.operator.in_shape[0] / obs.operator.out_shape[0], noise * 255)
        else:  # main_dpir_deblur.py: modelSigma2 = noise_level_model*255. (at least 0.255: log10(0) is not a level)
            model_sigma2 = max(noise * 255, SIGMA_FLOOR * 255)
        # every main_dpir_* script: get_rho_sigma(sigma=max(0.255/255., noise_level_model), iter_num, 49, modelSigma2, w=1)
        rhos, sigmas = get_rho_sigma(max(SIGMA_FLOOR, noise), iterations, MODEL_SIGMA1, model_sigma2, w=1.0)
        return hqs_restore(
            obs,
            model,
            sigmas,
            init=x0,
            cg_steps=p.cg_steps,
            log=ctx.log,
            iterate=lambda n: ctx.iterations(n, desc="pnp"),
            rhos=rhos,
            x8=p.x8 != "off",  # auto: on, as main_dpir_deblur.py and main_dpir_sisr.py (x8 = True)
        )
