"""Choose ``pnp``'s ``jpeg_sigma_scale`` for JPEG on the tuning split (never evaluation images).

The JPEG error is not white Gaussian noise; the denoiser may do better at a
multiple of the operator's measured σ. For each candidate scale the script
restores the JPEG (quality 10, the suite's default) versions of centre 256²
crops (smaller images: their largest centre crop) of the tuning split's images
(``bench/training/splits.py``; by default those the shipped ``drunet_cpu.pt``
never saw, ``--images`` for others of the split: any other image is refused)
and prints the mean PSNR gain over the input. The chosen default is recorded in
``methods/pnp.py``; ``benchmarks/tune_constants.py pnp-jpeg-scale`` chooses it
with a committed log.

Usage::

    python benchmarks/tune_pnp.py [--images a,b] [--limit 20] [--scales 0.8,1,1.25,1.5,2] [--degradation jpeg]
        [--checkpoint FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import RestoreContext  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.registry import get_degradation_class  # noqa: E402
from bench.training.data import load_tuning_images  # noqa: E402
from methods.pnp import PlugAndPlay  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="", help="comma-separated tuning-split names or image paths")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scales", default="0.8,1,1.25,1.5,2")
    parser.add_argument("--degradation", default="jpeg")
    parser.add_argument("--checkpoint", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        images = load_tuning_images(
            [x for x in args.images.split(",") if x] or None, unseen_by=Path(args.checkpoint or "drunet_cpu.pt").name
        )
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cls = get_degradation_class(args.degradation)
    observations = []
    for i, (_, image) in enumerate(images[: args.limit]):
        image = image.astype(np.float32) / 255.0
        h, w = image.shape[:2]
        s = min(args.size, h, w)
        crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        clean = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        observations.append((clean, cls(cls.Params()).degrade(clean, torch.Generator().manual_seed(i))))
    base = np.mean([psnr(c, o.operator.init(o.y).clamp(0, 1)) for c, o in observations])
    print(f"{args.degradation}: {len(observations)} tuning-split crops, input PSNR {base:.2f} dB")
    for scale in (float(v) for v in args.scales.split(",")):
        method = PlugAndPlay(PlugAndPlay.Params(checkpoint=args.checkpoint, jpeg_sigma_scale=scale))
        scores = [psnr(c, method.restore(o, RestoreContext(generator=torch.Generator()))) for c, o in observations]
        print(
            f"jpeg_sigma_scale {scale:5.2f}: PSNR {np.mean(scores):.2f} dB (gain {np.mean(scores) - base:+.2f})", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
