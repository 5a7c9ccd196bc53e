"""Flow prior (Helminger et al.): MAP restoration in the latent space of a trained Glow-like flow.

Phase 1 (``bench train flowprior``) trains the prior with the paper's four
losses (see :func:`methods._flow.training_losses`); phase 2 (the ``flowprior``
method) restores ``x = T(u*)`` with ``u* = argmin_u ||A(T(u)) − y||²/(2σ²) −
w·log p(T(u))`` by Adam over ``u``, starting at ``T⁻¹(A.init(y))``. Images are
cut into 64×64 patches with a margin of 4 px (neighbours overlap by 8); all
patches are optimised as one batch and blended back inside the loop, so the
operator (blur, downsampling) acts on the assembled full image.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench.api import Method, Observation, RestoreContext, Tensor
from bench.checkpoints import file_version, weights_version
from bench.registry import register_method, register_trainer
from methods import _flow
from methods._flow import CONFIGS, Flow, LossWeights, bits_per_dim, get_config, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "flowprior_default.pt"


# --------------------------------------------------------------------------- training


def load_training_images(folders: list[str] | tuple[str, ...], min_size: int) -> list[tuple[str, np.ndarray]]:
    """All images of ``folders`` as uint8 arrays (memory), skipping those smaller than ``min_size``."""
    from bench.datasets import list_folder
    from bench.images import load_image, to_uint8

    out = []
    for folder in folders:
        for path in list_folder(Path(folder)):
            image = load_image(path)
            if min(image.shape[:2]) < min_size:
                log.warning("%s is smaller than the %d px training patch; skipped", path, min_size)
                continue
            out.append((str(path), to_uint8(image)))
    return out


def split_holdout(items: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Deterministic split: every ``round(1/fraction)``-th item is held out for validation.

    >>> split_holdout(list(range(10)), 0.2)
    ([0, 1, 2, 3, 5, 6, 7, 8], [4, 9])
    """
    if fraction <= 0:
        return list(items), []
    k = max(2, round(1 / fraction))
    train = [x for i, x in enumerate(items) if i % k != k - 1]
    val = [x for i, x in enumerate(items) if i % k == k - 1]
    return train, val


