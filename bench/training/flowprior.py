"""``bench train flowprior``: the flow prior's losses (Helminger et al.) and its trainer.

The model is :class:`bench.nets.flow.Flow`; the four losses of the paper are
:func:`training_losses`; data, holdout, patches, time budget, resume, saves and
the log come from :mod:`bench.training.data` and :mod:`bench.training.loop`.

Example:
    >>> import torch
    >>> from bench.nets.flow import Flow, FlowConfig
    >>> flow = Flow(FlowConfig(levels=2, steps=1, hidden=8)).train()
    >>> losses = training_losses(flow, torch.rand(2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    >>> sorted(losses)
    ['ae', 'in', 'ln', 'nll', 'total']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch

from bench.errors import BenchError
from bench.nets.flow import CONFIGS, Flow, get_config, load_checkpoint, save_checkpoint
from bench.nets.flow_layers import bits_per_dim
from bench.registry import register_trainer
from bench.training.data import load_training_images, random_patches, split_holdout
from bench.training.loop import LoopOptions, LoopState, TrainingLoop, cosine_decay

Tensor = torch.Tensor

@dataclass
class LossWeights:
    """The paper's weights: β_ln = 100, β_ae = 1, β_in = 100."""

    ln: float = 100.0
    ae: float = 1.0
    in_: float = 100.0
    latent_noise: float = 0.5
    image_noise: float = 10.0 / 255.0


def _uniform(like: Tensor, magnitude: float, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device="cpu").to(like.device)
    return (2 * u - 1) * magnitude


def training_losses(
    flow: Flow,
    x: Tensor,
    weights: LossWeights | None = None,
    generator: torch.Generator | None = None,
    reg_batch: int | None = None,
) -> dict[str, Tensor]:
    """The four losses of the paper on an 8-bit batch ``x`` in [0, 1]; ``total`` is the weighted sum.

    - ``nll``: bits/dim of ``x + ε``, ε ~ U(0, 1/256) (dequantisation).
    - ``ln``: ``mean (T(T⁻¹(x̃) + ξ) − x̃)²``, ξ ~ U(±0.5) in every latent.
    - ``ae``: ``mean (T(u_top, μ(h)…) − x̃)²``: decode with the split-off latents
      replaced by their context-encoder means. An exact bijection reconstructs
      perfectly, so this is the only auto-encoder reading that constrains
      anything: it makes the coarse latents (and the means) carry the image.
    - ``in``: ``mean (T⁻¹(x̃) − T⁻¹(x̃ + η))²`` over all latents, η ~ U(±10/255).

    Squared norms are averaged per dimension so the paper's β's balance them
    against bits/dim. ``reg_batch`` evaluates the three regularisers on the
    first ``reg_batch`` samples only (each costs a full extra flow pass; on a
    CPU this keeps a step ~2× instead of ~4× the cost of the NLL alone).
    """
    w = weights or LossWeights()
    dims = x[0].numel()
    xd = x + torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device) / 256.0
    zs, log_p = flow.encode(xd)
    nll = bits_per_dim(log_p, dims).mean()
    out = {"nll": nll}
    total = nll
    r = x.shape[0] if reg_batch is None else max(1, min(reg_batch, x.shape[0]))
    zs, xd = [z[:r] for z in zs], xd[:r]
    if w.ln:
        noisy = [z + _uniform(z, w.latent_noise, generator) for z in zs]
        out["ln"] = (flow.decode(noisy) - xd).pow(2).mean()
        total = total + w.ln * out["ln"]
    if w.ae:
        out["ae"] = (flow.decode(zs, use_means=True) - xd).pow(2).mean()
        total = total + w.ae * out["ae"]
    if w.in_:
        zs_eta, _ = flow.encode(xd + _uniform(xd, w.image_noise, generator))
        sq = sum((a - b).pow(2).sum() for a, b in zip(zs, zs_eta))
        out["in"] = sq / sum(z.numel() for z in zs)
        total = total + w.in_ * out["in"]
    out["total"] = total
    return out



MAX_SKIPPED_IN_A_ROW = 10  # a few pathological batches are skipped; a run of them means divergence


