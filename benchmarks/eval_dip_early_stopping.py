"""ES-WMV against fixed budgets for DIP, on training crops (never evaluation images).

For each task and crop, DIP runs once at the paper budget of its task; the
clean crop is used here only to score the trajectory. From that single run the
script reads the PSNR of the reported (averaged) output

* at the quick budget (10 % of the paper's iterations) and at the paper budget;
* where ES-WMV (window 100, patience 1000 unless set) detects its point, and the
  iteration at which it would stop (what a run with ``early_stop=wmv`` returns,
  since the rule only watches the outputs);
* at the best iteration (an oracle, for context only).

Usage::

    python benchmarks/eval_dip_early_stopping.py [--tasks noise,jpeg] [--crops 3] [--size 128] [--threads 1]
        [--json rows.json [--resume]]

Crops: the centre crops of the first ``--crops`` images (sorted) of ../shared/data/train/bsd200.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import RestoreContext  # noqa: E402
from bench.images import load_image  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.registry import get_degradation_class  # noqa: E402
from bench.solvers.dip import DipFit, fit_dip, task_recipe  # noqa: E402
from bench.solvers.early_stopping import WindowedVariance  # noqa: E402


def crops(folder: Path, count: int, size: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    for path in sorted(folder.glob("*.png"))[:count]:
        image = load_image(path)
        h, w = image.shape[:2]
        i, j = (h - size) // 2, (w - size) // 2
        tensor = torch.from_numpy(np.ascontiguousarray(image[i : i + size, j : j + size])).permute(2, 0, 1)[None]
        out.append((path.name, tensor.float()))
    return out


def run(task: str, name: str, clean: torch.Tensor, window: int, patience: int, scale: float = 1.0) -> dict:
    cls = get_degradation_class(task)
    obs = cls(cls.Params()).degrade(clean, torch.Generator().manual_seed(0))
    recipe = task_recipe(task, obs)
    iterations, reg, net, depth = recipe[:4]
    iterations = max(10, round(iterations * scale))
    rule = WindowedVariance(window, patience)
    curve: list[float] = []
    stop_at = {"iteration": None}

    def monitor(it: int, raw: torch.Tensor, average: torch.Tensor) -> None:
        curve.append(psnr(clean, average.clamp(0, 1)))
        if rule.update(raw, it) and stop_at["iteration"] is None:
            stop_at["iteration"] = it
        if rule.improved:
            stop_at["detected_psnr"] = curve[-1]

    fit = DipFit(iterations, reg, net, depth, recipe.lr, recipe.ema, recipe.backtrack, precision="float32",
                 monitor=monitor)
    start = time.perf_counter()
    fit_dip(obs, RestoreContext(generator=torch.Generator().manual_seed(0)), fit)
    quick = max(1, round(0.1 * iterations))
    stopped = stop_at["iteration"]
    return {
        "task": task,
        "crop": name,
        "input": psnr(clean, obs.operator.init(obs.y).clamp(0, 1)),
        "iterations": iterations,
        "quick": curve[quick - 1],
        "paper": curve[-1],
        "es": stop_at.get("detected_psnr", float("nan")),
        "es_detected": rule.best_iteration + 1,
        "es_stop": (stopped + 1) if stopped is not None else iterations,
        "oracle": max(curve),
        "oracle_iteration": int(np.argmax(curve)) + 1,
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_row(r: dict) -> str:
    """One table line of a :func:`run` row."""
    return (
        f"{r['task']:6} {r['crop']:12} {r['input']:6.2f} {r['quick']:6.2f} {r['paper']:6.2f} {r['es']:6.2f} "
        f"{r['es_detected']:6d} {r['es_stop']:6d} {r['oracle']:6.2f} {r['oracle_iteration']:5d} {r['seconds']:6.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="noise,jpeg")
    parser.add_argument("--crops", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--patience", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget-scale", type=float, default=1.0, help="Scale the paper budgets (a dry run).")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "bsd200"))
    parser.add_argument("--json", help="Also write the rows to this JSON file (after every crop).")
    parser.add_argument("--resume", action="store_true",
                        help="Keep the rows already in --json and run only the (task, crop) pairs it lacks: a "
                        "paper-budget fit takes up to an hour per crop on a CPU core, so runs can be split.")
    args = parser.parse_args()
    if args.resume and not args.json:
        parser.error("--resume needs --json FILE (the rows to continue)")
    torch.set_num_threads(args.threads)
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["task"], r["crop"]) for r in rows}
    header = (
        f"{'task':6} {'crop':12} {'input':>6} {'quick':>6} {'paper':>6} {'ES':>6} {'ES it':>6} {'stop':>6} "
        f"{'oracle':>6} {'at':>5} {'s':>6}"
    )
    print(header, flush=True)
    for r in rows:  # resumed rows first, as the earlier run printed them
        print(format_row(r), flush=True)
    for task in args.tasks.split(","):
        for name, clean in crops(Path(args.data), args.crops, args.size):
            if (task, name) in done:
                continue
            r = run(task, name, clean, args.window, args.patience, args.budget_scale)
            rows.append(r)
            print(format_row(r), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    for task in args.tasks.split(","):
        sel = [r for r in rows if r["task"] == task]
        if not sel:
            continue
        mean = {k: float(np.mean([r[k] for r in sel])) for k in ("input", "quick", "paper", "es", "es_stop", "oracle")}
        print(
            f"mean {task}: input {mean['input']:.2f}, quick {mean['quick']:.2f}, paper {mean['paper']:.2f}, "
            f"ES-WMV {mean['es']:.2f} (stops after {mean['es_stop']:.0f} it.), oracle {mean['oracle']:.2f} dB"
        )


if __name__ == "__main__":
    main()
