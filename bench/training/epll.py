"""``bench train epll``: fit the EPLL patch prior (Zoran & Weiss 2011), a Gaussian mixture of 8×8 patches, by EM.

The model is :class:`bench.nets.gmm.PatchGMM`: ``K`` (200, as in the original)
zero-mean full-covariance Gaussians over the 63 AC coordinates of 8×8 patches
(the DC is removed, as in the original ``noDC_zeromean`` model). Colour images
are modelled channel by channel in the orthonormal opponent space
(:func:`bench.physics.color.to_opponent`), so the training patches are drawn from
the three opponent channels alike (the original model is grayscale).

A fixed set of ``--patches`` random patches (and ``--val-patches`` from the
held-out images) is drawn once from the seed; one loop step is one EM
iteration over all of it, so a resumed run sees the same data. The run stops
at ``--steps`` iterations, at ``--max-minutes``, or when the mean training
log-likelihood improves by less than ``--tol`` nats per patch. Every record
holds the training and held-out mean log-likelihoods (nats per patch, AC
coordinates, intensities on [0, 1]). Each covariance gets ``--reg`` on its
diagonal: by default the variance of 8-bit quantisation, (1/255)²/12.

Example:
    >>> from bench.registry import available
    >>> "epll" in available("trainer")
    True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.errors import BenchError
from bench.nets.gmm import GaussianMixture, PatchGMM, dc_free_basis
from bench.physics.color import to_opponent
from bench.registry import register_trainer
from bench.training.data import load_training_images, split_holdout
from bench.training.loop import LoopOptions, LoopState, TrainingLoop

QUANTISATION_VAR = 1.0 / (12 * 255.0**2)


def sample_ac_patches(images: list[np.ndarray], count: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``patch``² patches of random opponent channels, as AC coordinates ``(count, p² − 1)``.

    Positions are uniform over all patch positions of all images (larger images give more patches);
    the channel is uniform over the three opponent channels.

    >>> x = sample_ac_patches([np.zeros((12, 10, 3), np.uint8)], 5, 4, torch.Generator().manual_seed(0))
    >>> tuple(x.shape), float(x.abs().max())
    ((5, 15), 0.0)
    """
    sizes = torch.tensor([(im.shape[0] - patch + 1) * (im.shape[1] - patch + 1) for im in images], dtype=torch.float64)
    which = torch.multinomial(sizes / sizes.sum(), count, replacement=True, generator=generator)
    basis = dc_free_basis(patch).float()
    offsets = torch.arange(patch)
    out = torch.empty(count, patch * patch - 1)
    for i, image in enumerate(images):
        rows = (which == i).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        h, w = image.shape[:2]
        top = torch.randint(h - patch + 1, (rows.numel(),), generator=generator)
        left = torch.randint(w - patch + 1, (rows.numel(),), generator=generator)
        channel = torch.randint(3, (rows.numel(),), generator=generator)
        opp = to_opponent(torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255.0)[0].float()
        r = (top[:, None] + offsets)[:, :, None]
        c = (left[:, None] + offsets)[:, None, :]
        patches = opp[channel[:, None, None], r, c].reshape(rows.numel(), -1)
        out[rows] = patches @ basis
    return out


