"""How much each method's metrics move between CPU kernel paths and thread counts (docs/portability.md).

Runs one smoke grid per kernel path, each in its own process with the variables torch, oneDNN and MKL read at
start-up, and prints, per method and metric, the largest per-image difference from the native path:

    python benchmarks/kernel_paths.py                                   # every method, dip/doubledip in float64
    python benchmarks/kernel_paths.py -m dip,doubledip --precision float32

Paths: ``native`` (what the CPU offers, one thread), ``avx2`` (AVX2 kernels forced), ``basic`` (torch's default
kernels, oneDNN SSE4.1, MKL SSE4.2: a second path on any x86 CPU), ``threads2`` (native, two threads).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "basic": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "threads2": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
}
METRICS = ["psnr", "ssim", "lpips"]


def run_grid(path: str, results: Path, args: argparse.Namespace) -> pd.DataFrame:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **PATHS[path]}
    alexnet = ROOT.parent / "shared" / "weights" / "alexnet_features.pth"
    if "BENCH_LPIPS_ALEXNET" not in env and alexnet.exists():
        env["BENCH_LPIPS_ALEXNET"] = str(alexnet)
    pins = [f"--set={m}.precision={args.precision}" for m in ("dip", "doubledip") if m in args.methods.split(",")]
    command = ["bench", "run", "--profile", "smoke", "--dataset", "builtin", "--limit", str(args.limit),
               "--methods", args.methods, "--degradations", args.degradations, *pins,
               "--results-dir", str(results), "--no-progress"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{path}: bench run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    from bench.store import Store

    frame = Store(results, read_only=True).dataframe()
    frame = frame[frame["status"] == "ok"]
    return frame.set_index(["method", "degradation", "image"])[METRICS].astype(float).sort_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("-d", "--degradations", default="noise,jpeg,multi")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--precision", default="float64", help="dip and doubledip precision (as the CI grid: float64)")
    parser.add_argument("--paths", default=",".join(PATHS))
    args = parser.parse_args()
    if args.methods is None:
        from bench.registry import available

        args.methods = ",".join(available("method"))
    frames = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            frames[path] = run_grid(path, Path(tmp) / path, args)
    native = frames.pop("native")
    rows = []
    for path, frame in frames.items():
        diff = (frame - native).abs().groupby(level="method").max()
        diff.columns = [f"{path} Δ{m}" for m in METRICS]
        rows.append(diff)
    table = pd.concat(rows, axis=1)
    print(f"largest per-image |difference| from the native path ({args.limit} image(s), profile smoke, "
          f"dip/doubledip precision={args.precision}):")
    print(table.to_string(float_format=lambda v: f"{v:.2g}"))


if __name__ == "__main__":
    main()
