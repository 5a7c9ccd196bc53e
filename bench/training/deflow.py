"""``bench train deflow``: DeFlow trained by the NLL of two unpaired folders (clean, degraded).

The model is :class:`bench.nets.deflow.DeFlowNet`; data (both folders pass the
evaluation-image guard), holdout, patches, time budget, resume, saves and the
log come from :mod:`bench.training.data` and :mod:`bench.training.loop`. Every
checkpoint stores the effective noise level (``effective_sigma``) that the
``deflow`` degradation's operator reports.

Example:
    >>> import torch
    >>> from bench.nets.deflow import DeFlowNet, get_config
    >>> net = DeFlowNet(get_config("tiny")).train()
    >>> clean, degraded = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    >>> [float(b.detach()) > 0 for b in nll_bits_per_dim(net, clean, degraded, torch.Generator().manual_seed(0))]
    [True, True]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch

from bench.api import Tensor, quantize
from bench.nets.deflow import CONFIGS, DeFlowNet, get_config, load_deflow, save_deflow
from bench.nets.flow_layers import bits_per_dim
from bench.registry import register_trainer
from bench.training.data import load_training_images, random_patches, split_holdout
from bench.training.loop import LoopOptions, LoopState, TrainingLoop, cosine_decay, defaults_from


def nll_bits_per_dim(net: DeFlowNet, clean: Tensor, degraded: Tensor,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mean bits/dim of each domain's batch, dequantised with ``U(0, 1/256)`` (one joint flow pass)."""
    x = torch.cat([clean, degraded])
    noise = torch.rand(x.shape, generator=generator) if generator is not None else torch.full(x.shape, 0.5)
    labels = torch.arange(x.shape[0], device=x.device) >= clean.shape[0]
    _, log_p, _ = net.encode(x + noise.to(x.device) / 256.0, labels, generator)
    bpd = bits_per_dim(log_p, x[0].numel())
    return bpd[: clean.shape[0]].mean(), bpd[clean.shape[0] :].mean()


@torch.no_grad()
def effective_sigma(net: DeFlowNet, clean: Tensor, heat: float, seed: int = 0, batch: int = 16) -> float:
    """RMS of ``quantize(translate(x)) − x`` over the clean patches ``clean`` (a fixed noise seed)."""
    was_training = net.training
    net.eval()
    generator = torch.Generator().manual_seed(seed)
    squared, count = 0.0, 0
    for chunk in clean.split(batch):
        residual = quantize(net.translate(chunk, heat, generator)) - chunk
        squared += float(residual.double().pow(2).sum())
        count += residual.numel()
    net.train(was_training)
    return math.sqrt(squared / max(count, 1))


@dataclass
class TrainOptions:
    """Options of :func:`train_deflow` (the ``bench train deflow`` flags).

    >>> TrainOptions(clean=("c",), degraded=("d",), out="m.pt").config
    'cpu'
    """

    clean: tuple[str, ...]
    degraded: tuple[str, ...]
    out: str
    config: str = "cpu"
    steps: int = 5000
    batch: int | None = None
    patch: int = 48
    lr: float = 5e-4
    seed: int = 0
    max_minutes: float | None = None
    resume: bool = False
    save_every: int = 250
    val_fraction: float = 0.1
    val_patches: int = 32
    progress: bool = True


SHIFT_LR_FACTOR = 10.0


def make_optimizer(net: DeFlowNet, lr: float) -> torch.optim.Adam:
    """Adam; the domain shifts (few parameters that must travel far from their start) get a 10× step."""
    shift_ids = {id(p) for p in net.shift.parameters()}
    rest = [p for p in net.parameters() if id(p) not in shift_ids]
    return torch.optim.Adam([{"params": rest, "lr": lr},
                             {"params": list(net.shift.parameters()), "lr": lr * SHIFT_LR_FACTOR}])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, step: int, steps: int, elapsed: float,
                      max_minutes: float | None) -> None:
    """Cosine decay to 5 % over the run (steps or --max-minutes, whichever ends first): the NLL of
    the few shift parameters is noisy, and a decayed step lets the learned noise level settle."""
    factor = cosine_decay(LoopState(step, elapsed).fraction(steps, max_minutes), 0.05)
    for group, scale in zip(optimizer.param_groups, (1.0, SHIFT_LR_FACTOR)):
        group["lr"] = lr * scale * factor


