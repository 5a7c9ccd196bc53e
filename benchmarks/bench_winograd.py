"""Winograd F(4×4, 3×3) against torch's direct convolution, per layer of DIP's skip net and in a whole fit.

Per layer: milliseconds of forward + backward (input and weight gradients, as in training) of the 3×3
stride-1 layers of the ``skip`` net (reflection padding) at the given sizes, the ratio winograd/direct,
the largest relative difference of output and gradients, and what :func:`bench.nets.winograd.winograd_pays`
picks. Medians over repeats, process CPU time (fair on a shared machine; one thread is the work done).

With ``--fit N``: ``dip`` (precision float32) for N iterations on noise σ=25 of the centre crops of
training images (``../shared/data/train/bsd200``, never evaluation images), ``conv=direct`` against
``conv=winograd``, for seeds 0 and 1; the PSNR difference between the algorithms is to be read against
the difference between seeds. The clean crop only scores the result.

Usage::

    python benchmarks/bench_winograd.py [--threads 1] [--sizes 32,64,128,256] [--fit 300 --crops 2 --crop 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.nets.winograd import winograd_conv3x3, winograd_pays  # noqa: E402

# (in, out) channels of the skip net's 3×3 stride-1 layers: decoder (128 + 4 skip -> 128), encoder (128 -> 128),
# and a layer of the small JPEG net (16 -> 16) for contrast
LAYERS = ((132, 128), (128, 128), (16, 16))


def cpu_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def training_step(conv, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor):
    """A function computing a reflection-padded 3×3 layer's output and its input and weight gradients."""

    def step() -> tuple[torch.Tensor, ...]:
        out = conv(F.pad(x, (1, 1, 1, 1), mode="reflect"), w)
        return (out.detach(), *torch.autograd.grad(out, (x, w), g))

    return step


def layer_rows(sizes: list[int], repeats: int) -> None:
    print(f"{'in→out':>9} {'size':>5} {'direct ms':>10} {'winograd ms':>12} {'ratio':>6} {'max rel diff':>13} {'pays':>5}")
    gen = torch.Generator().manual_seed(0)
    for c_in, c_out in LAYERS:
        for size in sizes:
            x = torch.randn(1, c_in, size, size, generator=gen, requires_grad=True)
            w = (torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.05).requires_grad_()
            g = torch.randn(1, c_out, size, size, generator=gen)

            direct, winograd = (training_step(conv, x, w, g) for conv in (F.conv2d, winograd_conv3x3))
            diff = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(winograd(), direct()))
            t_direct, t_wino = cpu_ms(direct, repeats), cpu_ms(winograd, repeats)
            print(f"{c_in:>4}→{c_out:<4} {size:>5} {t_direct:>10.1f} {t_wino:>12.1f} {t_wino / t_direct:>6.2f} "
                  f"{diff:>13.1e} {'yes' if winograd_pays(c_in, c_out, size, size) else 'no':>5}", flush=True)


def fit_rows(iterations: int, crops: int, size: int, data: Path) -> None:
    from bench.api import RestoreContext
    from bench.images import load_image
    from bench.metrics import psnr
    from degradations.noise import Noise
    from methods.dip import DeepImagePrior

    print(f"dip, noise σ=25, {iterations} iterations, float32, {size}² centre crops of {data.name}: PSNR (dB)")
    print(f"{'crop':12} {'seed':>4} {'input':>6} {'direct':>7} {'winograd':>9} {'diff':>6} {'direct s':>9} {'winograd s':>11}")
    rows = []
    for path in sorted(data.glob("*.png"))[:crops]:
        image = load_image(path)
        i, j = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        clean = torch.from_numpy(np.ascontiguousarray(image[i:i + size, j:j + size])).permute(2, 0, 1)[None].float()
        obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
        for seed in (0, 1):
            out = {}
            for conv in ("direct", "winograd"):
                method = DeepImagePrior(DeepImagePrior.Params(iterations=iterations, precision="float32", conv=conv))
                start = time.process_time()
                restored = method.restore(obs, RestoreContext(generator=torch.Generator().manual_seed(seed)))
                out[conv] = (psnr(clean, restored), time.process_time() - start)
            rows.append((path.name, seed, out["direct"][0], out["winograd"][0]))
            print(f"{path.name:12} {seed:>4} {psnr(clean, obs.y.clamp(0, 1)):>6.2f} {out['direct'][0]:>7.2f} "
                  f"{out['winograd'][0]:>9.2f} {out['winograd'][0] - out['direct'][0]:>+6.2f} {out['direct'][1]:>9.0f} "
                  f"{out['winograd'][1]:>11.0f}", flush=True)
    algo = [abs(w - d) for _, _, d, w in rows]
    seeds = [abs(a[2] - b[2]) for a, b in zip(rows[::2], rows[1::2])]
    print(f"mean |winograd − direct| {np.mean(algo):.3f} dB; mean |seed 0 − seed 1| (direct) {np.mean(seeds):.3f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit", type=int, default=0, help="also compare whole DIP fits of this many iterations")
    parser.add_argument("--crops", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "bsd200"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {open('/proc/loadavg').read().split()[:3]}")
    if args.sizes:
        layer_rows([int(s) for s in args.sizes.split(",")], args.repeats)
    if args.fit:
        fit_rows(args.fit, args.crops, args.crop, Path(args.data))


if __name__ == "__main__":
    main()
