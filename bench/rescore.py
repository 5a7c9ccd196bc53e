"""``bench rescore``: (re)compute metrics of stored cells from their restored PNGs, without re-running methods.

A cell stored while the LPIPS weights were unavailable has no LPIPS, and the cache serves it as it is;
rescoring fills it in. The clean image is reloaded from the dataset the row names (its id, the
profile's crop or the crop the stored image's size reveals) and used only when its content digest
equals the row's ``image_digest``: a replaced or edited image is skipped with a message, never scored
against. Each row is updated in one transaction (:meth:`bench.store.Store.update_metrics`), only for the
metrics asked for; a stored value is never replaced by a missing one, and the implementation behind
each new value is recorded in the row's ``metric_impl``. ``bench run`` uses the same machinery
(:func:`lpips_for_run`): a run that finds LPIPS available fills it in for the grid's cached cells
stored without it, and a run that finds it unavailable says so once, whatever its number of workers.

Example:
    >>> import tempfile
    >>> from bench.runner import RunConfig, run_grid
    >>> results = tempfile.mkdtemp()
    >>> _ = run_grid(RunConfig(methods=["identity"], degradations=["noise"], limit=1, profile="smoke",
    ...     results_dir=results, lpips=False, progress=False))
    >>> rescore(results, metrics=["psnr"], only_missing=False).line()
    'rescored 1 row(s): 0 value(s) filled, 0 changed, 1 unchanged; skipped 0'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchError, UsageError
from bench.metric_specs import METRIC_NAMES
from bench.params import suggest


@dataclass
class RescoreSummary:
    """What a rescore did: rows written, values filled (were missing), changed or unchanged, rows skipped.

    >>> RescoreSummary(rows=2, filled=2).line()
    'rescored 2 row(s): 2 value(s) filled, 0 changed, 0 unchanged; skipped 0'
    """

    rows: int = 0
    filled: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"rescored {self.rows} row(s): {self.filled} value(s) filled, {self.changed} changed, "
                f"{self.unchanged} unchanged; skipped {len(self.skipped)}")


def parse_metrics(text: str | None) -> list[str]:
    """``"lpips,psnr"`` -> ``["lpips", "psnr"]``; empty means all; unknown names are usage errors.

    >>> parse_metrics(None) == list(METRIC_NAMES), parse_metrics("lpips")
    (True, ['lpips'])
    """
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if name not in METRIC_NAMES:
            raise UsageError(f"--metrics: unknown metric '{name}'.{suggest(name, METRIC_NAMES)} "
                             f"Available: {', '.join(METRIC_NAMES)}.")
    return list(dict.fromkeys(names)) or list(METRIC_NAMES)


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_crop(row: dict[str, Any]) -> int | None:
    """PSNR-Y's border crop for a stored row: its sr degradation's scale factor, else None (no PSNR-Y)."""
    from bench.compute import metric_crop

    return metric_crop(str(row.get("degradation")), row.get("degradation_params"))


def check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device '{device}' is not a torch device; use cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: this machine has no CUDA GPU; use --device cpu.")


def lpips_suite(device: str) -> tuple[Any, str]:
    """A MetricSuite with LPIPS, and "" when LPIPS loaded, else why not (the warning metrics would print is held
    back: each command says it its own way, naming only its own options)."""
    from bench.metrics import MetricSuite

    suite = MetricSuite(lpips=True, device=device)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        available = suite.lpips.available
    return suite, "" if available else (suite.lpips.missing or "its weights could not be loaded")


def lpips_or_error(device: str) -> Any:
    """A MetricSuite with LPIPS loaded, or an error saying why LPIPS is unavailable (before any row is written)."""
    from bench.metrics import LPIPS_ENV

    suite, why = lpips_suite(device)
    if why:
        raise BenchError(f"cannot compute LPIPS: {why} (set {LPIPS_ENV}, e.g. to ../shared/weights/"
                         "alexnet_features.pth); nothing was rescored.")
    return suite


def store_scores(store: Any, summary: RescoreSummary, row: dict[str, Any], label: str, scores: dict[str, Any],
                 suite: Any) -> None:
    """Write the values of ``scores`` that are not missing into ``row``'s cell and count them in ``summary``."""
    from bench.compute import clean_scores

    values = {m: v for m, v in clean_scores(scores).items() if v is not None}  # never replace by a missing one
    if not values:
        return
    crop = row_crop(row) if "psnr_y" in values else None
    if not store.update_metrics(row["key"], row["output_path"], values, suite.implementations(values, crop=crop)):
        summary.skipped.append(f"{label}: the cell was recomputed while rescoring; run `bench rescore` again.")
        return
    summary.rows += 1
    for metric, value in values.items():
        old = row[metric]
        if missing(old):
            summary.filled += 1
        elif old != value:
            summary.changed += 1
        else:
            summary.unchanged += 1


