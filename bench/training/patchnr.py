"""``bench train patchnr``: train the patch normalizing flow of the ``patchnr`` method by maximum likelihood.

The model is :class:`bench.nets.patchnr.PatchFlow`. As in the official PatchNR
training script (github.com/FabianAltekrueger/patchNR, ``train_patchNR.py``:
Adam lr 1e-4, batches of 32 random 6×6 patches, 750 000 steps, loss
``mean(½‖z‖² − log|det J|)``), the loss is the mean negative log-likelihood of
random patches; here the patches are RGB, augmented with flips and 90°
rotations, and uniformly dequantised, ``x = (v + u)/256`` with ``v`` the 8-bit
value and ``u ~ U[0, 1)``, so the validation NLL is an honest bits/dim. For a CPU
budget the batch is larger (256), the step larger (5e-4) with a cosine decay
to 1 %, and gradients are clipped. Images (with the evaluation-image guard)
and the holdout come from :mod:`bench.training.data`; the time budget, resume,
periodic saves, progress and the JSON-lines log from :mod:`bench.training.loop`.
Validation: bits/dim on fixed dequantised patches of held-out training-folder images.

Example:
    >>> from bench.registry import available
    >>> "patchnr" in available("trainer")
    True
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench import checkpoints
from bench.nets.patchnr import FORMAT, PatchFlow, PatchNRConfig, bits_per_dim, save_checkpoint
from bench.registry import register_trainer
from bench.training.data import data_click_option, sample_patches, split_validation, training_images
from bench.training.loop import LoopState, RunOptions, cosine_decay, defaults_from, run_click_options

INIT_PATCHES = 4096  # patches of the data-dependent ActNorm initialisation


@dataclass
class TrainConfig(RunOptions):
    """Hyper-parameters of :func:`train_patchnr` (defaults: the CPU variant) and the run options of
    :class:`bench.training.loop.RunOptions` (a checkpoint every ``val_every`` steps).

    Example:
        >>> TrainConfig(data=["train/bsd200"]).hidden
        256
        >>> TrainConfig(data=["train/bsd200"], val_patches=0)
        Traceback (most recent call last):
        ...
        ValueError: val_patches=0 must be >= 1
    """

    data: list[str]
    steps: int = 200000
    patch: int = 6
    layers: int = 5
    hidden: int = 256
    batch_size: int = 256
    lr: float = 5e-4
    clip: float = 10.0
    val_every: int = 500
    val_patches: int = 20000

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "val_patches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if not self.clip > 0:
            raise ValueError(f"clip={self.clip} must be > 0 (the gradient-norm limit)")
        if not self.data:
            raise ValueError("data must name at least one training folder")
        self.flow_config()  # architecture errors now, not after loading the images
        self.check()

    def flow_config(self) -> PatchNRConfig:
        return PatchNRConfig(patch=self.patch, layers=self.layers, hidden=self.hidden)


def dequantised_patches(images: list[np.ndarray], n: int, patch: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` random augmented patches ``(n, 3, patch, patch)``, uniformly dequantised: ``(v + u)/256``.

    >>> x = dequantised_patches([np.full((8, 8, 3), 255, np.uint8)], 2, 4, np.random.default_rng(0))
    >>> tuple(x.shape), bool((x >= 255 / 256).all() and (x < 1).all())
    ((2, 3, 4, 4), True)
    """
    values = (sample_patches(images, n, patch, rng) * 255).round()
    noise = torch.from_numpy(rng.random(values.shape, dtype=np.float32))
    return (values + noise) / 256


def validation_bits(flow: PatchFlow, patches: torch.Tensor, chunk: int = 4096) -> float:
    """Mean bits/dim of ``patches`` under ``flow`` (no gradients, in chunks)."""
    with torch.no_grad():
        log_p = torch.cat([flow.log_prob(patches[i : i + chunk]) for i in range(0, len(patches), chunk)])
    return bits_per_dim(log_p, flow.config.dim)


