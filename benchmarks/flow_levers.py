"""Issue #15's levers table: the flow priors' settings on the tuning split (never evaluation images).

Usage::

    python benchmarks/flow_levers.py [--limit 6] [--images a,b] [--crop 128] [--tasks noise,jpeg,multi]
        [--config NAME:method.param=value,... ...] [--threads 1]

Each configuration restores centre crops of the first ``--limit`` images of the
tuning split (``bench/training/splits.py``) that the shipped flow prior never
saw (``--images``: other split names or image paths; any image outside the
split is refused; the shipped ``patchnr_cpu.pt`` was trained on these, so its
rows are optimistic) with the suite's degradations
(seed 0) and prints, per task, the mean PSNR of the input and of the restored
images and the seconds per crop (``× (256/crop)²`` gives a 256² estimate for the
patch-wise methods). Configurations are ``label:method.param=value,...``; the
defaults below are the levers of the flow prior (checkpoint, prior term, JPEG
data term) and ``patchnr`` when it is registered.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.api import RestoreContext
from bench.cells import degradation_generator
from bench.errors import BenchError
from bench.metrics import psnr
from bench.params import build_params
from bench.registry import available, get_degradation_class, get_method_class
from bench.training.data import load_tuning_images

CONTINUED = "methods/weights/flowprior_cpu_continued.pt"
DEFAULT_CONFIGS = [
    "shipped:flowprior",
    f"continued:flowprior.checkpoint={CONTINUED}",
    f"continued+qcs:flowprior.checkpoint={CONTINUED},data_term=qcs",
    f"continued+qcs0.5:flowprior.checkpoint={CONTINUED},data_term=qcs,qcs_width=0.5",
    f"continued+latent:flowprior.checkpoint={CONTINUED},prior=latent_norm,prior_weight=3",
    f"continued+latent+qcs:flowprior.checkpoint={CONTINUED},prior=latent_norm,prior_weight=3,data_term=qcs",
    f"continued+implicit:flowprior.checkpoint={CONTINUED},prior_weight=0,iterations=10",
]


def parse_config(text: str) -> tuple[str, str, dict[str, str]]:
    """``label:method.p=v,q=w`` -> (label, method, {p: v, q: w})."""
    label, _, spec = text.partition(":")
    method, _, rest = spec.partition(".")
    values = dict(item.split("=", 1) for item in rest.split(",") if item)
    return label, method, values


def crops(count: int, size: int, images: str = "") -> list[tuple[str, torch.Tensor]]:
    """Centre ``size``² crops of the first ``count`` tuning-split images (of ``images``, default: unseen by the flow)."""
    out = []
    for name, image in load_tuning_images([x for x in images.split(",") if x] or None, unseen_by="flowprior_default.pt"):
        img = image.astype(np.float32) / 255.0
        if min(img.shape[:2]) < size:
            continue
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crop = img[top : top + size, left : left + size]
        out.append((Path(name).stem, torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]))
    return out[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6, help="the first N images")
    parser.add_argument("--images", default="", help="comma-separated tuning-split names or image paths")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--tasks", default="noise,jpeg,multi")
    parser.add_argument("--config", nargs="*", default=None)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = args.config or DEFAULT_CONFIGS + (
        ["patchnr:patchnr", "patchnr+qcs:patchnr.data_term=qcs"] if "patchnr" in available("method") else []
    )
    try:
        images = crops(args.limit, args.crop, args.images)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    tasks = args.tasks.split(",")
    print(f"{len(images)} tuning-split crops of {args.crop}², profile {args.profile}, {args.threads} thread(s), "
          f"load {os.getloadavg()[0]:.1f}")
    scale = (256 / args.crop) ** 2  # the patch-wise methods' time grows with the pixel count
    per = "s/256²" if args.crop == 256 else f"s/crop (≈ s/256² = ×{scale:g})"
    print("| configuration | " + " | ".join(f"{t} input | {t} restored | {t} {per}" for t in tasks) + " |")
    print("|---|" + "---:|" * (3 * len(tasks)))
    for config in configs:
        label, name, values = parse_config(config)
        cls = get_method_class(name)
        params = build_params(cls.Params, {**cls.profiles.get(args.profile, {}), **values}, owner=name)
        method = cls(params)
        cells = []
        for task in tasks:
            degradation = get_degradation_class(task)(get_degradation_class(task).Params())
            before, after, seconds = [], [], 0.0
            for stem, clean in images:
                obs = degradation.degrade(clean, degradation_generator(0, stem, task))
                start = time.perf_counter()
                restored = method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0)))
                seconds += time.perf_counter() - start
                before.append(psnr(clean, obs.operator.init(obs.y).clamp(0, 1)))
                after.append(psnr(clean, restored.clamp(0, 1)))
            per_crop = seconds / len(images)
            timing = f"{per_crop:.1f}" if args.crop == 256 else f"{per_crop:.1f} (≈ {per_crop * scale:.0f})"
            cells.append(f"{np.mean(before):.2f} | {np.mean(after):.2f} | {timing}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
