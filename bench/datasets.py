"""Datasets: ``builtin`` (scikit-image's sample photos), ``folder:PATH`` and the standard test sets by name
(``set5``, ``set14``, ``bsd68``, ``cbsd68``, ``kodak24``, ``mcmaster``, ``urban100``, ``div2k``:
:mod:`bench.standard_sets`, where they are found and how they are downloaded).

A dataset yields :class:`ImageItem` objects: a safe id, the float32 RGB array
(after the centre crop) and the content hash used in cache keys.

Example:
    >>> items = load_dataset("builtin", limit=1, crop=32)
    >>> items[0].id, items[0].image.shape
    ('astronaut', (32, 32, 3))
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import ImageError, UsageError
from bench.images import IMAGE_SUFFIXES, MIN_SIZE, center_crop, load_image, safe_id, to_float_rgb
from bench.standard_sets import SETS, STANDARD_SETS, dataset_folder, download, folder_md5, locate  # noqa: F401 (folder_md5)

log = logging.getLogger(__name__)

BUILTIN_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
DIV2K_ENV = SETS["div2k"].env
DIV2K_URL = SETS["div2k"].sources[0].url
# md5 of the extracted DIV2K_valid_HR folder (md5 of the sorted per-file md5 hex
# digests), the convention and value published by deepinv's DIV2K dataset.
DIV2K_VALID_FOLDER_MD5 = SETS["div2k"].sources[0].folder_md5
DATASET_HELP = {
    "builtin": "scikit-image sample photos, no download: " + ", ".join(BUILTIN_IMAGES),
    "folder:PATH": "every PNG/JPEG/BMP/TIFF image in PATH (sorted by name)",
    **{name: f"{s.title}, {s.count} images ({s.task}); --data-root DIR/{s.folder}/, ${s.env} or the cache; "
             f"`bench data download {name}`" for name, s in STANDARD_SETS.items()},
}


@dataclass
class ImageItem:
    """One evaluation image: ``image`` is float32 RGB ``(H, W, 3)`` in [0, 1].

    >>> len(ImageItem("flat", np.zeros((2, 2, 3), np.float32)).digest)
    20
    """

    id: str
    image: np.ndarray
    source: str = ""
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = image_digest(self.image)


def image_digest(image: np.ndarray) -> str:
    """Content hash of an image as stored (8-bit rounding makes it stable)."""
    data = np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)
    h = hashlib.sha256()
    h.update(str(data.shape).encode())
    h.update(data.tobytes())
    return h.hexdigest()[:20]


def _builtin(limit: int | None) -> list[tuple[str, np.ndarray, str]]:
    from skimage import data as skdata

    names = BUILTIN_IMAGES[:limit]
    return [(name, to_float_rgb(getattr(skdata, name)(), f"skimage.data.{name}"), f"skimage.data.{name}") for name in names]


def list_folder(path: Path) -> list[Path]:
    """Image files of a folder; other files are skipped with one warning."""
    if not path.is_dir():
        raise UsageError(f"dataset folder '{path}' does not exist or is not a folder.")
    files, skipped = [], []
    for entry in sorted(path.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
        elif entry.is_file() and not entry.name.startswith("."):
            skipped.append(entry.name)
    if skipped:
        log.warning("%s: skipped %d non-image file(s): %s", path, len(skipped), ", ".join(skipped[:5]))
    if not files:
        raise UsageError(
            f"dataset folder '{path}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return files


def _folder(path: Path, limit: int | None) -> list[tuple[str, np.ndarray, str]]:
    files = list_folder(path)[:limit]
    return [(f.stem, load_image(f), str(f)) for f in files]


def div2k_root(data_root: str | None) -> Path:
    """The DIV2K_valid_HR folder (:func:`bench.standard_sets.locate`)."""
    return locate("div2k", data_root)


def load_dataset(
    spec: str, limit: int | None = None, crop: int | None = None, data_root: str | None = None
) -> list[ImageItem]:
    """Load ``builtin``, ``folder:PATH`` or a standard set (``kodak24``, ``div2k``, ...) as a list of
    :class:`ImageItem` (the first ``limit`` images, centre-cropped to ``crop``; ``None``: all images, no crop).
    A standard set is read from :func:`bench.standard_sets.locate` (``data_root`` first)."""
    if limit is not None and limit < 1:  # a slice would silently drop images (-1) or keep all (0)
        raise UsageError(f"limit {limit}: must be at least 1 (leave it out to use every image).")
    if crop is not None and crop < MIN_SIZE:
        raise UsageError(f"crop {crop}: must be at least {MIN_SIZE} (images must be at least {MIN_SIZE}×{MIN_SIZE} px).")
    folder = dataset_folder(spec, data_root)  # the one resolution, shared with bench.keycache
    if spec == "builtin":
        raw = _builtin(limit)
    elif spec in STANDARD_SETS:
        raw = _folder(locate(spec, data_root), limit)  # checks the folder holds the whole set, or says how to get it
    elif folder is not None:
        raw = _folder(folder, limit)
    else:
        raise UsageError(
            f"unknown dataset '{spec}'. Use builtin, folder:PATH or one of {', '.join(STANDARD_SETS)} "
            "(see `bench list`)."
        )
    items, seen = [], set()
    for name, image, source in raw:
        image_id = safe_id(name)
        if image_id in seen:
            raise ImageError(f"two images map to the id '{image_id}' ({source}); rename one.")
        seen.add(image_id)
        items.append(ImageItem(id=image_id, image=center_crop(image, crop), source=source))
    _check_distinct(items, {source: image for _, image, source in raw})
    return items


def _check_distinct(items: list[ImageItem], full: dict[str, np.ndarray]) -> None:
    """Refuse two images with the same content: cells and stored results are keyed by the image's digest, so the
    second would silently take the first one's results (``computed 2``, one row, a mean over one image).
    ``full``: each item's uncropped image by source, to say whether the files or only their crops are the same."""
    first_by_digest: dict[str, ImageItem] = {}
    for item in items:
        first = first_by_digest.setdefault(item.digest, item)
        if first is item:
            continue
        if image_digest(full[first.source]) == image_digest(full[item.source]):
            where, fix = "", "Remove one of them."
        else:  # different files whose centre crops agree (a border, a frame): the crop is what is keyed
            height, width = item.image.shape[:2]
            where, fix = f" in their centre {height}×{width} crop", "Remove one of them or choose another --crop."
        raise ImageError(
            f"images '{first.source}' and '{item.source}' have identical pixels{where}; a dataset must not hold an "
            f"image twice (the store keys images by content). {fix}"
        )


def download_div2k(data_root: str | Path, url: str = DIV2K_URL) -> Path:
    """Download and unpack DIV2K_valid_HR under ``data_root``, verifying its checksum
    (:func:`bench.standard_sets.download`; ``url``: another location of the same archive)."""
    from dataclasses import replace

    source = replace(SETS["div2k"].sources[0], url=url)
    return download("div2k", data_root, sources=(source,)).folder
