"""``bench train dae``: train the denoising auto-encoder used by the ``dmsp`` and ``daep`` priors.

The model is :class:`bench.nets.dae.DAE`; the loss is the mean squared error
between ``D(x + n)`` and ``x``, ``n ~ N(0, σ²)``. Images (with the
evaluation-image guard), the validation holdout and the augmented patches come
from :mod:`bench.training.data`; the time budget, resume, periodic saves,
progress and the JSON-lines log from :mod:`bench.training.loop`.

Example:
    >>> from bench.registry import available
    >>> "dae" in available("trainer")
    True
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench import checkpoints
from bench.nets.dae import CPU_ARCH, DAE, FORMAT, save_checkpoint
from bench.registry import register_trainer
from bench.training.data import (
    batch_psnr,
    data_click_option,
    sample_patches,
    split_validation,
    training_images,
    validation_batch,
)
from bench.training.loop import LoopState, RunOptions, cosine_decay, defaults_from, run_click_options

log = logging.getLogger(__name__)



@dataclass
class TrainConfig(RunOptions):
    """Hyper-parameters of :func:`train_dae` (defaults: the CPU variant; its training time is in its model card) and the run
    options of :class:`bench.training.loop.RunOptions` (a checkpoint every ``val_every`` steps).

    Example:
        >>> TrainConfig(sigma=25, data=["train/bsd200"]).depth
        12
        >>> TrainConfig(sigma=0, data=["train/bsd200"])
        Traceback (most recent call last):
        ...
        ValueError: sigma=0 must be > 0 (0-255 scale), e.g. 11 or 25
    """

    sigma: float
    data: list[str]
    steps: int = 3000
    depth: int = CPU_ARCH["depth"]
    channels: int = CPU_ARCH["channels"]
    batchnorm: bool = True
    batch_size: int = 16
    patch: int = 40
    lr: float = 1e-3
    val_every: int = 500

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma={self.sigma} must be > 0 (0-255 scale), e.g. 11 or 25")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.patch < 8:
            raise ValueError(f"patch={self.patch} must be >= 8")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if not self.data:
            raise ValueError("data must name at least one training folder")
        self.check()


def train_dae(cfg: TrainConfig, images: list[tuple[str, np.ndarray]] | None = None) -> tuple[DAE, dict[str, Any]]:
    """Train a DAE on random noisy patches; returns the model (eval mode) and metadata.

    Loss: mean squared error between ``D(x + n)`` and ``x``, ``n ~ N(0, σ²)``;
    Adam with a cosine learning-rate decay to 1 % of ``lr``. Validation PSNR
    is measured on fixed noisy centre crops of held-out training-folder images.
    With ``cfg.out`` the checkpoint (with the metadata so far and what a resume
    needs) is written every ``cfg.val_every`` steps and at the end.
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    images = training_images(cfg.data, images)
    train, val = split_validation(images, cfg.val_images)
    train_arrays = [im for _, im in train]
    torch.manual_seed(cfg.seed)  # the network's initialisation, then the training noise, draw from it
    model = DAE(cfg.depth, cfg.channels, cfg.batchnorm)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loop = cfg.make_loop(cfg.steps, cfg.val_every, f"dae σ={cfg.sigma:g}")
    sigma = cfg.sigma / 255.0
    val_x, val_y = (
        validation_batch([im for _, im in val], cfg.val_crop, cfg.sigma, cfg.seed + 1) if val else (None, None)
    )
    history: list[dict[str, float]] = []
    first: list[float] = []  # the first 20 losses and a window of the last 50 make the reported means
    recent: deque[float] = deque(maxlen=50)
    payload = loop.resume_model(model, optimizer, rng, FORMAT, model.config)
    if payload is not None:
        history, first, recent = (
            list(payload["meta"]["history"]),
            list(payload["losses"]["first"]),
            deque(payload["losses"]["recent"], maxlen=50),
        )

    def schedule(state: LoopState) -> None:
        # with a time limit the cosine decay follows whichever budget runs out first, so a
        # busy shared machine still ends with an annealed learning rate (steps then vary)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * cosine_decay(state.fraction(cfg.steps, cfg.max_minutes or None), 0.01)

    def step(state: LoopState) -> dict[str, str] | None:
        x = sample_patches(train_arrays, cfg.batch_size, cfg.patch, rng)
        noise = torch.randn(x.shape) * sigma
        loss = (model(x + noise) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if len(first) < 20:
            first.append(value)
        recent.append(value)
        return {"loss": f"{np.mean(list(recent)[-20:]):.2e}"} if (state.step + 1) % 20 == 0 else None

    def validate(state: LoopState) -> dict[str, float]:
        v = None
        if val_x is not None:
            model.eval()
            with torch.no_grad():
                out = torch.cat([model(val_y[i : i + 4]) for i in range(0, len(val_y), 4)])
            model.train()
            v = batch_psnr(val_x, out)
        entry = {"step": state.step, "loss": float(np.mean(recent)), "val_psnr": v if v is not None else float("nan")}
        history.append(entry)
        log.info("step %d: loss %.3e, validation PSNR %s", state.step, entry["loss"], v)
        return {"loss": entry["loss"], "val_psnr": entry["val_psnr"]}

    def metadata() -> dict[str, Any]:
        return {
            **cfg.run_metadata(loop, len(train), [name for name, _ in val]),
            "loss_first": float(np.mean(first)),
            "loss_last": float(np.mean(recent)),
            "val_psnr": history[-1]["val_psnr"] if history else float("nan"),
            "val_input_psnr": batch_psnr(val_x, val_y) if val_x is not None else float("nan"),
            "history": history,
            "torch_version": str(torch.__version__),
        }

    def save(record: dict[str, Any]) -> None:
        losses = {"first": list(first), "recent": list(recent)}
        save_checkpoint(
            model, cfg.out, cfg.sigma, metadata(), extra={**loop.model_fields(optimizer, rng), "losses": losses}
        )

    model.train()
    loop.run(step, validate, save if cfg.out else None, schedule)
    model.eval()
    return model, metadata()


def model_card(path: str | os.PathLike, meta: dict[str, Any], sha256: str) -> str:
    """Markdown model card for a checkpoint trained by :func:`train_dae`."""
    arch = f"{meta['depth']} conv layers 3×3, {meta['channels']} channels, BatchNorm={meta['batchnorm']}"
    minutes = meta.get("max_minutes") or 0
    budget = (
        f" (of {meta['steps_requested']} requested: the {minutes:g}-min time limit ended training and the "
        "cosine decay followed the time budget, so the step count depends on the machine's load)"
        if minutes and meta["steps"] < meta.get("steps_requested", meta["steps"])
        else ""
    )
    limit = f" --max-minutes {minutes:g}" if minutes else ""
    note = f"\n- **Note**: {meta['note']}" if meta.get("note") else ""
    rows = "\n".join(f"| {h['step']} | {h['loss']:.3e} | {h['val_psnr']:.2f} |" for h in meta.get("history", []))
    return f"""# {Path(path).name}: denoising auto-encoder, σ = {meta["sigma"]:g}/255

Prior network of the `dmsp` / `daep` methods (Bigdeli et al., "Deep Mean-Shift Priors for
Image Restoration", NIPS 2017; Bigdeli & Zwicker, "Image Restoration using Autoencoding Priors").

- **Architecture**: DnCNN-like, {arch}; output D(x) = x − residual(x). CPU variant of the
  official 20-layer, 64-channel network.
- **Training noise**: white Gaussian, σ = {meta["sigma"]:g} on the 0-255 scale (images in [0, 1]).
- **Data**: {", ".join(meta["data"])} ({meta["train_images"]} training images); random
  {meta["patch"]}×{meta["patch"]} patches with random flips and 90° rotations. No evaluation images.
- **Held-out validation**: {len(meta["val_image_ids"])} images of the training folders, never trained on
  ({", ".join(meta["val_image_ids"])}); {meta["val_crop"]}-px centre crops, fixed noise.
- **Optimisation**: Adam, lr {meta["lr"]:g} with cosine decay to 1 %, batch {meta["batch_size"]},
  {meta["steps"]} steps{budget}, seed {meta["seed"]}, {meta["threads"]} CPU thread(s).
- **Training time**: {meta["seconds"] / 60:.1f} min (CPU).
- **Validation denoising PSNR**: {meta["val_psnr"]:.2f} dB (noisy input: {meta["val_input_psnr"]:.2f} dB).
- **sha256**: `{sha256}`
- **Reproduce**: `bench train dae --sigma {meta["sigma"]:g} {" ".join("--data " + d for d in meta["data"])} --steps {meta.get("steps_requested", meta["steps"])}{limit} --out {Path(path).name}`
  (with torch {meta["torch_version"]}).{note}

| step | training loss (MSE) | validation PSNR (dB) |
| ---: | ---: | ---: |
{rows}
"""


def write_model_card(checkpoint: str | os.PathLike, meta: dict[str, Any], sha256: str) -> Path:
    """Write :func:`model_card` beside ``checkpoint`` (``FILE.md``); returns its path."""
    card = Path(checkpoint).with_suffix(".md")
    card.write_text(model_card(checkpoint, meta, sha256), encoding="utf-8")
    return card


@register_trainer("dae")
@defaults_from(TrainConfig)
@click.command("dae")
@click.option(
    "--sigma", type=float, required=True, help="Training noise σ on the 0-255 scale (11 for dmsp, 25 for daep)."
)
@data_click_option
@click.option("--steps", type=int, help="Optimisation steps.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Checkpoint file to write (.pt); a model card FILE.md and a log FILE.pt.log.jsonl are written beside it.",
)
@click.option(
    "--depth", type=int, help="Convolution layers (official: 20)."
)
@click.option(
    "--channels", type=int, help="Hidden channels (official: 64)."
)
@click.option("--batch-size", type=int)
@click.option("--patch", type=int, help="Training patch size in pixels.")
@click.option("--lr", type=float, help="Adam learning rate (cosine decay to 1 %).")
@click.option("--seed", type=int)
@click.option(
    "--val-images",
    type=int,
    help="Images of the training folders held out for validation.",
)
@run_click_options(release=False)
def train_dae_command(
    sigma: float,
    data: tuple[str, ...],
    steps: int,
    out: str,
    depth: int,
    channels: int,
    batch_size: int,
    patch: int,
    lr: float,
    seed: int,
    val_images: int,
    threads: int,
    max_minutes: float,
    progress: bool,
    resume: bool,
) -> None:
    """Train a denoising auto-encoder prior (DnCNN-like, residual output) on random noisy patches."""
    try:
        cfg = TrainConfig(
            sigma=sigma,
            data=list(data),
            steps=steps,
            depth=depth,
            channels=channels,
            batch_size=batch_size,
            patch=patch,
            lr=lr,
            seed=seed,
            val_images=val_images,
            threads=threads,
            max_minutes=max_minutes,
            progress=progress,
            out=out,
            resume=resume,
        )
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    _, meta = train_dae(cfg)
    sha = checkpoints.sha256_file(out)
    card = write_model_card(out, meta, sha)
    size = Path(out).stat().st_size / 1e6
    click.echo(
        f"wrote {out} ({size:.2f} MB, sha256 {sha[:12]}…) and {card}: {meta['steps']} steps in "
        f"{meta['seconds'] / 60:.1f} min, validation PSNR {meta['val_psnr']:.2f} dB "
        f"(noisy {meta['val_input_psnr']:.2f} dB)"
    )
