"""Acceptance run of the auto-encoding priors: identity / dmsp / daep on DIV2K crops (issue #6).

Usage::

    BENCH_LPIPS_ALEXNET=/work/shared/weights/alexnet_features.pth \\
        python benchmarks/bench_dae_priors.py --results /tmp/dae_results --limit 4

Prints mean PSNR (dB) per method × degradation and mean seconds per image;
cells already in the results store are not recomputed.
"""

from __future__ import annotations

import argparse

from bench.runner import RunConfig, run_grid
from bench.selection import select_rows
from bench.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="folder:/work/shared/data/eval/div2k_valid_crops256")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--methods", default="identity,dmsp,daep")
    parser.add_argument("--degradations", default="noise,blur,jpeg,multi")
    parser.add_argument("--results", default="/tmp/dae_results")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="tabulate the store without running")
    args = parser.parse_args()
    methods, degradations = args.methods.split(","), args.degradations.split(",")
    if not args.report_only:
        config = RunConfig(
            methods=methods,
            degradations=degradations,
            dataset=args.dataset,
            limit=args.limit,
            profile=args.profile,
            results_dir=args.results,
            lpips=not args.no_lpips,
        )
        summary = run_grid(config)
        print(summary.line())
        for line in summary.errors:
            print("failed:", line)
    df = Store(args.results).dataframe()
    df = select_rows(
        df, methods=methods, degradations=degradations, dataset=args.dataset, profile=args.profile, status="ok"
    )
    # the latest result per cell position: older rows (other code or weight versions) stay in the store
    df = df.sort_values("created").drop_duplicates(["method_label", "degradation_label", "image", "seed"], keep="last")
    for value, fmt in (("psnr", "{:.2f}"), ("seconds", "{:.1f}")):
        table = df.pivot_table(index="method", columns="degradation", values=value, aggfunc="mean")
        table = table.reindex(
            index=[m for m in methods if m in table.index], columns=[d for d in degradations if d in table.columns]
        )
        print(f"\nmean {value} over {df.image.nunique()} images ({args.profile} profile)")
        print(table.to_string(float_format=lambda v, f=fmt: f.format(v)))


if __name__ == "__main__":
    main()