def load_domain(folders: tuple[str, ...], patch: int, val_fraction: float) -> tuple[list[Any], list[Any]]:
    """Training and held-out images (uint8 arrays) of one domain's folders."""
    images = [im for _, im in load_training_images(list(folders), patch)]
    train, val = split_holdout(images, val_fraction)
    if not train:
        raise click.UsageError(f"no training images of at least {patch}×{patch} px in {', '.join(folders)}")
    return train, val


def train_deflow(opts: TrainOptions) -> dict[str, Any]:
    """Train DeFlow on two unpaired folders by the NLL of both domains; returns the last log record.

    Writes a resumable checkpoint every ``save_every`` steps and at the end
    (with the effective noise level ``sigma_heat0``/``sigma_heat1`` measured on
    held-out clean patches) and a JSON-lines log next to ``out``.
    """
    cfg = get_config(opts.config)
    batch = opts.batch or cfg.batch
    if opts.patch % cfg.multiple:
        raise ValueError(f"--patch {opts.patch} must be a multiple of {cfg.multiple} for config {opts.config}")
    out_path = Path(opts.out)
    clean_train, clean_val = load_domain(opts.clean, opts.patch, opts.val_fraction)
    degraded_train, degraded_val = load_domain(opts.degraded, opts.patch, opts.val_fraction)
    fixed = torch.Generator().manual_seed(1234)
    val_clean = random_patches(clean_val, opts.val_patches, opts.patch, fixed) if clean_val else None
    val_degraded = random_patches(degraded_val, opts.val_patches, opts.patch, fixed) if degraded_val else None
    # the effective-σ estimate needs clean patches never trained on; without a split, training ones
    sigma_patches = val_clean if val_clean is not None else random_patches(clean_train, opts.val_patches,
                                                                             opts.patch, fixed)

    torch.manual_seed(opts.seed)  # weight initialisation (1×1 convs) is part of the run's seed
    generator = torch.Generator().manual_seed(opts.seed)
    net = DeFlowNet(cfg).train()
    optimizer = make_optimizer(net, opts.lr)
    loop = TrainingLoop(LoopOptions(steps=opts.steps, out=out_path, save_every=opts.save_every,
                                    max_minutes=opts.max_minutes, resume=opts.resume, progress=opts.progress,
                                    desc="train deflow"))
    if loop.checkpoint_to_resume():
        net, state = load_deflow(out_path)
        net.train()
        cfg = net.config
        optimizer = make_optimizer(net, opts.lr)
        loop.resume_from(state, optimizer, generator)  # --lr still wins: the schedule sets it every step
    ema: list[float] | None = None

    def schedule(state: LoopState) -> None:
        set_learning_rate(optimizer, opts.lr, state.step, opts.steps, state.elapsed, opts.max_minutes)

    def step(state: LoopState) -> dict[str, str]:
        nonlocal ema
        clean = random_patches(clean_train, batch, opts.patch, generator)
        degraded = random_patches(degraded_train, batch, opts.patch, generator)
        bpd_clean, bpd_degraded = nll_bits_per_dim(net, clean, degraded, generator)
        loss = bpd_clean + bpd_degraded
        if not torch.isfinite(loss):
            raise FloatingPointError("DeFlow training diverged (non-finite NLL); resume from the last checkpoint "
                                     "with a lower --lr (--resume --lr ...)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        optimizer.step()
        values = [bpd_clean.item(), bpd_degraded.item()]
        ema = values if ema is None else [0.95 * e + 0.05 * v for e, v in zip(ema, values)]
        return {"clean": f"{ema[0]:.3f}", "degraded": f"{ema[1]:.3f}"}

    def report(state: LoopState) -> dict[str, Any]:
        record: dict[str, Any] = {"train_bpd_clean": round(ema[0], 4), "train_bpd_degraded": round(ema[1], 4)}
        if val_clean is not None and val_degraded is not None:
            record.update(validation_bpd(net, val_clean, val_degraded))
        record["sigma_heat0"] = round(effective_sigma(net, sigma_patches, 0.0), 6)
        record["sigma_heat1"] = round(effective_sigma(net, sigma_patches, 1.0), 6)
        return record

    def save(record: dict[str, Any]) -> None:
        save_deflow(out_path, net, {
            **loop.checkpoint_fields(optimizer, generator), "last": record,
            "effective_sigma": {"heat0": record["sigma_heat0"], "heat1": record["sigma_heat1"],
                                "source": "held-out clean patches" if val_clean is not None else "training patches"},
            "train": {"clean": [str(d) for d in opts.clean], "degraded": [str(d) for d in opts.degraded],
                      "config_name": opts.config, "batch": batch, "patch": opts.patch, "lr": opts.lr,
                      "seed": opts.seed, "clean_images": len(clean_train), "degraded_images": len(degraded_train)},
        })

    return loop.run(step, report, save, schedule)


@torch.no_grad()
def validation_bpd(net: DeFlowNet, clean: Tensor, degraded: Tensor, batch: int = 16) -> dict[str, float]:
    """Mean bits/dim of fixed validation patches of both domains (eval mode, dequantisation offset ½/256)."""
    was_training = net.training
    net.eval()
    totals = [0.0, 0.0]
    chunks = list(zip(clean.split(batch), degraded.split(batch)))
    for c, d in chunks:
        bc, bd = nll_bits_per_dim(net, c, d)
        totals[0] += bc.item() / len(chunks)
        totals[1] += bd.item() / len(chunks)
    net.train(was_training)
    return {"val_bpd_clean": round(totals[0], 4), "val_bpd_degraded": round(totals[1], 4)}


@register_trainer("deflow")
@defaults_from(TrainOptions)
@click.command("deflow")
@click.option("--clean", "clean", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of clean images (repeat for several).")
@click.option("--degraded", "degraded", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of degraded images, unpaired with --clean (repeat for several).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file (.pt) to write.")
@click.option("--config", type=click.Choice(list(CONFIGS)),
              help="cpu: small CPU-trainable flow (K=3, L=2); official: K=16, L=3 as in the paper; tiny: tests.")
@click.option("--steps", type=click.IntRange(min=1), help="Total optimiser steps.")
@click.option("--batch", type=click.IntRange(min=1), help="Patches per domain per step [default: the config's].")
@click.option("--patch", type=click.IntRange(min=8),
              help="Training patch size (px), a multiple of the config's multiple (16 for the built-in ones).")
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--val-fraction", type=float,
              help="Fraction of each folder held out (validation bits/dim and the effective noise level).")
@click.option("--save-every", type=click.IntRange(min=1),
              help="Checkpoint and validate every N steps.")
@click.option("--resume", is_flag=True, help="Continue from --out (weights, optimiser, step, RNG).")
@click.option("--seed", type=int)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--max-minutes", type=float, help="Stop (and save) after this much training time.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def deflow_trainer(clean: tuple[str, ...], degraded: tuple[str, ...], out: str, config: str, steps: int,
                   batch: int | None, patch: int, lr: float, val_fraction: float, save_every: int, resume: bool,
                   seed: int, threads: int | None, max_minutes: float | None, progress: bool) -> None:
    """Train DeFlow on unpaired clean and degraded images (NLL of both domains, bits/dim logged).

    Random patches with flips; validation bits/dim of held-out images of each
    folder and the effective noise level are written with every checkpoint
    (every --save-every steps, resumable with --resume) and to a JSON-lines log
    next to --out.
    """
    if threads:
        torch.set_num_threads(threads)
    multiple = CONFIGS[config].multiple
    if patch % multiple:
        raise click.BadParameter(f"--patch {patch} must be a multiple of {multiple} for config {config}")
    options = TrainOptions(clean=clean, degraded=degraded, out=out, config=config, steps=steps, batch=batch,
                           patch=patch, lr=lr, seed=seed, max_minutes=max_minutes, resume=resume,
                           save_every=save_every, val_fraction=val_fraction, progress=progress)
    record = train_deflow(options)
    click.echo(f"saved {out}: {json.dumps(record)}")
