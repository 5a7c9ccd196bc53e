"""Choose ``pnp``'s ``jpeg_sigma_scale`` for JPEG on training crops (never evaluation images).

The JPEG error is not white Gaussian noise; the denoiser may do better at a
multiple of the operator's measured σ. For each candidate scale the script
restores the JPEG (quality 10, the suite's default) versions of centre 256²
crops of the first ``--crops`` images of ../shared/data/train/bsd200 and prints
the mean PSNR gain over the input. The chosen default is recorded in
``methods/pnp.py``.

Usage::

    python benchmarks/tune_pnp.py [--crops 20] [--scales 0.8,1,1.25,1.5,2] [--degradation jpeg] [--checkpoint FILE]
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
from bench.images import load_image  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.registry import get_degradation_class  # noqa: E402
from methods.pnp import PlugAndPlay  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scales", default="0.8,1,1.25,1.5,2")
    parser.add_argument("--degradation", default="jpeg")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "bsd200"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cls = get_degradation_class(args.degradation)
    observations = []
    for i, path in enumerate(sorted(Path(args.data).glob("*.png"))[: args.crops]):
        image = load_image(path)
        h, w = image.shape[:2]
        s = min(args.size, h, w)
        crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        clean = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        observations.append((clean, cls(cls.Params()).degrade(clean, torch.Generator().manual_seed(i))))
    base = np.mean([psnr(c, o.operator.init(o.y).clamp(0, 1)) for c, o in observations])
    print(f"{args.degradation}: {len(observations)} training crops, input PSNR {base:.2f} dB")
    for scale in (float(v) for v in args.scales.split(",")):
        method = PlugAndPlay(PlugAndPlay.Params(checkpoint=args.checkpoint, jpeg_sigma_scale=scale))
        scores = [psnr(c, method.restore(o, RestoreContext(generator=torch.Generator()))) for c, o in observations]
        print(
            f"jpeg_sigma_scale {scale:5.2f}: PSNR {np.mean(scores):.2f} dB (gain {np.mean(scores) - base:+.2f})", flush=True
        )


if __name__ == "__main__":
    main()