def train_patchnr(cfg: TrainConfig, images: list[tuple[str, np.ndarray]] | None = None) -> tuple[PatchFlow, dict]:
    """Train a :class:`PatchFlow` on random dequantised patches; returns the flow (eval mode) and metadata.

    Adam with a cosine learning-rate decay to 1 % of ``lr`` (following the time
    budget when ``max_minutes`` ends training first); a step whose loss is not
    finite is skipped. With ``cfg.out`` the checkpoint (metadata and resume
    state) is written every ``val_every`` steps and at the end.
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    images = training_images(cfg.data, images)
    train, val = split_validation(images, cfg.val_images)
    train_arrays = [im for _, im in train]
    val_rng = np.random.default_rng(cfg.seed + 1)  # fixed validation patches, whatever the training draws
    val_patches = dequantised_patches([im for _, im in val], cfg.val_patches, cfg.patch, val_rng) if val else None
    torch.manual_seed(cfg.seed)
    flow = PatchFlow(cfg.flow_config())
    optimizer = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    loop = cfg.make_loop(cfg.steps, cfg.val_every, "patchnr")
    history: list[dict[str, Any]] = []
    recent: deque[float] = deque(maxlen=200)
    skipped = 0
    payload = loop.resume_model(flow, optimizer, rng, FORMAT, asdict(flow.config))
    if payload is not None:
        history, recent = list(payload["meta"]["history"]), deque(payload["recent"], maxlen=200)
        skipped = int(payload["meta"].get("skipped_steps", 0))
    else:
        flow.initialize(dequantised_patches(train_arrays, INIT_PATCHES, cfg.patch, rng))

    def schedule(state: LoopState) -> None:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * cosine_decay(state.fraction(cfg.steps, cfg.max_minutes or None), 0.01)

    def step(state: LoopState) -> dict[str, str] | None:
        nonlocal skipped
        x = dequantised_patches(train_arrays, cfg.batch_size, cfg.patch, rng)
        loss = flow.nll(x).mean()
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1  # a rare overflow in a coupling: skip the batch rather than poison Adam's moments
            return None
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), cfg.clip)
        optimizer.step()
        recent.append(bits_per_dim(-loss.detach(), flow.config.dim))
        return {"bpd": f"{np.mean(list(recent)[-20:]):.3f}"} if (state.step + 1) % 20 == 0 else None

    def validate(state: LoopState) -> dict[str, float]:
        entry: dict[str, Any] = {"step": state.step, "train_bpd": float(np.mean(recent)) if recent else math.nan}
        if val_patches is not None:
            flow.eval()
            entry["val_bpd"] = validation_bits(flow, val_patches)
            flow.train()
        history.append(entry)
        return {k: v for k, v in entry.items() if k != "step"}

    def metadata() -> dict[str, Any]:
        last = history[-1] if history else {}
        return {
            **cfg.run_metadata(loop, len(train), [name for name, _ in val]),
            "val_bpd": last.get("val_bpd", math.nan),
            "skipped_steps": skipped,
            "history": history,
            "torch_version": str(torch.__version__),
        }

    def save(record: dict[str, Any]) -> None:
        save_checkpoint(flow, cfg.out, metadata(), extra={**loop.model_fields(optimizer, rng), "recent": list(recent)})

    flow.train()
    loop.run(step, validate, save if cfg.out else None, schedule)
    flow.eval()
    return flow, metadata()


def model_card(path: str | os.PathLike, meta: dict[str, Any], sha256: str) -> str:
    """Markdown model card for a checkpoint trained by :func:`train_patchnr`."""
    defaults = TrainConfig(data=["-"])
    names = ("patch", "layers", "hidden", "batch_size", "lr", "clip", "val_patches", "seed", "max_minutes")
    options = "".join(  # the options that differ from the defaults, so the command reproduces this run
        f" --{name.replace('_', '-')} {meta[name]:g}"
        for name in names
        if meta.get(name) is not None and meta[name] != getattr(defaults, name)
    )
    options += f" --release {meta['release']}" if meta.get("release") else ""
    rows = "\n".join(
        f"| {h['step']} | {h['train_bpd']:.3f} | {h.get('val_bpd', math.nan):.3f} |" for h in meta.get("history", [])
    )
    dim = 3 * meta["patch"] ** 2
    note = (
        f"\nNote: trained with a {meta['max_minutes']:g}-minute time budget; the learning-rate decay followed the "
        "time budget, so the same command gives a machine-dependent step count. The resumable checkpoint (weights, "
        "Adam state, generators) is not shipped; `--resume` on it continues training.\n"
        if meta.get("max_minutes")
        else ""
    )
    return f"""# {Path(path).name}: PatchNR patch normalizing flow (CPU variant)

