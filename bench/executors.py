"""Where cells are computed: in process, in local worker processes, or on a Dask cluster.

Every executor yields ``(cell, row)`` pairs back to the caller, which is the
only writer to the store, so workers need no shared filesystem. Images are
sent to each worker once (process initialiser, or one Dask task per image),
not once per cell. Each worker limits torch's threads so that N workers do not
oversubscribe the cores.

Workers never outlive the run. Local workers die with this process however it ends,
SIGKILL included (:func:`die_with_parent`), and ``close`` kills them when the run is
interrupted (Ctrl-C, SIGTERM) instead of waiting for their cells: the caller keeps every
completed cell, and an unfinished one is lost either way. Dask's LocalCluster worker
processes already exit at once when their parent dies (Dask's own parent-alive pipe);
``close`` shuts the cluster down on an interrupted run.

Workers print warnings as single lines and hold back the LPIPS one: the run gives it once, in its own
process (:func:`bench.rescore.lpips_for_run`). Dask's ``distributed`` logs at WARNING and above only
(its INFO lines about starting and stopping workers are noise for a benchmark run; ``bench -v`` keeps them).

Example:
    >>> cfg = type("C", (), {"jobs": 1, "executor": "local"})()
    >>> type(make_executor(cfg, store=None)).__name__
    'SerialExecutor'
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

import torch

from bench.cells import Cell
from bench.compute import execute_cell, failed_record
from bench.config import show_warnings_as_lines
from bench.errors import BenchError
from bench.images import read_png
from bench.metrics import MetricSuite
from bench.record import CellRecord

log = logging.getLogger(__name__)

_WORKER: dict[str, Any] = {}


def threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _worker_metrics(lpips: bool, device: str) -> Any:
    key = f"metrics-{lpips}-{device}"
    if key not in _WORKER:
        _WORKER[key] = MetricSuite(lpips=lpips, device=device)
    return _WORKER[key]


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _parent_death_signal() -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies. False where that is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                          ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)  # from a thread: ends the whole process now, whatever the main thread is computing


def die_with_parent(parent_pid: int, use_prctl: bool | None = None, interval: float = 1.0) -> str:
    """Make this process end when its parent ``parent_pid`` ends, however it ends (SIGKILL included).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills this process when the parent *thread* that
    started it ends (a pool's workers are started by the thread that submits, the one that runs the grid).
    Elsewhere (or ``use_prctl=False``): a daemon thread polls ``os.getppid()`` every ``interval`` seconds.
    A parent that died before this call is caught too: this process has then been re-parented, so
    ``os.getppid()`` is no longer ``parent_pid``. Returns the mechanism used: "prctl" or "watchdog".
    """
    if use_prctl is None:
        use_prctl = sys.platform.startswith("linux")
    how = "prctl" if use_prctl and _parent_death_signal() else "watchdog"
    if how == "watchdog":
        threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="watch-parent", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent is already gone: no signal will ever come
        os._exit(1)
    return how


WORKER_QUIET = "LPIPS is missing"  # warned once per run by the run's own process, not once per worker


def quiet_worker_warnings() -> None:
    """In a worker: warnings as one `warning:` line like the parent's, without those the parent gives for the run."""
    show_warnings_as_lines()
    warnings.filterwarnings("ignore", message=WORKER_QUIET)


DASK_LOGGING = "DASK_LOGGING__DISTRIBUTED"


def quiet_distributed_logging() -> bool:
    """``distributed`` at WARNING in this process (its scheduler and nannies) and in the worker processes it starts
    (they read ``DASK_LOGGING__DISTRIBUTED`` when they import it), unless ``bench -v`` asked for INFO or the variable
    is set already. True when it set the variable (the executor removes it again when it closes)."""
    if logging.getLogger().getEffectiveLevel() <= logging.INFO or DASK_LOGGING in os.environ:
        return False
    os.environ[DASK_LOGGING] = "warning"
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return True


def _init_worker(images: dict[str, Any], threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    quiet_worker_warnings()  # like the parent: one `warning:` line, no source echo
    # Ctrl-C reaches the whole process group: the parent alone decides (it keeps completed cells and kills us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER["images"] = images


def _run_local_cell(cell: Cell, lpips: bool, device: str) -> CellRecord:
    """Worker side (local processes): the image comes from the initialiser's copy."""
    full = replace(cell, image=_WORKER["images"][cell.image_id])
    return execute_cell(full, _worker_metrics(lpips, device), device)


def _pass_through(item: Any) -> Any:
    return item


def run_dask_cell(cell: Cell, image: Any, lpips: bool, device: str, threads: int) -> CellRecord:
    """Worker side (Dask): ``image`` is the result of the image's task, resolved by Dask."""
    if threads > 0:  # 0: an external cluster's workers keep their own setting
        torch.set_num_threads(threads)
    quiet_worker_warnings()
    return execute_cell(replace(cell, image=image), _worker_metrics(lpips, device), device)


class SerialExecutor:
    """In this process, reusing the store's cached degraded inputs.

    >>> isinstance(make_executor(type("C", (), {"jobs": 1})(), store=None), SerialExecutor)
    True
    """

    def __init__(self, config: Any, store: Any):
        self.config = config
        self.store = store

    def run(self, cells: list[Cell], images: list[Any]) -> Iterator[tuple[Cell, CellRecord]]:
        # The thread count is never adapted to the machine's load: results of fits (DIP, the flow prior)
        # depend on it (reductions split across threads), and the same key must give the same numbers.
        # torch's default or OMP_NUM_THREADS decides; on a busy machine set OMP_NUM_THREADS=1 (README).
        metrics = MetricSuite(lpips=self.config.lpips, device=self.config.device)
        last_key, last_y = None, None  # cells come grouped by observation: read each one once
        for cell in cells:
            if cell.degraded_key != last_key:
                cached = self.store.get_degraded(cell.degraded_key)
                last_key, last_y = cell.degraded_key, read_png(self.store.image_file(cached)) if cached else None
            record = execute_cell(cell, metrics, self.config.device, self.config.progress, last_y)
            if last_y is None and record.degraded is not None:
                last_y = record.degraded.astype("float32") / 255.0
            yield cell, record

    def close(self) -> None:
        pass


class ProcessExecutor:
    """``--jobs N``: N local worker processes (spawned; a dead worker's cells are retried once).

    >>> isinstance(make_executor(type("C", (), {"jobs": 2})(), store=None), ProcessExecutor)  # no pool yet
    True
    """

    def __init__(self, config: Any):
        self.config = config
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self, images: list[Any]) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(
            max_workers=self.config.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=({item.id: item for item in images}, threads_per_worker(self.config.jobs), os.getpid()),
        )

    def run(self, cells: list[Cell], images: list[Any]) -> Iterator[tuple[Cell, CellRecord]]:
        todo = [(replace(c, image=None), c, 0) for c in cells]
        while todo:
            self.pool = self._pool(images)
            futures = {self.pool.submit(_run_local_cell, light, self.config.lpips, self.config.device): (light, cell, tries)
                       for light, cell, tries in todo}
            todo = []
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    light, cell, tries = futures[future]
                    try:
                        yield cell, future.result()
                    except BrokenProcessPool:
                        if tries == 0:
                            todo.append((light, cell, 1))
                        else:
                            yield cell, failed_record(cell, "worker process died twice while computing this cell")
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def close(self) -> None:
        """After a complete run there is no pool left; after an interrupted one (Ctrl-C, SIGTERM, an error
        while storing), kill the workers rather than wait minutes for cells nobody will store."""
        if self.pool is not None:
            kill_workers(self.pool)
            self.pool = None


def kill_workers(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """SIGKILL a process pool's workers, reap them and shut the pool down (its pending futures fail)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the stdlib has no public list (< 3.14)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(grace)
    pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """``--executor dask``: an existing scheduler (``--scheduler ADDRESS``) or a LocalCluster of ``--jobs`` workers.

    Creating one connects to the scheduler or starts the local cluster:

    >>> cfg = type("C", (), {"executor": "dask", "jobs": 2, "scheduler": None, "gpus_per_cell": 0})()
    >>> executor = make_executor(cfg, store=None)  # doctest: +SKIP
    """

    def __init__(self, config: Any):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise BenchError(
                "--executor dask needs Dask distributed, an optional extra: pip install 'restoration-bench[dask]'"
            ) from None
        self.config = config
        self.cluster = None
        self.quieted = quiet_distributed_logging()
        if config.scheduler:
            self.client = Client(config.scheduler)
        else:
            resources = {"GPU": 1} if config.gpus_per_cell else None
            self.cluster = LocalCluster(n_workers=max(1, config.jobs), threads_per_worker=1, processes=True,
                                        dashboard_address=None, resources=resources)
            self.client = Client(self.cluster)

    def run(self, cells: list[Cell], images: list[Any]) -> Iterator[tuple[Cell, CellRecord]]:
        from dask.distributed import as_completed

        # Each image is sent once, as a task whose result workers share. Unlike Client.scatter, a task
        # can be recomputed by the scheduler if the worker holding the image dies.
        by_id = {item.id: item for item in images if item.id in {c.image_id for c in cells}}
        image_futures = {
            name: self.client.submit(_pass_through, item, key=f"image-{item.digest}", pure=False)
            for name, item in by_id.items()
        }
        threads = 0 if self.config.scheduler else threads_per_worker(self.config.jobs)
        resources = {"GPU": self.config.gpus_per_cell} if self.config.gpus_per_cell else None
        # At most one cell in flight per worker thread: cells are long, and a worker that dies must not
        # take queued, innocent cells down with it (Dask counts those towards their allowed failures).
        window = max(1, sum(self.client.nthreads().values()))
        queue = list(cells)
        futures: dict[Any, Any] = {}

        def submit_next() -> Any:
            cell = queue.pop(0)
            future = self.client.submit(
                run_dask_cell, replace(cell, image=None), image_futures[cell.image_id], self.config.lpips,
                self.config.device, threads, key=f"cell-{cell.key}", retries=1, resources=resources, pure=False,
            )
            futures[future] = cell
            return future

        running = as_completed([submit_next() for _ in range(min(window, len(queue)))])
        for future in running:
            cell = futures.pop(future)
            try:
                row = future.result()
            except Exception as err:  # KilledWorker and friends: record, go on
                row = failed_record(cell, f"worker failed: {type(err).__name__}: {err}")
            if queue:
                running.add(submit_next())
            yield cell, row

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.quieted:
            os.environ.pop(DASK_LOGGING, None)


def make_executor(config: Any, store: Any) -> Any:
    executor = getattr(config, "executor", "local")
    if executor == "dask":
        return DaskExecutor(config)
    if getattr(config, "jobs", 1) > 1:
        return ProcessExecutor(config)
    return SerialExecutor(config, store)
