"""DIP's per-task recipes on training crops: PSNR of the ``dip`` plugin at a fixed, reduced iteration count.

Measures what a recipe change does (run it on the code before and after the change, same arguments): each
task's built-in degradation (seed 0) on the centre crops of the first ``--crops`` images of
``../shared/data/train/bsd200`` (the trainers' guard refuses evaluation folders and images), restored by
``dip`` with ``iterations=--iterations`` (every other setting is the task's recipe) and ``precision=float32``.
The clean crop only scores the result. Prints one row per task and crop, and a mean per task.

Usage::

    python benchmarks/eval_dip_recipes.py [--tasks noise,sr,inpaint] [--crops 3] [--size 96] [--iterations 300]
        [--set sr.kernel=lanczos2] [--dip ema=0.99] [--json rows.json] [--label after]
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
from bench.datasets import list_folder  # noqa: E402
from bench.images import load_image, to_uint8  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.registry import get_degradation_class  # noqa: E402
from bench.training.data import check_no_evaluation_images, check_not_evaluation_folder  # noqa: E402
from methods.dip import DeepImagePrior  # noqa: E402


def crops(folder: Path, count: int, size: int) -> list[tuple[str, torch.Tensor]]:
    """Centre ``size``² crops of the first ``count`` images of ``folder``, refused if they are evaluation images."""
    check_not_evaluation_folder(folder)
    images = [(str(path), load_image(path)) for path in list_folder(folder)[:count]]
    check_no_evaluation_images([(path, to_uint8(image)) for path, image in images])
    out = []
    for path, image in images:
        h, w = image.shape[:2]
        i, j = (h - size) // 2, (w - size) // 2
        tensor = torch.from_numpy(np.ascontiguousarray(image[i : i + size, j : j + size])).permute(2, 0, 1)[None]
        out.append((Path(path).stem, tensor.float()))
    return out


def convert(value: str) -> int | float | bool | str:
    """A ``--set`` value: an int, a float, true/false, or the string."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_sets(items: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for item in items:
        name, value = item.split("=", 1)
        plugin, param = name.split(".", 1)
        out.setdefault(plugin, {})[param] = convert(value)
    return out


def run(task: str, name: str, clean: torch.Tensor, iterations: int, degradation: dict, dip: dict) -> dict:
    cls = get_degradation_class(task)
    obs = cls(cls.Params(**degradation)).degrade(clean, torch.Generator().manual_seed(0))
    method = DeepImagePrior(DeepImagePrior.Params(iterations=iterations, precision="float32", **dip))
    ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
    start = time.process_time()
    out = method.restore(obs, ctx)
    seconds = time.process_time() - start
    recipe = {k: v for k, v in method.resolve(obs).items() if isinstance(v, (int, float, str, bool))}
    return {
        "task": task,
        "crop": name,
        "degradation": degradation,
        "dip": dip,
        "recipe": recipe,
        "input": round(psnr(clean, obs.operator.init(obs.y).clamp(0, 1)), 3),
        "psnr": round(psnr(clean, out), 3),
        "backtracks": int(ctx.trace.get("backtracks", [0])[0]),
        "cpu_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="noise,jpeg,sr,inpaint,blur,multi")
    parser.add_argument("--crops", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train" / "bsd200"))
    parser.add_argument("--set", action="append", default=[], help="DEGRADATION.PARAM=VALUE (repeatable)")
    parser.add_argument("--dip", action="append", default=[], help="PARAM=VALUE for dip (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="")
    parser.add_argument("--json", help="append the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = parse_sets(args.set)
    dip = {k: convert(v) for k, v in (item.split("=", 1) for item in args.dip)}
    images = crops(Path(args.data), args.crops, args.size)
    rows = []
    for task in args.tasks.split(","):
        for name, clean in images:
            row = run(task, name, clean, args.iterations, sets.get(task, {}), dip)
            row["label"] = args.label
            row["size"] = args.size
            row["iterations"] = args.iterations
            rows.append(row)
            print(f"{args.label:8s} {task:8s} {name:8s} input {row['input']:6.2f}  dip {row['psnr']:6.2f}  "
                  f"backtracks {row['backtracks']:3d}  {row['cpu_s']:7.1f} CPU s", flush=True)
        mean = np.mean([r["psnr"] for r in rows if r["task"] == task])
        print(f"{args.label:8s} {task:8s} mean dip {mean:6.2f}", flush=True)
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
