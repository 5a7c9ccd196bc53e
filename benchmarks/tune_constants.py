"""Re-choose the suite's tuned constants on the tuning split (never on evaluation images), with a committed log.

Every image comes from :func:`bench.training.data.load_tuning_images`: the
tuning split of ``bench/training/splits.py`` (22 training-folder images no
trainer trains on), or a subset of it; any other image is refused with one
``error:`` line. For a learned prior the default images are the split images
its shipped weights never saw (``splits.SHIPPED_WEIGHTS_TRAINED_ON``).

Subcommands (in order of cost)::

    python benchmarks/tune_constants.py split            # the split: names, sizes, which shipped weights saw each
    python benchmarks/tune_constants.py tv-weight        # methods/tv.py weight
    python benchmarks/tune_constants.py jpeg-sigma       # bench/physics/jpeg.py jpeg_effective_sigma table (measured)
    python benchmarks/tune_constants.py bm3d-alpha       # bench/solvers/bm3d.py RI_ALPHA, RWI_ALPHA
    python benchmarks/tune_constants.py pnp-jpeg-scale   # methods/pnp.py jpeg_sigma_scale
    python benchmarks/tune_constants.py patchnr          # methods/patchnr.py prior_weight, lr_per_sigma
    python benchmarks/tune_constants.py flowprior        # methods/flowprior.py prior_weight, lr
    python benchmarks/tune_constants.py doubledip        # methods/doubledip.py warmup, output

Common options: ``--grid PARAM=v1,v2,...`` (repeatable; replaces that axis of
the default grid; the current default is always added), ``--images a,b`` (split
names or image paths), ``--limit N``, ``--crop 128`` (centre crops; smaller
images are skipped), ``--profile quick``, ``--tasks`` (degradations, at their
defaults, seed 0), ``--select-on`` (the tasks whose mean PSNR chooses; the other
tasks are logged for information), ``--min-gain 0.05`` (dB: the current value is
kept unless another beats it by at least this much), ``--out-dir docs/tuning``
(``--no-log`` writes nothing). Each run prints the table and ``old → new`` and
writes ``<out-dir>/<constant>.md`` and ``.json``. It never edits code: a changed
value is copied into the code by hand, citing the log.

Run with ``OMP_NUM_THREADS=1 nice -n 19`` on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import RestoreContext  # noqa: E402
from bench.cells import degradation_generator, derived_seed  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.metrics import psnr  # noqa: E402
from bench.params import build_params  # noqa: E402
from bench.registry import get_degradation_class, get_method_class  # noqa: E402
from bench.training.data import load_tuning_images, pixel_digest  # noqa: E402
from bench.training.splits import SHIPPED_WEIGHTS_TRAINED_ON, TUNING_SPLIT, train_root  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "tuning"

# --------------------------------------------------------------------------- the constants


@dataclass
class Constant:
    """A tuned constant: the method whose parameters it sets, its grid, and where its default lives."""

    name: str
    method: str
    where: str  # file and name of the default in code
    axes: dict[str, list[Any]]  # parameter → default grid values
    tasks: str
    select_on: str
    weights: str = ""  # shipped weights file of a learned prior (its unseen split images are the default)
    note: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters held fixed while tuning

    def old(self) -> dict[str, Any]:
        """The current defaults, read from the code."""
        if self.name == "bm3d-alpha":
            from bench.solvers import bm3d

            return {"ri_alpha": bm3d.RI_ALPHA, "rwi_alpha": bm3d.RWI_ALPHA}
        params = get_method_class(self.method).Params()
        return {axis: getattr(params, axis) for axis in self.axes}


CONSTANTS = {
    c.name: c
    for c in [
        Constant(
            "tv-weight",
            "tv",
            "methods/tv.py TotalVariation.Params.weight",
            {"weight": [0.3, 0.5, 0.7, 0.9, 1.2, 1.6]},
            tasks="noise,jpeg,multi",
            select_on="noise",
            note="Chosen on noise σ 25, as before; jpeg and multi are logged for information",
        ),
        Constant(
            "bm3d-alpha",
            "bm3d",
            "bench/solvers/bm3d.py RI_ALPHA, RWI_ALPHA",
            {"ri_alpha": [4e-4, 1.6e-3, 6.4e-3], "rwi_alpha": [5e-3, 2e-2, 8e-2]},
            tasks="blur,multi",
            select_on="blur",
            note="Chosen on blur, as before; multi (which uses the same deblurring) is logged for information",
        ),
        Constant(
            "pnp-jpeg-scale",
            "pnp",
            "methods/pnp.py PlugAndPlay.Params.jpeg_sigma_scale",
            {"jpeg_sigma_scale": [0.8, 1.0, 1.25, 1.5, 2.0, 2.5]},
            tasks="jpeg",
            select_on="jpeg",
            weights="drunet_cpu.pt",
        ),
        Constant(
            "patchnr",
            "patchnr",
            "methods/patchnr.py PatchNR.Params.prior_weight, lr_per_sigma",
            {"prior_weight": [0.003, 0.01, 0.03], "lr_per_sigma": [0.05, 0.1, 0.2]},
            tasks="noise,jpeg,multi",
            select_on="noise,jpeg,multi",
            weights="patchnr_cpu.pt",
            note="The patches per iteration scaled to the quick profile's density at 256² (2 500·(crop/256)²)",
        ),
        Constant(
            "flowprior",
            "flowprior",
            "methods/flowprior.py FlowPrior.Params.prior_weight, lr",
            {"prior_weight": [0.1, 0.3, 1.0], "lr": [0.0025, 0.005, 0.01]},
            tasks="noise,jpeg,multi",
            select_on="noise,jpeg,multi",
            weights="flowprior_default.pt",
        ),
        Constant(
            "doubledip",
            "doubledip",
            "methods/doubledip.py DoubleDIP.Params.warmup, output",
            {"warmup": [0.25, 0.5, 0.75], "output": ["best_fit", "last", "ema"]},
            tasks="noise",
            select_on="noise",
            note="Chosen on noise σ 25 as before (then on coffee); one fit per warm-up gives all three outputs",
        ),
    ]
}

# --------------------------------------------------------------------------- images and observations


def centre_crop(image: np.ndarray, size: int) -> np.ndarray | None:
    """The centre ``size``² crop of an ``H×W×3`` array (all of it with ``size`` 0); None when it is smaller."""
    h, w = image.shape[:2]
    if size <= 0:
        return image
    if min(h, w) < size:
        return None
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def tuning_crops(args: argparse.Namespace, unseen_by: str = "") -> list[tuple[str, torch.Tensor]]:
    """``(split name, (1, 3, crop, crop) float tensor)`` of the chosen tuning images."""
    names = [x for x in args.images.split(",") if x] if args.images else None
    items = load_tuning_images(names, unseen_by=unseen_by or None)
    crops = []
    for name, image in items:
        crop = centre_crop(image, args.crop)
        if crop is None:
            print(f"note: {name} ({image.shape[1]}×{image.shape[0]}) is smaller than the {args.crop} px crop; skipped")
            continue
        crops.append((name, torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)[None]))
    crops = crops[: args.limit] if args.limit else crops
    if not crops:
        raise BenchError(f"no tuning image is at least {args.crop} px; pass a smaller --crop")
    return crops


def observations(crops, tasks: Sequence[str]) -> dict[str, list[tuple[str, torch.Tensor, Any]]]:
    """``task → [(name, clean, observation)]``, the degradations at their defaults, seed 0 (as a cell draws)."""
    out: dict[str, list[tuple[str, torch.Tensor, Any]]] = {}
    for task in tasks:
        cls = get_degradation_class(task)
        degradation = cls(cls.Params())
        out[task] = []
        for name, clean in crops:
            digest = pixel_digest(np.round(clean[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
            out[task].append((name, clean, degradation.degrade(clean, degradation_generator(0, digest, task))))
    return out


def captions(tasks: Sequence[str]) -> dict[str, str]:
    out = {}
    for task in tasks:
        cls = get_degradation_class(task)
        out[task] = cls(cls.Params()).describe()
    return out


# --------------------------------------------------------------------------- grids and the choice


def parse_grid(constant: Constant, overrides: Sequence[str]) -> dict[str, list[Any]]:
    """The grid: the constant's axes, ``--grid PARAM=v1,v2`` replacing one axis; the current default always in."""
    axes = {axis: list(values) for axis, values in constant.axes.items()}
    for text in overrides:
        axis, _, values = text.partition("=")
        if axis not in axes:
            raise BenchError(f"--grid {text}: '{axis}' is not an axis of {constant.name}; use {', '.join(axes)}")
        axes[axis] = [_value(v) for v in values.split(",") if v]
    for axis, value in constant.old().items():
        if value not in axes[axis]:
            axes[axis].append(value)
    return {axis: sorted(values, key=_order) for axis, values in axes.items()}


