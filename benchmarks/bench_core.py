"""Core performance figures (a script that prints numbers, not a test).

1. seconds for a fully cached re-run of a 1000-cell grid: in process (``run_grid``), and through the
   ``bench run`` command line — as a user re-runs a command (its keys remembered by the run that computed
   them: no torch, no plugins, no pandas) and with those keys forgotten (after a code change: every plugin
   imported, every image read);
2. seconds to build a report from 10 000 rows (SQLite load + LaTeX/Markdown rendering);
3. milliseconds for all four metrics on one 256×256 pair (wall and CPU time: on a shared machine the CPU
   time is the figure that does not depend on the other jobs).

Targets: < 1.5 s (cached re-run via `bench run`), < 2 s, < 50 ms. The load average is printed first: timings
from a loaded machine are not comparable. Run: ``python benchmarks/bench_core.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
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


def cached_rerun(tmp: Path) -> tuple[float, float, float]:
    """Seconds of the cached re-run: in process, via `bench run`, via `bench run` with the keys forgotten."""
    from bench.cli import main
    from bench.keycache import FOLDER
    from bench.runner import RunConfig, run_grid

    images = tmp / "images"
    images.mkdir()
    make_images(images)
    sigmas = [str(s) for s in range(5, 55, 5)]  # 10 degradation instances × 100 images = 1000 cells
    args = ["run", "--methods", "identity", "--degradations", "noise", "--dataset", f"folder:{images}", "--profile",
            "smoke", "--limit", "100", "--set", "noise.sigma=" + ",".join(sigmas), "--results-dir", str(tmp / "res"),
            "--no-lpips", "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as first:
        with contextlib.suppress(SystemExit):
            main(args)  # the run that computes, as a user runs it (the closing count goes to stderr)
    assert "computed 1000, cached 0" in first.getvalue(), first.getvalue()[-300:]
    config = RunConfig(methods=["identity"], degradations=["noise"], dataset=f"folder:{images}", profile="smoke",
                       limit=100, overrides={"noise": {"sigma": sigmas}}, results_dir=str(tmp / "res"),
                       lpips=False, progress=False)
    start = time.perf_counter()
    again = run_grid(config)
    in_process = time.perf_counter() - start
    assert again.cached == 1000 and again.computed == 0

    def cli() -> float:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, check=True)
        assert "computed 0, cached 1000" in out.stderr, out.stderr[-300:]
        return time.perf_counter() - start

    remembered = statistics.median(cli() for _ in range(3))
    shutil.rmtree(tmp / "res" / FOLDER)
    forgotten = cli()
    return in_process, remembered, forgotten


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


def metrics_ms() -> tuple[list[float], bool]:
    """Median wall and CPU milliseconds of all four metrics on one 256² pair — the reference's LPIPS features
    reused (as between the cells of one image) and with a new reference each time — and whether LPIPS was on."""
    from bench.metrics import MetricSuite

    g = torch.Generator().manual_seed(0)
    refs = [torch.round(torch.rand(1, 3, 256, 256, generator=g) * 255) / 255 for _ in range(2)]
    dists = [torch.round((r + 0.05 * torch.randn(r.shape, generator=g)).clamp(0, 1) * 255) / 255 for r in refs]
    suite = MetricSuite()
    suite(refs[0], dists[0])  # load LPIPS once
    out = []
    for alternate in (False, True):
        wall, cpu = [], []
        for i in range(20):
            k = i % 2 if alternate else 0
            start, start_cpu = time.perf_counter(), time.process_time()
            suite(refs[k], dists[k])
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        out += [statistics.median(wall), statistics.median(cpu)]
    return out, suite.lpips.available


def main() -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, load average {load}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        in_process, cli, forgotten = cached_rerun(tmp)
        print(f"cached re-run of a 1000-cell grid: {cli:.2f} s via `bench run` (whole process, median of 3)   "
              f"[target < 1.5 s]; {in_process:.2f} s in process (run_grid); {forgotten:.2f} s via `bench run` with "
              "its remembered keys deleted (imports torch and every plugin, reads every image)")
        total, render_only = report_10k(tmp)
        print(f"report from 10 000 rows: {total:.2f} s (SQLite load + LaTeX + Markdown), "
              f"{render_only:.2f} s Markdown from a DataFrame   [target < 2 s]")
    (ms, cpu_ms, new_ms, new_cpu_ms), with_lpips = metrics_ms()
    print(f"all four metrics on one 256² pair: {ms:.1f} ms wall, {cpu_ms:.1f} ms CPU (median of 20, LPIPS "
          f"{'on' if with_lpips else 'missing'}, the reference's LPIPS features reused as between the cells of one "
          f"image)   [target < 50 ms]; {new_ms:.1f} ms wall, {new_cpu_ms:.1f} ms CPU with a new reference each time")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
