"""Datasets: ``builtin`` (scikit-image's sample photos), ``folder:PATH`` and ``div2k``.

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
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import BenchError, ImageError, UsageError
from bench.images import IMAGE_SUFFIXES, MIN_SIZE, center_crop, load_image, safe_id, to_float_rgb

log = logging.getLogger(__name__)

BUILTIN_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
DIV2K_ENV = "BENCH_DIV2K_ROOT"
DIV2K_URL = "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip"
# md5 of the extracted DIV2K_valid_HR folder (md5 of the sorted per-file md5 hex
# digests), the convention and value published by deepinv's DIV2K dataset.
DIV2K_VALID_FOLDER_MD5 = "542325e500b0a474c7ad18bae922da72"
DATASET_HELP = {
    "builtin": "scikit-image sample photos, no download: " + ", ".join(BUILTIN_IMAGES),
    "folder:PATH": "every PNG/JPEG/BMP/TIFF image in PATH (sorted by name)",
    "div2k": f"DIV2K_valid_HR/0801-0900.png under --data-root or ${DIV2K_ENV}",
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
    root = data_root or os.environ.get(DIV2K_ENV)
    if not root:
        raise UsageError(
            f"div2k needs its location: pass --data-root DIR or set {DIV2K_ENV} to the folder "
            "that contains DIV2K_valid_HR/ (download it with `bench data download div2k`)."
        )
    folder = Path(root) / "DIV2K_valid_HR"
    if not folder.is_dir():
        raise UsageError(
            f"'{folder}' not found; the div2k dataset expects DIV2K_valid_HR/0801.png ... under "
            f"'{root}'. Run `bench data download div2k --data-root {root}`."
        )
    return folder


def load_dataset(
    spec: str, limit: int | None = None, crop: int | None = None, data_root: str | None = None
) -> list[ImageItem]:
    """Load ``builtin``, ``folder:PATH`` or ``div2k`` as a list of :class:`ImageItem` (the first ``limit`` images,
    centre-cropped to ``crop``; ``None``: all images, no crop)."""
    if limit is not None and limit < 1:  # a slice would silently drop images (-1) or keep all (0)
        raise UsageError(f"limit {limit}: must be at least 1 (leave it out to use every image).")
    if crop is not None and crop < MIN_SIZE:
        raise UsageError(f"crop {crop}: must be at least {MIN_SIZE} (images must be at least {MIN_SIZE}×{MIN_SIZE} px).")
    if spec == "builtin":
        raw = _builtin(limit)
    elif spec.startswith("folder:"):
        raw = _folder(Path(spec[len("folder:") :]).expanduser(), limit)
    elif spec == "div2k":
        raw = _folder(div2k_root(data_root), limit)
    else:
        raise UsageError(
            f"unknown dataset '{spec}'. Use builtin, folder:PATH or div2k (see `bench list`)."
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


def folder_md5(folder: Path) -> str:
    """md5 over the sorted per-file md5 hex digests (deepinv's folder convention)."""
    outer = hashlib.md5()
    for name in sorted(os.listdir(folder)):
        inner = hashlib.md5()
        with open(folder / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(inner.hexdigest().encode())
    return outer.hexdigest()


def download_div2k(data_root: str | Path, url: str = DIV2K_URL) -> Path:
    """Download and unpack DIV2K_valid_HR under ``data_root``, verifying its checksum."""
    root = Path(data_root)
    target = root / "DIV2K_valid_HR"
    if target.is_dir() and folder_md5(target) == DIV2K_VALID_FOLDER_MD5:
        log.info("%s already present and verified", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "DIV2K_valid_HR.zip"
        try:
            from tqdm.auto import tqdm

            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                with tqdm(total=total or None, unit="B", unit_scale=True, desc="DIV2K") as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            raise BenchError(
                f"could not download {url} ({err}). Offline? Copy DIV2K_valid_HR/ from elsewhere "
                f"into '{root}' and point --data-root or ${DIV2K_ENV} at it."
            ) from None
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        extracted = Path(tmp) / "DIV2K_valid_HR"
        digest = folder_md5(extracted)
        if digest != DIV2K_VALID_FOLDER_MD5:
            raise BenchError(
                f"checksum mismatch for {url}: folder md5 {digest}, expected "
                f"{DIV2K_VALID_FOLDER_MD5}. The download is corrupt; try again."
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(extracted, target)
    return target
