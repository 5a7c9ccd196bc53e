"""The RMS error of Pillow JPEG with 4:2:0 and 4:4:4 chroma on training images, and their ratio per quality.

``bench.physics.jpeg.jpeg_effective_sigma`` scales its 4:2:0 table by this ratio for ``subsampling=4:4:4``.
Training images only (never an evaluation set); full size, pooled over all pixels and channels (0-255 scale).

    python benchmarks/jpeg_subsampling_sigma.py --data ../shared/data/train/bsd200 --count 30
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of training PNGs")
    parser.add_argument("--count", type=int, default=30, help="the first N images, sorted by name")
    args = parser.parse_args()
    paths = sorted(Path(args.data).glob("*.png"))[: args.count]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    print(f"{len(images)} images from {args.data}")
    print("quality  4:2:0  4:4:4  ratio")
    for quality in QUALITIES:
        a, b = rms(images, quality, "4:2:0"), rms(images, quality, "4:4:4")
        print(f"{quality:7d}  {a:5.2f}  {b:5.2f}  {b / a:.3f}")


if __name__ == "__main__":
    main()
