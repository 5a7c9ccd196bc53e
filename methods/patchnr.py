"""PatchNR (Altekrüger et al., Inverse Problems 2023): a patch normalizing flow as the regulariser of a MAP fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.api import Budget, Method, Observation, RestoreContext, Tensor
from bench.checkpoints import packaged_weights_note, weights_version
from bench.nets.patchnr import DEFAULT_CHECKPOINT, load_checkpoint
from bench.registry import register_method
from bench.solvers.data_terms import DATA_TERMS, MIN_SIGMA, data_fidelity, log_data_term
from bench.solvers.initial import fill_missing
from bench.solvers.patchnr import patchnr_map


@register_method("patchnr")
class PatchNR(Method):
    """PatchNR: Adam on the image for ``data term + λ·(H·W)·mean NLL of random 6×6 patches`` under a patch flow.

    The flow (``methods/weights/patchnr_cpu.md``, ``bench train patchnr``) is PatchNR's
    dense GLOW-coupling flow on RGB 6×6 patches, trained here on BSDS200 + Yang91.
    Restoration follows the official scripts (github.com/FabianAltekrueger/patchNR,
    ``patchNR_deblurring.py``: Adam lr 0.005, 600 iterations, λ 0.87, 40 000 random
    patches per iteration): ``x`` starts at the operator's first estimate (for
    inpainting the observed pixels diffused into the holes), and every iteration
    draws a fresh random subset of ``patches_per_iteration`` patch positions of the
    reflect-padded estimate from the cell's generator (:mod:`bench.solvers.patchnr`).
    The data term is :func:`bench.solvers.data_terms.data_fidelity` (``data_term``:
    ``operator`` = ``‖A(x) − y‖²/(2σ²)``; ``qcs`` = JPEG quantisation cells where
    the operator carries them). Normalisation: ``λ`` (``prior_weight``) multiplies
    the mean patch NLL (nats) times the number of pixel positions, so it does not
    depend on the image size or σ; the official ``‖A(x) − y‖² + λ_off·mean NLL``
    is ``λ = λ_off/(2σ²·H·W)``. The Adam step is ``lr``, or with ``lr`` = 0 (default)
    ``lr_per_sigma·σ`` (a change from the official fixed steps: Adam moves every
    pixel by about the step whatever the gradient, so a fixed step fit for σ = 25
    roughens JPEG and Multi starts); it decays with a cosine schedule. ``lr_per_sigma``
    = 0.1 and ``prior_weight`` = 0.01 were re-chosen on the tuning split's crops that
    ``patchnr_cpu.pt`` never saw (mean PSNR over noise, jpeg and multi, 128² crops:
    ``python benchmarks/tune_constants.py patchnr``, log ``docs/tuning/patchnr.md``),
    the quick budget on held-out BSDS/Yang91 training crops (``benchmarks/tune_patchnr.py``),
    never on evaluation images.
    Profiles: smoke 5 iterations × 500 patches, quick 50 × 2 500, paper 600 × 40 000 (the official deblurring run).

    Example:
        >>> import os, tempfile, torch
        >>> from bench.api import Observation, Operator, RestoreContext
        >>> from bench.nets.patchnr import PatchFlow, PatchNRConfig, save_checkpoint
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> _ = save_checkpoint(PatchFlow(PatchNRConfig(layers=1, hidden=8)), path)
        >>> obs = Observation(torch.rand(1, 3, 24, 24), Operator(lambda x: x, (24, 24), (24, 24), sigma=0.1))
        >>> method = PatchNR(PatchNR.Params(checkpoint=path, iterations=2, patches_per_iteration=50))
        >>> tuple(method.restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 24, 24)
    """

    @dataclass
    class Params:
        checkpoint: str = field(
            default="", metadata={"help": "a .pt of `bench train patchnr`; empty: the packaged patchnr_cpu.pt"}
        )
        iterations: int = 50
        lr: float = field(default=0.0, metadata={"help": "Adam step; 0 = automatic, lr_per_sigma × the operator's σ"})
        lr_per_sigma: float = 0.1
        prior_weight: float = field(default=0.01, metadata={"help": "λ, per pixel position (see the class docstring)"})
        patches_per_iteration: int = 2500
        data_term: Literal["operator", "qcs"] = "operator"
        qcs_width: float = 1.0

        def __post_init__(self) -> None:
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 0")
            if not self.lr >= 0:
                raise ValueError(f"lr={self.lr} must be >= 0 (0 = lr_per_sigma·σ; the official scripts use 0.005-0.03)")
            if not self.lr_per_sigma > 0:
                raise ValueError(f"lr_per_sigma={self.lr_per_sigma} must be > 0")
            if not self.prior_weight >= 0:
                raise ValueError(f"prior_weight={self.prior_weight} must be >= 0 (0 = data term only)")
            if self.patches_per_iteration < 1:
                raise ValueError(f"patches_per_iteration={self.patches_per_iteration} must be >= 1")
            if self.data_term not in DATA_TERMS:
                raise ValueError(f"data_term={self.data_term!r} must be one of {', '.join(DATA_TERMS)}")
            if not self.qcs_width > 0:
                raise ValueError(f"qcs_width={self.qcs_width} must be > 0 (1 = the whole quantisation cell)")
            if self.checkpoint and not self.checkpoint.endswith((".pt", ".pth")):
                raise ValueError(f"checkpoint='{self.checkpoint}' must be a .pt file written by `bench train patchnr`")

    profiles = {
        "smoke": {"iterations": 5, "patches_per_iteration": 500},
        "quick": {"iterations": 50, "patches_per_iteration": 2500},
        "paper": {"iterations": 600, "patches_per_iteration": 40000},
    }
    reference_budget = Budget(
        "iterations",
        600,
        source="Altekrüger et al. 2023, official patchNR_deblurring.py: 600 Adam iterations, 40000 patches each",
    )
    version = "weights:" + weights_version(DEFAULT_CHECKPOINT)
    weights_note = packaged_weights_note(
        "the packaged patchnr_cpu.pt, trained here on one CPU core (RGB 6×6 patches, 5 couplings × 256 hidden units, 35 min; the official flows have 512 hidden units)"
    )

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        flow, _ = load_checkpoint(Path(p.checkpoint).expanduser() if p.checkpoint else DEFAULT_CHECKPOINT, ctx.device)
        if flow.config.channels != obs.y.shape[1]:
            raise ValueError(f"the flow models {flow.config.channels}-channel patches, the input has {obs.y.shape[1]}")
        x0 = obs.operator.init(obs.y).clamp(0, 1)
        if obs.operator.mask is not None:
            x0 = fill_missing(x0, obs.operator.mask)
        # Adam moves every pixel by about lr per step whatever the gradient's size: a step in proportion to the
        # noise level keeps a clean-ish start (JPEG, Multi) from being roughened while noise still gets removed
        lr = p.lr or p.lr_per_sigma * max(obs.sigma, MIN_SIGMA)
        ctx.log("lr", lr)
        log_data_term(ctx, obs, p.data_term, p.qcs_width)
        x = patchnr_map(
            flow,
            x0,
            lambda x: data_fidelity(obs, x, p.data_term, p.qcs_width),
            p.iterations,
            lr,
            p.prior_weight,
            p.patches_per_iteration,
            ctx.generator,
            iterate=lambda n: ctx.iterations(n, desc="patchnr"),
            trace=ctx.log,
        )
        return x.clamp(0, 1)