def training_losses_safe(
    flow: Flow, x: Tensor, weights: LossWeights, generator: torch.Generator, reg_batch: int | None,
    skipped_in_a_row: int = 0,
) -> dict[str, Tensor] | None:
    """The paper's losses, or None for a batch whose loss is not finite (the step is skipped, so it cannot
    corrupt the weights); after ``MAX_SKIPPED_IN_A_ROW`` such batches in a row training stops with a clear error."""
    losses = training_losses(flow, x, weights, generator, reg_batch)
    if torch.isfinite(losses["total"]):
        return losses
    if skipped_in_a_row + 1 >= MAX_SKIPPED_IN_A_ROW:
        raise BenchError(f"flowprior training diverged ({MAX_SKIPPED_IN_A_ROW} non-finite losses in a row); "
                         "resume from the last checkpoint with a lower --lr")
    return None


@torch.no_grad()
def validation_bpd(flow: Flow, patches: Tensor, batch: int = 32) -> float:
    """Mean bits/dim of fixed validation patches (eval mode, fixed dequantisation offset ½/256)."""
    was_training = flow.training
    flow.eval()
    values = []
    for chunk in patches.split(batch):
        values.append(bits_per_dim(flow.log_prob(chunk + 0.5 / 256), chunk[0].numel()))
    flow.train(was_training)
    return float(torch.cat(values).mean())


def train_flow(
    data: list[str] | tuple[str, ...],
    config: str,
    steps: int,
    out: str,
    batch: int | None = None,
    patch: int = 64,
    lr: float = 1e-4,
    reg_batch: int | None = None,
    save_every: int = 500,
    val_fraction: float = 0.05,
    val_patches: int = 64,
    resume: bool = False,
    seed: int = 0,
    max_minutes: float | None = None,
    progress: bool = True,
    device: str = "cpu",
    lr_floor: float | None = None,
) -> dict[str, Any]:
    """Train a flow prior; returns the final log record. See :func:`flowprior_trainer` for the options.

    ``device`` holds the model and batches (patches and random draws are made on the CPU from ``seed``, so a
    run's data order does not depend on the device); ``lr_floor`` anneals the step from ``lr`` to
    ``lr_floor·lr`` on a cosine over ``steps`` or ``max_minutes``, whichever ends first (None: constant).
    """
    target = training_device(device)
    cfg = get_config(config)
    batch = batch or cfg.batch
    out_path = Path(out)
    generator = torch.Generator().manual_seed(seed)
    images = load_training_images(data, patch)
    train_items, val_items = split_holdout(images, val_fraction)
    if not train_items:
        raise click.UsageError(f"no training images of at least {patch}×{patch} px in {', '.join(data)}")
    train_images = [im for _, im in train_items]
    val_images = [im for _, im in val_items]
    val_set = random_patches(val_images, val_patches, patch, torch.Generator().manual_seed(1234)) if val_images else None

    # the model is built before any resume (it draws its 1×1 convs from torch's global generator)
    torch.manual_seed(seed)  # parameter initialisation: the same --seed gives the same checkpoint
    flow = Flow(cfg).train().to(target)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    loop = TrainingLoop(LoopOptions(steps=steps, out=out_path, save_every=save_every, max_minutes=max_minutes,
                                    resume=resume, progress=progress, desc="train flowprior"))
    if loop.checkpoint_to_resume():
        flow, state = load_checkpoint(out_path)
        flow.train().to(target)
        optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
        if flow.config != cfg:
            click.echo(f"note: continuing the checkpoint's own configuration {flow.config.to_dict()}")
            cfg = flow.config
        loop.resume_from(state, optimizer, generator, lr=lr)
    if val_set is not None and cfg.in_channels == 1:  # the MNIST configuration models grayscale images
        val_set = val_set.mean(1, keepdim=True)
    if val_set is not None:
        val_set = val_set.to(target)
    weights = LossWeights()
    ema: float | None = None
    losses: dict[str, Tensor] = {}

    skipped_in_a_row = skipped_total = 0

    def step(state: LoopState) -> dict[str, str]:
        nonlocal ema, losses, skipped_in_a_row, skipped_total
        x = random_patches(train_images, batch, patch, generator).to(target)
        if cfg.in_channels == 1:
            x = x.mean(1, keepdim=True)
        computed = training_losses_safe(flow, x, weights, generator, reg_batch, skipped_in_a_row)
        if computed is None:
            skipped_in_a_row += 1
            skipped_total += 1
            return {"bpd": f"{ema:.3f}" if ema is not None else "nan", "skipped": str(skipped_total)}
        skipped_in_a_row = 0
        losses = computed
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        # the paper clips gradient values at 1e5 and the L2 norm at 1e4
        torch.nn.utils.clip_grad_value_(flow.parameters(), 1e5)
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 1e4)
        optimizer.step()
        bpd = losses["nll"].item()
        ema = bpd if ema is None else 0.98 * ema + 0.02 * bpd
        return {"bpd": f"{ema:.3f}"}

    def schedule(state: LoopState) -> None:
        if lr_floor is not None:
            factor = cosine_decay(state.fraction(steps, max_minutes), lr_floor)
            for group in optimizer.param_groups:
                group["lr"] = lr * factor

    def validate(state: LoopState) -> dict[str, Any]:
        record: dict[str, Any] = {"train_bpd": round(ema, 4) if ema is not None else None,
                                  "skipped_batches": skipped_total}
        record.update({k: round(v.item(), 6) for k, v in losses.items() if k != "nll"})
        if val_set is not None:
            record["val_bpd"] = round(validation_bpd(flow, val_set), 4)
        return record

    def save(record: dict[str, Any]) -> None:
        save_checkpoint(
            out_path,
            flow,
            {
                **loop.checkpoint_fields(optimizer, generator),
                "train": {
                    "data": [str(d) for d in data],
                    "config_name": config,
                    "batch": batch,
                    "patch": patch,
                    "lr": lr,
                    "lr_floor": lr_floor,
                    "device": str(target),
                    "reg_batch": reg_batch,
                    "train_images": len(train_items),
                    "val_images": len(val_items),
                    "seed": seed,
                },
                "last": record,
            },
        )

    return loop.run(step, validate, save, schedule)


