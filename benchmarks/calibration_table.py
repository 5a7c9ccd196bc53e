"""The calibration table of docs/calibration.md: the suite's numbers next to published ones on the same set.

Run the grid first (CBM3D at the package's normal profile on the full-size Kodak24 images, AWGN at three σ
under the literature's protocol: unclipped float, the `noise` default):

    bench run -m identity,bm3d -d noise --set noise.sigma=15,25,50 \\
        --dataset folder:../shared/data/eval/kodak24 --profile quick --results-dir results-calibration
    python benchmarks/calibration_table.py --results-dir results-calibration

and it prints, per method and σ, the mean PSNR over the images, the published figure and the offset.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

# Published colour-denoising PSNR (dB) on Kodak24 at σ = 15 / 25 / 50 (8-bit scale).
PUBLISHED = {
    "bm3d": ({15: 34.28, 25: 32.15, 50: 28.46},
             "CBM3D (Dabov et al. 2007), as tabulated in the DPIR (Zhang et al. 2021) and FFDNet (Zhang et al. "
             "2018) papers; DPIR's σ = 25 figure (32.15) may be a transcription of FFDNet's 31.68, see "
             "docs/calibration.md"),
    "pnp": ({15: 35.31, 25: 32.89, 50: 29.86}, "DRUNet, official weights (DPIR, Zhang et al. 2021)"),
}


def table(results_dir: str) -> pd.DataFrame:
    from bench.store import Store

    frame = Store(results_dir, read_only=True).dataframe()
    frame = frame[(frame["status"] == "ok") & (frame["degradation"] == "noise")].copy()
    params = frame["degradation_params"].map(lambda text: json.loads(text) if isinstance(text, str) else text)
    frame["sigma"] = params.map(lambda p: float(p["sigma"]))
    frame["protocol"] = params.map(lambda p: "clipped 8-bit" if p.get("quantize") else
                                   ("clipped float" if p.get("clip") else "unclipped float"))
    # One result per image: a store that ran the grid under several code versions holds the same cell more than
    # once (with the same numbers, since draws do not depend on the code version); the newest counts.
    frame = frame.sort_values("created").drop_duplicates(["method", "protocol", "sigma", "image"], keep="last")
    rows = []
    for (method, protocol, sigma), group in frame.groupby(["method", "protocol", "sigma"]):
        published = PUBLISHED.get(method, ({}, ""))[0].get(int(sigma))
        mean = group["psnr"].mean()
        rows.append({"method": method, "protocol": protocol, "σ": int(sigma), "images": len(group),
                     "PSNR (dB)": round(mean, 2), "published (dB)": published,
                     "offset (dB)": None if published is None else round(mean - published, 2)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default="results-calibration")
    args = parser.parse_args()
    frame = table(args.results_dir)
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join("–" if value is None or value != value else str(value) for value in row) + " |")
    for method, (_, source) in PUBLISHED.items():
        print(f"\n{method}: {source}")


if __name__ == "__main__":
    main()
