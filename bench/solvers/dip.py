"""Deep Image Prior: the per-task recipes, how the task is chosen, and the fitting loop of ``dip``.

The task comes from :attr:`Observation.task`, which the degradation declares.
Only an observation without a declared task (built by hand, or by a
third-party degradation that sets no ``task``) falls back to a structural rule
that never reads captions or operator names (:func:`resolve_task`). A declared
task without a notebook recipe (any task outside :data:`PAPER_SETTINGS`' tasks,
:data:`bench.physics.operator.TASKS`) has none: :func:`task_recipe` raises
:class:`bench.solvers.applicability.NotApplicable` (the ``dip`` method's n/a).

Example:
    >>> import torch
    >>> from bench.physics import Observation, Operator
    >>> op = Operator(lambda x: x, (64, 64), (64, 64), sigma=0.1)
    >>> obs = Observation(torch.rand(1, 3, 64, 64), op, description="my_jpeg.pt", task="noise")
    >>> resolve_task(obs), task_settings(resolve_task(obs), obs)
    ('noise', (3000, 0.03333333333333333, 'skip', 32))
    >>> task_recipe("inpaint", obs)[4:7]
    (0.001, 0.0, 'restoration')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from bench.api import RestoreContext
from bench.nets import dip as nets
from bench.physics.operator import TASKS, Observation, Tensor
from bench.solvers.applicability import NotApplicable
from bench.solvers.early_stopping import DEFAULT_PATIENCE, DEFAULT_WINDOW, WindowedVariance

# DIP and Double-DIP profiles: a fraction of the paper's per-task iteration counts
ITERATION_PROFILES = {
    "smoke": {"iteration_scale": 0.01},
    "quick": {"iteration_scale": 0.1},
    "paper": {"iteration_scale": 1.0},
}


# Help of the parameters that the dip and doubledip plugins share with their fit settings (one text for both).
SHARED_PARAM_HELP = {
    "precision": "auto: bfloat16 on CPUs with bf16 units (BENCH_BF16=on|off overrides), else float32; float64: the "
    "same numbers on every CPU kernel path (CI smoke grid)",
    "channels_last": "auto: on with bfloat16, off in float32 (measured)",
    "conv": "auto: winograd in float32 on a CPU, else direct (measured)",
    "early_stop": "wmv: ES-WMV, no-reference (bench/solvers/early_stopping.py)",
}


def fit_field(fit: type, name: str) -> Any:
    """A plugin parameter the plugin shares with its fit settings ``fit`` (:class:`DipFit`,
    :class:`bench.solvers.dip_double.DoubleDipFit`): the default is the fit's, the help :data:`SHARED_PARAM_HELP`'s.

    >>> fit_field(DipFit, "precision").default, fit_field(DipFit, "conv").metadata["help"][:10]
    ('auto', 'auto: wino')
    """
    return dataclasses.field(default=getattr(fit, name), metadata={"help": SHARED_PARAM_HELP[name]})


class Recipe(NamedTuple):
    """One task's recipe, as its notebook sets it (docs/dip.md lists the cells)."""

    iterations: int  # num_iter
    reg_noise_std: float
    net: str  # "skip": get_net(..., 'skip', skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5, 'bilinear')
    input_depth: int
    lr: float  # LR (Adam)
    ema: float  # exp_weight of the output average; 0: the notebook returns net(net_input) after the last step
    backtrack: str  # "denoising", "restoration" (the notebooks' two rules, see Backtracking) or "off"
    source: str


