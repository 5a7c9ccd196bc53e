"""The results store: one SQLite row per cell (WAL mode) and content-addressed PNGs.

Layout of a results directory::

    results.sqlite             cells, degraded-input and image-digest tables
    images/ab/abcdef....png    restored and degraded images, named by content hash

A cell's PNG is written first (temporary file, then rename), then its row is
committed, so a killed process never leaves a row pointing at a missing or
partial image. Failed cells are stored with their error and retried by the
next run; ``status = 'ok'`` rows count as cached (and ``'n/a'`` rows, a
method's declaration that it does not handle the task), ok rows only while their
PNGs are intact: a PNG's name is the hash of its pixels, so a file damaged
later (disk, copy, editor) is detected (:meth:`Store.image_state`: the sha256
of its bytes recorded when it was written, else its decoded pixels) and its
cell recomputed instead of served.

``Store(root, read_only=True)`` never writes to the directory (no WAL or shm
files, no schema changes), so a read-only store (a shared results folder, a
mounted archive) can be reported, checked and plotted. Stores made by older
versions gain new columns (e.g. ``metric_impl``) the first time they are
opened for writing; their rows keep their values.

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
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, storage_error, storage_writes
from bench.images import save_png, to_uint8
from bench.metric_specs import METRIC_NAMES
from bench.record import COLUMNS, CellRecord
from bench.stored_images import CorruptImageError, image_path_for, read_stored_image, stored_image  # noqa: F401

CELL_COLUMNS = COLUMNS  # the one schema: bench.record.CellRecord's fields
DB_NAME = "results.sqlite"
KEPT = "Completed cells are kept."  # what a failed write of the store leaves: every earlier cell (see the docstring)
JSON_COLUMNS = ("method_params", "degradation_params", "trace", "metric_impl")


def damaged_database(db_path: Path, err: Exception) -> BenchError:
    """The error for a results database SQLite cannot read (garbage, truncated, not SQLite)."""
    return BenchError(f"results database '{db_path}' is damaged or not a results store ({err}); move it aside "
                      "and run `bench run` again to rebuild it.")


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """Open without writing anything: read-only, and ``immutable`` (no lock or WAL-index files) unless a WAL
    file shows that a writer is active or was killed, whose pages only the WAL index can show."""
    uri = "file:" + urllib.request.pathname2url(str(db_path.resolve()))
    wal = db_path.with_name(db_path.name + "-wal")
    options = ["mode=ro"] if wal.exists() else ["mode=ro&immutable=1"]
    if wal.exists() and wal.stat().st_size == 0:
        options.append("mode=ro&immutable=1")  # an empty WAL holds nothing the file lacks
    for option in options:
        try:
            conn = sqlite3.connect(f"{uri}?{option}", uri=True, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            continue
        except sqlite3.DatabaseError as err:  # not a database, or damaged
            raise damaged_database(db_path, err) from None
    raise BenchError(f"cannot read '{db_path}': its directory is read-only and '{wal.name}' holds results not yet "
                     "merged into the database (a run was killed); copy the results directory somewhere writable "
                     "and read it there.")


class Rows(list):
    """The rows of one statement, all fetched inside :meth:`Store._execute`'s checks (SQLite finds a damaged page
    while stepping through them), with a cursor's ``fetchone``, ``fetchall`` and ``rowcount``, and column names."""

    def __init__(self, cursor: sqlite3.Cursor):
        super().__init__(cursor.fetchall())
        self.rowcount, self.columns = cursor.rowcount, [d[0] for d in cursor.description or ()]

    fetchall = list.copy  # a plain list

    def fetchone(self) -> Any:
        return self[0] if self else None


