"""The RMS error of Pillow JPEG with 4:2:0 and 4:4:4 chroma on the tuning split, and their ratio per quality.

``bench.physics.jpeg.jpeg_effective_sigma`` holds a table per subsampling, measured on the tuning split by
``benchmarks/tune_constants.py jpeg-sigma`` (mean of per-image RMS errors); this script gives the pooled RMS
error and the 4:4:4 / 4:2:0 ratio. Tuning-split images only (``bench/training/splits.py``; any other image is
refused); full size, pooled over all pixels and channels (0-255 scale).

    python benchmarks/jpeg_subsampling_sigma.py [--images a,b] [--limit N]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.errors import BenchError  # noqa: E402
from bench.training.data import load_tuning_images  # noqa: E402

QUALITIES = (5, 10, 20, 30, 50, 75, 90, 100)


def rms(images: list[np.ndarray], quality: int, subsampling: str) -> float:
    """Pooled RMS error (0-255) of encoding and decoding ``images`` at ``quality`` with ``subsampling``."""
    squared, count = 0.0, 0
    for array in images:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).astype(np.float64)
        squared += float(((decoded - array) ** 2).sum())
        count += array.size
    return (squared / count) ** 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="", help="comma-separated tuning-split names or image paths")
    parser.add_argument("--limit", type=int, default=0, help="the first N images (0: all)")
    args = parser.parse_args(argv)
    try:
        items = load_tuning_images([x for x in args.images.split(",") if x] or None)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    images = [image for _, image in items][: args.limit or None]
    print(f"{len(images)} tuning-split images")
    print("quality  4:2:0  4:4:4  ratio")
    for quality in QUALITIES:
        a, b = rms(images, quality, "4:2:0"), rms(images, quality, "4:4:4")
        print(f"{quality:7d}  {a:5.2f}  {b:5.2f}  {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
