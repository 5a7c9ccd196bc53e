"""Expand the grid, skip cached cells, compute the rest and store every outcome.

The grid is methods × degradations × images × seeds. Each cell's cache key
hashes the method (name, effective parameters, code version), the degradation
(name, parameters, code version), the image content, the seed and the profile;
file parameters (``checkpoint=...``) count by their content hash, not their path,
so re-running recomputes nothing and changing one parameter recomputes only the
cells that depend on it. :func:`compute_cell` is a pure function of its inputs
(it never writes), so executors can run it anywhere; the caller is the single
writer to the :class:`bench.store.Store`.

Example:
    >>> import tempfile
    >>> summary = run_grid(RunConfig(methods=["identity"], degradations=["noise"],
    ...     dataset="builtin", limit=1, profile="smoke", results_dir=tempfile.mkdtemp(),
    ...     lpips=False, progress=False))
    >>> (summary.computed, summary.cached, summary.failed)
    (1, 0, 0)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import __version__
from bench.api import Degradation, Method, Observation, RestoreContext
from bench.checkpoints import file_version, sha256_file
from bench.datasets import ImageItem, load_dataset
from bench.errors import BenchError, ParameterError
from bench.metrics import MetricSuite, psnr
from bench.params import build_params, expand_grid, params_to_dict
from bench.profiles import get_profile
from bench.registry import lookup
from bench.store import Store

log = logging.getLogger(__name__)


@dataclass
class PluginInstance:
    """A method or degradation with concrete parameters, a label and a code version."""

    kind: str
    name: str
    plugin: Any
    params: dict[str, Any]
    label: str
    version: str
    files: dict[str, str] = field(default_factory=dict)

    def key_data(self) -> dict[str, Any]:
        data = {"name": self.name, "params": self.params, "version": self.version}
        if self.files:  # only when set, so keys of runs without file parameters stay as they were
            data["files"] = self.files
        return data


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # file_version -> short sha256


def is_file_parameter(name: str) -> bool:
    """Parameters that name a file whose *content* defines the result (``checkpoint``, ``*_checkpoint``, ``*_file``)."""
    return name == "checkpoint" or name.endswith(("_checkpoint", "_file"))


def file_digests(params: dict[str, Any]) -> dict[str, str]:
    """sha256 of every existing file named by a file parameter, so the cache follows the file, not its path.

    A checkpoint re-trained in place gets new cells instead of stale cached ones.
    Missing files are left out (the plugin reports them when it runs).
    """
    out = {}
    for name, value in params.items():
        if not (is_file_parameter(name) and isinstance(value, str) and value):
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            continue
        memo = file_version(path)
        if memo not in _FILE_DIGESTS:
            _FILE_DIGESTS[memo] = sha256_file(path)[:16]
        out[name] = _FILE_DIGESTS[memo]
    return out


def code_version(cls: type) -> str:
    """Hash of the plugin's source file (and ``depends_on`` modules) plus its ``version``."""
    h = hashlib.sha256(str(getattr(cls, "version", "")).encode())
    modules = [sys.modules[cls.__module__]] + [sys.modules[m] if isinstance(m, str) else m for m in getattr(cls, "depends_on", ())]
    for module in modules:
        try:
            h.update(inspect.getsource(module).encode())
        except (OSError, TypeError):
            h.update(module.__name__.encode())
    return h.hexdigest()[:16]


