"""Seconds per 256×256 crop for the reference methods (bm3d, epll, pnp; tv for scale), with PSNR.

Each degradation (default noise σ = 25 and blur; ``--degradations`` takes any, e.g.
``noise,jpeg,multi,blur,sr``) on 256² crops: by default the first images of
``../shared/data/eval/div2k_valid_crops256`` (for timing only, never for
tuning), else the builtin photos' centre crops. Each method runs at the given
profile (default quick) on one thread unless ``--threads`` says otherwise; a
warm-up call on a small crop first loads its weights. Wall and process CPU
seconds are both printed (on a shared machine CPU time is the fairer figure).
A method that does not handle a task prints n/a.

Run: ``python benchmarks/bench_references.py [--images 3] [--profile quick] [--methods bm3d,epll,pnp]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

SHARED_CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "div2k_valid_crops256"


def crops(count: int) -> list[tuple[str, np.ndarray]]:
    from bench.datasets import load_dataset

    if SHARED_CROPS.is_dir():
        items = load_dataset(f"folder:{SHARED_CROPS}", limit=count)
        return [(item.id, item.image[:256, :256]) for item in items]
    out = []
    for item in load_dataset("builtin", limit=count):
        h, w = item.image.shape[:2]
        out.append((item.id, item.image[(h - 256) // 2 : (h + 256) // 2, (w - 256) // 2 : (w + 256) // 2]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--methods", default="tv,bm3d,epll,pnp")
    parser.add_argument("--degradations", default="noise,blur")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bench.api import RestoreContext
    from bench.metrics import psnr
    from bench.params import build_params
    from bench.registry import available, get_degradation_class, get_method_class
    from bench.solvers.applicability import NotApplicable

    images = crops(args.images)
    names = [m for m in args.methods.split(",") if m in available("method")]
    print(f"profile {args.profile}, {args.threads} thread(s), {len(images)} crops of 256²")
    print(f"{'method':8s} {'degradation':12s} {'s/crop':>8s} {'CPU s':>7s} {'PSNR':>7s} {'input':>7s}")
    for name in names:
        cls = get_method_class(name)
        method = cls(build_params(cls.Params, cls.profiles.get(args.profile, {}), name))
        for degradation_name in args.degradations.split(","):
            dcls = get_degradation_class(degradation_name)
            degradation = dcls(dcls.Params())
            warm = degradation.degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(0))
            try:
                method.restore(warm, RestoreContext(generator=torch.Generator().manual_seed(0), profile=args.profile))
            except NotApplicable:
                print(f"{name:8s} {degradation_name:12s} {'n/a':>8s}")
                continue
            seconds, cpu, scores, inputs = [], [], [], []
            for i, (_, image) in enumerate(images):
                clean = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
                obs = degradation.degrade(clean, torch.Generator().manual_seed(i))
                ctx = RestoreContext(generator=torch.Generator().manual_seed(i), profile=args.profile)
                start, start_cpu = time.perf_counter(), time.process_time()
                out = method.restore(obs, ctx)
                seconds.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                scores.append(psnr(clean, out.clamp(0, 1)))
                inputs.append(psnr(clean, obs.operator.init(obs.y).clamp(0, 1)))
            print(
                f"{name:8s} {degradation_name:12s} {np.mean(seconds):8.1f} {np.mean(cpu):7.1f} "
                f"{np.mean(scores):7.2f} {np.mean(inputs):7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
