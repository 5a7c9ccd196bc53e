"""The results store: one SQLite row per cell (WAL mode) and content-addressed PNGs.

Layout of a results directory::

    results.sqlite             cells and degraded-input tables
    images/ab/abcdef....png    restored and degraded images, named by content hash

A cell's PNG is written first (temporary file, then rename), then its row is
committed, so a killed process never leaves a row pointing at a missing or
partial image. Failed cells are stored with their error and retried by the
next run; only ``status = 'ok'`` rows count as cached.

Example:
    >>> import tempfile
    >>> store = Store(tempfile.mkdtemp())
    >>> store.ok_keys()
    set()
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.images import save_png, to_uint8
from bench.metric_specs import METRIC_NAMES

CELL_COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "method": "TEXT",
    "method_label": "TEXT",
    "method_params": "TEXT",
    "method_version": "TEXT",
    "degradation": "TEXT",
    "degradation_label": "TEXT",
    "degradation_params": "TEXT",
    "degradation_description": "TEXT",
    "dataset": "TEXT",
    "image": "TEXT",
    "image_digest": "TEXT",
    "seed": "INTEGER",
    "profile": "TEXT",
    "status": "TEXT",
    "error": "TEXT",
    **{name: "REAL" for name in METRIC_NAMES},  # one column per metric, in metric order
    "input_psnr": "REAL",
    "seconds": "REAL",
    "peak_memory_mb": "REAL",
    "output_path": "TEXT",
    "degraded_path": "TEXT",
    "trace": "TEXT",
    "bench_version": "TEXT",
    "torch_version": "TEXT",
    "created": "TEXT",
}
DB_NAME = "results.sqlite"


def image_path_for(data: np.ndarray) -> str:
    """Relative content-addressed path of an 8-bit image."""
    digest = hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()
    return f"images/{digest[:2]}/{digest}.png"


class Store:
    """A results directory. Safe for several processes at once (SQLite WAL, busy retry).

    >>> import tempfile
    >>> Store(tempfile.mkdtemp()).rows()
    []
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise BenchError(
                f"results directory '{self.root}' is not writable ({err.strerror}); "
                "choose another with --results-dir or fix its permissions."
            ) from None
        self.db_path = self.root / DB_NAME
        self._conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._execute("PRAGMA journal_mode=WAL")
        self._execute("PRAGMA synchronous=NORMAL")
        columns = ", ".join(f"{name} {kind}" for name, kind in CELL_COLUMNS.items())
        self._execute(f"CREATE TABLE IF NOT EXISTS cells ({columns})")
        self._execute(
            "CREATE TABLE IF NOT EXISTS degraded (key TEXT PRIMARY KEY, path TEXT, created TEXT)"
        )

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        """Execute with retries: another process may hold the write lock for a moment."""
        delay = 0.05
        for attempt in range(40):
            try:
                return self._conn.execute(sql, args)
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or attempt == 39:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    # images --------------------------------------------------------------
    def put_image(self, image: np.ndarray) -> str:
        """Store an image as PNG under its content hash; return the relative path."""
        data = image if image.dtype == np.uint8 else to_uint8(image)
        rel = image_path_for(data)
        path = self.root / rel
        if not path.exists():
            save_png(data, path)
        return rel

    def image_file(self, rel: str) -> Path:
        return self.root / rel

    # degraded inputs -----------------------------------------------------
    def get_degraded(self, key: str) -> str | None:
        row = self._execute("SELECT path FROM degraded WHERE key = ?", (key,)).fetchone()
        if row is None or not (self.root / row["path"]).exists():
            return None
        return row["path"]

    def put_degraded(self, key: str, image: np.ndarray) -> str:
        rel = self.put_image(image)
        self._execute(
            "INSERT OR REPLACE INTO degraded (key, path, created) VALUES (?, ?, ?)",
            (key, rel, _now()),
        )
        return rel

    # cells ---------------------------------------------------------------
    def ok_keys(self) -> set[str]:
        """Keys of successfully computed cells whose image file exists."""
        rows = self._execute("SELECT key, output_path FROM cells WHERE status = 'ok'").fetchall()
        return {r["key"] for r in rows if r["output_path"] and (self.root / r["output_path"]).exists()}

    def put_cell(self, row: dict[str, Any]) -> None:
        """Insert or replace one cell row (a failed row never replaces an ok one)."""
        row = dict(row)
        row.setdefault("created", _now())
        for k in ("method_params", "degradation_params", "trace"):
            if k in row and not isinstance(row[k], str) and row[k] is not None:
                row[k] = json.dumps(row[k], sort_keys=True)
        unknown = set(row) - set(CELL_COLUMNS)
        if unknown:
            raise KeyError(f"unknown cell columns: {sorted(unknown)}")
        names = list(row)
        placeholders = ", ".join("?" for _ in names)
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "key")
        sql = (
            f"INSERT INTO cells ({', '.join(names)}) VALUES ({placeholders}) "
            f"ON CONFLICT(key) DO UPDATE SET {updates}"
        )
        if row.get("status") != "ok":
            sql += " WHERE cells.status != 'ok'"
        with self._transaction():
            self._execute(sql, [row[n] for n in names])

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM cells"
        args: tuple = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        return [dict(r) for r in self._execute(sql, args).fetchall()]

    def dataframe(self) -> Any:
        """All cells as a pandas DataFrame (parameters stay JSON strings)."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM cells", self._conn)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
