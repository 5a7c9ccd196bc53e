"""``bench train drunet``: train the noise-level-conditioned denoiser of the ``pnp`` method.

The model is :class:`bench.nets.drunet.DRUNet`. As in DPIR, every training
patch gets its own noise level ``σ ~ U[0, sigma_max]`` (one network for all
levels, given ``σ`` as an input map) and the loss is the L1 distance between
``D(x + σn, σ)`` and ``x``. Images (with the evaluation-image guard), the
validation holdout and the augmented patches come from :mod:`bench.training.data`;
the time budget, resume, periodic saves, progress and the JSON-lines log from
:mod:`bench.training.loop`. Validation: denoising PSNR on fixed noisy centre
crops of held-out training-folder images at σ = 15, 25 and 50.

Example:
    >>> from bench.registry import available
    >>> "drunet" in available("trainer")
    True
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench import checkpoints
from bench.nets.drunet import CPU_ARCH, FORMAT, DRUNet, save_checkpoint
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

VAL_SIGMAS = (15, 25, 50)  # 0-255 scale


@dataclass
class TrainConfig(RunOptions):
    """Hyper-parameters of :func:`train_drunet` (defaults: the CPU variant) and the run options of
    :class:`bench.training.loop.RunOptions` (a checkpoint every ``val_every`` steps).

    Example:
        >>> TrainConfig(data=["train/bsd200"]).channels
        [32, 64, 128, 256]
        >>> TrainConfig(data=["train/bsd200"], sigma_max=0)
        Traceback (most recent call last):
        ...
        ValueError: sigma_max=0 must be > 0 (0-255 scale), e.g. 50
    """

    data: list[str]
    steps: int = 20000
    channels: list[int] = field(default_factory=lambda: list(CPU_ARCH["channels"]))
    blocks: int = CPU_ARCH["blocks"]
    sigma_max: float = 50.0
    batch_size: int = 16
    patch: int = 64
    lr: float = 5e-4
    val_every: int = 250

    def __post_init__(self) -> None:
        if not self.sigma_max > 0:
            raise ValueError(f"sigma_max={self.sigma_max:g} must be > 0 (0-255 scale), e.g. 50")
        for name in ("steps", "batch_size", "blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.patch < 16 or self.patch % 8:
            raise ValueError(f"patch={self.patch} must be a multiple of 8 and >= 16")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if not self.data:
            raise ValueError("data must name at least one training folder")
        self.check()


def train_drunet(cfg: TrainConfig, images: list[tuple[str, np.ndarray]] | None = None) -> tuple[DRUNet, dict]:
    """Train a DRUNet on random patches with random noise levels; returns the model (eval mode) and metadata.

    Adam with a cosine learning-rate decay to 1 % of ``lr`` (following the time
    budget when ``max_minutes`` ends training first). With ``cfg.out`` the
    checkpoint (metadata and resume state) is written every ``val_every`` steps and at the end.
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    images = training_images(cfg.data, images)
    train, val = split_validation(images, cfg.val_images)
    train_arrays = [im for _, im in train]
    torch.manual_seed(cfg.seed)
    model = DRUNet(cfg.channels, cfg.blocks)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loop = cfg.make_loop(cfg.steps, cfg.val_every, "drunet")
    val_sets = {s: validation_batch([im for _, im in val], cfg.val_crop, s, cfg.seed + 1 + s) for s in VAL_SIGMAS}
    history: list[dict[str, Any]] = []
    recent: deque[float] = deque(maxlen=200)
    payload = loop.resume_model(model, optimizer, rng, FORMAT, model.config)
    if payload is not None:
        history, recent = list(payload["meta"]["history"]), deque(payload["recent"], maxlen=200)

    def schedule(state: LoopState) -> None:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * cosine_decay(state.fraction(cfg.steps, cfg.max_minutes or None), 0.01)

    def step(state: LoopState) -> dict[str, str] | None:
        x = sample_patches(train_arrays, cfg.batch_size, cfg.patch, rng)
        sigma = torch.rand(x.shape[0]) * (cfg.sigma_max / 255.0)
        y = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape)
        loss = (model(y, sigma) - x).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
        return {"l1": f"{np.mean(list(recent)[-20:]):.2e}"} if (state.step + 1) % 20 == 0 else None

    def validate(state: LoopState) -> dict[str, float]:
        entry: dict[str, Any] = {"step": state.step, "loss": float(np.mean(recent)) if recent else float("nan")}
        if val:
            model.eval()
            with torch.no_grad():
                for s, (clean, noisy) in val_sets.items():
                    out = torch.cat([model(noisy[i : i + 4], s / 255.0) for i in range(0, len(noisy), 4)])
                    entry[f"val_psnr_{s}"] = batch_psnr(clean, out)
            model.train()
        history.append(entry)
        return {k: v for k, v in entry.items() if k != "step"}

    def metadata() -> dict[str, Any]:
        last = history[-1] if history else {}
        return {
            **cfg.run_metadata(loop, len(train), [name for name, _ in val]),
            "val_psnr": {str(s): last.get(f"val_psnr_{s}", float("nan")) for s in VAL_SIGMAS},
            "val_input_psnr": {str(s): batch_psnr(*val_sets[s]) for s in VAL_SIGMAS} if val else {},
            "history": history,
            "torch_version": str(torch.__version__),
        }

    def save(record: dict[str, Any]) -> None:
        save_checkpoint(model, cfg.out, metadata(), extra={**loop.model_fields(optimizer, rng), "recent": list(recent)})

    model.train()
    loop.run(step, validate, save if cfg.out else None, schedule)
    model.eval()
    return model, metadata()