def instantiate(kind: str, name: str, overrides: dict[str, Any], profile: str) -> list[PluginInstance]:
    """Instances of ``name`` for each point of the override grid (lists expand)."""
    cls = lookup(kind, name)
    base = dict(getattr(cls, "profiles", {}).get(profile, {})) if kind == "method" else {}
    grid = expand_grid(overrides) if overrides else [{}]
    instances = []
    for point in grid:
        values = {**base, **point}
        params = build_params(cls.Params, values, owner=name)
        label = name
        if len(grid) > 1:
            label = name + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"
        values = params_to_dict(params)
        instances.append(
            PluginInstance(kind, name, cls(params), values, label, code_version(cls), file_digests(values))
        )
    return instances


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["tv.weight=0.5", "noise.sigma=15,25"]`` -> ``{"tv": {"weight": "0.5"}, "noise": {"sigma": [...]}}``."""
    from bench.params import split_grid_string

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ParameterError(
                f"--set '{item}' must look like NAME.PARAM=VALUE, e.g. --set tv.weight=0.5"
            )
        target, value = item.split("=", 1)
        name, param = target.split(".", 1)
        out.setdefault(name.strip(), {})[param.strip()] = split_grid_string(value)
    return out


@dataclass
class RunConfig:
    """Everything that defines a run (the CLI and config files fill this in)."""

    methods: list[str]
    degradations: list[str]
    dataset: str = "builtin"
    limit: int | None = None
    crop: int | None = None
    profile: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    results_dir: str = "results"
    data_root: str | None = None
    lpips: bool = True
    progress: bool = True
    device: str = "cpu"
    jobs: int = 1
    executor: str = "local"
    scheduler: str | None = None
    gpus_per_cell: float = 0.0


@dataclass
class Cell:
    """One grid point. ``image`` may be None while the cell travels to a worker without its pixels."""

    method: PluginInstance
    degradation: PluginInstance
    image: ImageItem | None
    seed: int
    profile: str
    dataset: str
    key: str = ""
    image_id: str = ""
    degraded_key: str = ""

    @staticmethod
    def make(method: PluginInstance, degradation: PluginInstance, image: ImageItem, seed: int, profile: str,
             dataset: str) -> Cell:
        payload = {
            "method": method.key_data(),
            "degradation": degradation.key_data(),
            "image": image.digest,
            "seed": seed,
            "profile": profile,
        }
        degraded = _digest({"degradation": degradation.key_data(), "image": image.digest, "seed": seed})
        return Cell(method, degradation, image, seed, profile, dataset, key=_digest(payload), image_id=image.id,
                    degraded_key=degraded)


@dataclass
class Summary:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"computed {self.computed}, cached {self.cached}, failed {self.failed}"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (independent of execution order)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def degradation_generator(seed: int, image_id: str, degradation: str) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed("degrade", seed, image_id, degradation))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def to_array(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu()[0].permute(1, 2, 0).numpy()


def make_observation(degradation: Degradation, clean: torch.Tensor, seed: int, image_id: str, name: str,
                     cached_y: np.ndarray | None = None) -> Observation:
    """The cell's observation; with ``cached_y`` only the operator is rebuilt (same draws)."""
    generator = degradation_generator(seed, image_id, name)
    if cached_y is None:
        return degradation.degrade(clean, generator)
    degradation.check_shape(tuple(clean.shape[-2:]))
    operator = degradation.make_operator(tuple(clean.shape[-2:]), generator)
    return Observation(y=to_tensor(cached_y), operator=operator, description=degradation.describe())


def compute_cell(cell: Cell, obs: Observation, metrics: MetricSuite, device: str = "cpu",
                 progress: bool = False) -> dict[str, Any]:
    """Restore one cell and score it. Returns the row (status 'ok' or 'failed'); never raises
    for method errors. The clean image is used only here, for the metrics, after restoring."""
    method: Method = cell.method.plugin
    ctx = RestoreContext(
        generator=torch.Generator().manual_seed(
            derived_seed("method", cell.seed, cell.image.id, cell.degradation.label, cell.method.label)
        ),
        seed=cell.seed,
        profile=cell.profile,
        device=torch.device(device),
        progress=progress,
    )
    torch.manual_seed(derived_seed("global", cell.seed, cell.image.id, cell.method.label) % (2**31))
    row = base_row(cell)
    start = time.perf_counter()
    try:
        restore_obs = Observation(y=obs.y.to(device), operator=obs.operator.to(device), description=obs.description)
        out = method.restore(restore_obs, ctx)
        seconds = time.perf_counter() - start
        expected = (1, 3, *cell.image.image.shape[:2])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"method returned shape {shape}, expected {expected}")
        if not torch.isfinite(out).all():
            raise ValueError("method returned NaN or Inf values")
        restored = np.round(to_array(out.float().clamp(0, 1)) * 255.0).astype(np.uint8)
        clean = to_tensor(cell.image.image)
        scores = metrics(clean, to_tensor(restored.astype(np.float32) / 255.0))
        row.update(status="ok", error=None, seconds=seconds, trace=ctx.trace or None, **_clean_scores(scores))
        row["_restored"] = restored
    except Exception as err:  # the cell fails; the run goes on
        row.update(status="failed", error=f"{type(err).__name__}: {err}", seconds=time.perf_counter() - start)
        log.debug("cell failed:\n%s", traceback.format_exc())
    row["peak_memory_mb"] = peak_memory_mb(device)
    return row


def _clean_scores(scores: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in scores.items()}