def train_epll(data: list[str], out: str | None, components: int = 200, patch: int = 8, patches: int = 400_000,
               val_patches: int = 40_000, steps: int = 100, tol: float = 1e-4, reg: float = QUANTISATION_VAR,
               save_every: int = 5, val_fraction: float = 0.1, seed: int = 0, max_minutes: float | None = None,
               resume: bool = False, progress: bool = True) -> tuple[PatchGMM, dict[str, Any]]:
    """Fit the mixture; returns it and the last record. See the module docstring."""
    loaded = load_training_images(data, patch)  # the evaluation-image guard runs before anything is written
    if not loaded:
        raise BenchError(f"no training images of at least {patch} px in {', '.join(map(str, data))}.")
    train_items, val_items = split_holdout(loaded, val_fraction)
    generator = torch.Generator().manual_seed(seed)
    x = sample_ac_patches([im for _, im in train_items], patches, patch, generator)
    val = sample_ac_patches([im for _, im in val_items], val_patches, patch, generator) if val_items else None
    gmm = GaussianMixture.from_data(x, components, generator, zero_mean=True, reg=reg)
    loop = TrainingLoop(LoopOptions(steps=steps, out=out, save_every=save_every, max_minutes=max_minutes,
                                    resume=resume, progress=progress, desc="train epll (EM)", mininterval=5.0))
    history: list[dict[str, Any]] = []
    if loop.checkpoint_to_resume():
        payload = load_checkpoint(out)
        prior = PatchGMM.from_payload(payload, str(out))
        if prior.gmm.components != components or prior.patch != patch:
            raise BenchError(f"cannot resume from '{out}': it has {prior.gmm.components} components of "
                             f"{prior.patch}×{prior.patch} patches, not {components} of {patch}×{patch}.")
        gmm = prior.gmm
        history = list(prior.meta.get("history", [])) if prior.meta else []
        loop.resume_from(payload)
    state: dict[str, Any] = {"train_ll": history[-1]["train_loglik"] if history else -math.inf, "delta": math.inf}

    def step(s: LoopState) -> dict[str, str]:
        nonlocal gmm
        gmm, loglik = gmm.em_step(x, reg)
        state["delta"], state["train_ll"] = loglik - state["train_ll"], loglik
        if state["delta"] < tol:
            loop.options.steps = s.step + 1  # converged: this is the last step (recorded and saved)
        return {"loglik": f"{loglik:.3f}"}

    def validate(s: LoopState) -> dict[str, Any]:
        record = {"train_loglik": round(state["train_ll"], 4), "delta": round(state["delta"], 6),
                  "val_loglik": round(float(gmm.log_prob(val).mean()), 4) if val is not None else None,
                  "min_weight": float(gmm.weights.min())}
        history.append({"step": s.step, "seconds": round(s.elapsed, 1), **record})
        return record

    def meta() -> dict[str, Any]:
        return {"data": [str(d) for d in data], "components": components, "patch": patch, "patches": patches,
                "val_patches": val_patches, "reg": reg, "tol": tol, "seed": seed, "val_fraction": val_fraction,
                "train_images": len(train_items), "val_images": len(val_items), "channels": "opponent",
                "em_iterations": loop.state.step, "train_seconds": round(loop.state.elapsed, 1),
                "history": history, "torch_version": str(torch.__version__)}

    def save(record: dict[str, Any]) -> None:
        if out:
            payload = PatchGMM(patch, gmm, meta()).to_payload()
            save_checkpoint({**payload, **loop.checkpoint_fields()}, out)

    record = loop.run(step, validate, save)
    return PatchGMM(patch, gmm, meta()), record


@register_trainer("epll")
@click.command("epll")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(file_okay=False),
              help="Folder of training images (repeat for several). Never use evaluation images.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file (.pt) to write.")
@click.option("--components", default=200, show_default=True, type=click.IntRange(min=1),
              help="Mixture components (200 in the original).")
@click.option("--patch", default=8, show_default=True, type=click.IntRange(min=2), help="Patch size (px).")
@click.option("--patches", default=400_000, show_default=True, type=click.IntRange(min=1),
              help="Training patches (drawn once from the seed).")
@click.option("--val-patches", default=40_000, show_default=True, type=click.IntRange(min=1),
              help="Held-out patches, from the --val-fraction held-out images.")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1), help="Maximum EM iterations.")
@click.option("--tol", default=1e-4, show_default=True, type=float,
              help="Stop when the mean log-likelihood per patch improves by less (nats).")
@click.option("--reg", default=QUANTISATION_VAR, show_default=True, type=float,
              help="Added to every covariance's diagonal (default: 8-bit quantisation variance).")
@click.option("--save-every", default=5, show_default=True, type=click.IntRange(min=1),
              help="Validate and save every N EM iterations.")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of the training images held out for the validation log-likelihood.")
@click.option("--resume", is_flag=True, help="Continue from --out.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--max-minutes", default=None, type=float, help="Stop (and save) after this much training time.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def epll_trainer(data: tuple[str, ...], out: str, components: int, patch: int, patches: int, val_patches: int,
                 steps: int, tol: float, reg: float, save_every: int, val_fraction: float, resume: bool, seed: int,
                 threads: int | None, max_minutes: float | None, progress: bool) -> None:
    """Fit the EPLL Gaussian-mixture patch prior by EM (see ``methods/weights/epll_gmm200.md``)."""
    if threads:
        torch.set_num_threads(threads)
    if not reg > 0:
        raise click.BadParameter(f"--reg {reg} must be > 0 (it keeps every covariance invertible)")
    _, record = train_epll(list(data), out, components, patch, patches, val_patches, steps, tol, reg, save_every,
                           val_fraction, seed, max_minutes, resume, progress)
    click.echo(f"saved {out}: {json.dumps(record)}")
    if not Path(out).is_file():
        raise BenchError(f"no model written to {out}")