def training_device(name: str) -> torch.device:
    """The torch device of ``--device`` (``cpu``, ``cuda``, ``cuda:N``), or a one-line error saying what to use.

    >>> training_device("cpu")
    device(type='cpu')
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise click.BadParameter(f"'{name}' is not a torch device; use cpu, cuda or cuda:N", param_hint="--device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")
    if device.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"'{name}': the trainer runs on cpu or cuda", param_hint="--device")
    return device


@register_trainer("flowprior")
@click.command("flowprior")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of training images (repeat for several). Never use evaluation images.")
@click.option("--config", "config", default="cpu", show_default=True, type=click.Choice(list(CONFIGS)),
              help="Named flow configuration (div2k, sprites, mnist: the paper's; cpu: the shipped default).")
@click.option("--steps", default=20000, show_default=True, type=click.IntRange(min=1), help="Total optimiser steps.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file (.pt) to write.")
@click.option("--batch", default=None, type=click.IntRange(min=1), help="Batch size [default: the config's].")
@click.option("--patch", default=64, show_default=True, type=click.IntRange(min=8), help="Training patch size (px).")
@click.option("--lr", default=1e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--reg-batch", default=None, type=click.IntRange(min=1),
              help="Evaluate the three regularisers on this many samples of each batch [default: all].")
@click.option("--save-every", default=500, show_default=True, type=click.IntRange(min=1),
              help="Checkpoint and validate every N steps.")
@click.option("--val-fraction", default=0.05, show_default=True, type=float,
              help="Fraction of the training images held out for validation bits/dim.")
@click.option("--resume", is_flag=True, help="Continue from --out (weights, optimiser, step, RNG).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--max-minutes", default=None, type=float, help="Stop (and save) after this much training time.")
@click.option("--device", default="cpu", show_default=True,
              help="Where the model trains: cpu, cuda or cuda:N (batches are drawn on the CPU from --seed).")
@click.option("--lr-floor", default=None, type=click.FloatRange(0, 1),
              help="Anneal the learning rate on a cosine to this fraction of --lr by --steps or --max-minutes "
              "(whichever ends first) [default: constant].")
def flowprior_trainer(data: tuple[str, ...], config: str, steps: int, out: str, batch: int | None, patch: int,
                      lr: float, reg_batch: int | None, save_every: int, val_fraction: float, resume: bool,
                      seed: int, threads: int | None, max_minutes: float | None, device: str,
                      lr_floor: float | None) -> None:
    """Train the flow prior on random patches (with flips) using the paper's four losses.

    Logs bits/dim with a progress bar, writes resumable checkpoints every
    --save-every steps (and a JSON-lines log next to --out), and reports
    validation bits/dim on a held-out split of the training images.
    """
    if threads:
        torch.set_num_threads(threads)
    multiple = get_config(config).multiple
    if patch % multiple:
        raise click.BadParameter(f"--patch {patch} must be a multiple of {multiple} for config {config}")
    record = train_flow(data, config, steps, out, batch, patch, lr, reg_batch, save_every, val_fraction,
                        resume=resume, seed=seed, max_minutes=max_minutes, device=device, lr_floor=lr_floor)
    click.echo(f"saved {out}: {json.dumps(record)}")
