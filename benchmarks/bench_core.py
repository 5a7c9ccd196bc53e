"""Core performance figures (a script that prints numbers, not a test).

1. seconds for a fully cached re-run of a 1000-cell grid (in process, and the `bench run` CLI);
2. seconds to build a report from 10 000 rows (SQLite load + LaTeX/Markdown rendering);
3. milliseconds for all four metrics on one 256×256 pair.

Targets: < 2 s, < 2 s, < 50 ms. Run: ``python benchmarks/bench_core.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_images(folder: Path, n: int = 100, size: int = 64) -> None:
    from bench.images import save_png

    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random((size // 8, size // 8, 3))
        image = np.kron(base, np.ones((8, 8, 1)))
        save_png(image.astype(np.float32), folder / f"img{i:03d}.png")


def cached_rerun(tmp: Path) -> tuple[float, float]:
    from bench.runner import RunConfig, run_grid

    images = tmp / "images"
    images.mkdir()
    make_images(images)
    sigmas = [str(s) for s in range(5, 55, 5)]  # 10 degradation instances × 100 images = 1000 cells
    config = RunConfig(methods=["identity"], degradations=["noise"], dataset=f"folder:{images}", profile="smoke",
                       limit=100, overrides={"noise": {"sigma": sigmas}}, results_dir=str(tmp / "res"),
                       lpips=False, progress=False)
    first = run_grid(config)
    assert first.computed == 1000, first.line()
    start = time.perf_counter()
    again = run_grid(config)
    in_process = time.perf_counter() - start
    assert again.cached == 1000 and again.computed == 0
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", "identity", "--degradations", "noise",
           "--dataset", f"folder:{images}", "--profile", "smoke", "--limit", "100", "--set",
           "noise.sigma=" + ",".join(sigmas), "--results-dir", str(tmp / "res"), "--no-lpips", "--no-progress"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    cli = time.perf_counter() - start
    assert "computed 0, cached 1000" in out.stdout
    return in_process, cli


def report_10k(tmp: Path) -> tuple[float, float]:
    import pandas as pd

    from bench.report import render
    from bench.store import Store

    rng = np.random.default_rng(0)
    rows = []
    for m in range(10):
        for d in range(10):
            for i in range(100):
                rows.append({"key": f"{m}-{d}-{i}", "method": f"m{m}", "method_label": f"m{m}", "degradation": f"d{d}",
                             "degradation_label": f"d{d}", "degradation_description": f"degradation {d}",
                             "dataset": "synthetic", "image": f"img{i}", "seed": 0, "profile": "quick", "status": "ok",
                             "psnr": 25 + rng.random(), "ssim": rng.random(), "ms_ssim": rng.random(),
                             "lpips": rng.random(), "seconds": rng.random(), "error": None})
    store = Store(tmp / "report")
    for row in rows:
        store._execute(
            f"INSERT INTO cells ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
    store.close()
    start = time.perf_counter()
    store = Store(tmp / "report")
    df = store.dataframe()
    latex = render(df, "latex")
    markdown = render(df, "markdown")
    total = time.perf_counter() - start
    assert len(df) == 10_000 and latex and markdown
    start = time.perf_counter()
    render(pd.DataFrame(rows), "markdown")
    return total, time.perf_counter() - start


def metrics_ms() -> tuple[float, bool]:
    from bench.metrics import MetricSuite

    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 256, 256, generator=g)
    dist = (ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    ref, dist = (torch.round(t * 255) / 255 for t in (ref, dist))
    suite = MetricSuite()
    suite(ref, dist)  # load LPIPS once
    times = []
    for _ in range(20):
        start = time.perf_counter()
        suite(ref, dist)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), suite.lpips.available


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        in_process, cli = cached_rerun(tmp)
        print(f"cached re-run of a 1000-cell grid: {in_process:.2f} s in process, {cli:.2f} s via `bench run` "
              "(incl. interpreter and torch import)   [target < 2 s]")
        total, render_only = report_10k(tmp)
        print(f"report from 10 000 rows: {total:.2f} s (SQLite load + LaTeX + Markdown), "
              f"{render_only:.2f} s Markdown from a DataFrame   [target < 2 s]")
    ms, with_lpips = metrics_ms()
    print(f"all four metrics on one 256² pair: {ms:.1f} ms (median of 20, LPIPS {'on' if with_lpips else 'missing'})"
          "   [target < 50 ms]")


if __name__ == "__main__":
    main()
