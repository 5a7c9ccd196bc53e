"""The Python API as a notebook uses it: run a grid, explore it with pandas, restore one image, write a report.

    python examples/notebook_api.py [RESULTS_DIR]     # a temporary folder by default; about 10 s on one CPU core

Each block below is one notebook cell. CI runs this script (tests/bench/test_python_api.py, tox's smoke
environment). Run it twice with the same RESULTS_DIR and the grid is served from the store: nothing is recomputed.
"""

from __future__ import annotations

import sys
import tempfile

from skimage import data

import bench


def main(results_dir: str) -> None:
    # 1. A grid, as `bench run` runs it: two methods, a TV weight sweep, two noise levels, one image at the smoke
    #    profile (64 px crops, few iterations). Lists in `overrides` make grids, as `--set tv.weight=0.5,0.9` does.
    #    LPIPS is left out to stay offline; drop `lpips=False` to get it.
    df = bench.run(methods=["identity", "tv"], degradations=["noise"], dataset="builtin", limit=1, profile="smoke",
                   overrides={"tv.weight": [0.5, 0.9], "noise.sigma": [15, 50]}, lpips=False,
                   results_dir=results_dir, progress=False)
    print(df[["method_label", "tv.weight", "noise.sigma", "image", "seed", "status", "psnr", "ssim"]]
          .to_string(index=False))
    print(f"computed {df.attrs['computed']}, cached {df.attrs['cached']}")

    # 2. pandas from here on: PSNR per noise level and method.
    print(df.pivot_table(index="noise.sigma", columns="method_label", values="psnr").round(2).to_string())

    # 3. One image, one method: the same cell as the run's (same key, same noise, same scores), nothing stored.
    #    The image may be an array (H, W, 3) in [0, 1] or 8-bit, a file path, or a torch tensor (3, H, W).
    result = bench.restore("tv", data.astronaut(), "noise", seed=0, profile="smoke", crop=64, lpips=False,
                           weight=0.9, degradation_params={"sigma": 50})
    print(result)
    cell = df[(df["method_label"] == "tv[weight=0.9]") & (df["noise.sigma"] == 50)].iloc[0]
    assert result.key == cell["key"] and result.metrics["psnr"] == cell["psnr"], (result, cell)
    print(f"restored {result.restored.shape}, observation in [{result.observation.min():.2f}, "
          f"{result.observation.max():.2f}] (unclipped float noise), same PSNR as the run's cell: {cell['psnr']:.4f}")

    # 4. The report `bench report` prints (markdown, latex, html or csv).
    print(bench.report(results_dir, "markdown"))


if __name__ == "__main__":  # the guard multiprocessing needs for bench.run(..., jobs=2)
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="bench-api-"))
