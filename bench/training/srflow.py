"""``bench train srflow``: SRFlow's NLL (+ L1) training on random HR patches, LR by antialiased bicubic ↓.

The model is :class:`bench.nets.srflow.SRFlowNet`; data, holdout, patches,
time budget, saves and the log come from :mod:`bench.training.data` and
:mod:`bench.training.loop`. The checkpoint (``{"state_dict", "config",
"train", "history", "last"}``) loads into the ``srflow4x`` / ``srflow8x``
methods with ``--set srflow4x.checkpoint=FILE``.

Example:
    >>> from bench.registry import available
    >>> "srflow" in available("trainer")
    True
"""

from __future__ import annotations

import json
import math
from typing import Any

import click
import torch

from bench.api import Tensor, quantize
from bench.checkpoints import save_checkpoint
from bench.nets.srflow import SRFlowConfig, SRFlowNet
from bench.physics.resize import bicubic_down, bicubic_up
from bench.registry import register_trainer
from bench.training.data import load_training_images, random_patches, split_holdout
from bench.training.loop import LoopOptions, LoopState, TrainingLoop, cosine_decay

CONFIGS = {"small": SRFlowConfig.small, "tiny": SRFlowConfig.tiny, "official": SRFlowConfig.official}


def make_pairs(hr: Tensor, scale: int) -> Tensor:
    """The LR half of a training pair: antialiased bicubic ↓scale, 8-bit quantised (as the ``sr`` degradation).

    >>> tuple(make_pairs(torch.rand(2, 3, 16, 16), 4).shape)
    (2, 3, 4, 4)
    """
    return quantize(bicubic_down(hr, scale))


@torch.no_grad()
def validate(net: SRFlowNet, hr: Tensor, batch: int = 16) -> dict[str, float]:
    """Validation bits/dim (dequantisation offset 0), and PSNR of heat-0 SR vs bicubic on ``hr`` patches."""
    was = net.training
    net.eval()
    bpd, mse_sr, mse_bic = [], [], []
    for chunk in hr.split(batch):
        lr = make_pairs(chunk, net.cfg.scale)
        bpd.append(net.nll_bpd(chunk, lr)[0])
        sr = net.sample(lr, heat=0.0).clamp(0, 1)
        mse_sr.append((sr - chunk).pow(2).flatten(1).mean(1))
        mse_bic.append((bicubic_up(lr, net.cfg.scale) - chunk).pow(2).flatten(1).mean(1))
    net.train(was)

    def psnr(m: list[Tensor]) -> float:
        return float((-10 * torch.log10(torch.cat(m).clamp_min(1e-10))).mean())

    return {
        "val_bpd": round(float(torch.cat(bpd).mean()), 4),
        "val_psnr_heat0": round(psnr(mse_sr), 3),
        "val_psnr_bicubic": round(psnr(mse_bic), 3),
    }


