"""Remembered cell keys: a fully cached ``bench run`` needs neither torch nor the plugins nor the images.

Computing a grid's cache keys imports every plugin (torch, the networks) to read and resolve its
parameters, and reads every image to hash its pixels: seconds before the store is even asked. The same
command computes the same keys again, so after each run they are saved in the results directory
(``keycache/<hash of the request>.json``) together with what they were computed from:

* the request: every :class:`~bench.config.RunConfig` field that enters a key (methods, degradations,
  parameters, dataset, limit, crop, profile, seeds, data root, device), the working directory, the
  Python environment, the machine (host name, CPU flags: ``precision=auto`` is resolved per CPU) and the
  ``BENCH_*`` environment variables;
* the files, by size and modification time: every file of the project packages and of the plugins'
  packages (sources and packaged weights), the dataset folder and its images, every file a parameter
  names (``checkpoint=...``), and the ``site-packages`` folders (installing or removing a package
  changes them).

A later run with the same request whose files all still match takes the keys from there (a few hundred
``stat`` calls); anything else computes them as before. The entry only saves work: a key missing from
the store, or a damaged image, sends the run down the normal path. Runs that logged a warning about
their input (a converted image, a skipped file, a plugin that failed to load) are not remembered, so
those warnings are shown on every run; the ``note:`` lines a run printed, which it returns as data
(``Summary.notes``), are replayed. The run's table is
remembered too, with a digest of the stored rows it shows: while they are unchanged it is printed as it
was (no pandas, no report code); once they change (``bench rescore``, an import) it is rendered again.
A snapshot taken before the keys are computed guards against a file edited while the grid runs. One store
connection serves a whole run (:func:`run_or_recall`): the check of the remembered cells, or the cells computed,
and the table.

Example:
    >>> import tempfile
    >>> from bench.config import RunConfig
    >>> config = RunConfig(methods=["identity"], degradations=["noise"], results_dir=tempfile.mkdtemp())
    >>> remembered_keys(config) is None  # nothing remembered yet
    True
    >>> remember(config, ["k1", "k2"], Watch())
    >>> remembered_keys(config).keys
    ['k1', 'k2']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.codeversion import PROJECT_PACKAGES, module_file
from bench.standard_sets import dataset_folder

FORMAT = 1
FOLDER = "keycache"
KEY_FIELDS = ("methods", "degradations", "overrides", "dataset", "limit", "crop", "profile", "seeds", "data_root",
              "device")


@dataclass
class Remembered:
    """The keys of a remembered run, the ``note:`` lines it printed and its table (rows digest, text)."""

    keys: list[str]
    notes: list[str] = field(default_factory=list)
    table: list[str] | None = None


def cpu_flags() -> str:
    """sha256 prefix of the CPU feature flags (Linux ``/proc/cpuinfo``; the processor name elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        text = platform.processor()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def request(config: Any) -> dict[str, Any]:
    """Everything besides files that decides the keys of ``config``'s grid."""
    return {
        "format": FORMAT,
        "config": {name: getattr(config, name) for name in KEY_FIELDS},
        # not in the keys, but a run with LPIPS fills it in for cells stored without it (bench.rescore.lpips_for_run)
        "lpips": [getattr(config, "lpips", True), stat_of(hub_alexnet())],
        "cwd": os.getcwd(),
        "python": [sys.prefix, sys.version],  # the environment (sys.executable differs between python and python3)
        "host": platform.node(),
        "cpu": cpu_flags(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_") or k == "CUDA_VISIBLE_DEVICES"},
    }


def hub_alexnet() -> str:
    """Where torch hub keeps LPIPS's AlexNet weights (``torch.hub.get_dir()``, found without importing torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints", "alexnet-owt-7be5be79.pth")


def entry_path(config: Any, req: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(req, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return Path(config.results_dir) / FOLDER / f"{digest}.json"


def stat_of(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of a file or folder; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def tree(folder: Path) -> Iterator[str]:
    """``folder`` and every folder and file below it (``__pycache__`` left out: Python writes there)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        yield root
        yield from (os.path.join(root, name) for name in files)


def package_folder(name: str) -> Path | None:
    """The folder of the top-level package ``name``, found without importing it."""
    init = module_file(name)
    return init.parent if init is not None and init.name == "__init__.py" else None


def dataset_files(config: Any) -> list[str]:
    """The dataset folder and its entries (``builtin`` has none: its images come with scikit-image)."""
    folder = dataset_folder(config.dataset, config.data_root)  # the folder a run reads, resolved where it does
    if folder is None:
        return []
    if not folder.is_dir():
        return [str(folder)] if folder else []
    return [str(folder), *(str(entry) for entry in sorted(folder.iterdir()))]


def watched_files(config: Any, packages: Iterable[str], parameter_files: Iterable[str]) -> list[str]:
    """Every file and folder whose change may change the keys (see the module docstring)."""
    paths = []
    for name in dict.fromkeys([*PROJECT_PACKAGES, *packages]):
        folder = package_folder(name)
        if folder is not None:
            paths += tree(folder)
    # installing, upgrading or removing a package (a plugin, torch, pandas) changes its folder's entries
    paths += [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]
    return paths + dataset_files(config) + [os.path.abspath(p) for p in parameter_files]


def remembered_keys(config: Any) -> Remembered | None:
    """The keys remembered for ``config`` when nothing they depend on changed since; else None."""
    req = request(config)
    try:
        entry = json.loads(entry_path(config, req).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("request") != json.loads(json.dumps(req, default=str)):
        return None
    files = entry.get("files", {})
    if set(files) != set(watched_files(config, entry.get("packages", []), entry.get("parameter_files", []))):
        return None  # a file was added or removed
    if any(stat_of(path) != value for path, value in files.items()):
        return None
    return Remembered(list(entry["keys"]), list(entry.get("notes", [])), entry.get("table"))


def snapshot(config: Any, packages: Iterable[str] = (), parameter_files: Iterable[str] = ()) -> dict[str, Any]:
    """``{path: [size, mtime_ns]}`` of the watched files."""
    return {path: stat_of(path) for path in watched_files(config, packages, parameter_files)}


def remember(config: Any, keys: list[str], watch: Watch, packages: Iterable[str] = (),
             parameter_files: Iterable[str] = (), before: dict[str, Any] | None = None,
             notes: Iterable[str] = ()) -> None:
    """Save ``keys`` for ``config``, with the ``notes`` its run printed. Nothing is saved when ``watch`` saw an input
    warning, when a file of the snapshot ``before`` (taken before the keys were computed) changed meanwhile — the
    keys may stand for the old file — or when the folder is read-only."""
    if watch.warned:
        return
    req = request(config)
    packages, parameter_files = sorted(set(packages)), sorted(set(parameter_files))
    files = snapshot(config, packages, parameter_files)
    if before is not None and any(files.get(path) != value for path, value in before.items()):
        return
    entry = {"request": req, "keys": keys, "notes": list(notes), "packages": packages,
             "parameter_files": parameter_files, "files": files}
    write_entry(entry_path(config, req), entry)


def write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Write atomically (a concurrent reader sees the old entry or the new one); a read-only folder is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(entry, out, default=str)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


class Watch(logging.Handler):
    """Whether a run logged a warning about its input (``warned``): such a run is not remembered, so the warning
    shows on every run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warned = False

    def emit(self, record: logging.LogRecord) -> None:
        self.warned = True


@dataclass
class CachedSummary:
    """What :func:`bench.runner.run_cells` returns (its ``Summary``), for a run served from remembered keys."""

    keys: list[str]
    computed: int = 0
    failed: int = 0
    na: int = 0
    errors: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    table: str | None = None  # the remembered table, when the rows it was made from are unchanged

    @property
    def cached(self) -> int:
        return len(self.keys)

    def line(self) -> str:
        return f"computed 0, cached {self.cached}, failed 0"  # Summary.line() of a run that computed nothing


def cached_run(store: Any, remembered: Remembered) -> CachedSummary | None:
    """The remembered run when every cell of its ``remembered`` keys is in ``store`` (open), intact; else None.

    Its ``note:`` lines are printed again on stderr."""
    wanted = set(remembered.keys)
    done = store.cached_keys(remembered.keys) | ({r["key"] for r in store.rows("n/a")} & wanted)
    if done != wanted:
        return None  # something to compute (or a damaged image to recompute): the normal path says what
    table = remembered.table
    if table is not None and table[0] != rows_digest(store, remembered.keys):
        table = None
    for note in remembered.notes:
        print(note, file=sys.stderr)
    return CachedSummary(list(remembered.keys), table=table[1] if table else None)


def rows_of(store: Any, keys: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The stored rows of ``keys``, every column, in key order (the store's other rows are not read)."""
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), 500):  # SQLite limits the number of parameters of one statement
        chunk = ordered[start:start + 500]
        yield from map(dict, store.execute(f"SELECT * FROM cells WHERE key IN ({', '.join('?' * len(chunk))}) "
                                           "ORDER BY key", chunk))


def rows_digest(store: Any, keys: list[str]) -> str:
    """sha256 of the stored rows of ``keys`` (every column): the table of a run is a function of them."""
    digest = hashlib.sha256()
    for row in rows_of(store, keys):
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def run_table(config: Any, summary: Any, store: Any = None) -> str:
    """The Markdown table of a run's cells: the remembered one when its rows are unchanged, else rendered (with
    pandas and the report code, from ``store`` when one is open) and remembered."""
    from bench.store import Store

    if getattr(summary, "table", None) is not None:
        return summary.table
    from bench.report import render

    own = store is None
    store = Store(config.results_dir) if own else store
    try:
        text = render(store.dataframe(summary.keys), "markdown")  # the run's rows only, not the whole store
        digest = rows_digest(store, list(summary.keys))
    finally:
        if own:
            store.close()
    path = entry_path(config, request(config))
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return text
    if entry.get("keys") == list(summary.keys):
        entry["table"] = [digest, text]
        write_entry(path, entry)
    return text


def run_or_recall(config: Any, table: bool = False) -> Any:
    """The run of ``config`` as ``bench run`` and the Python API's ``bench.run`` make it: served from its remembered
    keys when every cell is stored and intact (:func:`cached_run`, a :class:`CachedSummary`), else computed and
    remembered (:func:`remember_run`, :func:`bench.runner.run_cells`'s ``Summary``). ``table``: also its Markdown
    table (``summary.table``). One store connection serves the whole run: the check, the cells and the table."""
    from bench.store import DB_NAME, Store

    remembered = remembered_keys(config)
    store = None
    try:
        if remembered is not None and (Path(config.results_dir) / DB_NAME).is_file():
            store = Store(config.results_dir)
            summary = cached_run(store, remembered)
            if summary is not None:
                if table:
                    summary.table = run_table(config, summary, store)
                return summary
        summary, store = remember_run(config, store)
        if table:
            summary.table = run_table(config, summary, store)
        return summary
    finally:
        if store is not None:
            store.close()


def remember_run(config: Any, store: Any = None) -> tuple[Any, Any]:
    """The run of ``config`` (:func:`bench.runner.prepare_grid`, then :func:`bench.runner.run_cells` into ``store``,
    opened once the grid is valid when None), its keys remembered for the next run (see the module docstring).
    Returns the run's summary and the open store."""
    from bench.cells import is_file_parameter
    from bench.errors import BenchError
    from bench.registry import lookup
    from bench.runner import prepare_grid, run_cells
    from bench.store import Store

    packages = set()
    for kind, names in (("method", config.methods), ("degradation", config.degradations)):
        for name in names:
            with contextlib.suppress(BenchError):  # an unknown name: prepare_grid says so, in its order
                packages.add(lookup(kind, name).__module__.split(".")[0])
    given = {value for table in config.overrides.values() for name, values in table.items() if is_file_parameter(name)
             for value in (values if isinstance(values, list) else [values]) if isinstance(value, str) and value}
    before = snapshot(config, packages, given)  # the files as the keys are computed from them
    with watching() as watch:
        images, cells = prepare_grid(config)  # nothing is created in the results directory for an invalid grid
        opened = store is None
        store = Store(config.results_dir) if opened else store
        try:
            summary = run_cells(config, images, cells, store)
        except BaseException:  # the caller closes only the store it gets back
            if opened:
                store.close()
            raise
    remember(config, list(summary.keys), watch, packages, set(summary.parameter_files) | given, before, summary.notes)
    return summary, store


@contextlib.contextmanager
def watching() -> Iterator[Watch]:
    """Watch a run for warnings of the loggers that report on its input."""
    watch = Watch()
    loggers = [logging.getLogger(name) for name in ("bench.datasets", "bench.images", "bench.registry")]
    for logger in loggers:
        logger.addHandler(watch)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeHandler(watch)
