"""``bench train dae``: train the denoising auto-encoder used by the ``dmsp`` and ``daep`` priors.

Example:
    >>> from bench.registry import available
    >>> "dae" in available("trainer")
    True
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.registry import register_trainer
from methods import _dae


@register_trainer("dae")
@click.command("dae")
@click.option(
    "--sigma", type=float, required=True, help="Training noise σ on the 0-255 scale (11 for dmsp, 25 for daep)."
)
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of training images (repeatable). Evaluation folders are refused.",
)
@click.option("--steps", type=int, default=3000, show_default=True, help="Optimisation steps.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Checkpoint file to write (.pt); a model card FILE.md is written beside it.",
)
@click.option(
    "--depth", type=int, default=_dae.CPU_ARCH["depth"], show_default=True, help="Convolution layers (official: 20)."
)
@click.option(
    "--channels", type=int, default=_dae.CPU_ARCH["channels"], show_default=True, help="Hidden channels (official: 64)."
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--patch", type=int, default=40, show_default=True, help="Training patch size in pixels.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (cosine decay to 1 %).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--val-images",
    type=int,
    default=8,
    show_default=True,
    help="Images of the training folders held out for validation.",
)
@click.option(
    "--threads", type=int, default=1, show_default=True, help="CPU threads (the machine is shared; 0 = torch default)."
)
@click.option(
    "--max-minutes",
    type=float,
    default=0.0,
    show_default=True,
    help="Stop after this much training time, annealing the learning rate to it (0 = no limit).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
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
) -> None:
    """Train a denoising auto-encoder prior (DnCNN-like, residual output) on random noisy patches."""
    try:
        cfg = _dae.TrainConfig(
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
        )
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    model, meta = _dae.train_dae(cfg)
    sha = _dae.save_checkpoint(model, out, sigma, meta)
    card = _dae.write_model_card(out, meta, sha)
    size = Path(out).stat().st_size / 1e6
    click.echo(
        f"wrote {out} ({size:.2f} MB, sha256 {sha[:12]}…) and {card}: {meta['steps']} steps in "
        f"{meta['seconds'] / 60:.1f} min, validation PSNR {meta['val_psnr']:.2f} dB "
        f"(noisy {meta['val_input_psnr']:.2f} dB)"
    )