def train_srflow(
    data: tuple[str, ...] | list[str],
    scale: int,
    steps: int,
    out: str,
    config: str = "small",
    batch: int = 8,
    patch: int | None = None,
    lr: float = 5e-4,
    l1: float = 1.0,
    seed: int = 0,
    save_every: int = 200,
    val_fraction: float = 0.05,
    val_patches: int = 32,
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train an SRFlow on random HR patches (flips) with NLL (bits/dim) + ``l1``·L1 of the RRDB's SR output.

    The L1 term stands in for the release's RRDB pre-training (an L1-trained
    ESRGAN); ``l1=0`` gives pure NLL training. The learning rate follows a
    cosine decay (to 2 %) over max(step/steps, time/max_minutes). Returns the last log record.
    """
    cfg = CONFIGS[config](scale)
    patch = patch or (64 if scale == 4 else 96)
    if patch % cfg.multiple:
        raise click.BadParameter(f"--patch {patch} must be a multiple of {cfg.multiple} for {scale}×")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation
    items = load_training_images(data, patch)
    train_items, val_items = split_holdout(items, val_fraction)
    if not train_items:
        raise click.UsageError(f"no training images of at least {patch}×{patch} px in {', '.join(data)}")
    train_images = [im for _, im in train_items]
    val_set = (
        random_patches([im for _, im in val_items], val_patches, patch, torch.Generator().manual_seed(1234))
        if val_items
        else None
    )
    net = SRFlowNet(cfg).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    loop = TrainingLoop(LoopOptions(steps=steps, out=out, save_every=save_every, max_minutes=max_minutes,
                                    progress=progress, desc=f"train srflow{scale}x"))
    history: list[dict[str, Any]] = []
    ema: float | None = None
    skipped = 0

    def schedule(state: LoopState) -> None:
        factor = cosine_decay(state.fraction(steps, max_minutes), 0.02)
        for group in optimizer.param_groups:
            group["lr"] = lr * factor

    def step(state: LoopState) -> dict[str, str]:
        nonlocal ema, skipped
        hr = random_patches(train_images, batch, patch, generator)
        noise = torch.rand(hr.shape, generator=generator) - 0.5
        bpd, out_sr = net.nll_bpd(hr, make_pairs(hr, scale), noise)
        loss = bpd.mean() + l1 * (out_sr - hr).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 50.0)  # flows spike early; keep Adam sane
            optimizer.step()
        else:
            skipped += 1
        value = float(bpd.detach().mean()) if finite else float("nan")
        if math.isfinite(value):
            ema = value if ema is None else 0.95 * ema + 0.05 * value
        return {"bpd": f"{ema:.3f}" if ema else "-"}

    def report(state: LoopState) -> dict[str, Any]:
        record: dict[str, Any] = {"train_bpd": round(ema or float("nan"), 4), "skipped": skipped}
        if val_set is not None:
            record.update(validate(net, val_set))
        history.append({"step": state.step, "seconds": round(state.elapsed, 1), **record})
        return record

    def save(record: dict[str, Any]) -> None:
        save_checkpoint(
            {
                "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
                "config": cfg.to_dict(),
                "train": {
                    "data": [str(d) for d in data],
                    "config_name": config,
                    "batch": batch,
                    "patch": patch,
                    "lr": lr,
                    "l1": l1,
                    "seed": seed,
                    "steps_requested": steps,
                    "train_images": len(train_items),
                    "val_images": [p for p, _ in val_items],
                    "torch": str(torch.__version__),
                },
                "history": history,
                "last": record,
            },
            out,
        )

    return loop.run(step, report, save, schedule)


@register_trainer("srflow")
@click.command("srflow")
@click.option("--scale", type=click.Choice(["4", "8"]), default="4", show_default=True, help="Upscaling factor.")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False),
    help="Folder of training images (repeat for several). Never use evaluation images.",
)
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(min=1), help="Optimiser steps.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file (.pt) to write.")
@click.option("--config", default="small", show_default=True, type=click.Choice(["small", "tiny", "official"]))
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--patch", default=None, type=click.IntRange(min=8), help="HR patch size [default: 64 (4×), 96 (8×)].")
@click.option("--lr", default=5e-4, show_default=True, type=float, help="Adam learning rate (cosine decay).")
@click.option("--l1", default=1.0, show_default=True, type=float, help="Weight of the RRDB L1 term (0: NLL only).")
@click.option("--save-every", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--val-fraction", default=0.05, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--max-minutes", default=None, type=float, help="Stop (and save) after this much training time.")
def srflow_trainer(
    scale: str,
    data: tuple[str, ...],
    steps: int,
    out: str,
    config: str,
    batch: int,
    patch: int | None,
    lr: float,
    l1: float,
    save_every: int,
    val_fraction: float,
    seed: int,
    threads: int | None,
    max_minutes: float | None,
) -> None:
    """Train an SRFlow (NLL in bits/dim) on random HR patches with flips; LR by antialiased bicubic ↓.

    Validates every --save-every steps on patches of held-out training images
    (bits/dim, and heat-0 PSNR against bicubic) and writes the checkpoint then.
    """
    if threads:
        torch.set_num_threads(threads)
    record = train_srflow(
        data,
        int(scale),
        steps,
        out,
        config=config,
        batch=batch,
        patch=patch,
        lr=lr,
        l1=l1,
        seed=seed,
        save_every=save_every,
        val_fraction=val_fraction,
        max_minutes=max_minutes,
    )
    click.echo(f"saved {out}: {json.dumps(record)}")
