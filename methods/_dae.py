"""Denoising auto-encoders (DAEs) for the ``dmsp`` and ``daep`` priors: network, training, checkpoints.

The network is the one of the official DMSP/DAEP code (Bigdeli et al.): a
DnCNN-like stack of 3×3 convolutions (first layer conv + ReLU, middle layers
conv + BatchNorm + ReLU, last layer conv to 3 channels) whose output is
subtracted from the input, ``D(x) = x − residual(x)``. The official network has
20 layers of 64 channels; the CPU default used for the shipped weights is 12
layers of 32 channels (about 7× fewer multiply-adds per pixel), see :data:`CPU_ARCH`.

Images are RGB on the [0, 1] scale; ``sigma`` is the training noise level on
the 0-255 scale. Checkpoints hold the state dict, a config dict of primitives
and training metadata, and are read with ``torch.load(weights_only=True)``.

Example:
    >>> import torch
    >>> net = DAE(depth=3, channels=8).eval()
    >>> tuple(net(torch.rand(1, 3, 16, 16)).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import checkpoints
from bench.checkpoints import sha256_file
from bench.errors import BenchError, CheckpointError, ImageError
from bench.images import load_image

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
FORMAT = "restoration-bench/dae"
OFFICIAL_ARCH = {"depth": 20, "channels": 64, "batchnorm": True}
CPU_ARCH = {"depth": 12, "channels": 32, "batchnorm": True}


class DAE(nn.Module):
    """DnCNN-like denoising auto-encoder with residual output ``D(x) = x − residual(x)``.

    Args:
        depth: number of 3×3 convolutions (>= 2); the official network has 20.
        channels: feature channels of the hidden layers; the official network has 64.
        batchnorm: BatchNorm after the middle convolutions (as in the official network).
    """

    def __init__(self, depth: int = 20, channels: int = 64, batchnorm: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth={depth} must be >= 2")
        if channels < 1:
            raise ValueError(f"channels={channels} must be >= 1")
        self.depth, self.channels, self.batchnorm = int(depth), int(channels), bool(batchnorm)
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():  # He init keeps deep ReLU stacks trainable from step 0
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.body[-1].weight)  # start as the identity map: D(x) = x

    @property
    def config(self) -> dict[str, Any]:
        return {"depth": self.depth, "channels": self.channels, "batchnorm": self.batchnorm}

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted noise ``x − D(x)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


# --------------------------------------------------------------------------- checkpoints


def default_checkpoint(sigma: int) -> Path:
    """The packaged weights for training noise ``sigma`` (0-255 scale)."""
    return WEIGHTS_DIR / f"dae_sigma{int(sigma)}.pt"


def to_primitive(value: Any) -> Any:
    """``value`` as plain dicts, lists, str, int, float, bool and None (what ``weights_only`` loads)."""
    if isinstance(value, dict):
        return {str(k): to_primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_primitive(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)  # str subclasses (torch.__version__), paths


def save_checkpoint(model: DAE, path: str | os.PathLike, sigma: float, meta: dict[str, Any] | None = None) -> str:
    """Write ``model`` atomically; returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": 1,
        "config": model.config,
        "sigma": float(sigma),
        "meta": to_primitive(dict(meta or {})),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    checkpoints.save_checkpoint(payload, path)
    return sha256_file(path)


_CACHE: dict[tuple[str, int, int], tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}


