"""Speed of the ``dip`` method against a plain eager implementation of the same network.

Prints milliseconds per DIP iteration (forward, loss, backward, Adam step,
input perturbation, output average) at 128² and 256² for

* ``eager``: the official code's structure (``nn.Sequential`` of
  ``ReflectionPad2d`` + ``Conv2d`` blocks, ``nn.Upsample``, a concat module,
  NCHW float32, noise redrawn with ``normal_`` on a tensor shaped like the code)
  and its notebook loop;
* ``dip``: :class:`methods.dip.DeepImagePrior` itself (``restore``, i.e.
  :func:`bench.solvers.dip.fit_dip`, backtracking snapshots included), with ``precision=float32`` and with the default
  ``precision=auto`` (bfloat16 autocast where the CPU has bfloat16 units), each in the layout ``channels_last=auto``
  picks for it (channels-last with bfloat16, NCHW in float32), and in the other layout, which shows why; float32
  runs the wide layers as Winograd convolutions (``conv=auto`` on a CPU), and ``dip float32 direct`` shows
  torch's own convolutions for comparison;

then the ratio dip/eager and the peak resident memory of a fresh process doing
a 256² run of each. Each iteration is timed (setup and two warm-up iterations
excluded); variants run in interleaved rounds and the median iteration is
reported, which tolerates a machine shared with other jobs. Wall-clock and
process CPU time are both shown (on a loaded machine CPU time is the fairer
figure; with one thread it is the work done).

Usage::

    python benchmarks/bench_dip.py [--threads N] [--iterations 6] [--rounds 3] [--sizes 128,256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

# --- the eager reference: the official structure, written plainly ------------------------------


class _Concat(nn.Module):
    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


def _padded_conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    pad = (k - 1) // 2
    return ([nn.ReflectionPad2d(pad)] if pad else []) + [nn.Conv2d(c_in, c_out, k, stride)]


def _block(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [*_padded_conv(c_in, c_out, k, stride), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]


def eager_skip(input_depth: int = 32, down: int = 128, up: int = 128, skip: int = 4, scales: int = 5) -> nn.Module:
    """The official ``skip`` net (get_net defaults) as nested ``nn.Sequential``."""
    inner: nn.Module | None = None
    for i in reversed(range(scales)):
        c_in = input_depth if i == 0 else down
        deeper = [*_block(c_in, down, 3, 2), *_block(down, down, 3)]
        deeper += [inner] if inner is not None else []
        deeper.append(nn.Upsample(scale_factor=2, mode="bilinear"))
        merged = skip + (up if inner is not None else down)
        inner = nn.Sequential(
            _Concat(nn.Sequential(*_block(c_in, skip, 1)), nn.Sequential(*deeper)),
            nn.BatchNorm2d(merged), *_block(merged, up, 3), *_block(up, up, 1),
        )
    return nn.Sequential(inner, nn.Conv2d(up, 3, 1), nn.Sigmoid())


def eager_run(size: int, iterations: int, seed: int = 0, stamps: list | None = None) -> torch.Tensor:
    """The notebook loop: perturb the code, forward, MSE, backward, Adam, running average."""
    torch.manual_seed(seed)
    net = eager_skip()
    z = torch.rand(1, 32, size, size) * 0.1
    noise = z.clone()
    y = torch.rand(1, 3, size, size)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    average = None
    for _ in _stamped(range(iterations), stamps):
        optimizer.zero_grad()
        out = net(z + noise.normal_() * (1 / 30))
        average = out.detach() if average is None else average * 0.99 + out.detach() * 0.01
        loss = torch.nn.functional.mse_loss(out, y)
        loss.backward()
        loss.item()
        optimizer.step()
    return average


def dip_run(size: int, iterations: int, precision: str, seed: int = 0, stamps: list | None = None,
            channels_last: str = "auto", conv: str = "auto") -> torch.Tensor:
    """``DeepImagePrior.restore`` on a noisy random image of ``size``²."""
    from bench.api import RestoreContext
    from degradations.noise import Noise
    from methods.dip import DeepImagePrior

    class StampedContext(RestoreContext):
        def iterations(self, n: int, desc: str = "iter"):
            return _stamped(range(n), stamps)

    obs = Noise().degrade(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)),
                          torch.Generator().manual_seed(seed))
    method = DeepImagePrior(DeepImagePrior.Params(iterations=iterations, precision=precision,
                                                  channels_last=channels_last, conv=conv))
    return method.restore(obs, StampedContext(generator=torch.Generator().manual_seed(seed)))


def _stamped(items, stamps: list | None):
    """Yield ``items``, appending (wall, CPU) timestamps before each and after the last to ``stamps``."""
    for item in items:
        if stamps is not None:
            stamps.append((time.perf_counter(), time.process_time()))
        yield item
    if stamps is not None:
        stamps.append((time.perf_counter(), time.process_time()))


# --- measurement ------------------------------------------------------------------------------------


def per_iteration(run: Callable[[int, list], object], iterations: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each iteration after ``warmup`` ones (setup excluded)."""
    stamps: list[tuple[float, float]] = []
    run(iterations + warmup, stamps)
    pairs = list(zip(stamps[warmup:], stamps[warmup + 1:]))
    return [(b[0] - a[0]) * 1000 for a, b in pairs], [(b[1] - a[1]) * 1000 for a, b in pairs]