def model_card(path: str | os.PathLike, meta: dict[str, Any], sha256: str) -> str:
    """Markdown model card for a checkpoint trained by :func:`train_drunet`."""
    defaults = TrainConfig(data=["-"])
    limit = "".join(  # the options that differ from the defaults, so the command reproduces this run
        f" --{name.replace('_', '-')} {','.join(map(str, meta[name])) if name == 'channels' else f'{meta[name]:g}'}"
        for name in ("channels", "blocks", "sigma_max", "batch_size", "patch", "lr", "seed", "max_minutes")
        if meta.get(name) is not None and meta[name] != getattr(defaults, name)
    )
    limit += f" --release {meta['release']}" if meta.get("release") else ""
    arch = f"channels {meta['channels']}, {meta['blocks']} residual blocks per scale"
    val = ", ".join(
        f"σ={s}: {meta['val_psnr'][s]:.2f} dB (noisy {meta['val_input_psnr'].get(s, float('nan')):.2f})"
        for s in meta["val_psnr"]
    )
    rows = "\n".join(
        f"| {h['step']} | {h['loss']:.4f} | "
        + " | ".join(f"{h.get(f'val_psnr_{s}', float('nan')):.2f}" for s in VAL_SIGMAS)
        + " |"
        for h in meta.get("history", [])
    )
    return f"""# {Path(path).name}: noise-level-conditioned DRUNet denoiser (CPU variant)

Denoiser prior of the `pnp` method (Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser
Prior", TPAMI 2021). Architecture: DRUNet, {arch} (published: [64, 128, 256, 512], 4 blocks).

- **Data**: {", ".join(meta["data"])} ({meta["train_images"]} training images); random {meta["patch"]}×{meta["patch"]}
  patches with flips and 90° rotations, white Gaussian noise with σ ~ U[0, {meta["sigma_max"]:g}]/255 per patch.
  No evaluation images (content-hash guard).
- **Held-out validation**: {len(meta["val_image_ids"])} training-folder images never trained on
  ({", ".join(meta["val_image_ids"])}), {meta["val_crop"]}-px centre crops, fixed noise.
- **Optimisation**: L1 loss, Adam lr {meta["lr"]:g} with cosine decay to 1 %, batch {meta["batch_size"]},
  {meta["steps"]} steps (of {meta["steps_requested"]} requested), seed {meta["seed"]}, {meta["threads"]} CPU thread(s).
- **Training time**: {meta["seconds"] / 60:.1f} min (CPU).
- **Validation denoising PSNR**: {val}.
- **sha256**: `{sha256}`
- **Reproduce**: `bench train drunet {" ".join("--data " + d for d in meta["data"])} --steps {meta["steps_requested"]}{limit} --out {meta.get("out_name") or Path(path).name}` (torch {meta["torch_version"]}).

| step | L1 loss | val PSNR σ=15 | σ=25 | σ=50 |
| ---: | ---: | ---: | ---: | ---: |
{rows}
"""


@register_trainer("drunet")
@defaults_from(TrainConfig)
@click.command("drunet")
@data_click_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Checkpoint to write (.pt); a model card FILE.md and a log FILE.pt.log.jsonl go beside it.",
)
@click.option("--steps", type=int)
@click.option(
    "--channels",
    help="Channels of the 4 scales, comma-separated (published: 64,128,256,512).",
)
@click.option("--blocks", type=int, help="Residual blocks per scale.")
@click.option("--sigma-max", type=float, help="Largest training σ (0-255).")
@click.option("--batch-size", type=int)
@click.option("--patch", type=int)
@click.option("--lr", type=float, help="Adam learning rate (cosine decay to 1 %).")
@click.option("--seed", type=int)
@click.option("--val-every", type=int, help="Validate and save every N steps.")
@run_click_options()
def train_drunet_command(data: tuple[str, ...], out: str, channels: str, release: str | None, **options: Any) -> None:
    """Train the noise-level-conditioned DRUNet denoiser of `pnp` (one network for σ in [0, sigma-max])."""
    try:
        cfg = TrainConfig(data=list(data), out=out, channels=[int(c) for c in channels.split(",")], **options)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    model, meta = train_drunet(cfg)
    for path in [out] + ([release] if release else []):
        if path == release:
            save_checkpoint(model, path, meta)
        sha = checkpoints.sha256_file(path)
        card = Path(path).with_suffix(".md")
        names = {"release": Path(release).name if release else "", "out_name": Path(out).name}
        card.write_text(model_card(path, {**meta, **names}, sha), "utf-8")
        click.echo(
            f"wrote {path} (sha256 {sha[:12]}…) and {card}: {meta['steps']} steps in {meta['seconds'] / 60:.1f} "
            f"min, validation PSNR " + ", ".join(f"σ={s} {v:.2f} dB" for s, v in meta["val_psnr"].items())
        )
