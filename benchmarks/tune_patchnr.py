"""Choose ``patchnr``'s ``prior_weight`` λ and ``lr_per_sigma`` on the tuning split (never evaluation images).

The crops are centre crops of the tuning split's images (``bench/training/splits.py``)
that the checkpoint never trained on (for the shipped ``patchnr_cpu.pt``: the 8
images its trainer held out; ``--images`` names others of the split, any other
image is refused; at least ``--size`` px), degraded with this suite's ``noise`` (σ = 25),
``jpeg`` (quality 10) and ``multi`` at their defaults, seed = crop index. For each
λ (and each Adam step per unit σ, ``lr_per_sigma``) the script prints one row per task: mean PSNR of the input
(the operator's first estimate, i.e. ``identity``), of the restoration, and the
seconds per crop (one thread; say whether the machine was loaded). The chosen
defaults are recorded in ``methods/patchnr.py``; ``benchmarks/tune_constants.py patchnr``
chooses them with a committed log.

Usage::

    python benchmarks/tune_patchnr.py [--weights 0.01,0.03,0.1] [--lr-per-sigma 0.2] [--iterations 50]
        [--patches 2500] [--size 256] [--crops 8] [--images a,b] [--tasks noise,jpeg,multi] [--checkpoint FILE]

``--patches`` is per iteration; at ``--size 128`` use a quarter of the 256² count
(the same density of patches per pixel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import RestoreContext  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.nets.patchnr import DEFAULT_CHECKPOINT  # noqa: E402
from bench.registry import get_degradation_class  # noqa: E402
from bench.training.data import load_tuning_images  # noqa: E402
from methods.patchnr import PatchNR  # noqa: E402


def held_out_crops(checkpoint: Path, size: int, count: int, images: str = "") -> list[tuple[str, torch.Tensor]]:
    """Centre ``size``² crops of the tuning split's images ``checkpoint`` never saw (those at least ``size`` px)."""
    crops = []
    for image_id, image in load_tuning_images([x for x in images.split(",") if x] or None, unseen_by=checkpoint.name):
        image = image.astype(np.float32) / 255.0
        h, w = image.shape[:2]
        if min(h, w) < size:
            continue
        top, left = (h - size) // 2, (w - size) // 2
        crop = np.ascontiguousarray(image[top : top + size, left : left + size])
        crops.append((image_id, torch.from_numpy(crop).permute(2, 0, 1)[None].float()))
    return crops[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0.01,0.03,0.1")
    parser.add_argument("--lr-per-sigma", default="0.2")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--patches", type=int, default=2500, help="patches per iteration")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--images", default="", help="comma-separated tuning-split names or image paths")
    parser.add_argument("--tasks", default="noise,jpeg,multi")
    parser.add_argument("--checkpoint", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    try:
        crops = held_out_crops(checkpoint, args.size, args.crops, args.images)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(crops)} tuning-split crops of {args.size}²: {', '.join(name for name, _ in crops)}")
    observations = {}
    for task in args.tasks.split(","):
        cls = get_degradation_class(task)
        observations[task] = [
            (clean, cls(cls.Params()).degrade(clean, torch.Generator().manual_seed(i)))
            for i, (_, clean) in enumerate(crops)
        ]
    print(f"iterations {args.iterations}, {args.patches} patches per iteration")
    print("| λ | lr/σ | task | PSNR input | PSNR restored | gain | s/crop |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for lr in (float(v) for v in args.lr_per_sigma.split(",")):
        for weight in (float(v) for v in args.weights.split(",")):
            params = PatchNR.Params(
                checkpoint=args.checkpoint,
                iterations=args.iterations,
                lr_per_sigma=lr,
                prior_weight=weight,
                patches_per_iteration=args.patches,
            )
            method = PatchNR(params)
            for task, pairs in observations.items():
                start = time.perf_counter()
                scores, inputs = [], []
                for i, (clean, obs) in enumerate(pairs):
                    out = method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(i)))
                    scores.append(psnr(clean, out))
                    inputs.append(psnr(clean, obs.operator.init(obs.y).clamp(0, 1)))
                seconds = (time.perf_counter() - start) / len(pairs)
                base, mean = float(np.mean(inputs)), float(np.mean(scores))
                print(
                    f"| {weight:g} | {lr:g} | {task} | {base:.2f} | {mean:.2f} | {mean - base:+.2f} | {seconds:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