def peak_rss_mb(variant: str, size: int, iterations: int, threads: int) -> float:
    """Peak RSS (MB, VmHWM: this process only, not inherited across exec) of a fresh process."""
    code = (
        "import sys, torch; sys.path.insert(0, 'benchmarks'); import bench_dip as b; "
        f"torch.set_num_threads({threads}); "
        + (f"b.eager_run({size}, {iterations})" if variant == "eager" else f"b.dip_run({size}, {iterations}, '{variant}')")
        + "; print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per round (after 2 warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median iteration is kept")
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--no-rss", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from bench.nets.dip import bf16_supported

    auto = "bfloat16" if bf16_supported(torch.device("cpu")) else "float32"
    variants: dict[str, Callable[[int, int, list], object]] = {
        "eager": lambda s, n, st: eager_run(s, n, stamps=st),
        "dip float32": lambda s, n, st: dip_run(s, n, "float32", stamps=st),
        f"dip auto ({auto})": lambda s, n, st: dip_run(s, n, "auto", stamps=st),
        # the layouts the default does not pick here, measured so the choice is evidence, not assumption
        "dip float32 direct": lambda s, n, st: dip_run(s, n, "float32", stamps=st, conv="direct"),
        "dip float32 NHWC": lambda s, n, st: dip_run(s, n, "float32", stamps=st, channels_last="on", conv="direct"),
    }
    if auto == "bfloat16":
        variants["dip bfloat16 NCHW"] = lambda s, n, st: dip_run(s, n, "bfloat16", stamps=st, channels_last="off")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {open('/proc/loadavg').read().split()[:3]}")
    sizes = [int(s) for s in args.sizes.split(",")]
    samples: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for size in sizes:
        for _ in range(args.rounds):  # interleaved, so a burst of load hits every variant alike
            for name, fn in variants.items():
                wall, cpu = per_iteration(lambda n, st, fn=fn, size=size: fn(size, n, st), args.iterations)
                samples.setdefault((name, size), ([], []))[0].extend(wall)
                samples[(name, size)][1].extend(cpu)
    median = {key: (statistics.median(w), statistics.median(c)) for key, (w, c) in samples.items()}
    header = f"{'median ms / iteration':<24}"
    for size in sizes:
        header += f"{f'{size}² wall':>11}{f'{size}² CPU':>11}{'ratio wall':>11}{'ratio CPU':>10}"
    print(header)
    for name in variants:
        row = f"{name:<24}"
        for size in sizes:
            wall, cpu = median[(name, size)]
            ref_wall, ref_cpu = median[("eager", size)]
            row += f"{wall:>11.0f}{cpu:>11.0f}{wall / ref_wall:>11.2f}{cpu / ref_cpu:>10.2f}"
        print(row)
    if not args.no_rss:
        rss = {v: peak_rss_mb(v, 256, 3, args.threads) for v in ("eager", "float32", "auto")}
        print("peak RSS, fresh process, 256² run (MB):", json.dumps({k: round(v) for k, v in rss.items()}))


if __name__ == "__main__":
    main()