def peak_memory_mb(device: str) -> float:
    """Peak resident memory of this process (CPU) or peak allocated CUDA memory, in MB."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        value = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def base_row(cell: Cell) -> dict[str, Any]:
    return {
        "key": cell.key,
        "method": cell.method.name,
        "method_label": cell.method.label,
        "method_params": cell.method.params,
        "method_version": cell.method.version,
        "degradation": cell.degradation.name,
        "degradation_label": cell.degradation.label,
        "degradation_params": cell.degradation.params,
        "degradation_description": cell.degradation.plugin.describe(),
        "dataset": cell.dataset,
        "image": cell.image.id,
        "image_digest": cell.image.digest,
        "seed": cell.seed,
        "profile": cell.profile,
        "bench_version": __version__,
        "torch_version": torch.__version__,
    }


def build_cells(config: RunConfig, images: list[ImageItem]) -> list[Cell]:
    """Validate names and parameters, then expand the full grid."""
    unknown = set(config.overrides) - set(config.methods) - set(config.degradations)
    if unknown:
        name = sorted(unknown)[0]
        raise ParameterError(
            f"--set targets '{name}', which is not among --methods ({','.join(config.methods)}) "
            f"or --degradations ({','.join(config.degradations)})."
        )
    methods = [m for name in config.methods for m in instantiate("method", name, config.overrides.get(name, {}), config.profile)]
    degradations = [d for name in config.degradations for d in instantiate("degradation", name, config.overrides.get(name, {}), config.profile)]
    for d in degradations:
        for item in images:
            try:
                d.plugin.check_shape(item.image.shape[:2])
            except ValueError as err:
                raise BenchError(f"{d.label} cannot degrade image '{item.id}': {err}") from None
    return [
        Cell.make(m, d, item, seed, config.profile, config.dataset)
        for d in degradations
        for item in images
        for seed in config.seeds
        for m in methods
    ]


def run_grid(config: RunConfig, on_cell: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Run (or load from the cache) every cell of ``config``'s grid; the caller's process writes the store."""
    from bench.executors import make_executor

    profile = get_profile(config.profile)
    crop = config.crop if config.crop is not None else profile.crop
    limit = config.limit if config.limit is not None else profile.default_limit
    images = load_dataset(config.dataset, limit=limit, crop=crop, data_root=config.data_root)
    cells = build_cells(config, images)
    store = Store(config.results_dir)
    done = store.ok_keys()
    pending = [c for c in cells if c.key not in done]
    summary = Summary(cached=len(cells) - len(pending), keys=[c.key for c in cells])
    if not pending:
        store.close()
        return summary
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc="cells", unit="cell")
    executor = make_executor(config, store)
    try:
        for cell, row in executor.run(pending, images):
            write_row(store, row, cell)
            if row["status"] == "ok":
                summary.computed += 1
            else:
                summary.failed += 1
                summary.errors.append(f"{cell.method.label} on {cell.degradation.label}/{cell.image_id}: {row['error']}")
            if on_cell:
                on_cell(row)
            if bar:
                bar.update(1)
    finally:
        executor.close()
        if bar:
            bar.close()
        store.close()
    return summary


def execute_cell(cell: Cell, metrics: MetricSuite, device: str = "cpu", progress: bool = False,
                 cached_y: np.ndarray | None = None) -> dict[str, Any]:
    """Degrade (or rebuild the operator for a cached observation), restore and score one cell.

    Runs anywhere (the local process or a worker) and never touches the store: the row it returns
    carries the restored and degraded images for the single writer.
    """
    degradation = cell.degradation.plugin
    clean = to_tensor(cell.image.image)
    try:
        obs = make_observation(degradation, clean, cell.seed, cell.image.id, cell.degradation.name, cached_y)
    except Exception as err:  # a degradation failing on one image fails that cell only
        row = base_row(cell)
        row.update(status="failed", error=f"degradation failed: {type(err).__name__}: {err}")
        return row
    row = compute_cell(cell, obs, metrics, device, progress=progress)
    row["input_psnr"] = _input_psnr(cell, obs)
    if cached_y is None:
        row["_degraded"] = np.round(to_array(obs.y) * 255.0).astype(np.uint8)
    return row


def _input_psnr(cell: Cell, obs: Observation) -> float | None:
    """PSNR of the observation's initial estimate (e.g. bicubic for sr), for reference only."""
    init = obs.operator.init(obs.y)
    if tuple(init.shape[-2:]) != cell.image.image.shape[:2]:
        return None
    return psnr(to_tensor(cell.image.image), init.cpu())


def write_row(store: Store, row: dict[str, Any], cell: Cell) -> None:
    """Images first (atomic), then the row: a crash never leaves a row without its image."""
    degraded = row.pop("_degraded", None)
    if degraded is not None and store.get_degraded(cell.degraded_key) is None:
        store.put_degraded(cell.degraded_key, degraded)
    row["degraded_path"] = store.get_degraded(cell.degraded_key)
    restored = row.pop("_restored", None)
    if restored is not None:
        row["output_path"] = store.put_image(restored)
    store.put_cell(row)
