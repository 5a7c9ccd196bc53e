"""Throughput of local worker processes (a script that prints figures, not a test).

Runs the same smoke grid (identity + tv on noise/jpeg/multi, 4 builtin images, 3 seeds: 72 cells) with ``--jobs 1`` and
``--jobs 2`` into fresh stores and prints cells per second and their ratio; with ``--dask`` also a Dask
LocalCluster of 2 workers. Run: ``python benchmarks/bench_scaleout.py [--dask]``.
"""

from __future__ import annotations

import sys
import tempfile
import time

from bench.runner import RunConfig, run_grid


def cells_per_second(results: str, **kw) -> tuple[float, int]:
    config = RunConfig(methods=["identity", "tv"], degradations=["noise", "jpeg", "multi"], dataset="builtin",
                       limit=4, profile="smoke", results_dir=results, lpips=False, progress=False,
                       seeds=[0, 1, 2], overrides={"tv": {"iterations": "300"}}, **kw)
    start = time.perf_counter()
    summary = run_grid(config)
    elapsed = time.perf_counter() - start
    assert summary.failed == 0, summary.errors
    return summary.computed / elapsed, summary.computed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one, n = cells_per_second(f"{tmp}/j1")
        two, _ = cells_per_second(f"{tmp}/j2", jobs=2)
        print(f"{n} cells (smoke grid): --jobs 1 {one:.2f} cells/s, --jobs 2 {two:.2f} cells/s, ratio {two / one:.2f}×")
        if "--dask" in sys.argv:
            dask, _ = cells_per_second(f"{tmp}/d2", executor="dask", jobs=2)
            print(f"--executor dask --jobs 2: {dask:.2f} cells/s, ratio {dask / one:.2f}× (includes cluster start-up)")


if __name__ == "__main__":
    main()
