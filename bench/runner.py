"""Expand the grid, skip cached cells, compute the rest and store every outcome.

The grid is methods × degradations × images × seeds; :mod:`bench.cells` defines a
cell, its cache key and how it is computed, :mod:`bench.executors` where. Re-running
recomputes nothing and changing one parameter recomputes only the cells that depend
on it. This process is the single writer to the :class:`bench.store.Store`.

Example:
    >>> import tempfile
    >>> summary = run_grid(RunConfig(methods=["identity"], degradations=["noise"],
    ...     dataset="builtin", limit=1, profile="smoke", results_dir=tempfile.mkdtemp(),
    ...     lpips=False, progress=False))
    >>> (summary.computed, summary.cached, summary.failed, summary.na)
    (1, 0, 0, 0)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.annotations import DAGGER, BudgetUse, budget_lines, is_below
from bench.cells import Cell, instantiate, is_file_parameter
from bench.compute import cell_budget
from bench.config import RunConfig, check_device_available, parse_overrides  # noqa: F401 (re-exported)
from bench.datasets import ImageItem, load_dataset
from bench.errors import BenchError, ParameterError
from bench.executors import make_executor
from bench.memory import check_memory
from bench.profiles import get_profile
from bench.record import CellRecord
from bench.rescore import lpips_for_run
from bench.store import Store


@dataclass
class Summary:
    """Counts of a run, its errors and the keys of all its cells (cached ones included). ``na``: cells computed
    now whose method does not apply to the task (status "n/a"; neither computed nor failed).

    >>> Summary(computed=2, cached=1).line(), Summary(computed=1, na=3).line()
    ('computed 2, cached 1, failed 0', 'computed 1, cached 0, failed 0, 3 n/a')
    """

    computed: int = 0
    cached: int = 0
    failed: int = 0
    na: int = 0
    errors: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # damaged stored images found (their cells were recomputed)
    missing: list[str] = field(default_factory=list)  # stored images found absent (their cells were recomputed)
    notes: list[str] = field(default_factory=list)  # the ``note:`` lines the run printed (a cached re-run repeats them)
    table: str | None = None  # the run's Markdown table, when the caller asked for it (bench.keycache.run_or_recall)
    parameter_files: list[str] = field(default_factory=list)  # files the cells' parameters name (``checkpoint=``)

    def line(self) -> str:
        return f"computed {self.computed}, cached {self.cached}, failed {self.failed}" + \
            (f", {self.na} n/a" if self.na else "")


def build_cells(config: RunConfig, images: list[ImageItem]) -> list[Cell]:
    """Validate names and parameters, then expand the full grid."""
    unknown = set(config.overrides) - set(config.methods) - set(config.degradations)
    if unknown:
        name = sorted(unknown)[0]
        raise ParameterError(
            f"--set targets '{name}', which is not among --methods ({','.join(config.methods)}) "
            f"or --degradations ({','.join(config.degradations)})."
        )
    methods = [m for name in config.methods
               for m in instantiate("method", name, config.overrides.get(name, {}), config.profile, config.device)]
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


def run_grid(config: RunConfig, on_cell: Callable[[CellRecord], None] | None = None) -> Summary:
    """Run (or load from the cache) every cell of ``config``'s grid; the caller's process writes the store."""
    images, cells = prepare_grid(config)
    store = Store(config.results_dir)
    try:
        return run_cells(config, images, cells, store, on_cell)
    finally:
        store.close()


def prepare_grid(config: RunConfig) -> tuple[list[ImageItem], list[Cell]]:
    """The grid's images and cells, everything validated (device, dataset, names, parameters, shapes), before any
    store is opened or any cell computed."""
    if config.executor == "local":  # once, up front (a Dask run's device is on its workers)
        check_device_available(config.device)
    profile = get_profile(config.profile)
    crop = config.crop if config.crop is not None else profile.crop
    limit = config.limit if config.limit is not None else profile.default_limit
    images = load_dataset(config.dataset, limit=limit, crop=crop, data_root=config.data_root)
    return images, build_cells(config, images)


def run_cells(config: RunConfig, images: list[ImageItem], cells: list[Cell], store: Store,
              on_cell: Callable[[CellRecord], None] | None = None) -> Summary:
    """Compute the cells of a prepared grid that ``store`` (open, left open) does not hold, and write them."""
    notice = budget_notice(cells)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    done = store.cached_keys(c.key for c in cells)  # verifies their PNGs: a damaged one is recomputed
    done |= {r["key"] for r in store.rows("n/a")} & {c.key for c in cells}  # deterministic for a key: kept
    pending = [c for c in cells if c.key not in done]
    # before any cell runs: refuse cells that cannot fit in memory; LPIPS once (fills cached cells lacking it)
    check_memory(pending, config)
    lpips_for_run(config, store, cells, done, bool(pending))
    summary = Summary(cached=len(cells) - len(pending), keys=[c.key for c in cells], notes=[notice] if notice else [],
                      parameter_files=parameter_files(cells))
    if not pending:
        summary.corrupt, summary.missing = list(store.corrupt), list(store.missing)
        return summary
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc="cells", unit="cell")
    executor = make_executor(config, store)
    try:
        for cell, record in executor.run(pending, images):
            write_record(store, record, cell)
            if record.status == "ok":
                summary.computed += 1
            elif record.status == "n/a":
                summary.na += 1
            else:
                summary.failed += 1
                summary.errors.append(f"{cell.method.label} on {cell.degradation.label}/{cell.image_id}: {record.error}")
            if on_cell:
                on_cell(record)
            if bar:
                bar.update(1)
    finally:
        executor.close()
        if bar:
            bar.close()
        summary.corrupt, summary.missing = list(store.corrupt), list(store.missing)
    return summary


def parameter_files(cells: list[Cell]) -> list[str]:
    """The files the cells' parameters name (``checkpoint=PATH``, as resolved), sorted."""
    return sorted({value for cell in cells for plugin in (cell.method, cell.degradation)
                   for name, value in plugin.params.items() if is_file_parameter(name) and isinstance(value, str)
                   and value})


def budget_notice(cells: list[Cell]) -> str | None:
    """One line when the grid has cells below their method's reference budget (None otherwise).

    >>> budget_notice([]) is None
    True
    """
    below: dict[str, dict[tuple[str, str], BudgetUse]] = {}  # profile -> (degradation, method) -> use
    count = 0
    for cell in cells:
        budget = cell_budget(cell)
        if not is_below(budget["budget_fraction"]):
            continue
        count += 1
        info = json.loads(budget["budget"])
        use = BudgetUse(budget["budget_fraction"], info["reference"], info["unit"], info["source"])
        below.setdefault(cell.profile, {})[(cell.degradation.label, cell.method.label)] = use
    if not count:
        return None
    lines = [line.removeprefix(f"{DAGGER} ").rstrip(".") for profile, uses in below.items()
             for line in budget_lines(uses, profile, sources=False)]
    return (f"note: {count} of {len(cells)} cell(s) run below their method's reference budget ({'; '.join(lines)}); "
            f"reports mark them with {DAGGER}.")


def write_record(store: Store, record: CellRecord, cell: Cell) -> None:
    """Images first (atomic), then the row: a crash never leaves a row without its image."""
    if record.degraded is not None and store.get_degraded(cell.degraded_key) is None:
        store.put_degraded(cell.degraded_key, record.degraded)
    record.degraded_path = store.get_degraded(cell.degraded_key)
    if record.restored is not None:
        record.output_path = store.put_image(record.restored)
    store.put_cell(record)