def random_patches(images: list[np.ndarray], n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` random ``size``×``size`` crops with random horizontal and vertical flips, ``(n, 3, size, size)``."""
    batch = []
    for _ in range(n):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = image.shape[:2]
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        patch = torch.from_numpy(np.ascontiguousarray(image[top : top + size, left : left + size])).permute(2, 0, 1)
        flips = torch.rand(2, generator=generator)
        if flips[0] < 0.5:
            patch = patch.flip(-1)
        if flips[1] < 0.5:
            patch = patch.flip(-2)
        batch.append(patch)
    return torch.stack(batch).float() / 255.0


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
) -> dict[str, Any]:
    """Train a flow prior; returns the final log record. See :func:`flowprior_trainer` for the options."""
    cfg = get_config(config)
    batch = batch or cfg.batch
    out_path = Path(out)
    log_path = out_path.with_name(out_path.name + ".log.jsonl")
    generator = torch.Generator().manual_seed(seed)
    images = load_training_images(data, patch)
    train_items, val_items = split_holdout(images, val_fraction)
    if not train_items:
        raise click.UsageError(f"no training images of at least {patch}×{patch} px in {', '.join(data)}")
    train_images = [im for _, im in train_items]
    val_images = [im for _, im in val_items]
    val_set = random_patches(val_images, val_patches, patch, torch.Generator().manual_seed(1234)) if val_images else None

    flow = Flow(cfg).train()
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    step, elapsed = 0, 0.0
    if resume and out_path.exists():
        flow, state = load_checkpoint(out_path)
        flow.train()
        optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:
                group["lr"] = lr  # --lr wins over the saved one
        if flow.config != cfg:
            click.echo(f"note: continuing the checkpoint's own configuration {flow.config.to_dict()}")
            cfg = flow.config
        step, elapsed = int(state.get("step", 0)), float(state.get("train_seconds", 0.0))
        if "generator" in state:
            generator.set_state(state["generator"])
        click.echo(f"resumed {out_path} at step {step}")
    elif resume:
        click.echo(f"--resume: no checkpoint at {out_path} yet, starting from scratch")
    if val_set is not None and cfg.in_channels == 1:  # the MNIST configuration models grayscale images
        val_set = val_set.mean(1, keepdim=True)
    weights = LossWeights()

    def save(record: dict[str, Any]) -> None:
        save_checkpoint(
            out_path,
            flow,
            {
                "optimizer": optimizer.state_dict(),
                "step": step,
                "train_seconds": elapsed,
                "generator": generator.get_state(),
                "train": {
                    "data": [str(d) for d in data],
                    "config_name": config,
                    "batch": batch,
                    "patch": patch,
                    "lr": lr,
                    "reg_batch": reg_batch,
                    "train_images": len(train_items),
                    "val_images": len(val_items),
                    "seed": seed,
                },
                "last": record,
            },
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=step, desc="train flowprior", unit="step", mininterval=2.0)
    record: dict[str, Any] = {}
    ema = None
    start = time.perf_counter() - elapsed
    while step < steps:
        x = random_patches(train_images, batch, patch, generator)
        if cfg.in_channels == 1:
            x = x.mean(1, keepdim=True)
        losses = training_losses_safe(flow, x, weights, generator, reg_batch)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        # the paper clips gradient values at 1e5 and the L2 norm at 1e4
        torch.nn.utils.clip_grad_value_(flow.parameters(), 1e5)
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 1e4)
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - start
        bpd = losses["nll"].item()
        ema = bpd if ema is None else 0.98 * ema + 0.02 * bpd
        if bar:
            bar.update(1)
            bar.set_postfix(bpd=f"{ema:.3f}", refresh=False)
        last = step == steps or (max_minutes is not None and elapsed > 60 * max_minutes)
        if step % save_every == 0 or last:
            record = {"step": step, "seconds": round(elapsed, 1), "train_bpd": round(ema, 4)}
            record.update({k: round(v.item(), 6) for k, v in losses.items() if k != "nll"})
            if val_set is not None:
                record["val_bpd"] = round(validation_bpd(flow, val_set), 4)
            save(record)
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            (bar.write if bar else click.echo)(json.dumps(record))
        if last:
            break
    if bar:
        bar.close()
    return record


def training_losses_safe(
    flow: Flow, x: Tensor, weights: LossWeights, generator: torch.Generator, reg_batch: int | None
) -> dict[str, Tensor]:
    """The paper's losses; a non-finite loss is reported clearly instead of corrupting the weights."""
    losses = _flow.training_losses(flow, x, weights, generator, reg_batch)
    if not torch.isfinite(losses["total"]):
        raise FloatingPointError(
            "flowprior training diverged (non-finite loss); resume from the last checkpoint with a lower --lr"
        )
    return losses


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
def flowprior_trainer(data: tuple[str, ...], config: str, steps: int, out: str, batch: int | None, patch: int,
                      lr: float, reg_batch: int | None, save_every: int, val_fraction: float, resume: bool,
                      seed: int, threads: int | None, max_minutes: float | None) -> None:
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
                        resume=resume, seed=seed, max_minutes=max_minutes)
    click.echo(f"saved {out}: {json.dumps(record)}")


# --------------------------------------------------------------------------- restoration


class Tiler:
    """Cut an image into overlapping square patches and blend them back, differentiably.

    Patches start every ``patch - 2·margin`` px (neighbours overlap by
    ``2·margin``); the last row/column is flush with the border. In an overlap
    each patch's weight ramps linearly across the ``2·margin`` px facing its
    neighbour, and weights are normalised, so merging the unmodified patches
    of an image gives the image back exactly.

    Example:
        >>> import torch
        >>> tiler = Tiler((80, 72), patch=32, margin=4)
        >>> x = torch.rand(1, 3, 80, 72)
        >>> patches = tiler.split(x)
        >>> tuple(patches.shape)
        (9, 3, 32, 32)
        >>> bool(torch.allclose(tiler.merge(patches), x, atol=1e-6))
        True
    """

    def __init__(self, shape: tuple[int, int], patch: int = 64, margin: int = 4, device: Any = "cpu"):
        h, w = int(shape[0]), int(shape[1])
        if h < patch or w < patch:
            raise ValueError(
                f"flowprior restores {patch}×{patch} patches but the image is {h}×{w} px; use images or crops of "
                f"at least {patch} px (e.g. --crop {max(patch, 64)}), or a smaller patch with --set "
                f"flowprior.patch=N (N a multiple of the flow's 2^levels, at most {min(h, w)})"
            )
        if not 0 <= 2 * margin < patch:
            raise ValueError(f"margin={margin} must satisfy 0 <= 2·margin < patch={patch}")
        self.shape, self.patch, self.margin = (h, w), patch, margin
        rows, cols = self.starts(h, patch, margin), self.starts(w, patch, margin)
        self.offsets = [(r, c) for r in rows for c in cols]
        ar = torch.arange(patch)
        local = (ar[:, None] * w + ar[None, :]).flatten()
        self.index = torch.stack([local + r * w + c for r, c in self.offsets]).to(device)  # (P, p·p)
        weights = torch.stack([self._ramp(r, h)[:, None] * self._ramp(c, w)[None, :] for r, c in self.offsets])
        self.weights = weights.flatten(1)[:, None].to(device)  # (P, 1, p·p)
        norm = torch.zeros(h * w).index_add(0, self.index.flatten().cpu(), self.weights.flatten().cpu())
        self.norm = norm.to(device)

    @staticmethod
    def starts(size: int, patch: int, margin: int) -> list[int]:
        """Patch offsets along one axis: stride ``patch − 2·margin``, the last flush with the end."""
        stride = patch - 2 * margin
        starts = list(range(0, size - patch + 1, stride))
        if starts[-1] != size - patch:
            starts.append(size - patch)
        return starts

    def _ramp(self, start: int, size: int) -> Tensor:
        ramp = torch.ones(self.patch)
        k = 2 * self.margin
        if k:
            up = (torch.arange(k) + 0.5) / k
            if start > 0:
                ramp[:k] = up
            if start + self.patch < size:
                ramp[-k:] = torch.minimum(ramp[-k:], up.flip(0))
        return ramp

    def __len__(self) -> int:
        return len(self.offsets)

    def split(self, x: Tensor) -> Tensor:
        """``(1, C, H, W)`` → ``(P, C, patch, patch)``."""
        c = x.shape[1]
        flat = x.reshape(c, -1)[:, self.index]  # (C, P, p·p)
        return flat.permute(1, 0, 2).reshape(len(self), c, self.patch, self.patch)

    def merge(self, patches: Tensor) -> Tensor:
        """``(P, C, patch, patch)`` → ``(1, C, H, W)``, weighted by the margin ramps."""
        p, c = patches.shape[:2]
        contrib = (patches.reshape(p, c, -1) * self.weights).permute(1, 0, 2).reshape(c, -1)
        out = torch.zeros(c, self.shape[0] * self.shape[1], dtype=patches.dtype, device=patches.device)
        out = out.index_add(1, self.index.flatten(), contrib) / self.norm
        return out.reshape(1, c, *self.shape)


def _checkpoint_version() -> str:
    """Content hash of the packaged weights, so cached results follow the shipped checkpoint."""
    return "weights:" + weights_version(DEFAULT_CHECKPOINT)


_FLOWS: dict[tuple[str, int, int], Flow] = {}


def load_flow(checkpoint: str = "") -> Flow:
    """The flow of ``checkpoint`` ("" = the packaged default), in eval mode, cached, frozen."""
    path = Path(checkpoint).expanduser() if checkpoint else DEFAULT_CHECKPOINT
    key = file_version(path)
    if key not in _FLOWS:
        flow, _ = load_checkpoint(path)
        flow.requires_grad_(False)  # only the latents are optimised
        _FLOWS[key] = flow
    return _FLOWS[key]


def _to_flow(patches: Tensor, channels: int) -> Tensor:
    # a grayscale flow (the MNIST config) restores each colour channel as its own sample
    return patches if channels == patches.shape[1] else patches.reshape(-1, channels, *patches.shape[-2:])


def map_latents(
    flow: Flow,
    x0: Tensor,
    data_term: Any,
    iterations: int,
    lr: float,
    prior_weight: float,
    ctx: RestoreContext | None = None,
    standardized: bool = False,
) -> tuple[Tensor, list[Tensor]]:
    """Adam over ``u`` from ``T⁻¹(x0)`` on ``data_term(T(u)) − prior_weight·Σ log p(T(u))``.

    The step decays with a cosine schedule: the data term (weight 1/σ²) is
    stiff and constant-step Adam oscillates around the minimum. The iterate
    with the lowest objective is returned; a non-finite objective (the inverse
    couplings can overflow far from the training data) stops early.
    ``standardized`` optimises ``ε = (u − μ(h))/σ(h)`` instead of ``u`` (same
    objective and minimisers, unit-scale coordinates): steadier for large
    steps but much slower to remove noise, and worse on BSDS training crops,
    so off by default. ``x0`` is a batch of patches; ``data_term`` maps the
    decoded batch to a scalar. Returns the decoded patches and the latents.
    """
    shape = x0.shape
    flat = _to_flow(x0, flow.config.in_channels)
    with torch.no_grad():
        zs, _ = flow.encode(flat, standardized=standardized)
    zs = [z.detach().clone().requires_grad_(True) for z in zs]
    optimizer = torch.optim.Adam(zs, lr=lr)
    # the data term is stiff (weight 1/σ²): a decaying step lets the oscillating iterates settle
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(iterations, 1))
    best = (math.inf, [z.detach().clone() for z in zs])
    steps = ctx.iterations(iterations, desc="flowprior") if ctx is not None else range(iterations)
    for _ in steps:
        optimizer.zero_grad(set_to_none=True)
        decoded, log_p = flow.decode_with_log_prob(zs, standardized=standardized)
        loss = data_term(decoded.reshape(shape)) - prior_weight * log_p.sum()
        value = loss.item()
        if not math.isfinite(value):
            # far from the training data the inverse couplings can overflow: keep the best iterate
            log.warning("flowprior: non-finite objective, stopping at the best iterate so far")
            if ctx is not None:
                ctx.log("diverged", 1.0)
            break
        if value < best[0]:
            best = (value, [z.detach().clone() for z in zs])
        loss.backward()
        optimizer.step()
        schedule.step()
        if ctx is not None:
            ctx.log("loss", value / x0.numel())
    else:
        with torch.no_grad():
            decoded, log_p = flow.decode_with_log_prob(zs, standardized=standardized)
            value = (data_term(decoded.reshape(shape)) - prior_weight * log_p.sum()).item()
        if math.isfinite(value) and value <= best[0]:
            return decoded.reshape(shape), [z.detach() for z in zs]
    with torch.no_grad():
        decoded = flow.decode(best[1], standardized=standardized).reshape(shape)
    return decoded, best[1]


@register_method("flowprior")
class FlowPrior(Method):
    """Flow prior (Helminger et al.): MAP in the latent space of a trained flow, patch-wise.

    Minimises ``||A(x) − y||²/(2σ²) − w·Σ_patches log p(patch)`` over the latents
    ``u`` of all 64×64 patches at once (``x`` = patches ``T(u)`` blended with
    4 px margins; ``A`` acts on the full image; inpainting masks via
    ``data_residual``), by Adam with a cosine-decayed step ``lr`` from
    ``u = T⁻¹(A.init(y))`` (bicubic for ``sr``). Profiles set ``iterations``:
    smoke 5, quick 60 (~20 s per 256² crop on one CPU core), paper 200. ``lr`` =
    0.005 and ``prior_weight`` = 0.3 were chosen on BSDS training crops
    (never on evaluation images); larger steps diverge, larger weights
    over-smooth JPEG and blur (see the model card). ``checkpoint`` = "" is
    the packaged default (``methods/weights/flowprior_default.pt``).

    Example:
        >>> import torch
        >>> from methods._flow import Flow, FlowConfig, save_checkpoint
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> save_checkpoint(path, Flow(FlowConfig(levels=2, steps=1, hidden=8)))
        >>> obs = Noise().degrade(torch.rand(1, 3, 40, 40), torch.Generator().manual_seed(0))
        >>> method = FlowPrior(FlowPrior.Params(checkpoint=path, iterations=2, patch=16))
        >>> tuple(method.restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 40, 40)
    """

    @dataclass
    class Params:
        checkpoint: str = ""
        iterations: int = 60
        lr: float = 0.005
        prior_weight: float = 0.3
        patch: int = 64
        margin: int = 4
        standardized: bool = False

        def __post_init__(self) -> None:
            if self.iterations < 0:
                raise ValueError(f"iterations={self.iterations} must be >= 0")
            if not self.lr > 0:
                raise ValueError(f"lr={self.lr} must be > 0")
            if not self.prior_weight >= 0:
                raise ValueError(f"prior_weight={self.prior_weight} must be >= 0")
            if self.patch < 8:
                raise ValueError(f"patch={self.patch} must be >= 8 (a multiple of the flow's 2^levels)")
            if not 0 <= 2 * self.margin < self.patch:
                raise ValueError(f"margin={self.margin} must satisfy 0 <= 2·margin < patch ({self.patch})")

    profiles = {"smoke": {"iterations": 5}, "quick": {"iterations": 60}, "paper": {"iterations": 200}}
    depends_on = ("methods._flow",)
    version = _checkpoint_version()

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        p = self.params
        flow = load_flow(p.checkpoint).to(ctx.device)
        if p.patch % flow.config.multiple:
            raise ValueError(f"patch={p.patch} must be a multiple of {flow.config.multiple} for this flow")
        if flow.config.in_channels not in (1, obs.y.shape[1]):
            raise ValueError(f"the flow models {flow.config.in_channels}-channel images, the input has {obs.y.shape[1]}")
        y = obs.y
        x0 = obs.operator.init(y).clamp(0, 1)
        tiler = Tiler(tuple(x0.shape[-2:]), p.patch, p.margin, device=x0.device)
        inv_two_var = 0.5 / max(obs.sigma, 1e-3) ** 2

        def data_term(patches: Tensor) -> Tensor:
            # the operator acts on the assembled image, so blur/sr see across patch borders
            return obs.operator.data_residual(tiler.merge(patches), y).pow(2).sum() * inv_two_var

        patches, _ = map_latents(
            flow, tiler.split(x0), data_term, p.iterations, p.lr, p.prior_weight, ctx, p.standardized
        )
        return tiler.merge(patches).clamp(0, 1)