# Official per-task recipes (the notebooks of github.com/DmitryUlyanov/deep-image-prior). ``sr`` is keyed by factor.
PAPER_SETTINGS: dict[str, Recipe] = {
    "noise": Recipe(3000, 1 / 30, "skip", 32, 0.01, 0.99, "denoising", "denoising.ipynb (F16)"),
    "jpeg": Recipe(2400, 1 / 30, "small", 3, 0.01, 0.99, "denoising", "denoising.ipynb (snail, blind JPEG)"),
    "sr2": Recipe(2000, 0.03, "skip", 32, 0.01, 0.0, "off", "super-resolution.ipynb (no x2 run: the x4 recipe)"),
    "sr4": Recipe(2000, 0.03, "skip", 32, 0.01, 0.0, "off", "super-resolution.ipynb (factor 4)"),
    "sr8": Recipe(4000, 0.05, "skip", 32, 0.01, 0.0, "off", "super-resolution.ipynb (factor 8)"),
    "inpaint": Recipe(11000, 0.03, "skip", 32, 0.001, 0.0, "restoration",
                      "restoration.ipynb (barbara: 50 % of the pixels missing at random)"),
    "blur": Recipe(3000, 0.03, "skip", 32, 0.01, 0.0, "off",
                   "no official run: the super-resolution recipe with the denoising budget"),
    "multi": Recipe(3000, 1 / 30, "skip", 32, 0.01, 0.99, "denoising", "no official run: the denoising recipe"),
}


def reference_iterations() -> dict[str, int]:
    """The published iteration counts per task, read from :data:`PAPER_SETTINGS` (the one place they are written):
    the plugin's reference budget. ``sr`` is the ×4 recipe (and ×2, which has no run of its own), ``sr8`` the ×8 one.

    >>> reference_iterations()["noise"], reference_iterations()["sr"], reference_iterations()["sr8"]
    (3000, 2000, 4000)
    """
    counts = {task: recipe.iterations for task, recipe in PAPER_SETTINGS.items() if not task.startswith("sr")}
    return {**counts, "sr": PAPER_SETTINGS["sr4"].iterations, "sr8": PAPER_SETTINGS["sr8"].iterations}
SIGMA_50 = 50 / 255  # denoising.ipynb: reg_noise_std 1/20 from this noise level on
BACKTRACK_RULES = ("off", "denoising", "restoration")
BACKTRACK_DB = 5.0  # both notebooks: back when the PSNR of the fit to y fell by more than 5 dB since the last check


def resolve_task(obs: Observation) -> str:
    """The restoration task of ``obs``: the declared :attr:`Observation.task`, else a structural guess.

    The fallback, for observations whose degradation declares no task, looks
    only at the operator, never at captions or names: a mask means
    ``inpaint``; a shape change ``sr``; an operator that returns ``y``
    unchanged (``A(y) == y``, so the identity) ``noise``; anything else
    ``blur``. It cannot tell JPEG or ``multi`` apart from noise or blur:
    degradations declare those.

    >>> import torch
    >>> from bench.physics import Observation, Operator
    >>> y = torch.rand(1, 3, 8, 8)
    >>> resolve_task(Observation(y, Operator(lambda x: x, (8, 8), (8, 8), 0.1)))
    'noise'
    >>> resolve_task(Observation(y, Operator(lambda x: 0.5 * x, (8, 8), (8, 8), 0.1)))
    'blur'
    """
    if obs.task:
        return obs.task  # any declared task, also one without a recipe here (:func:`task_recipe` says n/a)
    op = obs.operator
    if op.mask is not None:
        return "inpaint"
    if tuple(op.out_shape) != tuple(op.in_shape):
        return "sr"
    with torch.no_grad():
        identity = torch.equal(op(obs.y), obs.y)
    return "noise" if identity else "blur"


def sr_factor(obs: Observation) -> int:
    """Super-resolution factor ``in_shape / out_shape`` (1 when shapes agree)."""
    return max(1, round(obs.operator.in_shape[0] / obs.operator.out_shape[0]))