def lpips_for_run(config: Any, store: Any, cells: list[Any], done: set[str], computing: bool) -> None:
    """``bench run``'s LPIPS, before its cells run: when LPIPS is wanted (no ``--no-lpips``) and there is something
    to score (``computing``, or cached ok cells of the grid without LPIPS), load it once here. Available: fill in
    the cached cells' LPIPS from their stored images (as ``bench rescore --metrics lpips`` would) and say how many.
    Unavailable: one warning for the whole run (workers hold theirs back, :mod:`bench.executors`)."""
    import sys

    from bench.compute import to_tensor
    from bench.metrics import LPIPS_ENV
    from bench.store import CorruptImageError

    if not config.lpips:
        return
    cached = {c.key: c for c in cells if c.key in done and c.image is not None}
    lacking = [row for row in store.rows("ok") if row["key"] in cached and missing(row["lpips"])] if cached else []
    if not (lacking or computing):
        return
    device = config.device if getattr(config, "executor", "local") == "local" else "cpu"
    suite, why = lpips_suite(device)
    if why:
        warnings.warn(f"LPIPS is missing: {why}; set {LPIPS_ENV} to a local AlexNet state dict (README: Offline "
                      "weights) or pass --no-lpips. LPIPS is recorded as missing; `bench rescore --metrics lpips` "
                      "fills it in later.", stacklevel=2)
        return
    summary = RescoreSummary()
    for row in lacking:
        cell = cached[row["key"]]
        try:
            restored = store.read_image(row["output_path"])
        except (FileNotFoundError, CorruptImageError, TypeError):
            continue  # the run recomputes a cell whose stored image is gone or damaged
        label = f"{row['method_label']} on {row['degradation_label']}/{row['image']} seed {row['seed']}"
        scores = suite.score(to_tensor(cell.image.image), to_tensor(restored), ["lpips"])
        store_scores(store, summary, row, label, scores, suite)
    if summary.filled:
        print(f"filled LPIPS of {summary.filled} cached cell(s) stored without it (its AlexNet weights are "
              "available now)", file=sys.stderr, flush=True)