def _value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def configurations(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def label(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())


def choose(rows: list[dict[str, Any]], old: dict[str, Any], select_on: Sequence[str], min_gain: float) -> dict:
    """The configuration with the best mean PSNR over ``select_on``; the old one unless beaten by ``min_gain`` dB."""

    def score(row: dict[str, Any]) -> float:
        value = float(np.mean([row["tasks"][t]["psnr"] for t in select_on]))
        return -math.inf if math.isnan(value) else value  # a configuration that failed on an image is never chosen

    for row in rows:
        row["score"] = score(row)
    best = max(rows, key=lambda r: r["score"])
    current = next(r for r in rows if r["config"] == old)
    keep = best["score"] - current["score"] < min_gain
    chosen = current if keep else best
    reason = (
        f"best {label(best['config'])} at {best['score']:.3f} dB, the current value {current['score']:.3f} dB: "
        + (f"within {min_gain:g} dB, kept" if keep else f"better by {best['score'] - current['score']:.3f} dB, changed")
    )
    return {"new": chosen["config"], "best": best["config"], "reason": reason}


# --------------------------------------------------------------------------- restoring


def make_method(
    constant: Constant,
    config: dict[str, Any],
    profile: str,
    crop: int,
    checkpoint: str,
    fixed: dict[str, Any] | None = None,
):
    cls = get_method_class(constant.method)
    values = {**cls.profiles.get(profile, {}), **constant.fixed, **(fixed or {}), **config}
    if constant.method == "patchnr":
        values["patches_per_iteration"] = max(1, round(values["patches_per_iteration"] * (crop / 256) ** 2))
    if constant.name == "bm3d-alpha":
        values = {k: v for k, v in values.items() if k not in ("ri_alpha", "rwi_alpha")}
    if checkpoint:
        values["checkpoint"] = checkpoint
    return cls(build_params(cls.Params, values, owner=constant.method))


@contextmanager
def bm3d_alphas(config: dict[str, Any]) -> Iterator[None]:
    """Set bench.solvers.bm3d's RI/RWI α for the duration (module constants, read at each call)."""
    from bench.solvers import bm3d

    saved = bm3d.RI_ALPHA, bm3d.RWI_ALPHA
    bm3d.RI_ALPHA = float(config.get("ri_alpha", saved[0]))
    bm3d.RWI_ALPHA = float(config.get("rwi_alpha", saved[1]))
    try:
        yield
    finally:
        bm3d.RI_ALPHA, bm3d.RWI_ALPHA = saved


def restore_all(method, pairs, config) -> tuple[list[float], float, list[str]]:
    """PSNR per image (NaN where the method failed), seconds per image, and the failures of ``method`` on ``pairs``."""
    scores, failures, start = [], [], time.perf_counter()
    for name, clean, obs in pairs:
        ctx = RestoreContext(generator=torch.Generator().manual_seed(derived_seed("tune", name)))
        try:
            with bm3d_alphas(config) if "ri_alpha" in config else _nothing():
                out = method.restore(obs, ctx)
            scores.append(psnr(clean, out.clamp(0, 1)))
        except Exception as err:  # a configuration that fails on an image cannot be chosen; the grid goes on
            scores.append(float("nan"))
            failures.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            print(f"note: {label(config)} failed on {failures[-1]}", flush=True)
    return scores, (time.perf_counter() - start) / len(pairs), failures


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def reusable_rows(args, constant: Constant, record: dict[str, Any]) -> list[dict[str, Any]]:
    """With ``--reuse``: the rows of this constant's existing log measured on the same images, crops, profile,
    degradations and checkpoint (each keeps the commit it was measured at); nothing otherwise."""
    path = Path(args.out_dir) / f"{args.log_name or constant.name}.json"
    if not args.reuse or not path.is_file():
        return []
    old = json.loads(path.read_text())
    same = ("images", "crop", "profile", "captions", "checkpoint", "fixed")
    if any((old.get(k) or None) != (record.get(k) or None) for k in same):
        print(f"note: {path} was measured on other images or settings; nothing reused")
        return []
    rows = [{**row, "commit": row.get("commit", old["commit"])} for row in old["rows"]]
    print(f"reusing {len(rows)} row(s) of {path} (commit {old['commit']})")
    return rows


def grid_rows(constant, configs, obs, args, reused: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    rows = []
    for config in configs:
        previous = next((r for r in reused if r["config"] == config and set(obs) <= set(r["tasks"])), None)
        if previous is not None:
            rows.append(previous)
            print(
                f"| {label(config)} | " + " | ".join(f"{previous['tasks'][t]['psnr']:.2f}" for t in obs) + " | (reused)"
            )
            continue
        method = make_method(constant, config, args.profile, args.crop, args.checkpoint, args.fixed_params)
        row: dict[str, Any] = {"config": config, "tasks": {}, "commit": args.commit}
        for task, pairs in obs.items():
            scores, seconds, failures = restore_all(method, pairs, config)
            row["tasks"][task] = {"psnr": float(np.mean(scores)), "per_image": scores, "seconds": seconds}
            if failures:
                row["tasks"][task]["failures"] = failures
        rows.append(row)
        print(f"| {label(config)} | " + " | ".join(f"{row['tasks'][t]['psnr']:.2f}" for t in obs) + " |", flush=True)
    return rows + extra_rows(reused, rows, obs)


def extra_rows(reused: Sequence[dict[str, Any]], rows: list[dict[str, Any]], obs) -> list[dict[str, Any]]:
    """Reused rows outside this run's grid (the same images and settings): kept in the log and the choice."""
    extra = [r for r in reused if r["config"] not in [row["config"] for row in rows] and set(obs) <= set(r["tasks"])]
    for row in extra:
        print(
            f"| {label(row['config'])} | " + " | ".join(f"{row['tasks'][t]['psnr']:.2f}" for t in obs) + " | (reused)"
        )
    return extra


def doubledip_rows(constant, axes, obs, args, reused: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One Double-DIP fit per warm-up; its iterates give the ``best_fit``, ``last`` and ``ema`` outputs exactly.

    The fit's trajectory does not depend on ``output`` (it only picks which
    iterate is returned), so the clean-layer iterates are recorded (the first
    of the two ``centre_crop`` calls of each iteration) with the data term of
    each (the trace's ``loss``), and the three outputs are formed as
    :func:`bench.solvers.dip_double.fit_double_dip` forms them. The fit itself
    returns ``best_fit``; it must equal the recorded one, or the script stops.
    """
    from bench.solvers import dip_double

    rows = {
        (w, o): {"config": {"warmup": w, "output": o}, "tasks": {}, "commit": args.commit}
        for w in axes["warmup"]
        for o in axes["output"]
    }
    ema = get_method_class("doubledip").Params().ema
    for warmup in axes["warmup"]:
        previous = {
            o: next(
                (r for r in reused if r["config"] == {"warmup": warmup, "output": o} and set(obs) <= set(r["tasks"])),
                None,
            )
            for o in axes["output"]
        }
        if all(previous.values()):
            for o, row in previous.items():
                rows[(warmup, o)] = row
                print(
                    f"| {label(row['config'])} | "
                    + " | ".join(f"{row['tasks'][t]['psnr']:.2f}" for t in obs)
                    + " | (reused)"
                )
            continue
        method = make_method(
            constant, {"warmup": warmup, "output": "best_fit"}, args.profile, args.crop, "", args.fixed_params
        )
        for task, pairs in obs.items():
            scores: dict[str, list[float]] = {o: [] for o in axes["output"]}
            start = time.perf_counter()
            for name, clean, ob in pairs:
                iterates: list[torch.Tensor] = []
                original = dip_double.nets.centre_crop

                def record(x, shape, _original=original, _iterates=iterates):
                    out = _original(x, shape)
                    _iterates.append(out.detach().float().clone())
                    return out

                ctx = RestoreContext(generator=torch.Generator().manual_seed(derived_seed("tune", name)))
                dip_double.nets.centre_crop = record
                try:
                    returned = method.restore(ob, ctx)
                finally:
                    dip_double.nets.centre_crop = original
                xs, losses = iterates[0::2], ctx.trace["loss"]
                assert len(xs) == len(losses), (len(xs), len(losses))
                best_i = min(range(len(losses)), key=lambda i: (losses[i], -i))  # the last of equal minima (<=)
                outputs = {"best_fit": xs[best_i], "last": xs[-1]}
                average = xs[0].clone()
                for x in xs[1:]:
                    average.lerp_(x, 1.0 - ema)
                outputs["ema"] = average
                if not torch.allclose(outputs["best_fit"].clamp(0, 1), returned, atol=1e-6):
                    raise RuntimeError(
                        "the recorded best_fit iterate differs from the fit's result: the solver changed"
                    )
                for o in axes["output"]:
                    scores[o].append(psnr(clean, outputs[o].clamp(0, 1)))
            seconds = (time.perf_counter() - start) / len(pairs)
            for o in axes["output"]:
                rows[(warmup, o)]["tasks"][task] = {
                    "psnr": float(np.mean(scores[o])),
                    "per_image": scores[o],
                    "seconds": seconds,
                }
        for o in axes["output"]:
            row = rows[(warmup, o)]
            print(
                f"| {label(row['config'])} | " + " | ".join(f"{row['tasks'][t]['psnr']:.2f}" for t in obs) + " |",
                flush=True,
            )
    return list(rows.values()) + extra_rows(reused, list(rows.values()), obs)


# --------------------------------------------------------------------------- logs


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except Exception:
            return "?"

    return {
        "command": "python benchmarks/tune_constants.py " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start, "
        f"{torch.get_num_threads()} thread(s)",
    }


def write_log(args, name: str, record: dict[str, Any], markdown: str) -> None:
    if args.no_log:
        return
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(f"log: {out / name}.md, {out / name}.json")


def grid_markdown(constant: Constant, record: dict[str, Any]) -> str:
    tasks = list(record["captions"])
    lines = [
        f"# `{constant.name}`: {constant.where}",
        "",
        f"Chosen on the tuning split (`bench/training/splits.py`) by `benchmarks/tune_constants.py`, never on "
        f"evaluation images. **{label(record['old'])} → {label(record['new'])}** ({record['reason']}).",
        "",
        f"- Command: `{record['command']}` ({record['date']}, commit {record['commit']}, torch {record['torch']}; "
        f"{record['machine']})",
        f"- Images ({len(record['images'])}, centre {record['crop']}² crops): {', '.join(record['images'])}"
        + (f"; the split images {constant.weights} never saw" if constant.weights else ""),
        f"- Profile `{record['profile']}`"
        + "".join(
            f", {k}={v:g}" if isinstance(v, float) else f", {k}={v}" for k, v in (record.get("fixed") or {}).items()
        )
        + "; degradations at their defaults, seed 0: "
        + "; ".join(f"{t}: {c}" for t, c in record["captions"].items()),
        f"- Criterion: mean PSNR (dB, RGB) over {', '.join(record['select_on'])}; the current value is kept unless "
        f"beaten by {record['min_gain']:g} dB." + (f" {constant.note}." if constant.note else ""),
        "",
        "| configuration | " + " | ".join(f"{t} PSNR" for t in tasks) + " | score | s/crop |",
        "|---|" + "---:|" * (len(tasks) + 2),
        "| input (`identity`) | " + " | ".join(f"{record['input'][t]:.2f}" for t in tasks) + " | | |",
    ]
    for row in record["rows"]:
        marks = (" (old)" if row["config"] == record["old"] else "") + (
            " **(new)**" if row["config"] == record["new"] else ""
        )
        seconds = sum(row["tasks"][t]["seconds"] for t in tasks) / len(tasks)
        lines.append(
            f"| {label(row['config'])}{marks} | "
            + " | ".join(f"{row['tasks'][t]['psnr']:.2f}" for t in tasks)
            + f" | {row['score']:.3f} | {seconds:.1f} |"
        )
    failed = [
        f"{label(r['config'])} on {t}: {'; '.join(v['failures'])}"
        for r in record["rows"]
        for t, v in r["tasks"].items()
        if v.get("failures")
    ]
    if failed:
        lines += ["", "Failures (a configuration that fails on an image is never chosen; its mean is `nan`):", ""]
        lines += [f"- {f}" for f in failed]
    reused = [
        f"{label(r['config'])} (commit {r['commit']})"
        for r in record["rows"]
        if r.get("commit", record["commit"]) != record["commit"]
    ]
    if reused:
        lines += [
            "",
            "Rows reused from an earlier run of the same images and settings (`--reuse`): " + "; ".join(reused) + ".",
        ]
    lines += ["", "Per-image PSNR: the `.json` file beside this one.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- subcommands


def run_grid(args: argparse.Namespace, argv: Sequence[str]) -> int:
    constant = CONSTANTS[args.command]
    torch.set_num_threads(args.threads)
    axes = parse_grid(constant, args.grid)
    old = constant.old()
    tasks = (args.tasks or constant.tasks).split(",")
    select_on = (args.select_on or constant.select_on).split(",")
    if not set(select_on) <= set(tasks):
        raise BenchError(f"--select-on {','.join(select_on)} must be among --tasks {','.join(tasks)}")
    args.fixed_params = {k: _value(v) for k, _, v in (item.partition("=") for item in args.fixed)}
    unseen_by = Path(args.checkpoint).name if args.checkpoint else constant.weights
    if args.checkpoint and Path(args.checkpoint).name not in SHIPPED_WEIGHTS_TRAINED_ON:
        print(
            f"note: {args.checkpoint} is not a shipped checkpoint: assumed trained without the split (as trainers now are)"
        )
    crops = tuning_crops(args, unseen_by)
    obs = observations(crops, tasks)
    record: dict[str, Any] = {
        "constant": constant.name,
        "where": constant.where,
        **provenance(argv),
        "images": [name for name, _ in crops],
        "crop": args.crop,
        "profile": args.profile,
        "checkpoint": args.checkpoint,
        "fixed": args.fixed_params,
        "captions": captions(tasks),
        "select_on": select_on,
        "min_gain": args.min_gain,
        "grid": axes,
        "old": old,
        "input": {
            t: float(np.mean([psnr(c, o.operator.init(o.y).clamp(0, 1)) for _, c, o in pairs]))
            for t, pairs in obs.items()
        },
    }
    args.commit = record["commit"]
    print(
        f"{constant.name}: {len(crops)} tuning crops of {args.crop}² ({', '.join(record['images'])}), profile {args.profile}"
    )
    print("| configuration | " + " | ".join(f"{t} PSNR" for t in tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    print("| input | " + " | ".join(f"{record['input'][t]:.2f}" for t in tasks) + " |")
    if constant.name == "doubledip":
        rows = doubledip_rows(constant, axes, obs, args, reusable_rows(args, constant, record))
    else:
        rows = grid_rows(constant, configurations(axes), obs, args, reusable_rows(args, constant, record))
    record["rows"] = sorted(rows, key=lambda r: tuple(_order(v) for v in r["config"].values()))
    record.update(choose(rows, old, select_on, args.min_gain))
    print(f"{constant.name}: old {label(old)} → new {label(record['new'])} ({record['reason']})")
    write_log(args, args.log_name or constant.name, record, grid_markdown(constant, record))
    return 0


JPEG_QUALITIES = (5, 10, 20, 30, 50, 75, 90, 100)


def run_jpeg_sigma(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Measure the RMS error of the suite's JPEG (Pillow) per quality on the split (full images by default)."""
    import inspect

    from bench.physics import jpeg

    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    signature = inspect.signature(jpeg.pillow_jpeg).parameters
    subsamplings = [s for s in args.subsampling.split(",") if s] if "subsampling" in signature else ["default"]
    crops = tuning_crops(args)
    record: dict[str, Any] = {
        "constant": "jpeg-sigma",
        "where": "bench/physics/jpeg.py jpeg_effective_sigma",
        **provenance(argv),
        "images": [name for name, _ in crops],
        "crop": args.crop,
        "definition": "the mean over images of the per-image RMS error (0-255 scale) of Pillow JPEG of the 8-bit "
        "image, as the old table was (it is reproduced by this on the first 30 bsd200 images: 12.3 at quality 10)",
        "table": {},
    }
    print(f"jpeg-sigma: {len(crops)} tuning images ({'full size' if not args.crop else f'{args.crop}² crops'})")
    for sub in subsamplings:
        kwargs = {} if sub == "default" else {"subsampling": sub}
        old_kwargs = (
            {}
            if sub == "default" or "subsampling" not in inspect.signature(jpeg.jpeg_effective_sigma).parameters
            else {"subsampling": sub}
        )
        rows = []
        for q in qualities:
            per_image = [math.sqrt(float((jpeg.pillow_jpeg(c, q, **kwargs) - c).pow(2).mean())) * 255 for _, c in crops]
            sigma = float(np.mean(per_image))
            old = jpeg.jpeg_effective_sigma(q, **old_kwargs) * 255
            rows.append(
                {
                    "quality": q,
                    "old": round(old, 2),
                    "new": round(sigma, 1),
                    "measured": sigma,
                    "per_image_min": min(per_image),
                    "per_image_max": max(per_image),
                    "per_image": per_image,
                }
            )
            print(
                f"{sub} quality {q:3d}: old {old:5.2f}/255 → measured {sigma:5.2f}/255 "
                f"(images {min(per_image):.1f} … {max(per_image):.1f})",
                flush=True,
            )
        record["table"][sub] = rows
    lines = [
        "# `jpeg-sigma`: bench/physics/jpeg.py jpeg_effective_sigma",
        "",
        "Measured (not tuned) on the tuning split (`bench/training/splits.py`) by `benchmarks/tune_constants.py`: the "
        "RMS error of the suite's Pillow JPEG, " + record["definition"] + ".",
        "",
        f"- Command: `{record['command']}` ({record['date']}, commit {record['commit']}; {record['machine']})",
        f"- Images ({len(crops)}, {'full size' if not args.crop else f'centre {args.crop}² crops'}): "
        + ", ".join(record["images"]),
        "",
        "| subsampling | quality | old (/255) | measured (/255) | per image (/255) |",
        "|---|---:|---:|---:|---|",
    ]
    for sub, rows in record["table"].items():
        for r in rows:
            lines.append(
                f"| {sub} | {r['quality']} | {r['old']:.2f} | {r['measured']:.2f} | "
                f"{r['per_image_min']:.1f} … {r['per_image_max']:.1f} |"
            )
    write_log(args, "jpeg-sigma", record, "\n".join(lines) + "\n")
    return 0


def run_split(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Print the split: each name, its size, and which shipped weights were trained on it."""
    items = dict(load_tuning_images(None)) if train_root().is_dir() else {}
    print(f"tuning split: {len(TUNING_SPLIT)} images under {train_root()} (bench/training/splits.py)")
    for name in TUNING_SPLIT:
        seen = [w for w, names in SHIPPED_WEIGHTS_TRAINED_ON.items() if name in names]
        size = f"{items[name].shape[1]}×{items[name].shape[0]}" if name in items else "not found"
        print(f"{name:20s} {size:9s} trained on by: {', '.join(seen) or 'none'}")
    return 0


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--images", default="", help="comma-separated split names or image paths (default: the split)")
    common.add_argument("--limit", type=int, default=0, help="the first N images (0: all)")
    common.add_argument("--threads", type=int, default=1)
    common.add_argument("--out-dir", default=str(DEFAULT_OUT))
    common.add_argument("--no-log", action="store_true", help="write no log")
    sub.add_parser("split", help=run_split.__doc__)
    jpeg = sub.add_parser("jpeg-sigma", parents=[common], help=run_jpeg_sigma.__doc__)
    jpeg.add_argument("--crop", type=int, default=0, help="centre crops (0: full images)")
    jpeg.add_argument("--qualities", default=",".join(map(str, JPEG_QUALITIES)))
    jpeg.add_argument("--subsampling", default="4:2:0,4:4:4")
    for name, constant in CONSTANTS.items():
        p = sub.add_parser(name, parents=[common], help=f"{constant.where} (tasks {constant.tasks})")
        p.add_argument(
            "--grid",
            action="append",
            default=[],
            metavar="PARAM=V1,V2",
            help="axes: " + "; ".join(f"{a}={','.join(map(str, v))}" for a, v in constant.axes.items()),
        )
        p.add_argument("--crop", type=int, default=128)
        p.add_argument("--profile", default="quick")
        p.add_argument("--tasks", default="", help=f"default {constant.tasks}")
        p.add_argument("--select-on", default="", help=f"default {constant.select_on}")
        p.add_argument("--min-gain", type=float, default=0.05)
        p.add_argument("--checkpoint", default="", help="weights of a learned prior (default: the shipped ones)")
        p.add_argument(
            "--fixed",
            action="append",
            default=[],
            metavar="PARAM=VALUE",
            help="a method parameter held at VALUE (over the profile's), e.g. iterations=1200",
        )
        p.add_argument("--log-name", default="", help=f"the log's file name (default {name})")
        p.add_argument(
            "--reuse",
            action="store_true",
            help="reuse the rows of the existing log measured on the same images and settings (extend a grid)",
        )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace, Sequence[str]], int]
    run = {"split": run_split, "jpeg-sigma": run_jpeg_sigma}.get(args.command, run_grid)
    try:
        return run(args, argv)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1) or 1


if __name__ == "__main__":
    sys.exit(main())
