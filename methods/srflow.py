"""SRFlow 4× / 8× as generic restorers, and ``bench train srflow``.

``srflow4x`` / ``srflow8x`` super-resolve with the conditional flow of
:mod:`methods._srflow_arch`. For an ``sr`` observation of the matching factor
the low-resolution ``y`` goes in directly; any other degradation's ``y``
(clean-image size) is first brought to the input scale by antialiased bicubic
downsampling, then super-resolved back. The default weights are the small
CPU models trained here (``methods/weights/srflow{4,8}x_small.pt``); the
official ``SRFlow_DF2K_4X.pth`` / ``8X.pth`` load with
``--set srflow4x.checkpoint=PATH``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import click
import torch
import torch.nn.functional as F

from bench.api import Method, Observation, RestoreContext, Tensor, quantize
from bench.checkpoints import file_version, load_checkpoint, save_checkpoint, weights_version
from bench.errors import CheckpointError
from bench.registry import register_method, register_trainer
from degradations.sr import bicubic_down, bicubic_up
from methods._srflow_arch import SRFlowConfig, SRFlowNet, strip_module_prefix

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINTS = {4: WEIGHTS_DIR / "srflow4x_small.pt", 8: WEIGHTS_DIR / "srflow8x_small.pt"}
_MODELS: dict[tuple[str, int, int, int], SRFlowNet] = {}
_MIN_HEAT = 0.05  # below this, a diverging sample falls back to heat 0


# --------------------------------------------------------------------------- checkpoints


def model_from_payload(payload: dict[str, Any], scale: int, source: str = "checkpoint") -> SRFlowNet:
    """Build the network a checkpoint describes.

    Two formats: ours (``{"state_dict", "config", ...}``) and the official
    release (a plain state dict, possibly ``module.``-prefixed, loaded into the
    official configuration of ``scale`` with ``strict=True``).

    >>> net = SRFlowNet(SRFlowConfig.tiny(4))
    >>> payload = {"state_dict": net.state_dict(), "config": net.cfg.to_dict()}
    >>> model_from_payload(payload, 4).cfg.K
    1
    """
    if "state_dict" in payload and "config" in payload:
        cfg = SRFlowConfig(**payload["config"])
        state = payload["state_dict"]
    else:
        cfg = SRFlowConfig.official(scale)
        state = payload.get("params", payload) if isinstance(payload.get("params"), dict) else payload
    if cfg.scale != scale:
        raise CheckpointError(f"{source} is a {cfg.scale}× SRFlow model, but a {scale}× one is needed")
    net = SRFlowNet(cfg)
    try:
        net.load_state_dict(strip_module_prefix(dict(state)), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{source} does not match the SRFlow {scale}× architecture ({first}); expected the official "
            f"SRFlow_DF2K_{scale}X.pth or a file written by `bench train srflow --scale {scale}`."
        ) from None
    return net.eval()


def load_model(path: str | Path, scale: int) -> SRFlowNet:
    """Load (and cache per file and modification time) an SRFlow checkpoint, weights_only."""
    path = Path(path)
    key = (*file_version(path), scale)
    if key not in _MODELS:
        _MODELS[key] = model_from_payload(load_checkpoint(path), scale, source=f"checkpoint '{path}'")
    return _MODELS[key]


def _pad(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# --------------------------------------------------------------------------- methods


class _SRFlowBase(Method):
    factor: ClassVar[int] = 4

    @dataclass
    class Params:
        heat: float = 0.9
        checkpoint: str = ""

        def __post_init__(self) -> None:
            if not (math.isfinite(self.heat) and self.heat >= 0):
                raise ValueError(f"heat={self.heat} must be a finite number >= 0")
            if not isinstance(self.checkpoint, str):
                raise ValueError(f"checkpoint={self.checkpoint!r} must be a path string ('' = packaged default)")

    def network(self) -> SRFlowNet:
        path = self.params.checkpoint or DEFAULT_CHECKPOINTS[self.factor]
        return load_model(path, self.factor)

    def restore(self, obs: Observation, ctx: RestoreContext, net: SRFlowNet | None = None) -> Tensor:
        f = self.factor
        net = (net or self.network()).to(ctx.device)
        op = obs.operator
        y = obs.y.to(ctx.device)
        lr_multiple = net.cfg.multiple // f
        if (op.out_shape[0] * f, op.out_shape[1] * f) == tuple(op.in_shape):
            height, width = op.in_shape
            lr = _pad(y, lr_multiple)
        else:
            height, width = y.shape[-2:]
            lr = quantize(bicubic_down(_pad(y, net.cfg.multiple), f))  # 8-bit, like the training LR
        heat = self.params.heat
        while True:
            with torch.no_grad():
                x = net.sample(lr, heat=heat, generator=ctx.generator)
            # an under-trained flow's inverse can blow up on unlikely latents (seen with the small 8× model at
            # heat 0.9): then resample at half the heat, from the same generator, so results stay reproducible
            if heat == 0 or (bool(torch.isfinite(x).all()) and -1.0 <= float(x.min()) and float(x.max()) <= 2.0):
                break
            heat = heat / 2 if heat / 2 >= _MIN_HEAT else 0.0
        ctx.log("heat_used", heat)
        return x[..., :height, :width].clamp(0, 1)


@register_method("srflow4x")
class SRFlow4x(_SRFlowBase):
    """SRFlow 4× (Lugmayr et al. 2020): conditional-flow SR; other degradations via ↓4 then SR.

    ``heat`` is the latent temperature (0 decodes all-zero latents), drawn
    from the cell's generator. A sample that is non-finite or far outside
    [0, 1] (the inverse of a weak flow can diverge) is redrawn at half the heat
    (below 0.05: heat 0); the heat used is logged in the trace. ``checkpoint`` = "" uses the packaged small CPU
    model; an official ``SRFlow_DF2K_4X.pth`` loads strictly.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.rand(1, 3, 20, 20), torch.Generator().manual_seed(0))
        >>> x = SRFlow4x().restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0)))
        >>> tuple(x.shape), 0 <= float(x.min()) <= float(x.max()) <= 1
        ((1, 3, 20, 20), True)
    """

    factor = 4
    version = weights_version(DEFAULT_CHECKPOINTS[4])  # cached results follow the packaged weights


@register_method("srflow8x")
class SRFlow8x(_SRFlowBase):
    """SRFlow 8× (Lugmayr et al. 2020): conditional-flow SR; other degradations via ↓8 then SR.

    Same parameters as ``srflow4x``; official checkpoint ``SRFlow_DF2K_8X.pth``.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.sr import SuperResolution
        >>> obs = SuperResolution(SuperResolution.Params(factor=8)).degrade(torch.rand(1, 3, 32, 32), torch.Generator())
        >>> tuple(SRFlow8x().restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 32, 32)
    """

    factor = 8
    version = weights_version(DEFAULT_CHECKPOINTS[8])


# --------------------------------------------------------------------------- training


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
    cosine decay over max(step/steps, time/max_minutes). Returns the last log record.
    """
    from methods.flowprior import load_training_images, random_patches, split_holdout

    cfg = {"small": SRFlowConfig.small, "tiny": SRFlowConfig.tiny, "official": SRFlowConfig.official}[config](scale)
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
    history: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"train srflow{scale}x", unit="step", mininterval=2.0)

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

    start = time.perf_counter()
    ema, skipped, step, record = None, 0, 0, {}
    while step < steps:
        elapsed = time.perf_counter() - start
        progress_frac = max(step / steps, elapsed / (60 * max_minutes) if max_minutes else 0.0)
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress_frac, 1.0))))
        hr = random_patches(train_images, batch, patch, generator)
        noise = torch.rand(hr.shape, generator=generator) - 0.5
        bpd, out_sr = net.nll_bpd(hr, make_pairs(hr, scale), noise)
        loss = bpd.mean() + l1 * (out_sr - hr).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 50.0)  # flows spike early; keep Adam sane
            optimizer.step()
        else:
            skipped += 1
        step += 1
        elapsed = time.perf_counter() - start
        value = float(bpd.detach().mean()) if torch.isfinite(loss) else float("nan")
        if math.isfinite(value):
            ema = value if ema is None else 0.95 * ema + 0.05 * value
        if bar:
            bar.update(1)
            bar.set_postfix(bpd=f"{ema:.3f}" if ema else "-", refresh=False)
        last = step >= steps or (max_minutes is not None and elapsed > 60 * max_minutes)
        if step % save_every == 0 or last:
            record = {
                "step": step,
                "seconds": round(elapsed, 1),
                "train_bpd": round(ema or float("nan"), 4),
                "skipped": skipped,
            }
            if val_set is not None:
                record.update(validate(net, val_set))
            history.append(record)
            save(record)
            (bar.write if bar else click.echo)(json.dumps(record))
        if last:
            break
    if bar:
        bar.close()
    return record


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
