"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) through the degradation's operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bench.api import Budget, Method, Observation, RestoreContext, Tensor
from bench.params import shared_fields
from bench.registry import register_method
from bench.solvers.dip import (
    ITERATION_PROFILES,
    DipFit,
    fit_dip,
    fit_field,
    reference_iterations,
    resolve_precision,
    resolve_task,
    task_recipe,
)
from bench.solvers.early_stopping import DEFAULT_PATIENCE, DEFAULT_WINDOW, check_options


@register_method("dip")
class DeepImagePrior(Method):
    """Deep Image Prior: fit a randomly initialised "skip" net from fixed noise to y through A.

    Minimises ``mean(mask · (A(net(z + reg_noise·n)) − y)²)`` over the weights
    with Adam, each task as its official notebook (github.com/DmitryUlyanov/deep-image-prior).
    The net is the official ``skip`` encoder–decoder (5 scales, 128 channels down and up, 4-channel
    skips, 3×3 convolutions, stride-2 downsampling, bilinear upsampling,
    BatchNorm + LeakyReLU(0.2), reflection padding, 1×1 output conv + sigmoid;
    2,217,831 parameters); z is U(0, 1)·0.1 of depth 32, n is redrawn every
    iteration. The clean image is never seen; there is no early stopping on PSNR.

    The task is the one the degradation declares (``task=auto``: ``obs.task``,
    see :func:`bench.solvers.dip.resolve_task`) and picks the notebook's recipe
    (:data:`bench.solvers.dip.PAPER_SETTINGS`). A declared task outside this table (e.g. a third-party
    ``impulse``) has no recipe: ``restore`` raises :class:`bench.solvers.applicability.NotApplicable` (n/a)
    rather than run a Gaussian-noise recipe on it; ``--set dip.task=NAME`` forces one of the table's:

    ==========  =====  =====  =====  ======  ===========  =====  ====  ===========  ==========================
    task        paper  quick  smoke  reg     net (depth)  lr     ema   backtrack    notebook
    ==========  =====  =====  =====  ======  ===========  =====  ====  ===========  ==========================
    noise       3000   300    30     1/30    skip (32)    0.01   0.99  denoising    denoising.ipynb (F16)
    jpeg        2400   240    24     1/30    small (3)    0.01   0.99  denoising    denoising.ipynb (snail)
    sr ×2, ×4   2000   200    20     0.03    skip (32)    0.01   –     –            super-resolution.ipynb
    sr ×8       4000   400    40     0.05    skip (32)    0.01   –     –            super-resolution.ipynb
    inpaint     11000  1100   110    0.03    skip (32)    0.001  –     restoration  restoration.ipynb (barbara)
    blur        3000   300    30     0.03    skip (32)    0.01   –     –            none: the SR recipe
    multi       3000   300    30     1/30    skip (32)    0.01   0.99  denoising    none: the denoising recipe
    ==========  =====  =====  =====  ======  ===========  =====  ====  ===========  ==========================

    ``ema`` 0.99 is the denoising notebook's ``exp_weight``: the result is the running average of the outputs.
    Without it (–) the result is the net's output after the last step (``net(net_input)``, the last cell of the
    super-resolution and restoration notebooks). ``backtrack`` is the notebook's rule
    (:class:`bench.solvers.dip.Backtracking`): when the PSNR of the fit to y has fallen by more than 5 dB since
    the last check, the weights saved at that check are copied back (and the step is still taken); denoising
    checks every iteration but each 100th, restoration every 50th; the other notebooks have none.

    ``quick`` and ``smoke`` only scale the iterations (``iteration_scale`` 0.1
    and 0.01). JPEG uses the notebook's small net ([8, 16, 32, 64, 128],
    skips [0, 0, 0, 4, 4], input depth 3). ``inpaint`` (pixels missing at
    random) is restoration.ipynb's Barbara recipe, not inpainting.ipynb's
    (text and large holes). ``sr`` fits through the degradation's own
    operator: the antialiased bicubic by default, the notebook's Lanczos-2
    ``Downsampler`` with ``--set sr.kernel=lanczos2`` (DIP as published).
    ``blur`` (no official run) uses the SR recipe — A removes high
    frequencies and the noise is mild (2.55/255), the case reg_noise 0.03 was
    tuned for — with the denoising budget because the image is
    full-resolution. ``multi`` (blur σ=1 → noise 10/255 → JPEG 40, effective
    σ ≈ 12/255) is dominated by noise, so it uses the denoising recipe with
    the blur operator in the loss. What still differs from the notebooks is
    listed in docs/dip.md.

    The quick budgets fit a CPU (timings: docs/methods.md) and suffice for heavy noise, not for JPEG or ``multi``, whose inputs are
    already good: there DIP needs the paper budget (measurements in
    docs/dip.md).

    Every recipe entry is a parameter: a value other than the "auto" default
    (``0`` or ``-1``) overrides it, e.g. ``--set dip.iterations=500``
    (``iterations`` set explicitly is not scaled by the profile). Images whose
    sides are not multiples of 32 are run at the next multiple (at least 64)
    and the central window is fitted. On CPUs with bfloat16 units (AVX512-BF16
    / AMX) ``precision=auto`` runs the convolutions in bfloat16 autocast
    (float32 weights, optimiser, loss and output layer): about 2× faster
    than float32 here; ``precision=float32`` restores the reference numerics.
    ``precision=float64`` runs the whole fit in double precision (about 2× slower than float32): a short fit
    amplifies float32 rounding, whose order differs between CPU kernel paths (AVX2, AVX-512, thread counts),
    into visible metric changes; in float64 those differences stay far below any reported digit, which is why
    the CI smoke grid pins it (docs/portability.md).
    In float32 on a CPU, ``conv=auto`` runs the 128-channel 3×3 stride-1
    layers at 32² pixels and larger as Winograd F(4×4, 3×3) convolutions
    (:mod:`bench.nets.winograd`: ~1e-5 relative difference from the direct
    convolution, under the float32 noise of a fit); ``conv=direct`` is torch's.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> dip = DeepImagePrior(DeepImagePrior.Params(iterations=2, net="small"))
        >>> tuple(dip.restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 32, 32)
    """

    @dataclass
    class Params:
        task: Literal["auto", "noise", "jpeg", "blur", "sr", "inpaint", "multi"] = field(
            default="auto", metadata={"help": "auto: obs.task"}
        )
        iterations: int = field(default=0, metadata={"help": "0 = auto: the task's official count × iteration_scale"})
        iteration_scale: float = field(default=1.0, metadata={"help": "set by the profile (quick 0.1, smoke 0.01)"})
        reg_noise_std: float = field(default=-1.0, metadata={"help": "< 0 = auto (per task)"})
        net: Literal["auto", "skip", "small"] = field(
            default="auto", metadata={"help": "auto: small for jpeg, else skip"}
        )
        input_depth: int = field(default=0, metadata={"help": "0 = auto: 32 (3 with the small net)"})
        lr: float = field(default=0.0, metadata={"help": "0 = auto: the task's (0.001 for inpaint, else 0.01)"})
        ema: float = field(
            default=-1.0,
            metadata={"help": "< 0 = auto: 0.99 for noise, jpeg, multi, else 0 (no average: the net's last output)"},
        )
        backtrack: Literal["auto", "off", "denoising", "restoration"] = field(
            default="auto", metadata={"help": "auto: the task's notebook rule"}
        )
        precision: Literal["auto", "float32", "bfloat16", "float64"] = fit_field(DipFit, "precision")
        channels_last: Literal["auto", "on", "off"] = fit_field(DipFit, "channels_last")
        conv: Literal["auto", "direct", "winograd"] = fit_field(DipFit, "conv")
        early_stop: Literal["off", "wmv"] = fit_field(DipFit, "early_stop")
        es_window: int = DEFAULT_WINDOW
        es_patience: int = DEFAULT_PATIENCE

        def __post_init__(self) -> None:
            check_options(self.early_stop, self.es_window, self.es_patience)
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 1, or 0 for the task's default")
            if not self.iteration_scale > 0:
                raise ValueError(f"iteration_scale={self.iteration_scale} must be > 0")
            if self.input_depth < 0:
                raise ValueError(f"input_depth={self.input_depth} must be >= 1, or 0 for auto")
            if not self.lr >= 0:
                raise ValueError(f"lr={self.lr} must be > 0, or 0 for the task's")
            if not self.ema < 1:
                raise ValueError(f"ema={self.ema} must be in [0, 1) (e.g. 0.99), or < 0 for the task's")
            if self.conv == "winograd" and self.precision == "bfloat16":
                raise ValueError("conv=winograd is a float32 algorithm; use precision=float32, or conv=auto")

    profiles = ITERATION_PROFILES
    reference_budget = Budget(
        "iterations",
        reference_iterations(),  # the recipes' own counts (bench.solvers.dip.PAPER_SETTINGS)
        source="Ulyanov et al. 2018, official notebooks (inpaint: restoration.ipynb); blur and multi: no official run, "
        "the denoising count",
        scale="iteration_scale",
    )

    def resolve(self, obs: Observation) -> dict[str, Any]:
        """The effective settings for ``obs``: the task's recipe with explicit parameters applied."""
        p = self.params
        task = resolve_task(obs) if p.task == "auto" else p.task
        recipe = task_recipe(task, obs)
        iterations, reg, net, depth = recipe[:4]
        net = net if p.net == "auto" else p.net
        if p.input_depth:
            depth = p.input_depth
        elif p.net != "auto":
            depth = 3 if net == "small" else 32
        return {
            "task": task,
            "iterations": p.iterations or max(1, round(iterations * p.iteration_scale)),
            "reg_noise_std": reg if p.reg_noise_std < 0 else p.reg_noise_std,
            "net": net,
            "input_depth": depth,
            "lr": p.lr or recipe.lr,
            "ema": recipe.ema if p.ema < 0 else p.ema,
            "backtrack": recipe.backtrack if p.backtrack == "auto" else p.backtrack,
        }

    @classmethod
    def resolve_params(cls, params: Any, device: str) -> Any:
        return resolve_precision(params, device)  # the key records the precision and layout, never "auto"

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = resolve_precision(self.params, obs.y.device.type)  # as in the key, also when built by hand
        s = self.resolve(obs)
        # the parameters the fit shares with the plugin (numeric path, early stopping), then the task's recipe as
        # resolve() settled it for this cell (iterations, reg noise, net, lr, output average, backtracking)
        recipe = {name: s[name] for name in ("iterations", "reg_noise_std", "net", "input_depth", "lr", "ema", "backtrack")}
        fit = DipFit(**{**shared_fields(DipFit, p), **recipe})
        return fit_dip(obs, ctx, fit)
