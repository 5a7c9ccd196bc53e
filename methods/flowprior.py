"""Flow prior (Helminger et al.): MAP restoration in the latent space of a trained Glow-like flow.

Phase 1 (``bench train flowprior``, :mod:`bench.training.flowprior`) trains the
prior (:mod:`bench.nets.flow`) with the paper's four losses; phase 2 (the ``flowprior``
method) restores ``x = T(u*)`` with ``u* = argmin_u ||A(T(u)) − y||²/(2σ²) −
w·log p(T(u))`` by Adam over ``u``, starting at ``T⁻¹(A.init(y))``. Images are
cut into 64×64 patches with a margin of 4 px (neighbours overlap by 8); all
patches are optimised as one batch and blended back inside the loop, so the
operator (blur, downsampling) acts on the assembled full image (solver and
tiler: :mod:`bench.solvers.flow_map`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.api import Budget, Method, Observation, RestoreContext, Tensor
from bench.checkpoints import packaged_weights_note, weights_version
from bench.nets.flow import Flow
from bench.registry import register_method
from bench.solvers.data_terms import data_fidelity, log_data_term
from bench.solvers.flow_map import FLOWS, PRIOR_TERMS, Tiler, map_image, map_latents

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "flowprior_default.pt"


def load_flow(checkpoint: str = "") -> Flow:
    """The flow of ``checkpoint`` ("" = the packaged default), in eval mode, cached, frozen."""
    return FLOWS.get(Path(checkpoint).expanduser() if checkpoint else DEFAULT_CHECKPOINT)


def _checkpoint_version() -> str:
    """Content hash of the packaged weights, so cached results follow the shipped checkpoint."""
    return "weights:" + weights_version(DEFAULT_CHECKPOINT)


@register_method("flowprior")
class FlowPrior(Method):
    """Flow prior (Helminger et al.): MAP in the latent space of a trained flow, patch-wise.

    Minimises ``||A(x) − y||²/(2σ²) − w·Σ_patches log p(patch)`` over the latents
    ``u`` of all 64×64 patches at once (``x`` = patches ``T(u)`` blended with
    4 px margins; ``A`` acts on the full image; inpainting masks via
    ``data_residual``), by Adam with a cosine-decayed step ``lr`` from
    ``u = T⁻¹(A.init(y))`` (bicubic for ``sr``). Profiles set ``iterations``:
    smoke 5, quick 60, paper 200 (timings: docs/methods.md). ``lr`` =
    0.005 and ``prior_weight`` = 0.1 were chosen on the 14 tuning-split crops
    (128²) that ``flowprior_default.pt`` never saw, by mean PSNR over noise,
    jpeg and multi (``python benchmarks/tune_constants.py flowprior``, log
    ``docs/tuning/flowprior.md``: 0.1 beat the earlier 0.3 by 0.06 dB, on
    noise; never on evaluation images); larger steps diverge, larger weights
    over-smooth JPEG and blur (see the model card). ``checkpoint`` = "" is
    the packaged default (``methods/weights/flowprior_default.pt``).

    Example:
        >>> import torch
        >>> from bench.api import Observation, Operator, RestoreContext
        >>> from bench.nets.flow import Flow, FlowConfig, save_checkpoint
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> save_checkpoint(path, Flow(FlowConfig(levels=2, steps=1, hidden=8)))
        >>> obs = Observation(torch.rand(1, 3, 40, 40), Operator(lambda x: x, (40, 40), (40, 40), sigma=0.1))
        >>> method = FlowPrior(FlowPrior.Params(checkpoint=path, iterations=2, patch=16))
        >>> tuple(method.restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 40, 40)
    """

    @dataclass
    class Params:
        checkpoint: str = field(
            default="", metadata={"help": "a .pt of `bench train flowprior`; empty: the packaged flowprior_default.pt"}
        )
        iterations: int = 60
        lr: float = 0.005
        prior_weight: float = field(default=0.1, metadata={"help": "docs/tuning/flowprior.md"})
        patch: int = 64
        margin: int = 4
        standardized: bool = False
        prior: Literal["nll", "latent_norm"] = field(
            default="nll", metadata={"help": "−log p(x) (the paper) or Asim et al.'s γ·‖ε‖ per patch"}
        )
        data_term: Literal["operator", "qcs"] = field(
            default="operator", metadata={"help": '"qcs": JPEG quantisation cells on jpeg and multi'}
        )
        qcs_width: float = field(
            default=1.0,
            metadata={"help": "the QCS cell width as a fraction of the quantisation step (narrowed below 1)"},
        )
        space: Literal["latent", "image"] = field(
            default="latent", metadata={"help": "optimise the latents u (the paper) or the pixels (prior nll)"}
        )

        def __post_init__(self) -> None:
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 0")
            if not self.lr > 0:
                raise ValueError(f"lr={self.lr} must be > 0")
            if not self.prior_weight >= 0:
                raise ValueError(f"prior_weight={self.prior_weight} must be >= 0")
            if self.patch < 8:
                raise ValueError(f"patch={self.patch} must be >= 8 (a multiple of the flow's 2^levels)")
            if self.prior not in PRIOR_TERMS:
                raise ValueError(f"prior={self.prior!r} is not one of {', '.join(PRIOR_TERMS)}")
            if self.space == "image" and self.prior != "nll":
                raise ValueError("space='image' optimises pixels under −log p(x): it needs prior='nll'")
            if not 0 < self.qcs_width <= 1:
                raise ValueError(f"qcs_width={self.qcs_width} must be in (0, 1] (a fraction of the quantisation step)")
            if not 0 <= 2 * self.margin < self.patch:
                raise ValueError(f"margin={self.margin} must satisfy 0 <= 2·margin < patch ({self.patch})")

    profiles = {"smoke": {"iterations": 5}, "quick": {"iterations": 60}, "paper": {"iterations": 200}}
    reference_budget = Budget(
        "iterations", 200, source="this suite's paper profile (no count from Helminger et al. is recorded here)"
    )
    version = _checkpoint_version()
    weights_note = packaged_weights_note(
        "the packaged flowprior_default.pt, trained here on one CPU core (config cpu: 0.37 M parameters, 28 min, 4.64 bits/dim held out), far smaller than the paper's div2k prior trained on GPUs; see docs/flow_priors.md"
    )

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        flow = load_flow(p.checkpoint).to(ctx.device)
        if p.patch % flow.config.multiple:
            raise ValueError(f"patch={p.patch} must be a multiple of {flow.config.multiple} for this flow")
        if flow.config.in_channels not in (1, obs.y.shape[1]):
            raise ValueError(
                f"the flow models {flow.config.in_channels}-channel images, the input has {obs.y.shape[1]}"
            )
        y = obs.y
        x0 = obs.operator.init(y).clamp(0, 1)
        tiler = Tiler(tuple(x0.shape[-2:]), p.patch, p.margin, device=x0.device)
        log_data_term(ctx, obs, p.data_term, p.qcs_width)

        def data_term(patches: Tensor) -> Tensor:
            # the operator acts on the assembled image, so blur/sr see across patch borders
            return data_fidelity(obs, tiler.merge(patches), p.data_term, p.qcs_width)

        if p.space == "image":
            patches = map_image(flow, tiler.split(x0), data_term, p.iterations, p.lr, p.prior_weight, ctx)
        else:
            patches, _ = map_latents(
                flow, tiler.split(x0), data_term, p.iterations, p.lr, p.prior_weight, ctx, p.standardized, p.prior
            )
        return tiler.merge(patches).clamp(0, 1)
