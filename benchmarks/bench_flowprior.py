"""Seconds to restore one 256² crop with flowprior: batched patches vs a loop over patches, and vs DIP.

Usage::

    python benchmarks/bench_flowprior.py [--profile quick] [--threads 2] [--no-dip]

The batched path is the method itself (all 25 patches of a 256² crop in one
batch, the operator applied to the assembled image). The loop path optimises
each patch on its own for the same number of iterations (valid for the noise
operator, which is pixel-wise) and blends the results. If a ``dip`` method is
registered, it restores the same observation at the same profile.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.api import RestoreContext
from bench.cells import instantiate
from bench.compute import to_tensor
from bench.datasets import load_dataset
from bench.metrics import psnr
from bench.registry import available
from bench.solvers.flow_map import Tiler, map_latents
from degradations.noise import Noise
from methods.flowprior import FlowPrior, load_flow


def restore_loop(method: FlowPrior, obs, ctx: RestoreContext) -> torch.Tensor:
    """Reference: one optimisation per patch (noise only: the data term is per pixel)."""
    p = method.params
    flow = load_flow(p.checkpoint)
    tiler = Tiler(tuple(obs.y.shape[-2:]), p.patch, p.margin)
    y_patches = tiler.split(obs.y)
    inv_two_var = 0.5 / max(obs.sigma, 1e-3) ** 2
    out = []
    for i in range(len(tiler)):
        y_i = y_patches[i : i + 1]
        patch, _ = map_latents(flow, y_i, lambda x, y_i=y_i: (x - y_i).pow(2).sum() * inv_two_var,
                               p.iterations, p.lr, p.prior_weight)
        out.append(patch)
    return tiler.merge(torch.cat(out)).clamp(0, 1)


def timed(fn, *args) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-dip", action="store_true", help="skip the DIP comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    clean = to_tensor(load_dataset("builtin", limit=1, crop=256)[0].image)
    obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
    method = instantiate("method", "flowprior", {}, args.profile)[0].plugin
    load_flow(method.params.checkpoint)  # load outside the timings
    print(f"flowprior, profile {args.profile}: {method.params}")
    print(f"threads {torch.get_num_threads()}, 256×256 crop, {len(Tiler((256, 256)))} patches of 64 px, noise σ=25")

    t_batch, out_batch = timed(method.restore, obs, RestoreContext(generator=torch.Generator()))
    print(f"batched patches : {t_batch:7.1f} s  PSNR {psnr(clean, out_batch):.2f} dB (input {psnr(clean, obs.y):.2f})")
    t_loop, out_loop = timed(restore_loop, method, obs, RestoreContext(generator=torch.Generator()))
    print(f"loop over patches: {t_loop:7.1f} s  PSNR {psnr(clean, out_loop):.2f} dB  -> batched is {t_loop / t_batch:.1f}× faster")

    if args.no_dip:
        return
    if "dip" not in available("method"):
        print("dip: not registered, comparison skipped")
        return
    dip = instantiate("method", "dip", {}, args.profile)[0].plugin
    t_dip, out_dip = timed(dip.restore, obs, RestoreContext(generator=torch.Generator().manual_seed(0), profile=args.profile))
    print(f"dip ({args.profile})      : {t_dip:7.1f} s  PSNR {psnr(clean, out_dip):.2f} dB  -> flowprior is {t_dip / t_batch:.1f}× faster")


if __name__ == "__main__":
    main()
