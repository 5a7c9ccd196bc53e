"""User-facing errors: each names the problem and how to fix it.

The CLI turns :class:`BenchError` into a one-line message and its ``exit_code``
(2 for usage problems, as click does) instead of a traceback.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BenchError(Exception):
    """An error caused by the user's input, reported without a traceback.

    >>> BenchError("no results").exit_code
    1
    """

    exit_code = 1


class UsageError(BenchError):
    """Bad command-line input: unknown names, malformed overrides.

    >>> UsageError("bad option").exit_code
    2
    """

    exit_code = 2


class UnknownNameError(UsageError):
    """A method, degradation, dataset or profile name that is not registered.

    >>> isinstance(UnknownNameError("dip2"), UsageError)
    True
    """


class ParameterError(UsageError):
    """A parameter that does not exist or has an invalid value.

    >>> ParameterError("tv.wieght").exit_code
    2
    """


class ImageError(BenchError):
    """An image file that cannot be used (corrupt, empty, too small).

    >>> isinstance(ImageError("empty.png"), BenchError)
    True
    """


class CheckpointError(BenchError):
    """A checkpoint that is missing, truncated or unsafe to load.

    >>> CheckpointError("x.pt").exit_code
    1
    """


class StorageError(BenchError):
    """A write the file system refused (read-only, no permission) or had no space for; what was written before
    it stays (every file is written to a temporary name and renamed, every row committed on its own).

    >>> StorageError("disk full").exit_code
    1
    """


FULL = {errno.ENOSPC, errno.EDQUOT}  # out of space (or quota)
REFUSED = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


def storage_error(err: BaseException, path: str | os.PathLike, option: str | None, kept: str = "",
                  folder: str | os.PathLike | None = None) -> StorageError | None:
    """The one-line error for a write to ``path`` that failed for lack of space or permission (an ``OSError``, or
    SQLite's "database or disk is full" / "readonly database"); None for any other error. ``option`` names where
    the user can write instead (``--out``); ``kept`` ends the line. A permission error on a file outside ``folder``
    (default: the folder of ``path``) is a failed read, not this.

    >>> print(storage_error(OSError(errno.ENOSPC, "No space left on device"), "res/x.png", "--results-dir"))
    disk full while writing 'res/x.png' (ENOSPC: No space left on device); free space or choose another --results-dir.
    >>> print(storage_error(OSError(errno.EROFS, "Read-only file system"), "b.zip", "--out"))
    cannot write 'b.zip': read-only file system (EROFS: Read-only file system); choose another --out.
    >>> storage_error(OSError(errno.ENOENT, "No such file or directory"), "b.zip", "--out") is None
    True
    """
    number, name = getattr(err, "errno", None), str(getattr(err, "sqlite_errorname", "") or "")
    if isinstance(err, OSError) and number in FULL | set(REFUSED):
        detail, reason = f"{errno.errorcode.get(number, number)}: {err.strerror}", REFUSED.get(number, "")
        filename = getattr(err, "filename", None)
        if number != errno.EROFS and number not in FULL and filename is not None and not Path(
                os.path.abspath(filename)).is_relative_to(os.path.abspath(folder or Path(path).parent)):
            return None  # e.g. an unreadable input file
    elif type(err).__module__ == "sqlite3" and (name.startswith("SQLITE_FULL") or "database or disk is full" in str(err)):
        number, detail = errno.ENOSPC, f"SQLite: {err}"
    elif type(err).__module__ == "sqlite3" and (name.startswith("SQLITE_READONLY") or "readonly database" in str(err)):
        number, detail, reason = errno.EACCES, f"SQLite: {err}", "the database is read-only"
    else:
        return None
    where = f"choose another {option}" if option else "write somewhere else"
    if number in FULL:
        text = f"disk full while writing '{path}' ({detail}); free space or {where}."
    else:
        fix = " or fix its permissions" if number != errno.EROFS else ""
        text = f"cannot write '{path}': {reason} ({detail}); {where}{fix}."
    return StorageError(text + (f" {kept}" if kept else ""))


@contextmanager
def storage_writes(path: str | os.PathLike, option: str | None, kept: str = "",
                   folder: str | os.PathLike | None = None) -> Iterator[None]:
    """Writes to ``path`` inside this block that fail for lack of space or permission raise :func:`storage_error`'s
    one line (``from None``) instead; every other error passes unchanged."""
    try:
        yield
    except BenchError:
        raise
    except Exception as err:
        error = storage_error(err, path, option, kept, folder)
        if error is None:
            raise
        raise error from None


def write_fault(err: OSError) -> StorageError | None:
    """:func:`storage_error` for an ``OSError`` no caller converted, when only a write can have raised it (no
    space, a read-only file system; not "permission denied", which reading gives too) and it names its file.

    >>> print(write_fault(OSError(errno.EROFS, "Read-only file system", "figs/a.png")))
    cannot write 'figs/a.png': read-only file system (EROFS: Read-only file system); write somewhere else.
    """
    if not err.filename or err.errno not in FULL | {errno.EROFS}:
        return None
    return storage_error(err, err.filename, None)
