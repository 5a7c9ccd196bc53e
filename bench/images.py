"""Reading and writing images with explicit conversions.

Images inside the suite are ``float32`` RGB arrays ``(H, W, 3)`` in [0, 1].
Every conversion whose meaning is clear is made and logged once per file; an
image whose meaning is not clear is an :class:`bench.errors.ImageError` naming
the file and the fix, never a silent guess:

* 8-bit: scaled by 1/255; 16-bit: by 1/65535 (warning).
* other integer types (``int32`` TIFF, Pillow mode ``I``...): by their actual
  range, as 8-bit when the values fit 0..255, as 16-bit when they fit 0..65535
  (warning); negative or larger values are an error.
* floating point: values in [0, 1] as they are; values in [0, 255] scaled by
  1/255 (warning); anything else (negative, above 255, NaN) is an error.
* CMYK (JPEG or TIFF), palette, YCbCr, Lab: converted to RGB by Pillow (its CMYK
  conversion knows Adobe's inverted CMYK JPEGs); ICC profiles are not applied.
* grayscale is replicated to three channels; an alpha channel is dropped (a
  warning says so when it is not fully opaque).
* a TIFF with several full-size pages (a stack, a multi-page scan) is an error:
  which page is "the image" is not clear, so save that page as its own file.
  Reduced-resolution pages (thumbnails, pyramids) are ignored.

Unreadable, empty or tiny files are errors too.

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
TIFF_SUFFIXES = {".tif", ".tiff"}
MIN_SIZE = 16
FLOAT_SLACK = 1e-4  # rounding noise tolerated (and clipped) at the ends of a float range
# Pillow modes converted to RGB(A) or gray by Pillow itself, with the warning to log (None: silent).
PILLOW_CONVERSIONS = {
    "CMYK": ("RGB", "CMYK image, converted to RGB by Pillow (no colour profile applied)"),
    "YCbCr": ("RGB", None),
    "LAB": ("RGB", "Lab image, converted to RGB by Pillow"),
    "HSV": ("RGB", "HSV image, converted to RGB by Pillow"),
    "RGBX": ("RGB", None),
    "RGBa": ("RGBA", None),
    "La": ("LA", None),
    "1": ("L", None),
    "PA": ("RGBA", None),
}


def _float_to_unit(array: np.ndarray, source: str) -> np.ndarray:
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise ImageError(f"{source}: floating-point image with NaN or infinite values; fix or re-export it.")
    low, high = float(values.min()), float(values.max())
    if low >= -FLOAT_SLACK and high <= 1.0 + FLOAT_SLACK:
        return np.clip(values, 0.0, 1.0)
    if low >= -FLOAT_SLACK and high <= 255.0 + FLOAT_SLACK:
        log.warning("%s: floating-point image with values up to %.4g, read as 0-255 and scaled by 1/255",
                    source, high)
        return np.clip(values / 255.0, 0.0, 1.0)
    raise ImageError(
        f"{source}: floating-point image with values in [{low:.4g}, {high:.4g}]; only [0, 1] or [0, 255] have a "
        "clear meaning. Rescale it to one of those ranges or save it as 8- or 16-bit."
    )


def _integers_to_unit(array: np.ndarray, source: str) -> np.ndarray:
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low >= 0 and high <= 255:
        log.warning("%s: %s image with values in 0..%d, read as 8-bit (scaled by 1/255)", source, array.dtype, high)
        return array.astype(np.float32) / 255.0
    if low >= 0 and high <= 65535:
        log.warning("%s: %s image with values in 0..%d, read as 16-bit (scaled by 1/65535)", source, array.dtype,
                    high)
        return array.astype(np.float32) / 65535.0
    raise ImageError(
        f"{source}: {array.dtype} image with values in [{low}, {high}], outside the 8-bit (0..255) and 16-bit "
        "(0..65535) ranges; rescale it and save it as 8- or 16-bit."
    )


def to_float_rgb(array: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert an integer or float array of any channel layout to float32 RGB (see the module docstring)."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        log.warning("%s: 16-bit image, scaled to [0, 1] by 1/65535", source)
        out = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        out = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        out = _float_to_unit(array, source)
    elif np.issubdtype(array.dtype, np.integer):
        out = _integers_to_unit(array, source)
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
        raise ImageError(f"{source}: unexpected array shape {array.shape}; expected H×W or H×W×C (C = 1 to 4).")
    return np.ascontiguousarray(out)


def _read_pillow(path: Path) -> np.ndarray:
    """The first frame through Pillow, with non-RGB colour models converted by Pillow (see PILLOW_CONVERSIONS)."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode in PILLOW_CONVERSIONS:
            target, message = PILLOW_CONVERSIONS[img.mode]
            if message:
                log.warning("%s: %s", path, message)
            img = img.convert(target)
        return np.asarray(img)


def _read_tiff(path: Path) -> np.ndarray | None:
    """A single-page gray/RGB(A) TIFF through tifffile (any sample type, planar or not); None when Pillow should
    read it (other colour models, or a compression tifffile cannot decode here)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = [page for page in tif.pages if not getattr(page, "is_reduced", False)]
            if len(pages) > 1:
                raise ImageError(
                    f"image '{path}' is a multi-page TIFF ({len(pages)} full-size pages); which page to use is not "
                    "clear. Save the page you want as its own file (e.g. Pillow: Image.open(p).seek(i); .save(...))."
                )
            page = pages[0] if pages else tif.pages[0]
            if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
                return None
            array, axes = page.asarray(), page.axes
    except ImageError:
        raise
    except Exception:  # a compression without its codec, an exotic layout: let Pillow try
        return None
    if axes.startswith("S") and array.ndim == 3:  # planar configuration: samples first
        array, axes = np.moveaxis(array, 0, -1), axes[1:] + "S"
    if axes not in ("YX", "YXS"):
        raise ImageError(f"image '{path}': TIFF page with axes {axes} (shape {array.shape}); expected a 2-D image.")
    return array


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load ``path`` as float32 RGB in [0, 1], with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image '{path}' does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"image '{path}' is empty (0 bytes); delete or replace the file.")
    try:
        array = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else None
        if array is None:
            array = _read_pillow(path)
    except ImageError:
        raise
    except Exception as err:  # the decoders raise many types for corrupt data
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
    """Read a PNG the store wrote (any size, 8-bit RGB) as float32 in [0, 1]; a missing or damaged file is an
    :class:`ImageError` naming it (the store's images are named by their content hash, so re-running the cells
    that made it rewrites it)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # missing, truncated, not a PNG, bad chunks
        raise ImageError(
            f"stored image '{path}' is missing or corrupt ({type(err).__name__}); run `bench run` with the same "
            "options again to recompute it."
        ) from None
