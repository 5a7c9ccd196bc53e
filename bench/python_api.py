"""The Python API for notebooks and scripts: ``bench.run``, ``bench.restore`` and ``bench.report``.

Each is the command line's code path with Python values in and out, not a second implementation:

* :func:`run` builds its configuration as ``bench run`` does (:func:`bench.config.run_config_from_options`: one
  schema, the same defaults and checks, a ``config`` TOML file too) and runs it with the same call
  (:func:`bench.keycache.run_or_recall`: remembered keys, the store's cache, :func:`bench.runner.run_cells`). It
  returns the run's cells as the store holds them, one row per method × degradation × image × seed.
* :func:`restore` builds one cell as the grid does (:func:`bench.runner.build_cells`) and computes it with
  :func:`bench.compute.execute_cell`: the cache key, the random draws and the scores of the cell of that image in a
  ``bench run`` with the same seed and profile. Nothing is stored.
* :func:`report` returns what ``bench report`` prints (:func:`bench.cli.report_text`).

Bad input raises the :class:`bench.errors.BenchError` that the command line turns into its ``error:`` line (a
:class:`~bench.errors.UsageError`, with its did-you-mean, for unknown names and bad values), never ``SystemExit``.
As on the command line, ``note:`` lines and the ``computed N, cached M, failed K`` line go to stderr; Python
warnings keep Python's format. ``import bench`` stays cheap: ``bench.run``, ``bench.restore`` and
``bench.Restoration`` load this module on first use, and ``bench.report`` is the module :mod:`bench.report`,
which called is :func:`report` (``bench/__init__.py``).

Example (``examples/notebook_api.py`` is a longer one):
    >>> import tempfile, bench
    >>> df = bench.run(methods="identity", degradations="noise", limit=1, profile="smoke", lpips=False,
    ...                results_dir=tempfile.mkdtemp())
    >>> df[["method", "degradation", "image", "status"]].values.tolist(), df["psnr"].round(2).tolist()
    ([['identity', 'noise', 'astronaut', 'ok']], [21.13])
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import BenchError, ImageError, ParameterError, UsageError, storage_writes, write_fault
from bench.metric_specs import METRIC_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from bench.datasets import ImageItem

DEFAULT_RESULTS_DIR = "results"  # bench run's default: the API and the command line share the store and its cache
REPORT_FORMATS = ("markdown", "latex", "html", "csv")
# The first columns of run()'s frame (then one per overridden parameter, then every other stored column).
LEAD_COLUMNS = ("method", "degradation", "image", "seed", "status", *METRIC_NAMES, "input_psnr", "seconds")


def run(methods: str | Iterable[str] | None = None, degradations: str | Iterable[str] | None = None,
        dataset: str | None = None, *, limit: int | None = None, crop: int | None = None, profile: str | None = None,
        seeds: int | str | Iterable[int] | None = None, overrides: Mapping[str, Any] | None = None,
        results_dir: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
        lpips: bool | None = None, device: str | None = None, jobs: int | None = None, executor: str | None = None,
        scheduler: str | None = None, gpus_per_cell: float | None = None, progress: bool | None = None,
        config: str | os.PathLike | None = None) -> pd.DataFrame:
    """Run a grid as ``bench run`` does and return its cells as a tidy DataFrame; cached cells are not recomputed.

    The arguments are ``bench run``'s options, ``None`` meaning "not given" (the config file's value or the
    command line's default): ``methods`` and ``degradations`` (lists or comma-separated strings; default
    identity,tv,flowprior and noise,jpeg,multi), ``dataset`` (``builtin``, ``folder:PATH``, ``div2k``), ``limit``,
    ``crop``, ``profile`` (``smoke``, ``quick``, ``paper``), ``seeds`` (an int or a list), ``overrides`` (``--set``
    as a dict: ``{"tv.weight": [0.5, 0.9], "noise.sigma": 50}``, or ``{"tv": {"weight": 0.9}}`` like a config
    file's ``[params]``; as there, a list is a grid and ``[[8, 16]]`` one list value), ``results_dir`` (default
    ``results``, the command line's: a notebook and ``bench run``/``bench report`` in the same folder share the
    store and its cache; pass a ``tempfile.mkdtemp()`` for a throwaway one), ``data_root``, ``lpips`` (False:
    ``--no-lpips``), ``device``, ``jobs``, ``executor``, ``scheduler``, ``gpus_per_cell``, ``progress`` (default:
    bars when stderr is a terminal) and ``config`` (a TOML file, ``--config``; arguments given here win).

    Returns one row per method × degradation × image × seed, in grid order, with the values the store holds:
    ``method``, ``degradation``, one column per overridden parameter (``"tv.weight"``: the value the row ran
    with; NaN or None in rows of other plugins), ``image``, ``seed``, ``status`` (``ok``, ``failed``, ``n/a``), the
    metric columns (``psnr``, ``ssim``, ``ms_ssim``, ``lpips``, ``psnr_y``; NaN where missing), ``input_psnr``,
    ``seconds``, then every other stored column (``method_label``, ``method_params`` as JSON, ``error``,
    ``output_path``, ``key``, ...). ``df.attrs`` holds the counts (``computed``, ``cached``, ``failed``, ``na``)
    and ``results_dir``. Failed cells are rows with their ``error`` and one Python warning, not an exception (the
    command line exits 1); jobs > 1 in a script needs the ``if __name__ == "__main__":`` guard of
    multiprocessing.

    Raises :class:`bench.errors.BenchError` (a :class:`~bench.errors.UsageError` for names and values) on bad input.

    Example:
        >>> import tempfile
        >>> results = tempfile.mkdtemp()
        >>> df = run(methods=["identity", "tv"], degradations=["noise"], dataset="builtin", limit=1,
        ...          profile="smoke", overrides={"tv.weight": [0.5, 0.9]}, lpips=False, results_dir=results)
        >>> df[["method_label", "image", "status"]].values.tolist()
        [['identity', 'astronaut', 'ok'], ['tv[weight=0.5]', 'astronaut', 'ok'], ['tv[weight=0.9]', 'astronaut', 'ok']]
        >>> df["tv.weight"].tolist()  # the overridden parameter; NaN: a row of another method
        [nan, 0.5, 0.9]
        >>> bool(df.loc[2, "psnr"] > df.loc[0, "psnr"])  # TV denoises
        True
        >>> again = run(methods=["identity", "tv"], degradations=["noise"], dataset="builtin", limit=1,
        ...             profile="smoke", overrides={"tv.weight": [0.5, 0.9]}, lpips=False, results_dir=results)
        >>> again.attrs["computed"], again.attrs["cached"], again["psnr"].equals(df["psnr"])
        (0, 3, True)
        >>> run(methods=["tvv"], degradations=["noise"], profile="smoke", results_dir=results)
        Traceback (most recent call last):
        bench.errors.UnknownNameError: unknown method 'tvv'. Did you mean 'tv'? Available: ...
    """
    from bench.config import run_config_from_options
    from bench.keycache import run_or_recall
    from bench.stored_images import recomputed_warnings

    options = {"methods": _names(methods), "degradations": _names(degradations), "dataset": dataset, "limit": limit,
               "crop": crop, "profile": profile, "seeds": _seeds(seeds), "results_dir": _path(results_dir),
               "data_root": _path(data_root), "lpips": lpips, "device": device, "jobs": jobs, "executor": executor,
               "scheduler": scheduler, "gpus_per_cell": gpus_per_cell, "progress": progress,
               "config_path": _path(config)}
    with user_errors():
        run_config = run_config_from_options(options, parameter_tables(overrides))
        summary = run_or_recall(run_config)
        frame = cells_frame(run_config.results_dir, summary.keys, run_config.overrides)
    for line in recomputed_warnings(summary.corrupt, summary.missing):  # damaged or absent stored PNGs
        print(line, file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    if summary.failed:
        more = f" (and {summary.failed - 1} more)" if summary.failed > 1 else ""
        warnings.warn(f"{summary.failed} cell(s) failed: {summary.errors[0]}{more}; their rows have status 'failed' "
                      "and the error, and the next run retries them.", stacklevel=2)
    frame.attrs.update(computed=summary.computed, cached=summary.cached, failed=summary.failed, na=summary.na,
                       results_dir=run_config.results_dir)
    return frame


@dataclass(repr=False)
class Restoration:
    """What :func:`restore` returns: the images as float32 ``(H, W, 3)`` arrays and the cell's scores.

    ``restored`` is the method's output rounded to 8 bits (what is scored and stored), ``observation`` the
    degraded input ``y`` as the method saw it (unclipped float for the float protocols; smaller for ``sr``),
    ``clean`` the reference; ``metrics`` maps each metric (``psnr``, ``ssim``, ``ms_ssim``, ``lpips``, ``psnr_y``)
    to its value, None where missing; ``key`` is the cell's cache key, as in a run's ``key`` column; ``row`` holds
    every column a stored row has (``trace``, ``metric_impl``, ``budget``, ...).

    >>> Restoration(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), {"psnr": 20.0, "lpips": None},
    ...             key="k", method="tv", degradation="noise", seed=0, profile="smoke")
    Restoration(tv on noise, seed 0, profile smoke: psnr=20.0000)
    """

    restored: np.ndarray
    observation: np.ndarray
    clean: np.ndarray
    metrics: dict[str, float | None]
    input_psnr: float | None = None
    seconds: float | None = None
    key: str = ""
    method: str = ""
    degradation: str = ""
    seed: int = 0
    profile: str = ""
    method_params: dict[str, Any] = field(default_factory=dict)
    degradation_params: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        scores = ", ".join(f"{name}={value:.4f}" for name, value in self.metrics.items() if value is not None)
        return f"Restoration({self.method} on {self.degradation}, seed {self.seed}, profile {self.profile}: {scores})"


def restore(method: str, image: Any, degradation: str, seed: int = 0, profile: str = "quick", *,
            degradation_params: Mapping[str, Any] | None = None, crop: int | None = None, device: str = "cpu",
            lpips: bool = True, progress: bool = False, **params: Any) -> Restoration:
    """Degrade one image, restore it with one method and score it: one cell of a grid, computed here.

    ``image`` is a float array ``(H, W, 3)`` in [0, 1] (8- and 16-bit integer arrays, grey and RGBA are converted
    as image files are), a file path, or a torch tensor ``(3, H, W)`` or ``(1, 3, H, W)``. ``params`` are the
    method's parameters and ``degradation_params`` the degradation's (as ``bench list`` shows them; one value
    each), ``crop`` a centre crop (a run crops to its profile's size: 64 px for ``smoke``, 256 for ``quick``; pass
    it to get a run's cell). The cell is the one ``bench run`` computes for this image, seed and profile: the
    same key, the same random draws, the same scores. Nothing is stored.

    Returns a :class:`Restoration`. Raises :class:`bench.errors.BenchError` on bad input, and when the method fails
    on the image or does not apply to the degradation's task (the error says which).

    Example:
        >>> from skimage import data
        >>> result = restore("tv", data.astronaut(), "noise", seed=0, profile="smoke", crop=64, lpips=False,
        ...                  weight=0.9, degradation_params={"sigma": 50})
        >>> result.restored.shape, result.method_params["weight"], result.degradation_params["sigma"]
        ((64, 64, 3), 0.9, 50.0)
        >>> bool(result.metrics["psnr"] > result.input_psnr)  # TV removes noise
        True
        >>> restore("tv", data.astronaut(), "nosie", profile="smoke")
        Traceback (most recent call last):
        bench.errors.UnknownNameError: unknown degradation 'nosie'. Did you mean 'noise'? Available: ...
    """
    from bench.compute import execute_cell, make_observation, to_array, to_tensor
    from bench.config import check_device_available, run_config_from
    from bench.runner import build_cells

    with user_errors():
        item = image_item(image, crop)
        tables = {}
        if params:
            tables[method] = dict(params)
        if degradation_params:
            tables[degradation] = dict(degradation_params)
        config = run_config_from({}, {"methods": [method], "degradations": [degradation], "profile": profile,
                                      "seeds": _seeds(seed), "device": device, "lpips": lpips, "progress": progress},
                                 source="restore", sets=tables)
        check_device_available(config.device)
        cells = build_cells(config, [item])  # the grid's own validation and expansion, for one image
        if len(cells) != 1:
            raise ParameterError(f"restore computes one cell, but the parameters make a grid of {len(cells)}: give one "
                                 "value per parameter ([[8, 16]] for one list value), or use bench.run for a grid.")
        (cell,) = cells
        record = execute_cell(cell, metric_suite(config.lpips, config.device), config.device, config.progress)
        if record.status != "ok":
            what = "does not apply" if record.status == "n/a" else "failed"
            raise BenchError(f"{cell.method.label} {what} on {cell.degradation.label}: {record.error}")
        # the cell's observation again, from the same seeded draws (execute_cell keeps only its 8-bit PNG form)
        obs = make_observation(cell.degradation.plugin, to_tensor(item.image), cell.seed, item.digest,
                               cell.degradation.name)
    return Restoration(
        restored=record.restored.astype(np.float32) / 255.0, observation=to_array(obs.y.float()), clean=item.image,
        metrics={name: getattr(record, name) for name in METRIC_NAMES}, input_psnr=record.input_psnr,
        seconds=record.seconds, key=cell.key, method=cell.method.label, degradation=cell.degradation.label,
        seed=cell.seed, profile=cell.profile, method_params=dict(cell.method.params),
        degradation_params=dict(cell.degradation.params), row=record.columns())


def report(results_dir: str | os.PathLike = DEFAULT_RESULTS_DIR, format: str = "markdown", *,
           per_image: bool = False, methods: str | Iterable[str] | None = None,
           degradations: str | Iterable[str] | None = None, dataset: str | None = None, profile: str | None = None,
           ci: bool = False, figures: bool = True, all_versions: bool = False,
           out: str | os.PathLike | None = None) -> str:
    """The report ``bench report`` prints for the store in ``results_dir``, as a string (also ``bench.report(...)``).

    ``format`` is ``markdown``, ``latex``, ``html`` (one self-contained page; ``figures`` embeds them) or ``csv``;
    ``per_image``, ``methods``, ``degradations``, ``dataset``, ``profile``, ``ci`` and ``all_versions`` are
    ``bench report``'s options; ``out`` also writes the text to that file. Notes go to stderr. Raises
    :class:`bench.errors.BenchError` on bad input (no store, a name the store lacks, an unknown format).

    Example:
        >>> import tempfile
        >>> results = tempfile.mkdtemp()
        >>> _ = run(methods="identity", degradations="noise", limit=1, profile="smoke", lpips=False, results_dir=results)
        >>> print(report(results, "markdown").splitlines()[0])
        ### builtin · profile smoke
        >>> report(results, "csv", per_image=True).splitlines()[0].split(",")[:4]
        ['method', 'degradation', 'image', 'seed']
        >>> report(results, "pdf")
        Traceback (most recent call last):
        bench.errors.UsageError: format 'pdf': choose one of markdown, latex, html, csv.
    """
    from bench.cli import report_text
    from bench.params import suggest

    if format not in REPORT_FORMATS:
        raise UsageError(f"format {format!r}: choose one of {', '.join(REPORT_FORMATS)}.{suggest(str(format), REPORT_FORMATS)}")
    with user_errors():
        text = report_text(_path(results_dir), format, per_image, _names(methods), _names(degradations), dataset,
                           profile, ci, figures, all_versions)
        if out is not None:
            with storage_writes(out, "out"):
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                Path(out).write_text(text, encoding="utf-8")
    return text


# helpers ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """An ``OSError`` only a write can raise (no space, a read-only file system) as the one-line
    :class:`bench.errors.StorageError` ``bench`` prints (:func:`bench.errors.write_fault`); others pass unchanged."""
    try:
        yield
    except OSError as err:
        fault = write_fault(err)
        if fault is None:
            raise
        raise fault from err


@functools.cache
def metric_suite(lpips: bool, device: str) -> Any:
    """One :class:`bench.metrics.MetricSuite` per setting, kept between :func:`restore` calls (LPIPS loads once)."""
    from bench.metrics import MetricSuite

    return MetricSuite(lpips=lpips, device=device)


def parameter_tables(overrides: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``overrides`` (``{"tv.weight": [0.5, 0.9]}`` or ``{"tv": {"weight": 0.9}}``) as ``{name: {param: value}}``,
    the form of ``--set`` and ``[params]``; tuples become lists (grids).

    >>> parameter_tables({"tv.weight": (0.5, 0.9), "noise": {"sigma": 50}})
    {'tv': {'weight': [0.5, 0.9]}, 'noise': {'sigma': 50}}
    >>> parameter_tables({"weight": 0.5})
    Traceback (most recent call last):
    bench.errors.ParameterError: overrides key 'weight' must look like 'NAME.PARAM', e.g. {'tv.weight': 0.5}.
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ParameterError(f"overrides: expected a dict like {{'tv.weight': [0.5, 0.9]}}, got {overrides!r}.")
    tables: dict[str, dict[str, Any]] = {}
    for target, value in overrides.items():
        if isinstance(target, str) and "." not in target and isinstance(value, Mapping):  # {"tv": {"weight": 0.9}}
            for param, item in value.items():
                tables.setdefault(target, {})[param] = list(item) if isinstance(item, tuple) else item
            continue
        if not isinstance(target, str) or "." not in target:
            raise ParameterError(f"overrides key {target!r} must look like 'NAME.PARAM', e.g. {{'tv.weight': 0.5}}.")
        name, param = target.split(".", 1)
        tables.setdefault(name.strip(), {})[param.strip()] = list(value) if isinstance(value, tuple) else value
    return tables


def image_item(image: Any, crop: int | None = None) -> ImageItem:
    """``image`` (an array ``(H, W, 3)``, a path or a torch tensor ``(3, H, W)``/``(1, 3, H, W)``) as the dataset
    item a run makes of it (float32 RGB in [0, 1], centre-cropped to ``crop``), with the same content digest.

    >>> image_item(np.full((20, 30, 3), 255, np.uint8), crop=16).image.shape
    (16, 16, 3)
    """
    from bench.datasets import ImageItem
    from bench.images import MIN_SIZE, center_crop, load_image, safe_id, to_float_rgb

    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < MIN_SIZE):
        raise UsageError(f"crop {crop!r}: must be an integer of at least {MIN_SIZE} (or None: the whole image).")
    if isinstance(image, (str, os.PathLike)):
        array, name, source = load_image(image), safe_id(Path(image).stem), os.fspath(image)
    else:
        if hasattr(image, "detach") and hasattr(image, "permute"):  # a torch tensor, channels first
            tensor = image.detach().cpu()
            if tensor.ndim == 4:
                if tensor.shape[0] != 1:
                    raise ImageError(f"image: a batch of {tensor.shape[0]} images; restore takes one, (1, 3, H, W).")
                tensor = tensor[0]
            if tensor.ndim == 3:
                tensor = tensor.permute(1, 2, 0)
            image = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
        array, name, source = to_float_rgb(np.asarray(image), "image"), "image", "python"
        if array.shape[0] < MIN_SIZE or array.shape[1] < MIN_SIZE:
            raise ImageError(f"image is {array.shape[0]}×{array.shape[1]} px; images must be at least "
                             f"{MIN_SIZE}×{MIN_SIZE} px.")
    return ImageItem(id=name, image=center_crop(array, crop), source=source)


def cells_frame(results_dir: str, keys: Iterable[str], overrides: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The stored rows of ``keys`` in their order, columns as :func:`run` describes them."""
    from bench.store import Store

    order = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    store = Store(results_dir, read_only=True)
    try:
        df = store.dataframe()
    finally:
        store.close()
    df = df[df["key"].isin(order)]
    df = df.iloc[np.argsort(df["key"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    axes = []
    for name, table in overrides.items():
        for param in table:
            column = f"{name}.{param}"
            df[column] = [parameter_value(row, name, param) for row in df.itertuples(index=False)]
            axes.append(column)
    lead = [c for c in LEAD_COLUMNS if c in df]
    columns = [*lead[:2], *axes, *lead[2:]]
    return df[columns + [c for c in df.columns if c not in columns]]


def parameter_value(row: Any, name: str, param: str) -> Any:
    """The value ``param`` of plugin ``name`` had in a stored ``row`` (None for a row of other plugins)."""
    for kind in ("method", "degradation"):
        if getattr(row, kind) == name:
            value = json.loads(getattr(row, f"{kind}_params") or "{}").get(param)
            return tuple(value) if isinstance(value, list) else value
    return None


def _names(value: str | Iterable[str] | None) -> str | list[str] | None:
    """Methods or degradations: a comma-separated string as it is (the schema splits it), other iterables as lists."""
    if value is None or isinstance(value, str):
        return value
    return list(value) if isinstance(value, Iterable) else value


def _seeds(value: Any) -> Any:
    """One seed as a list of one; numpy integers as ints (the schema checks the rest)."""
    if value is None or isinstance(value, str):
        return value
    items = list(value) if isinstance(value, Iterable) else [value]
    return [operator.index(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v for v in items]


def _path(value: str | os.PathLike | None) -> str | None:
    return os.fspath(value) if isinstance(value, os.PathLike) else value