class Store:
    """A results directory. Safe for several processes at once (SQLite WAL, busy retry).

    >>> import tempfile
    >>> Store(tempfile.mkdtemp()).rows()
    []
    """

    def __init__(self, root: str | os.PathLike, read_only: bool = False):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.read_only = read_only
        self.corrupt: dict[str, None] = {}  # stored images found corrupt (ordered set of relative paths)
        self.missing: dict[str, None] = {}  # stored images of cells asked for (cached_keys) found absent
        self._verified: set[str] = set()  # images checked intact by this instance
        self._unrecorded: dict[str, str] = {}  # sha256 of files found intact, for the image_digests table
        if read_only:
            if not self.db_path.is_file():
                raise BenchError(f"no results in '{self.root}'; run `bench run` first or pass --results-dir.")
            self._conn = _connect_read_only(self.db_path)
            self._conn.row_factory = sqlite3.Row
            return
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
        self._conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._execute("PRAGMA journal_mode=WAL")
            self._execute("PRAGMA synchronous=NORMAL")
            columns = ", ".join(f"{name} {kind}" for name, kind in CELL_COLUMNS.items())
            self._execute(f"CREATE TABLE IF NOT EXISTS cells ({columns})")
            self._execute("CREATE TABLE IF NOT EXISTS degraded (key TEXT PRIMARY KEY, path TEXT, created TEXT)")
            self._execute("CREATE TABLE IF NOT EXISTS image_digests (path TEXT PRIMARY KEY, sha256 TEXT)")
            self._migrate()
        except (sqlite3.DatabaseError, BenchError) as err:  # BenchError: damaged, read-only or full (_execute)
            self._conn.close()
            if isinstance(err, BenchError) or "locked" in str(err) or "busy" in str(err):
                raise
            raise damaged_database(self.db_path, err) from None

    def _migrate(self) -> None:
        """Add the columns a store made by an older version lacks (its rows get NULL there)."""
        if set(CELL_COLUMNS) <= self._columns():
            return
        with self._transaction():  # under the write lock: another process may be migrating too
            for name, kind in CELL_COLUMNS.items():
                if name not in self._columns():
                    self._execute(f"ALTER TABLE cells ADD COLUMN {name} {kind}")

    def _columns(self) -> set[str]:
        return {r["name"] for r in self._execute("PRAGMA table_info(cells)").fetchall()}

    def _writable(self) -> None:
        if self.read_only:
            raise BenchError(f"results directory '{self.root}' was opened read-only; nothing can be stored in it.")

    def close(self) -> None:
        self._record_digests()
        self._conn.close()

    def _execute(self, sql: str, args: tuple | list = ()) -> Rows:
        """Execute with retries (another process may hold the write lock), every row fetched; errors: one line."""
        delay = 0.05
        for attempt in range(40):
            try:
                return Rows(self._conn.execute(sql, args))
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or attempt == 39:
                    raise storage_error(err, self.db_path, "--results-dir", KEPT) or err from None  # full, read-only
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sqlite3.DatabaseError as err:
                if type(err) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError...: not damage
                    raise
                err.__traceback__ = None  # its frames hold the statement, which would keep the file open
                self._unrecorded = {}  # nothing more is written to it
                self._conn.close()
                raise damaged_database(self.db_path, err) from None  # "database disk image is malformed"
        raise AssertionError("unreachable")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
                self._conn.execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    execute, transaction = _execute, _transaction  # public for bench.bundle: imports rows in one transaction

    # images --------------------------------------------------------------
    def put_image(self, image: np.ndarray) -> str:
        """Store an image as PNG under its content hash; return the relative path."""
        self._writable()
        data = image if image.dtype == np.uint8 else to_uint8(image)
        rel = image_path_for(data)
        if self.image_state(rel) != "ok":  # absent, or damaged: (re)write it
            with storage_writes(self.root / rel, "--results-dir", KEPT, self.root):  # no space: no file left
                save_png(data, self.root / rel)
            self._verified.add(rel)
            self._unrecorded[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
        return rel

    def image_file(self, rel: str) -> Path:
        return self.root / rel

    def image_state(self, rel: str, recorded: str | None = None) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` (remembered in ``corrupt``), each file once per Store. Intact: its
        bytes have the sha256 recorded when it was last found intact (``recorded``, else the ``image_digests``
        table; ~0.1 ms for a 256 px PNG), or else it decodes to pixels that match its name (~2 ms; then recorded)."""
        if rel in self._verified:
            return "ok"
        try:
            digest = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            if digest != (self._recorded([rel]).get(rel) if recorded is None else recorded):
                read_stored_image(self.root, rel)
                self._unrecorded[rel] = digest
        except FileNotFoundError:
            return "missing"
        except (CorruptImageError, OSError):  # OSError: unreadable (a folder, no permission)
            self.corrupt[rel] = None
            return "corrupt"
        self._verified.add(rel)
        return "ok"

    def _recorded(self, paths: list[str] | None = None) -> dict[str, str]:
        """Recorded sha256 of stored files (all, or ``paths``); {} for a read-only store made before the table."""
        where = "" if paths is None else f" WHERE path IN ({', '.join('?' * len(paths))})"
        try:
            return {r[0]: r[1] for r in self._execute("SELECT path, sha256 FROM image_digests" + where, paths or [])}
        except sqlite3.OperationalError:
            return {}

    def _record_digests(self) -> None:
        """Save the digests of files found intact (an optimisation only: never fails the caller)."""
        items, self._unrecorded = list(self._unrecorded.items()), {}
        if items and not self.read_only:
            with suppress(sqlite3.Error, BenchError), self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO image_digests (path, sha256) VALUES (?, ?)", items)

    def read_image(self, rel: str) -> np.ndarray:
        """A stored image as float32 RGB in [0, 1], verified (:class:`CorruptImageError` when damaged)."""
        return read_stored_image(self.root, rel).astype(np.float32) / 255.0

    # degraded inputs -----------------------------------------------------
    def get_degraded(self, key: str) -> str | None:
        row = self._execute("SELECT path FROM degraded WHERE key = ?", (key,)).fetchone()
        if row is None or self.image_state(row["path"]) != "ok":
            return None  # absent or damaged: the observation is recomputed (and rewritten)
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

    def cached_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` whose ok row can be served: its restored and degraded PNGs intact (the degraded one:
        or never stored). Damaged files land in ``corrupt``, absent ones in ``missing``."""
        from concurrent.futures import ThreadPoolExecutor

        wanted = set(keys)
        rows = [r for r in self._execute("SELECT key, output_path, degraded_path FROM cells WHERE status = 'ok'")
                if r["key"] in wanted and r["output_path"]]
        paths, recorded = list({p for r in rows for p in (r["output_path"], r["degraded_path"]) if p}), self._recorded()
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # hashing (and decoding) release
            state = dict(zip(paths, pool.map(lambda p: self.image_state(p, recorded.get(p, "")), paths)))  # the GIL
        self._record_digests()
        self.missing.update((p, None) for r in rows for p in (r["output_path"], r["degraded_path"])
                            if p and state[p] == "missing")
        return {r["key"] for r in rows
                if state[r["output_path"]] == "ok" and not (r["degraded_path"] and state[r["degraded_path"]] != "ok")}

    def put_cell(self, row: CellRecord | dict[str, Any]) -> None:
        """Insert or replace one cell (a :class:`~bench.record.CellRecord`, or its columns as a dict, e.g. a bundle's
        row); a failed cell never replaces an ok one."""
        self._writable()
        row = row.columns() if isinstance(row, CellRecord) else dict(row)  # a record replaces every column
        if row.get("created") is None:
            row["created"] = _now()
        for k in JSON_COLUMNS:
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

    def update_metrics(self, key: str, output_path: str, values: dict[str, float], impl: dict[str, str]) -> bool:
        """Set metric ``values`` of one ok row and merge ``impl`` into its ``metric_impl``, atomically.

        False (nothing written) when the row changed since it was read (recomputed meanwhile: the values
        belong to another image) or is no longer ok.
        """
        self._writable()
        unknown = set(values) - set(METRIC_NAMES)
        if unknown:
            raise KeyError(f"unknown metrics: {sorted(unknown)}")
        with self._transaction():
            row = self._execute("SELECT status, output_path, metric_impl FROM cells WHERE key = ?", (key,)).fetchone()
            if row is None or row["status"] != "ok" or row["output_path"] != output_path:
                return False
            merged = {**json.loads(row["metric_impl"] or "{}"), **impl}
            sets = ", ".join(f"{name} = ?" for name in values)
            self._execute(f"UPDATE cells SET {sets}, metric_impl = ? WHERE key = ?",
                          [*values.values(), json.dumps(merged, sort_keys=True), key])
        return True

    def _has_cells(self) -> bool:
        return self._execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cells'").fetchone() is not None

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        if not self._has_cells():  # a read-only store whose first run never created its table
            return []
        sql = "SELECT * FROM cells"
        args: tuple = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        return [dict(r) for r in self._execute(sql, args).fetchall()]

    def dataframe(self, keys: Iterable[str] | None = None) -> Any:
        """All cells, or the cells of ``keys``, as a pandas DataFrame (parameters stay JSON strings; columns an
        older store lacks are empty)."""
        import pandas as pd

        if not self._has_cells():
            return pd.DataFrame(columns=list(CELL_COLUMNS))
        if keys is None:
            rows = self._execute("SELECT * FROM cells")  # as pd.read_sql_query builds it; damage: the one-line error
            df = pd.DataFrame.from_records(rows, columns=rows.columns, coerce_float=True)
        else:
            wanted, parts = sorted(set(keys)), []
            for start in range(0, max(len(wanted), 1), 500):  # SQLite limits the parameters of one statement
                chunk = wanted[start:start + 500]
                rows = self._execute(f"SELECT rowid AS stored_order, * FROM cells WHERE key IN "
                                     f"({', '.join('?' * len(chunk))})", chunk)
                parts.append(pd.DataFrame.from_records(rows, columns=rows.columns, coerce_float=True))
            # in the order the rows were stored, as the whole table reads (reports order columns by appearance)
            df = pd.concat(parts, ignore_index=True).sort_values("stored_order", kind="stable")
            df = df.drop(columns="stored_order").reset_index(drop=True)
        for name in CELL_COLUMNS:
            if name not in df:
                df[name] = None
        return df


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
