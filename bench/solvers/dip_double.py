"""Double-DIP's joint fit of a clean layer and an artifact layer through the operator (used by ``doubledip``).

Example:
    >>> import torch
    >>> from bench.api import RestoreContext
    >>> from bench.physics import Observation, Operator
    >>> obs = Observation(torch.rand(1, 3, 16, 16), Operator(lambda x: x, (16, 16), (16, 16), 0.1), task="noise")
    >>> tuple(fit_double_dip(obs, RestoreContext(generator=torch.Generator()), DoubleDipFit(iterations=1)).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import RestoreContext
from bench.nets import dip as nets
from bench.physics.operator import Observation, Tensor
from bench.solvers.dip import fit_dtype, resolve_precision
from bench.solvers.dip_losses import exclusion_loss, std_loss
from bench.solvers.early_stopping import DEFAULT_PATIENCE, DEFAULT_WINDOW, WindowedVariance

PAPER_ITERATIONS = 4000  # the official dehazing and transparency-separation runs
NOISE_LIKE = ("noise", "jpeg", "multi")  # tasks whose artifact layer carries noise or JPEG error


def default_std_weight(task: str) -> float:
    """StdLoss weight on the clean layer: dehazing's 0.005 where the artifact layer holds noise-like error, else 0.

    A task without a built-in recipe (e.g. ``impulse``) gets 0: only the built-in noise-like tasks declare
    that their error is noise-like.

    >>> default_std_weight("jpeg"), default_std_weight("sr"), default_std_weight("impulse")
    (0.005, 0.0, 0.0)
    """
    return 0.005 if task in NOISE_LIKE else 0.0


@dataclass
class DoubleDipFit:
    """The settings of one Double-DIP fit (see ``methods/doubledip.py`` for their meaning and defaults).

    Example:
        >>> DoubleDipFit(iterations=40).warmup
        0.9
    """

    iterations: int
    lr: float = 0.001
    input_depth: int = 8
    reg_noise_std: float = 1 / 30  # on the clean layer's code
    exclusion_weight: float = 0.1
    std_weight: float = 0.0
    energy_weight: float = 1.0
    artifact_range: float = 3.0  # the artifact layer spans ±artifact_range·σ
    warmup: float = 0.9  # fraction of iterations with the artifact layer held at 0 (docs/tuning/doubledip.md)
    output: str = "best_fit"  # "best_fit", "last" or "ema"
    ema: float = 0.99  # weight of the running average when output=ema
    # "auto" in the next two is resolved by resolve_precision, exactly as the ``doubledip`` plugin's key resolves it
    precision: str = "auto"  # "auto", "float32", "bfloat16" or "float64" (kernel-independent numbers)
    channels_last: str = "auto"  # "auto", "on" or "off": channels-last memory layout (faster only with bfloat16)
    early_stop: str = "off"  # "off" or "wmv" (ES-WMV on the clean layer, :mod:`bench.solvers.early_stopping`)
    es_window: int = DEFAULT_WINDOW
    es_patience: int = DEFAULT_PATIENCE


def fit_double_dip(obs: Observation, ctx: RestoreContext, fit: DoubleDipFit) -> Tensor:
    """Fit ``y ≈ A(x) + r`` with two light skip nets; the clean layer ``x`` chosen by ``fit.output``.

    Randomness only from ``ctx.generator``, in this order: the two codes, the
    two weight-init seeds, the perturbation seed. With ``fit.early_stop == "wmv"``
    the ES-WMV rule watches the clean layer; the result (by ``fit.output``) is the
    one at the detected iteration, and the fit stops after ``es_patience``
    iterations without a new variance minimum.
    """
    op = obs.operator
    device = obs.y.device
    fit = resolve_precision(fit, device.type)
    channels_last = fit.channels_last == "on"
    dtype = fit_dtype(fit.precision)
    y = obs.y.to(dtype)
    clean_shape, obs_shape = tuple(op.in_shape), tuple(op.out_shape)
    sigma = max(obs.sigma, 1.0 / 255.0)
    depth = fit.input_depth

    def factory() -> nets.SkipNet:
        return nets.SkipNet.small(depth)

    # randomness only from ctx.generator: codes, then seeds for weights and perturbations
    clean_work = nets.working_size(clean_shape, 32)
    artifact_work = nets.working_size(obs_shape, 32)
    z_x = nets.code_noise(depth, clean_work, ctx.generator).to(device, dtype)
    z_r = nets.code_noise(depth, artifact_work, ctx.generator).to(device, dtype)
    g_x = nets.make_net(factory, nets.seed_from(ctx.generator), device, channels_last).to(dtype)
    g_r = nets.make_net(factory, nets.seed_from(ctx.generator), device, channels_last).to(dtype)
    noise_gen = torch.Generator(device=device).manual_seed(nets.seed_from(ctx.generator))
    if channels_last:
        z_x = z_x.contiguous(memory_format=torch.channels_last)
        z_r = z_r.contiguous(memory_format=torch.channels_last)
    noise = nets.noise_buffer(depth, clean_work, device, channels_last, dtype)
    bf16 = fit.precision == "bfloat16"

    optimizer = torch.optim.Adam([*g_x.parameters(), *g_r.parameters()], lr=fit.lr)
    scale = 2.0 * fit.artifact_range * sigma
    has_mask = op.mask is not None
    result: Tensor | None = None
    best = float("inf")
    warm = round(fit.warmup * fit.iterations)
    rule = WindowedVariance(fit.es_window, fit.es_patience) if fit.early_stop == "wmv" else None
    detected: Tensor | None = None
    for i in ctx.iterations(fit.iterations, desc="doubledip"):
        reg = fit.reg_noise_std
        inp = torch.add(z_x, nets.fill_normal(noise, noise_gen), alpha=reg) if reg else z_x
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            x = nets.centre_crop(g_x(inp), clean_shape)
            r = (nets.centre_crop(g_r(z_r), obs_shape) - 0.5) * scale
        if has_mask:
            # (A(x) − (y − r))·mask = (A(x) + r − y)·mask; the mask's holes would dominate exclusion on A(x)
            data = op.data_residual(x, y - r).pow(2).mean()
            explained = x
        else:
            explained = op(x)
            data = (explained + r - y).pow(2).mean()
        loss = data
        if fit.exclusion_weight:
            loss = loss + fit.exclusion_weight * exclusion_loss(explained, r)
        energy = r.pow(2).mean() / sigma**2
        if i < warm:
            loss = loss + energy  # hold the artifact layer at 0 while the clean layer takes the image
        elif fit.energy_weight:
            loss = loss + fit.energy_weight * torch.relu(energy - 1.0)
        if fit.std_weight:
            loss = loss + fit.std_weight * std_loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = data.item()
        ctx.log("loss", value)
        with torch.no_grad():
            if fit.output == "ema" and result is not None:
                result.lerp_(x.detach(), 1.0 - fit.ema)
            elif fit.output != "best_fit" or value <= best:
                result = x.detach().to(dtype).clone()  # float32 under bfloat16 autocast
                best = value
        if rule is not None:
            stop = rule.update(x, i)
            if rule.improved and result is not None:
                detected = result.clone()
            if stop:
                break
    if rule is not None:
        ctx.log("es_iteration", rule.best_iteration)
        result = detected if detected is not None else result
    assert result is not None
    return result.clamp(0, 1).float().contiguous()