def task_recipe(task: str, obs: Observation) -> Recipe:
    """The paper-profile :class:`Recipe` of ``task`` for ``obs``.

    ``sr`` by the factor of its shapes; ``noise`` with σ ≥ 50/255 takes ``reg_noise_std`` 1/20, as
    denoising.ipynb says (``reg_noise_std = 1./30. # set to 1./20. for sigma=50``). A task without a recipe
    (not one of :data:`TASKS`, e.g. a third-party ``impulse``) raises :class:`NotApplicable`: the notebooks'
    recipes were tuned for Gaussian noise, JPEG and their own operators, and none is chosen by a name.

    >>> from bench.physics import Operator
    >>> task_recipe("impulse", Observation(torch.zeros(1, 3, 8, 8), Operator(lambda x: x, (8, 8), (8, 8), 0.1)))
    Traceback (most recent call last):
    ...
    bench.solvers.applicability.NotApplicable: dip does not apply to the task 'impulse': the official notebooks have recipes for noise, jpeg, blur, sr, inpaint, multi only, tuned for Gaussian noise, JPEG and those operators (--set dip.task=NAME forces one)
    """
    if task not in TASKS:
        raise NotApplicable(
            "dip",
            task,
            f"the official notebooks have recipes for {', '.join(TASKS)} only, tuned "
            "for Gaussian noise, JPEG and those operators (--set dip.task=NAME forces one)",
        )
    if task == "sr":
        factor = sr_factor(obs)
        return PAPER_SETTINGS[f"sr{factor}"] if f"sr{factor}" in PAPER_SETTINGS else PAPER_SETTINGS["sr4"]
    if task == "noise" and obs.sigma >= SIGMA_50 - 1e-9:
        return PAPER_SETTINGS["noise"]._replace(reg_noise_std=1 / 20, source="denoising.ipynb (F16, sigma=50)")
    return PAPER_SETTINGS[task]


def task_settings(task: str, obs: Observation) -> tuple[int, float, str, int]:
    """``(iterations, reg_noise_std, net, input_depth)`` of :func:`task_recipe`."""
    return tuple(task_recipe(task, obs)[:4])  # type: ignore[return-value]


class Backtracking:
    """The official notebooks' backtracking, step by step as their closures do it.

    Both keep a counter ``i`` that advances after every iteration except a backtracked one, and
    ``psnr_last`` (0 at the start). At a checked ``i``, the PSNR of the fit to y (``compare_psnr(y, out)`` in
    denoising.ipynb; of the masked image in restoration.ipynb, i.e. of the data loss
    ``mean(mask·(out − y)²)``) is compared with ``psnr_last``: more than 5 dB lower, the parameters saved at the
    last check that passed are copied back (``net_param.data.copy_``) and ``i`` stays; otherwise the current
    parameters are saved and ``psnr_last`` updated. The caller then still takes the optimizer step with the
    gradient just computed (the notebooks' closure returns ``total_loss*0`` after ``backward``, and
    ``optimize`` calls ``optimizer.step()`` regardless).

    * ``denoising`` (denoising.ipynb, ``if i % show_every:``): every ``i`` that is not a multiple of 100;
    * ``restoration`` (restoration.ipynb, under ``if PLOT and i % show_every == 0:``): every multiple of 50;
    * ``off``: never (super-resolution.ipynb, inpainting.ipynb).

    >>> import torch
    >>> w = [torch.zeros(2)]
    >>> rule = Backtracking("restoration", w)
    >>> rule.check(0.01)  # i = 0: checked, 20 dB, saved
    False
    >>> w[0] += 1
    >>> [rule.check(0.01) for _ in range(49)] == [False] * 49  # i = 1 … 49: not checked
    True
    >>> rule.check(1.0), rule.i, w[0].tolist()  # i = 50: 0 dB, 20 dB down: back to the saved weights
    (True, 50, [0.0, 0.0])
    """

    def __init__(self, rule: str, params: list[Tensor]):
        if rule not in BACKTRACK_RULES:
            raise ValueError(f"backtrack={rule!r}: expected one of {BACKTRACK_RULES}")
        self.rule = rule
        self.params = params
        self.saved = [q.detach().clone() for q in params] if rule != "off" else []
        self.i = 0
        self.psnr_last = 0.0
        self.count = 0

    def checked(self) -> bool:
        """Whether the notebook checks at the current ``i``."""
        if self.rule == "denoising":
            return self.i % 100 != 0
        return self.rule == "restoration" and self.i % 50 == 0

    def check(self, loss: float) -> bool:
        """Apply the rule after an iteration's backward pass with data loss ``loss``; True when it backtracked."""
        if self.checked():
            psnr = -10.0 * math.log10(loss) if loss > 0 else math.inf  # compare_psnr on [0, 1] images
            if psnr - self.psnr_last < -BACKTRACK_DB:
                copy_all(self.params, self.saved)
                self.count += 1
                return True  # the notebooks return before ``i += 1``
            copy_all(self.saved, self.params)
            self.psnr_last = psnr
        self.i += 1
        return False