def _read_payload(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    hint = "retrain it with `bench train dae` or point --set <method>.checkpoint=PATH at a valid file"
    if not path.is_file():
        raise CheckpointError(f"DAE checkpoint '{path}' does not exist; {hint}.")
    key = checkpoints.file_version(path)
    if key in _CACHE:
        return _CACHE[key]
    try:
        payload = checkpoints.load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"DAE {err} ({hint})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a restoration-bench DAE checkpoint (format '{FORMAT}'); {hint}.")
    config, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"DAE checkpoint '{path}' lacks its 'config' or 'state_dict'; {hint}.")
    info = {"config": config, "sigma": payload.get("sigma"), "meta": payload.get("meta", {}), "path": str(path)}
    _CACHE[key] = (info, state)
    return info, state


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[DAE, dict[str, Any]]:
    """The DAE stored at ``path`` (in eval mode) and its info (config, sigma, meta, path).

    Raises :class:`bench.errors.CheckpointError` for a missing, truncated or foreign file.
    """
    path = Path(path)
    info, state = _read_payload(path)
    try:
        model = DAE(**{k: info["config"][k] for k in ("depth", "channels", "batchnorm")})
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"DAE checkpoint '{path}' does not match its own config ({first}).") from None
    model.eval().requires_grad_(False)
    return model.to(device), info


# --------------------------------------------------------------------------- training data


def _is_eval_path(path: Path) -> bool:
    return "eval" in path.resolve().parts


def load_training_images(dirs: list[str] | tuple[str, ...], min_size: int = 48) -> list[tuple[str, np.ndarray]]:
    """``(id, uint8 HxWx3)`` for every image of ``dirs`` (sorted); images under an ``eval`` folder are refused."""
    from bench.datasets import list_folder

    images = []
    for d in dirs:
        folder = Path(d)
        if _is_eval_path(folder):
            raise BenchError(f"refusing to train on '{folder}': it is an evaluation folder.")
        for file in list_folder(folder):
            try:
                image = load_image(file)
            except ImageError as err:
                log.warning("skipping %s: %s", file, err)
                continue
            if min(image.shape[:2]) < min_size:
                continue
            images.append((f"{folder.name}/{file.name}", np.round(image * 255).astype(np.uint8)))
    if not images:
        raise BenchError(f"no training images of at least {min_size} px found in {', '.join(map(str, dirs))}.")
    return images


