"""Stored images: content-addressed PNG names and the check that a stored PNG is still what its name says.

A stored PNG is named by the sha256 of its pixels (:func:`image_path_for`), so a file
damaged later (disk, copy, editor) is detected by decoding it (:func:`read_stored_image`);
:class:`bench.store.Store` records the sha256 of each file's bytes once it is found
intact, so that later checks hash the file instead of decoding it. Everything here is
re-exported by :mod:`bench.store`.

Example:
    >>> import numpy as np, tempfile
    >>> from bench.images import save_png
    >>> root = tempfile.mkdtemp()
    >>> pixels = np.zeros((16, 16, 3), np.uint8)
    >>> save_png(pixels, f"{root}/{image_path_for(pixels)}")
    >>> read_stored_image(root, image_path_for(pixels)).shape
    (16, 16, 3)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ImageError


def image_path_for(data: np.ndarray) -> str:
    """Relative content-addressed path of an 8-bit image."""
    digest = hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()
    return f"images/{digest[:2]}/{digest}.png"


class CorruptImageError(ImageError):
    """A stored PNG that cannot be decoded or whose pixels no longer match its content-hash name.

    >>> "bench run" in str(CorruptImageError.for_file("images/ab/ab12.png", "truncated"))
    True
    """

    @classmethod
    def for_file(cls, path: str | os.PathLike, why: str) -> CorruptImageError:
        return cls(f"stored image '{path}' is corrupt ({why}); run `bench run` again with the same options "
                   "to recompute it.")


def read_stored_image(root: str | os.PathLike, rel: str) -> np.ndarray:
    """The 8-bit ``(H, W, 3)`` pixels of the stored PNG ``rel``, verified against its name.

    Raises ``FileNotFoundError`` when it is absent and :class:`CorruptImageError` when it is damaged.
    """
    from PIL import Image

    path = Path(root) / rel
    try:
        with Image.open(path) as img:
            data = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise
    except Exception as err:  # Pillow and zlib raise many types for damaged files
        detail = str(err).splitlines()[0] if str(err) else "no detail"
        raise CorruptImageError.for_file(path, f"unreadable: {type(err).__name__}: {detail}") from None
    if Path(image_path_for(data)).stem != Path(rel).stem:
        raise CorruptImageError.for_file(path, "its pixels do not match the content hash in its name")
    return data


def stored_image(root: str | os.PathLike, rel: Any, notes: list[str]) -> np.ndarray | None:
    """A stored image as float32 RGB in [0, 1]; None when none is stored, or when absent or damaged (then
    ``notes`` gets a line naming the file and the repair), so figures and reports go on without it."""
    if not isinstance(rel, str) or not rel:
        return None
    if not (Path(root) / rel).is_file():
        note = (f"stored image '{Path(root) / rel}' is missing; run `bench run` again with the same options to "
                "recompute it.")
        notes.extend([note] if note not in notes else [])  # e.g. identity's output is its degraded input
        return None
    try:
        return read_stored_image(root, rel).astype(np.float32) / 255.0
    except CorruptImageError as err:
        notes.extend([str(err)] if str(err) not in notes else [])
        return None


PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"  # every PNG's first and last bytes


def quick_state(path: str | os.PathLike) -> str:
    """``"ok"``, ``"missing"`` or ``"damaged"``, without decoding (reports check every image they show): a stored
    PNG exists and begins and ends as every PNG does, which an emptied or truncated one does not. Damage inside a
    file is found where it is decoded (``bench run``, figures).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.png"
    >>> quick_state(path), path.write_bytes(PNG_START + PNG_END) and quick_state(path)
    ('missing', 'ok')
    """
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(PNG_START))
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - len(PNG_END)))
            end = handle.read()
    except FileNotFoundError:
        return "missing"
    except OSError:  # a folder, no permission
        return "damaged"
    return "ok" if start == PNG_START and end == PNG_END else "damaged"


def damaged_note(paths: list[str]) -> str:
    """The ``note:`` a report gives for stored images it cannot show.

    >>> damaged_note(["images/ab/ab1.png"])
    'note: 1 stored image(s) are missing or damaged (images/ab/ab1.png); run `bench run` again with the same options to recompute them.'
    """
    return (f"note: {len(paths)} stored image(s) are missing or damaged ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''}); "
            "run `bench run` again with the same options to recompute them.")


def recomputed_warnings(corrupt: list[str], missing: list[str]) -> list[str]:
    """The ``warning:`` lines of ``bench run`` for stored images it found corrupt or missing and recomputed.

    >>> recomputed_warnings([], ["images/ab/ab1.png", "images/cd/cd2.png"])
    ['warning: 2 stored image(s) were missing and were recomputed (images/ab/ab1.png, images/cd/cd2.png)']
    """
    return [f"warning: {len(paths)} stored image(s) were {kind} and were recomputed ({', '.join(paths[:3])}"
            + (", ..." if len(paths) > 3 else "") + ")" for kind, paths in (("corrupt", corrupt), ("missing", missing))
            if paths]