@torch.no_grad()
def copy_all(dst: list[Tensor], src: list[Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for all i, in one fused call where torch has it."""
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # torch < 2.2
        for d, s in zip(dst, src):
            d.copy_(s)


def fit_dtype(precision: str) -> torch.dtype:
    """The dtype of a fit's weights, code and loss: float64 for ``precision="float64"``, else float32 (bfloat16
    runs as autocast over float32 weights).

    >>> fit_dtype("float64"), fit_dtype("bfloat16")
    (torch.float64, torch.float32)
    """
    return torch.float64 if precision == "float64" else torch.float32


def resolve_precision(params: Any, device: str) -> Any:
    """``params`` with ``precision="auto"`` replaced by the path that runs on ``device`` ("bfloat16" where the
    CPU has bf16 units, else "float32"), and ``channels_last="auto"`` by the layout that is fastest with it,
    so a cache key names the numerics (and the noise draw order, which follows the layout) it stands for.

    The layout follows the precision, by measurement (``benchmarks/bench_dip.py``): oneDNN's bfloat16
    kernels want channels-last, while in float32 on an AVX2 CPU without bf16 units channels-last made a
    128² iteration 1.6× slower than NCHW (1 061 against 661 ms, one thread). Where the params have a
    ``conv`` field (``dip``), ``auto`` becomes ``winograd`` for float32 on a CPU (faster there, see
    :mod:`bench.nets.winograd`) and ``direct`` otherwise (bfloat16 has its own kernels; cuDNN picks
    Winograd itself).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class P:
    ...     precision: str = "auto"
    ...     channels_last: str = "auto"
    ...     conv: str = "auto"
    >>> resolve_precision(P(), "cuda"), resolve_precision(P("bfloat16"), "cpu")
    (P(precision='float32', channels_last='off', conv='direct'), P(precision='bfloat16', channels_last='on', conv='direct'))
    >>> resolve_precision(P("float32"), "cpu").conv
    'winograd'
    """
    if params.precision == "auto":
        bf16 = nets.bf16_supported(torch.device(device))
        params = dataclasses.replace(params, precision="bfloat16" if bf16 else "float32")
    if params.channels_last == "auto":
        params = dataclasses.replace(params, channels_last="on" if params.precision == "bfloat16" else "off")
    if getattr(params, "conv", None) == "auto":
        fast = params.precision == "float32" and torch.device(device).type == "cpu"
        params = dataclasses.replace(params, conv="winograd" if fast else "direct")
    return params


@dataclass
class DipFit:
    """The settings of one DIP fit (resolved from the method's parameters and the task recipe).

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from bench.physics import Observation, Operator
        >>> obs = Observation(torch.rand(1, 3, 16, 16), Operator(lambda x: x, (16, 16), (16, 16), 0.1))
        >>> fit = DipFit(iterations=2, reg_noise_std=1 / 30, net="small", input_depth=3)
        >>> tuple(fit_dip(obs, RestoreContext(generator=torch.Generator()), fit).shape)
        (1, 3, 16, 16)
    """

    iterations: int
    reg_noise_std: float
    net: str  # "skip" (the official 128-channel net) or "small" (the JPEG notebook's)
    input_depth: int
    lr: float = 0.01
    ema: float = 0.99  # weight of the output average (exp_weight); 0: net(last input) after the last step
    backtrack: str = "denoising"  # "denoising", "restoration" or "off": the notebooks' rules (:class:`Backtracking`)
    # "auto" in the next three is resolved by resolve_precision, exactly as the ``dip`` plugin's key resolves it,
    # so a fit built by hand and the plugin's restoration take the same numeric path on every CPU
    precision: str = "auto"  # "auto", "float32", "bfloat16" or "float64" (kernel-independent numbers)
    channels_last: str = "auto"  # "auto", "on" or "off": channels-last memory layout (faster only with bfloat16)
    conv: str = "auto"  # "auto", "direct" or "winograd" (float32 F(4×4, 3×3) for the wide layers: bench/nets/winograd.py)
    early_stop: str = "off"  # "off" or "wmv" (ES-WMV, :mod:`bench.solvers.early_stopping`)
    es_window: int = DEFAULT_WINDOW
    es_patience: int = DEFAULT_PATIENCE
    # analysis hook, never part of a result: called as monitor(iteration, raw output, reported output so far)
    monitor: Callable[[int, Tensor, Tensor], None] | None = None


def fit_dip(obs: Observation, ctx: RestoreContext, fit: DipFit) -> Tensor:
    """Fit a fresh skip net from a fixed code to ``obs.y`` through ``obs.operator``, as the official notebooks.

    Each iteration, in the notebooks' closure order: the input ``z + reg_noise_std·n`` (n redrawn), the
    output, its running average (``fit.ema > 0``, updated with every output as denoising.ipynb does), the
    data loss and its gradient, the backtracking rule (``fit.backtrack``, :class:`Backtracking`), the Adam
    step. The result is the average, or with ``fit.ema == 0`` the net's output for the last iteration's input
    after the last step (``net(net_input)`` in the super-resolution and restoration notebooks).

    Randomness only from ``ctx.generator``, in this order: the code z, the weight-init seed, the perturbation
    seed. With ``fit.early_stop == "wmv"`` the ES-WMV rule watches the raw outputs; the fit returns the
    reported output (the average, or the raw output without one) as it was at the detected iteration and
    stops after ``es_patience`` iterations without a new variance minimum.
    """
    if fit.backtrack not in BACKTRACK_RULES:
        raise ValueError(f"backtrack={fit.backtrack!r}: expected one of {BACKTRACK_RULES}")
    device = obs.y.device
    fit = resolve_precision(fit, device.type)
    channels_last = fit.channels_last == "on"
    dtype = fit_dtype(fit.precision)
    y = obs.y.to(dtype)
    shape = tuple(obs.operator.in_shape)
    depth = fit.input_depth

    def factory() -> nets.SkipNet:
        return nets.SkipNet.small(depth) if fit.net == "small" else nets.SkipNet(depth)

    # randomness only from ctx.generator: the code z, then seeds for the weights and the perturbations
    work = nets.working_size(shape, 32)
    z = nets.code_noise(depth, work, ctx.generator).to(device, dtype)
    net = nets.make_net(factory, nets.seed_from(ctx.generator), device, channels_last, fit.conv).to(dtype)
    noise_gen = torch.Generator(device=device).manual_seed(nets.seed_from(ctx.generator))
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    noise = nets.noise_buffer(depth, work, device, channels_last, dtype)
    bf16 = fit.precision == "bfloat16"

    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=fit.lr)
    backtracking = Backtracking(fit.backtrack, params)
    reg = fit.reg_noise_std
    inp = z
    average: Tensor | None = None
    rule = WindowedVariance(fit.es_window, fit.es_patience) if fit.early_stop == "wmv" else None
    detected: Tensor | None = None
    for it in ctx.iterations(fit.iterations, desc="dip"):
        inp = torch.add(z, nets.fill_normal(noise, noise_gen), alpha=reg) if reg > 0 else z
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out = nets.centre_crop(net(inp), shape)
        if fit.ema > 0:
            with torch.no_grad():  # smoothing before the loss and the backtracking check, as denoising.ipynb
                if average is None:
                    average = out.detach().to(dtype).clone()  # float32 under bfloat16 autocast
                else:
                    average.lerp_(out.detach(), 1.0 - fit.ema)
        loss = obs.operator.data_residual(out, y).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        ctx.log("loss", value)
        backtracking.check(value)  # may copy saved weights back; the step below is taken either way
        optimizer.step()
        reported = average if average is not None else out.detach()
        if fit.monitor is not None:
            fit.monitor(it, out.detach(), reported)
        if rule is not None:
            stop = rule.update(out, it)
            if rule.improved:
                detected = reported.to(dtype).clone()
            if stop:
                break
    if fit.backtrack != "off":
        ctx.log("backtracks", backtracking.count)
    if rule is not None:
        ctx.log("es_iteration", rule.best_iteration)
    if detected is not None:
        result = detected
    elif average is not None:
        result = average
    else:  # no average: the net's output for the last input, after the last step (the notebooks' last cell)
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            result = nets.centre_crop(net(inp), shape)
    return result.clamp(0, 1).float().contiguous()