def split_validation(images: list[tuple[str, np.ndarray]], count: int) -> tuple[list, list]:
    """Hold out ``count`` images spread evenly over the list (deterministic)."""
    if count <= 0:
        return images, []
    count = min(count, len(images) // 2)
    idx = set(np.linspace(0, len(images) - 1, count).round().astype(int).tolist())
    train = [im for i, im in enumerate(images) if i not in idx]
    val = [im for i, im in enumerate(images) if i in idx]
    return train, val


def sample_patches(images: list[np.ndarray], batch: int, patch: int, rng: np.random.Generator) -> torch.Tensor:
    """``batch`` random ``patch``² crops with random flips and 90° rotations, float in [0, 1]."""
    out = np.empty((batch, patch, patch, 3), np.uint8)
    for b in range(batch):
        image = images[rng.integers(len(images))]
        h, w = image.shape[:2]
        p = min(patch, h, w)
        i, j = rng.integers(h - p + 1), rng.integers(w - p + 1)
        crop = image[i : i + p, j : j + p]
        if p < patch:
            crop = np.pad(crop, ((0, patch - p), (0, patch - p), (0, 0)), mode="reflect")
        crop = np.rot90(crop, rng.integers(4))
        if rng.integers(2):
            crop = crop[:, ::-1]
        out[b] = crop
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


def validation_batch(images: list[np.ndarray], crop: int, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre crops of the held-out images and their fixed noisy versions."""
    c = min([crop] + [min(im.shape[:2]) for im in images])
    clean = []
    for image in images:
        h, w = image.shape[:2]
        i, j = (h - c) // 2, (w - c) // 2
        clean.append(torch.from_numpy(np.ascontiguousarray(image[i : i + c, j : j + c])).permute(2, 0, 1).float() / 255)
    x = torch.stack(clean)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, x + sigma / 255.0 * noise


def batch_psnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch, outputs clipped to [0, 1]."""
    mse = (out.clamp(0, 1) - ref).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_dae` (defaults: the CPU variant, ~10 min on one core)."""

    sigma: float
    data: list[str]
    steps: int = 3000
    depth: int = CPU_ARCH["depth"]
    channels: int = CPU_ARCH["channels"]
    batchnorm: bool = True
    batch_size: int = 16
    patch: int = 40
    lr: float = 1e-3
    seed: int = 0
    val_images: int = 8
    val_crop: int = 128
    val_every: int = 500
    threads: int = 1
    max_minutes: float = 0.0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

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
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes={self.max_minutes} must be >= 0 (0 = no time limit)")


def train_dae(cfg: TrainConfig, images: list[tuple[str, np.ndarray]] | None = None) -> tuple[DAE, dict[str, Any]]:
    """Train a DAE on random noisy patches; returns the model (eval mode) and metadata.

    Loss: mean squared error between ``D(x + n)`` and ``x``, ``n ~ N(0, σ²)``;
    Adam with a cosine learning-rate decay to 1 % of ``lr``. Validation PSNR
    is measured on fixed noisy centre crops of held-out training-folder images.
    """
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images = images if images is not None else load_training_images(cfg.data)
    train, val = split_validation(images, cfg.val_images)
    train_arrays = [im for _, im in train]
    model = DAE(cfg.depth, cfg.channels, cfg.batchnorm)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    limit = cfg.max_minutes * 60.0

    def progress() -> float:
        # with a time limit the cosine decay follows whichever budget runs out first, so a
        # busy shared machine still ends with an annealed learning rate (steps then vary)
        done = (step - 1) / cfg.steps
        return min(1.0, max(done, (time.perf_counter() - start) / limit)) if limit else done

    sigma = cfg.sigma / 255.0
    val_x, val_y = (
        validation_batch([im for _, im in val], cfg.val_crop, cfg.sigma, cfg.seed + 1) if val else (None, None)
    )

    def validate() -> float | None:
        if val_x is None:
            return None
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(val_y[i : i + 4]) for i in range(0, len(val_y), 4)])
        model.train()
        return batch_psnr(val_x, out)

    history: list[dict[str, float]] = []
    losses: list[float] = []
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"dae σ={cfg.sigma:g}", unit="step", mininterval=1.0)
    start = time.perf_counter()
    model.train()
    step = 1
    while True:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress())))
        x = sample_patches(train_arrays, cfg.batch_size, cfg.patch, rng)
        noise = torch.randn(x.shape) * sigma
        loss = (model(x + noise) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if bar:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2e}")
        last = step >= cfg.steps or (limit > 0 and time.perf_counter() - start >= limit)
        if step % cfg.val_every == 0 or last:
            v = validate()
            history.append(
                {"step": step, "loss": float(np.mean(losses[-50:])), "val_psnr": v if v is not None else float("nan")}
            )
            log.info("step %d: loss %.3e, validation PSNR %s", step, history[-1]["loss"], v)
            if bar and v is not None:
                bar.write(f"step {step}: loss {history[-1]['loss']:.3e}, validation PSNR {v:.2f} dB")
        if last:
            break
        step += 1
    seconds = time.perf_counter() - start
    if bar:
        bar.close()
    model.eval()
    meta = {
        **{k: v for k, v in asdict(cfg).items() if k not in ("extra", "progress")},
        **cfg.extra,
        "steps": step,
        "steps_requested": cfg.steps,
        "data": [str(d) for d in cfg.data],
        "train_images": len(train),
        "val_image_ids": [name for name, _ in val],
        "seconds": round(seconds, 1),
        "loss_first": float(np.mean(losses[:20])),
        "loss_last": float(np.mean(losses[-50:])),
        "val_psnr": history[-1]["val_psnr"] if history else float("nan"),
        "val_input_psnr": batch_psnr(val_x, val_y) if val_x is not None else float("nan"),
        "history": history,
        "torch_version": str(torch.__version__),
    }
    return model, meta


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
    card = Path(checkpoint).with_suffix(".md")
    card.write_text(model_card(checkpoint, meta, sha256), encoding="utf-8")
    return card
