"""Reading and writing images with explicit conversions.

Images inside the suite are ``float32`` RGB arrays ``(H, W, 3)`` in [0, 1].
Conversions are explicit and logged once per file: 16-bit inputs are scaled by
1/65535, grayscale is replicated to three channels, an alpha channel is
dropped (a warning says so when it is not fully opaque). Unreadable, empty or
tiny files raise :class:`bench.errors.ImageError` naming the file.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> save_png(np.full((16, 16, 3), 0.5, np.float32), path)
    >>> load_image(path).shape
    (16, 16, 3)
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from bench.errors import ImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MIN_SIZE = 16


def to_float_rgb(array: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert an integer or float array of any channel layout to float32 RGB."""
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        log.warning("%s: 16-bit image, scaled to [0, 1] by 1/65535", source)
        out = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        out = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        out = np.clip(array.astype(np.float32), 0.0, 1.0)
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(array.astype(np.float64) / info.max, 0, 1).astype(np.float32)
    else:
        raise ImageError(f"{source}: unsupported pixel type {array.dtype}; convert it to 8-bit RGB.")
    if out.ndim == 2:
        log.warning("%s: grayscale image, replicated to 3 RGB channels", source)
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.ndim == 3 and out.shape[2] in (2, 4):
        alpha = out[:, :, -1]
        opaque = "" if float(alpha.min()) >= 1.0 else " (it was not fully opaque)"
        log.warning("%s: alpha channel dropped%s", source, opaque)
        out = out[:, :, :-1]
        if out.shape[2] == 1:
            log.warning("%s: grayscale image, replicated to 3 RGB channels", source)
            out = np.repeat(out, 3, axis=2)
    elif out.ndim == 3 and out.shape[2] == 1:
        log.warning("%s: grayscale image, replicated to 3 RGB channels", source)
        out = np.repeat(out, 3, axis=2)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ImageError(f"{source}: unexpected array shape {array.shape}; expected H×W or H×W×C.")
    return np.ascontiguousarray(out)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load ``path`` as float32 RGB in [0, 1], with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image '{path}' does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"image '{path}' is empty (0 bytes); delete or replace the file.")
    import imageio.v3 as iio

    try:
        array = iio.imread(path, index=0) if path.suffix.lower() in {".gif", ".tif", ".tiff"} else iio.imread(path)
    except Exception as err:  # imageio raises many types for corrupt data
        raise ImageError(
            f"cannot read image '{path}': the file is corrupt or not an image ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). Replace or remove it."
        ) from None
    array = np.asarray(array)
    if array.ndim < 2 or array.shape[0] < MIN_SIZE or array.shape[1] < MIN_SIZE:
        shape = "×".join(map(str, array.shape[:2])) if array.ndim >= 2 else str(array.shape)
        raise ImageError(
            f"image '{path}' is {shape} px; images must be at least {MIN_SIZE}×{MIN_SIZE} px."
        )
    return to_float_rgb(array, source=str(path))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round a [0, 1] float image to 8-bit (the stored form)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an 8-bit PNG atomically (temporary file in the same folder, then rename)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image if image.dtype == np.uint8 else to_uint8(image)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(data).save(handle, format="PNG")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def center_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """Centre crop to ``size``×``size``; sides already smaller are kept whole."""
    if size is None:
        return image
    h, w = image.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(image[top : top + ch, left : left + cw])


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(name: str) -> str:
    """An image id that is safe as a file name: no separators, no leading dots."""
    cleaned = _SAFE.sub("_", name).strip("._") or "image"
    return cleaned[:120]


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG the store wrote (any size, 8-bit RGB) as float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
