"""DeFlow: a degradation learned from unpaired clean and degraded images, and ``bench train deflow``.

The model (:mod:`degradations._deflow`) is a conditional normalising flow whose
shared latent space holds clean images at ``N(0, I)`` and degraded ones at
``N(m, I + ΣΣᵀ)``; translating clean → degraded adds a draw of ``N(m, ΣΣᵀ)``
to the latents of the clean image (Wolf et al., CVPR 2021).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from bench.api import Degradation, Operator, Tensor, quantize
from bench.checkpoints import file_version
from bench.errors import CheckpointError
from bench.registry import register_degradation, register_trainer
from degradations._deflow import CONFIGS, TRAIN_HINT, DeFlowNet, TrainOptions, load_deflow, train_deflow

_MODELS: dict[tuple[str, int, int], tuple[DeFlowNet, dict[str, float]]] = {}


def load_model(checkpoint: str) -> tuple[DeFlowNet, dict[str, float]]:
    """The network of ``checkpoint`` (cached per file and modification time) and its effective-σ record."""
    if not checkpoint:
        raise CheckpointError(f"deflow.checkpoint is empty: {TRAIN_HINT}.")
    path = Path(checkpoint).expanduser()
    key = file_version(path)
    if key not in _MODELS:
        net, data = load_deflow(path)
        net.requires_grad_(False)
        sigma = data.get("effective_sigma")
        if not isinstance(sigma, dict) or "heat1" not in sigma:
            raise CheckpointError(f"DeFlow checkpoint '{path}' has no effective noise level (written by an "
                                  f"interrupted or foreign trainer); {TRAIN_HINT}.")
        _MODELS[key] = (net, {"heat0": float(sigma.get("heat0", 0.0)), "heat1": float(sigma["heat1"])})
    return _MODELS[key]


def sigma_at_heat(sigma: dict[str, float], heat: float) -> float:
    """Effective σ at ``heat`` from the two measured ones, treating the mean shift and the noise as independent.

    >>> round(sigma_at_heat({"heat0": 0.03, "heat1": 0.05}, 2.0), 4)
    0.0854
    """
    bias2 = sigma["heat0"] ** 2
    noise2 = max(sigma["heat1"] ** 2 - bias2, 0.0)
    return math.sqrt(bias2 + heat**2 * noise2)


@register_degradation("deflow")
class DeFlow(Degradation):
    """Learned degradation (DeFlow): clean → degraded translation by a flow trained on unpaired images.

    ``checkpoint`` comes from ``bench train deflow --clean DIR --degraded DIR
    --out FILE``; ``heat`` scales the sampled part ``Σn`` of the latent shift
    (0: only the mean shift, deterministic). The output is rounded to 8 bits;
    sizes that are not multiples of the flow's 2^L (and 4× conditioning) are
    reflect-padded and cropped back.

    Operator for MAP methods: the identity, with the effective noise level σ
    measured once per checkpoint at the end of training as the RMS of
    ``quantize(translate(x)) − x`` on held-out clean patches, at heat 0 and 1
    (stored in the checkpoint); other heats combine the two by
    :func:`sigma_at_heat`.

    Example (an untrained tiny model, only to show the calls):
        >>> import os, tempfile, torch
        >>> from degradations._deflow import DeFlowNet, get_config, save_deflow
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> save_deflow(path, DeFlowNet(get_config("tiny")), {"effective_sigma": {"heat0": 0.0, "heat1": 0.02}})
        >>> d = DeFlow(DeFlow.Params(checkpoint=path, heat=1.0))
        >>> obs = d.degrade(torch.rand(1, 3, 70, 66), torch.Generator().manual_seed(0))
        >>> tuple(obs.y.shape), round(obs.sigma, 3)
        ((1, 3, 70, 66), 0.02)
    """

    @dataclass
    class Params:
        checkpoint: str = ""
        heat: float = 1.0

        def __post_init__(self) -> None:
            if not self.heat >= 0:
                raise ValueError(f"heat={self.heat} must be >= 0 (1 = the learned noise level), e.g. heat=1")

    depends_on = ("degradations._deflow",)

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        _, sigma = load_model(self.params.checkpoint)
        return Operator(lambda x: x, shape, shape, sigma=sigma_at_heat(sigma, self.params.heat), name="identity")

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        net, _ = load_model(self.params.checkpoint)
        net = net.to(clean.device)
        return quantize(net.translate(clean, self.params.heat, generator))

    def describe(self) -> str:
        name = Path(self.params.checkpoint).name or "(no checkpoint)"
        return f"DeFlow learned degradation ({name}, heat {self.params.heat:g})"


@register_trainer("deflow")
@click.command("deflow")
@click.option("--clean", "clean", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of clean images (repeat for several).")
@click.option("--degraded", "degraded", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of degraded images, unpaired with --clean (repeat for several).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file (.pt) to write.")
@click.option("--config", default="cpu", show_default=True, type=click.Choice(list(CONFIGS)),
              help="cpu: small CPU-trainable flow (K=3, L=2); official: K=16, L=3 as in the paper; tiny: tests.")
@click.option("--steps", default=5000, show_default=True, type=click.IntRange(min=1), help="Total optimiser steps.")
@click.option("--batch", default=None, type=click.IntRange(min=1), help="Patches per domain per step [default: the config's].")
@click.option("--patch", default=48, show_default=True, type=click.IntRange(min=8),
              help="Training patch size (px), a multiple of the config's multiple (16 for the built-in ones).")
@click.option("--lr", default=5e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of each folder held out (validation bits/dim and the effective noise level).")
@click.option("--save-every", default=250, show_default=True, type=click.IntRange(min=1),
              help="Checkpoint and validate every N steps.")
@click.option("--resume", is_flag=True, help="Continue from --out (weights, optimiser, step, RNG).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--max-minutes", default=None, type=float, help="Stop (and save) after this much training time.")
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
