"""Reading and writing images with explicit conversions.

Images inside the suite are ``float32`` RGB arrays ``(H, W, 3)`` in [0, 1].
Every conversion whose meaning is clear is made and logged once per file; an
image whose meaning is not clear is an :class:`bench.errors.ImageError` naming
the file and the fix, never a silent guess:

* 8-bit: scaled by 1/255; 16-bit: by 1/65535 (warning), grayscale and colour
  alike (Pillow reads 16-bit colour PNGs as 8-bit; the bytes it drops are
  decoded too, see :func:`_read_png16`).
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
* an animated image (APNG, GIF, WebP) is an error for the same reason: which
  frame is "the image" is not clear. (An MPO camera JPEG is read: its first
  image is by definition the primary one, the others are previews or views.)
* an EXIF (or TIFF) orientation tag is applied, rotating or flipping the pixels
  as every viewer shows them (warning); orientation 1 or none: as stored.

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import ImageError

if TYPE_CHECKING:
    from PIL import Image

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
# Pillow (10 to at least 13) has no 16-bit colour modes: it decodes a 16-bit RGB(A) or gray+alpha PNG to 8 bits per
# sample, keeping the high byte. Its PNG decoder unpacks rows through a "raw mode"; one with the same bits per pixel
# (so row filters and interlacing are undone alike) hands over the bytes it drops. Key: the raw mode Pillow chose;
# value: the one whose output, together with Pillow's own, gives the full 16-bit samples (see _read_png16).
PNG16_RAWMODES = {
    "RGB;16B": "RGB;16L",  # RGB;16L reads little-endian samples' high byte: of PNG's big-endian ones, the low byte
    "RGBA;16B": "RGBA;16L",
    "LA;16B": "RGBA",  # gray+alpha (Pillow mode RGBA): plain RGBA copies all 4 bytes, L high/low, A high/low
}
# Formats whose extra frames are not animation: TIFF pages are judged by _read_tiff; an MPO (a camera's JPEG with
# previews, depth maps or a second stereo view) has the primary image first, by the CIPA DC-007 standard.
STILL_MULTI_FRAME_FORMATS = {"TIFF", "MPO"}
EXIF_ORIENTATION = 0x0112  # EXIF and TIFF tag 274
# Orientation tag value -> the operation that shows the pixels as viewers do: Pillow's ImageOps.exif_transpose table
# (2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90) on
# (H, W, ...) arrays, so 16-bit and tifffile images are turned by the same rule (a test checks the two agree).
ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
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


def _exif_orientation(img: Image.Image, path: Path) -> int:
    """The EXIF orientation tag of an open Pillow image (1, "as stored", when there is none or it is not 1..8)."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)  # Pillow also reads XMP's tiff:Orientation here
    except Exception as err:  # a damaged EXIF block must not make good pixels unreadable
        log.warning("%s: EXIF data unreadable (%s), orientation not applied", path, type(err).__name__)
        return 1
    return value if isinstance(value, int) and value in ORIENTATIONS else 1


def _refuse_animation(img: Image.Image, path: Path) -> None:
    """An animated image (APNG, GIF, WebP) is an error: reading its first frame would be a silent guess."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format not in STILL_MULTI_FRAME_FORMATS:
        raise ImageError(
            f"image '{path}' is animated ({frames} frames); which frame to use is not clear. Save the frame you "
            "want as its own file."
        )


def _decode_png_as(path: Path, rawmode: str) -> np.ndarray:
    """``path`` (a PNG) decoded by Pillow with its rows unpacked through ``rawmode`` instead of its own choice."""
    from PIL import Image

    with Image.open(path) as img:
        img.tile = [(*tile[:3], rawmode) for tile in img.tile]  # (codec, extents, offset, args): the args
        return np.asarray(img)


def _read_png16(path: Path, rawmode: str) -> np.ndarray:
    """A 16-bit colour PNG at full depth, ``uint16`` (H, W, C); ``rawmode`` is Pillow's (a key of PNG16_RAWMODES)."""
    other = PNG16_RAWMODES[rawmode]
    try:
        extra = _decode_png_as(path, other)
    except ValueError as err:  # a Pillow without that raw mode: refuse rather than keep 8 of the 16 bits
        raise ImageError(
            f"image '{path}' is a 16-bit colour PNG that this Pillow cannot read at full depth ({err}); save it as "
            "a 16-bit TIFF or an 8-bit PNG."
        ) from None
    if rawmode == "LA;16B":  # one decode carries every byte: (L high, L low, A high, A low) per pixel
        pairs = extra.astype(np.uint16).reshape(*extra.shape[:2], 2, 2)
        return (pairs[..., 0] << 8) | pairs[..., 1]
    high = _decode_png_as(path, rawmode)  # what Pillow reads by itself
    return (high.astype(np.uint16) << 8) | extra


def _read_pillow(path: Path) -> tuple[np.ndarray, int]:
    """The only frame through Pillow, with non-RGB colour models converted by Pillow (see PILLOW_CONVERSIONS), and
    the EXIF orientation to apply."""
    from PIL import Image

    with Image.open(path) as img:
        # first: getexif() decodes a PNG (its eXIf chunk may follow the pixels), which clears the tile
        rawmode = img.tile[0][3] if img.format == "PNG" and len(img.tile) == 1 else None
        _refuse_animation(img, path)
        orientation = _exif_orientation(img, path)
        if rawmode in PNG16_RAWMODES:
            return _read_png16(path, rawmode), orientation
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode in PILLOW_CONVERSIONS:
            target, message = PILLOW_CONVERSIONS[img.mode]
            if message:
                log.warning("%s: %s", path, message)
            img = img.convert(target)
        return np.asarray(img), orientation


def _read_tiff(path: Path) -> tuple[np.ndarray, int] | None:
    """A single-page gray/RGB(A) TIFF through tifffile (any sample type, planar or not) and its orientation tag;
    None when Pillow should read it (other colour models, or a compression tifffile cannot decode here)."""
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
            tag = page.tags.get(EXIF_ORIENTATION)  # tifffile returns the pixels as stored, unturned
            orientation = int(tag.value) if tag is not None and int(tag.value) in ORIENTATIONS else 1
    except ImageError:
        raise
    except Exception:  # a compression without its codec, an exotic layout: let Pillow try
        return None
    if axes.startswith("S") and array.ndim == 3:  # planar configuration: samples first
        array, axes = np.moveaxis(array, 0, -1), axes[1:] + "S"
    if axes not in ("YX", "YXS"):
        raise ImageError(f"image '{path}': TIFF page with axes {axes} (shape {array.shape}); expected a 2-D image.")
    return array, orientation


def apply_orientation(array: np.ndarray, orientation: int, source: str = "image") -> np.ndarray:
    """Turn ``array`` (H, W, ...) as EXIF ``orientation`` says viewers show it, with a warning (1: unchanged).

    >>> apply_orientation(np.arange(6).reshape(2, 3), 6).tolist()
    [[3, 0], [4, 1], [5, 2]]
    """
    if orientation not in ORIENTATIONS:
        return array
    log.warning("%s: EXIF orientation %d applied (image rotated/flipped as viewers show it)", source, orientation)
    return np.ascontiguousarray(ORIENTATIONS[orientation](array))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load ``path`` as float32 RGB in [0, 1], with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image '{path}' does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"image '{path}' is empty (0 bytes); delete or replace the file.")
    try:
        read = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else None
        array, orientation = read if read is not None else _read_pillow(path)
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
    return to_float_rgb(apply_orientation(array, orientation, str(path)), source=str(path))


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
