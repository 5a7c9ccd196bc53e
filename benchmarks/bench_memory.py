"""Peak memory of one `bench run` cell against the image size: the figures behind bench/memory.py's model.

Each measurement is a fresh `bench run` (one method, `noise`, one synthetic image of N×N px, LPIPS on when
BENCH_LPIPS_ALEXNET is set) in a child process whose peak resident memory is read from
``getrusage(RUSAGE_CHILDREN)``; iterative methods run a few iterations (memory does not grow with them).
It prints, per method, each size's peak, the bytes per pixel fitted between the two largest sizes and what
bench/memory.py's model estimates. Mind the machine: the estimate of the largest cell is printed first and a
cell estimated above --max-gb is skipped.

    python benchmarks/bench_memory.py                                   # identity 1000..4000 px, tv, bm3d, dip
    python benchmarks/bench_memory.py --method identity --sizes 2000,4000,6000 --max-gb 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import BASE_BYTES, GB, bytes_per_pixel, estimate_bytes  # noqa: E402
from bench.registry import lookup  # noqa: E402

DEFAULT_PLAN = {  # method: (sizes, extra options: a few iterations; memory does not grow with them)
    "identity": ([1000, 2000, 3000, 4000], []),
    "tv": ([512, 1024], ["--set", "tv.iterations=3"]),
    "bm3d": ([256, 512], []),
    "dip": ([128, 256], ["--set", "dip.iterations=3"]),
}
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
print(done.stderr[-2000:], file=sys.stderr)
"""


def image_folder(root: Path, size: int) -> Path:
    """A folder with one smooth random N×N RGB photo-like image (bicubic upsampling of 1/8-size noise)."""
    folder = root / f"img{size}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        small = np.random.default_rng(size).integers(0, 256, (max(2, size // 8), max(2, size // 8), 3), np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"image{size}.png")
    return folder


def peak_bytes(method: str, size: int, extra: list[str], root: Path) -> int:
    """Peak resident memory of `bench run` computing one cell of ``method`` on an N×N image."""
    command = [sys.executable, "-m", "bench.cli", "run", "--profile", "paper", "-m", method, "-d", "noise",
               "--dataset", f"folder:{image_folder(root, size)}", "--results-dir", str(root / f"res-{method}-{size}"),
               "--no-progress", *extra]
    env = {**os.environ, "BENCH_MEMORY_CHECK": "off"}  # measure, do not refuse
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env)
    code, peak = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{method} at {size}²: bench run failed:\n{out.stderr}")
    return int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", action="append", help="Method(s) to measure (default: identity, tv, bm3d, dip).")
    parser.add_argument("--sizes", help="Comma-separated image sides in px (default: per method).")
    parser.add_argument("--max-gb", type=float, default=4.0, help="Skip cells the model estimates above this.")
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    methods = args.method or list(DEFAULT_PLAN)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            sizes, extra = DEFAULT_PLAN.get(method, ([256, 512], []))
            if args.sizes:
                sizes = [int(s) for s in args.sizes.split(",")]
            cls = lookup("method", method)
            rows = []
            for size in sizes:
                estimate = estimate_bytes(cls, method, size, size)
                if estimate > args.max_gb * GB:
                    print(f"{method:<9} {size:>5}²  skipped: the model estimates {estimate / GB:.1f} GB > --max-gb")
                    continue
                peak = peak_bytes(method, size, extra, Path(tmp))
                rows.append((size, peak))
                print(f"{method:<9} {size:>5}²  peak {peak / GB:6.2f} GB   model {estimate / GB:6.2f} GB", flush=True)
            if len(rows) >= 2:
                (s1, p1), (s2, p2) = rows[-2], rows[-1]
                slope = (p2 - p1) / (s2 * s2 - s1 * s1)
                print(f"{method:<9} fitted {slope:7.0f} bytes/pixel, intercept {(p2 - slope * s2 * s2) / GB:.2f} GB "
                      f"(model: {bytes_per_pixel(cls, method):.0f} bytes/pixel + {BASE_BYTES / GB:.1f} GB)")
            figures[method] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