def rescore(results_dir: str | Path, metrics: Collection[str] | None = None, only_missing: bool = True,
            device: str = "cpu", methods: Collection[str] | None = None, degradations: Collection[str] | None = None,
            dataset: str | None = None, profile: str | None = None, data_root: str | None = None,
            progress: bool = False) -> RescoreSummary:
    """Compute ``metrics`` (default all) of the ok rows matching the filters, from their stored images."""
    from bench.compute import to_tensor
    from bench.figures import CleanImages
    from bench.metrics import MS_SSIM_MIN_SIDE, MetricSuite
    from bench.selection import select_rows
    from bench.store import DB_NAME, CorruptImageError, Store

    names = list(metrics or METRIC_NAMES)
    check_device(device)
    if not (Path(results_dir) / DB_NAME).is_file():
        raise BenchError(f"no results in '{results_dir}'; run `bench run` first or pass --results-dir.")
    store = Store(results_dir)  # writable: a read-only store gets the usual clear error
    summary = RescoreSummary()
    try:
        rows = select_rows(store.dataframe(), methods, degradations, dataset, profile, status="ok")
        if rows.empty:
            raise BenchError("no successfully computed cells match the filters.")
        plan = [(row, [m for m in names if not only_missing or missing(row[m])]) for row in rows.to_dict("records")]
        plan = [(row, todo) for row, todo in plan if todo]
        needs_lpips = any("lpips" in todo for _, todo in plan)
        suite = lpips_or_error(device) if needs_lpips else MetricSuite(lpips=False, device=device)
        clean_images = CleanImages(data_root)
        if progress and plan:
            from tqdm.auto import tqdm

            plan = tqdm(plan, desc="rescore", unit="row")
        for row, todo in plan:
            label = f"{row['method_label']} on {row['degradation_label']}/{row['image']} seed {row['seed']}"
            try:
                if not isinstance(row["output_path"], str):
                    raise FileNotFoundError(row["output_path"])
                restored = store.read_image(row["output_path"])
            except FileNotFoundError:
                summary.skipped.append(f"{label}: its restored image '{row['output_path']}' is missing; run "
                                       "`bench run` with the same options to recompute it.")
                continue
            except CorruptImageError as err:
                summary.skipped.append(f"{label}: {err}")
                continue
            if min(restored.shape[:2]) < MS_SSIM_MIN_SIDE and "ms_ssim" in todo:
                todo = [m for m in todo if m != "ms_ssim"]  # not defined for images this small: stays missing
            if not todo:
                continue
            clean = clean_images.get(str(row["dataset"]), str(row["profile"]), str(row["image"]),
                                     str(row["image_digest"]), max(restored.shape[:2]))
            if clean is None or clean.shape != restored.shape:
                summary.skipped.append(
                    f"{label}: clean image '{row['image']}' not found in {row['dataset']}, or its content changed "
                    f"since the run (digest {row['image_digest']} expected); pass --data-root if it moved.")
                continue
            scores = suite.score(to_tensor(clean), to_tensor(restored), todo, crop=row_crop(row))  # crop: sr's PSNR-Y
            store_scores(store, summary, row, label, scores, suite)
    finally:
        store.close()
    return summary


def csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("rescore")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--metrics", "metric_names", help="Comma-separated metrics to compute (default all: "
              + ",".join(METRIC_NAMES) + ").")
@click.option("--only-missing/--no-only-missing", default=True, show_default=True,
              help="Only fill values that are missing; --no-only-missing recomputes and replaces them all.")
@click.option("--device", default="cpu", show_default=True, help="torch device for LPIPS.")
@click.option("--methods", "-m", help="Only these methods.")
@click.option("--degradations", "-d", help="Only these degradations.")
@click.option("--dataset", help="Only this dataset.")
@click.option("--profile", help="Only this profile.")
@click.option("--data-root", help="DIV2K location, to reload clean images of the div2k dataset.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on when a terminal).")
def rescore_command(results_dir: str, metric_names: str | None, only_missing: bool, device: str,
                    methods: str | None, degradations: str | None, dataset: str | None, profile: str | None,
                    data_root: str | None, progress: bool | None) -> None:
    """Compute metrics of stored cells from their restored images and the clean images, without re-running
    methods (e.g. LPIPS of cells stored without its weights); records the implementation of each value.

    A row whose clean image cannot be found, or changed since the run, is skipped with a message (exit 1)."""
    import sys

    summary = rescore(results_dir, parse_metrics(metric_names), only_missing, device, csv_list(methods),
                      csv_list(degradations), dataset, profile, data_root,
                      progress=sys.stderr.isatty() if progress is None else progress)
    for line in summary.skipped[:10]:
        click.echo(f"skipped: {line}", err=True)
    if len(summary.skipped) > 10:
        click.echo(f"skipped: ... and {len(summary.skipped) - 10} more", err=True)
    click.echo(summary.line())
    if summary.skipped:
        sys.exit(1)