Patch prior of the `patchnr` method (Altekrüger et al., "PatchNR: learning from very few images by patch
normalizing flow regularization", Inverse Problems 39(6), 2023). Architecture (`bench/nets/patchnr.py`):
ActNorm, then {meta["layers"]} × (GLOW coupling with sub-networks of {meta["hidden"]} hidden units, soft clamp 1.6,
fixed random permutation) on flattened RGB {meta["patch"]}×{meta["patch"]} patches ({dim} dimensions). Official:
5 couplings × 512 hidden units on grey 6×6 patches (deepinv: 256 hidden units).

- **Data**: {", ".join(meta["data"])} ({meta["train_images"]} training images); random {meta["patch"]}×{meta["patch"]}
  patches with flips and 90° rotations, uniformly dequantised, (v + u)/256. No evaluation images (content-hash guard).
- **Held-out validation**: {meta["val_patches"]} fixed dequantised patches of {len(meta["val_image_ids"])}
  training-folder images never trained on ({", ".join(meta["val_image_ids"])}).
- **Optimisation**: maximum likelihood (mean patch NLL), Adam lr {meta["lr"]:g} with cosine decay to 1 %,
  gradient norm clipped at {meta["clip"]:g}, batch {meta["batch_size"]}, {meta["steps"]} steps
  (of {meta["steps_requested"]} requested; {meta["skipped_steps"]} skipped as non-finite), seed {meta["seed"]},
  {meta["threads"]} CPU thread(s).
- **Training time**: {meta["seconds"] / 60:.1f} min (CPU).
- **Validation**: {meta["val_bpd"]:.3f} bits/dim (8-bit sub-pixels; a uniform density gives 8).
- **sha256**: `{sha256}`
- **Reproduce**: `bench train patchnr {" ".join("--data " + d for d in meta["data"])} --steps {meta["steps_requested"]}{options} --out {meta.get("out_name") or Path(path).name}` (torch {meta["torch_version"]}).

| step | train bits/dim (last 200 steps) | val bits/dim |
| ---: | ---: | ---: |
{rows}
{note}"""


@register_trainer("patchnr")
@defaults_from(TrainConfig)
@click.command("patchnr")
@data_click_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Checkpoint to write (.pt); a model card FILE.md and a log FILE.pt.log.jsonl go beside it.",
)
@click.option("--steps", type=int)
@click.option("--patch", type=int, help="Patch side (PatchNR: 6).")
@click.option("--layers", type=int, help="Coupling blocks (PatchNR: 5).")
@click.option("--hidden", type=int, help="Sub-network width (PatchNR: 512).")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Adam learning rate (cosine decay to 1 %).")
@click.option("--clip", type=float, help="Gradient-norm clipping.")
@click.option("--seed", type=int)
@click.option("--val-every", type=int, help="Validate and save every N steps.")
@click.option("--val-patches", type=int, help="Held-out validation patches.")
@run_click_options()
def train_patchnr_command(data: tuple[str, ...], out: str, release: str | None, **options: Any) -> None:
    """Train the patch normalizing flow of `patchnr` (PatchNR) on random patches of training images."""
    try:
        cfg = TrainConfig(data=list(data), out=out, **options)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    flow, meta = train_patchnr(cfg)
    for path in [out] + ([release] if release else []):
        if path == release:
            save_checkpoint(flow, path, meta)
        sha = checkpoints.sha256_file(path)
        card = Path(path).with_suffix(".md")
        names = {"release": Path(release).name if release else "", "out_name": Path(out).name}
        card.write_text(model_card(path, {**meta, **names}, sha), "utf-8")
        click.echo(
            f"wrote {path} (sha256 {sha[:12]}…) and {card}: {meta['steps']} steps in {meta['seconds'] / 60:.1f} "
            f"min, validation {meta['val_bpd']:.3f} bits/dim"
        )
