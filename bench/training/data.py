"""Training data for every trainer: image folders with the evaluation-image guard, holdout split, patch samplers.

:func:`load_training_images` is the only way a trainer reads images. It
refuses, with one line naming both files, a training image whose pixels equal
those of a known evaluation image (compared by a hash of the decoded 8-bit
pixels and the shape), and any folder under a path component named ``eval``.
Known evaluation images:

- the ``builtin`` dataset (:data:`bench.datasets.BUILTIN_IMAGES`);
- every image under ``<project root>/../shared/data/eval/`` when it exists;
- ``DIV2K_valid_HR`` under ``$BENCH_DIV2K_ROOT`` when it is set;
- the standard test sets' folders (:func:`bench.standard_sets.evaluation_folders`: ``$BENCH_KODAK24_DIR`` etc.,
  ``NAME/`` under ``$BENCH_DATA_ROOT`` and the cache, and every folder ``bench data download`` filled);
- every image under the folders listed in ``$BENCH_EVAL_DIRS``
  (separated by ``os.pathsep``: ``:`` on Linux and macOS, ``;`` on Windows),
  for private evaluation sets.

Digests are cached per process (per file identity), and only evaluation files
whose header size matches a training image are decoded, so the guard costs
about the time to load the six builtin photos once (~0.5 s).

The same module guards the tuning split (:mod:`bench.training.splits`): every
trainer drops split images from its training images (:func:`exclude_tuning_split`,
by pixel digest, with a log line), and every script that chooses a constant reads
its images through :func:`load_tuning_images`, which refuses an evaluation image
and any image that is not in the split (:func:`check_tuning_images`).

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from bench.images import save_png
    >>> folder = tempfile.mkdtemp()
    >>> save_png(np.random.default_rng(0).random((40, 48, 3)), os.path.join(folder, "a.png"))
    >>> [(os.path.basename(p), im.shape, im.dtype.name) for p, im in load_training_images([folder], 32)]
    [('a.png', (40, 48, 3), 'uint8')]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from bench.errors import BenchError, ImageError
from bench.standard_sets import evaluation_folders as standard_set_folders

log = logging.getLogger(__name__)

Tensor = torch.Tensor
EVAL_DIRS_ENV = "BENCH_EVAL_DIRS"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_EVAL_DIR = PROJECT_ROOT.parent / "shared" / "data" / "eval"

# --------------------------------------------------------------------------- loading with the guard


def load_training_images(folders: Sequence[str | os.PathLike], min_size: int) -> list[tuple[str, np.ndarray]]:
    """``(path, uint8 H×W×3)`` for every image of ``folders`` (sorted by name within a folder).

    Images smaller than ``min_size`` px and unreadable files are skipped with a
    warning. Raises :class:`bench.errors.BenchError` for a folder under an
    ``eval`` path component or a training image equal to an evaluation image.
    Tuning-split images are left out (:func:`exclude_tuning_split`).
    """
    from bench.datasets import list_folder
    from bench.images import load_image, to_uint8

    out = []
    for folder in folders:
        check_not_evaluation_folder(folder)
        for path in list_folder(Path(folder)):
            try:
                image = load_image(path)
            except ImageError as err:
                log.warning("skipping %s: %s", path, err)
                continue
            if min(image.shape[:2]) < min_size:
                log.warning("%s is smaller than the %d px training patch; skipped", path, min_size)
                continue
            out.append((str(path), to_uint8(image)))
    check_no_evaluation_images(out)
    return exclude_tuning_split(out)


def check_not_evaluation_folder(folder: str | os.PathLike, purpose: str = "train") -> None:
    """Refuse a folder with a path component named ``eval`` (where the project keeps evaluation data).

    ``purpose`` (``train`` or ``tune``) words the message.

    >>> check_not_evaluation_folder("/data/train/bsd200")
    >>> check_not_evaluation_folder("/data/eval/kodak24")
    Traceback (most recent call last):
    ...
    bench.errors.BenchError: refusing to train on '/data/eval/kodak24': it is an evaluation folder (a path component is named 'eval'); train on images that are never evaluated.
    """
    if "eval" in Path(folder).resolve().parts:
        raise BenchError(
            f"refusing to {purpose} on '{folder}': it is an evaluation folder (a path component is named 'eval'); "
            f"{purpose} on images that are never evaluated."
        )
    resolved = Path(folder).resolve()
    for known in standard_set_folders():  # the standard test sets' folders (bench.standard_sets)
        if resolved.is_relative_to(known.resolve()):
            raise BenchError(
                f"refusing to {purpose} on '{folder}': it is an evaluation folder (a standard test set's folder, "
                f"'{known}'); {purpose} on images that are never evaluated."
            )


def pixel_digest(image: np.ndarray) -> str:
    """Hash of decoded 8-bit pixels and their shape: equal digests, equal images.

    >>> pixel_digest(np.zeros((2, 2, 3), np.uint8)) == pixel_digest(np.zeros((2, 2, 3), np.uint8))
    True
    """
    digest = hashlib.sha256(str(tuple(image.shape)).encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def check_no_evaluation_images(items: Iterable[tuple[str, np.ndarray]], purpose: str = "train") -> None:
    """Raise :class:`BenchError` when a training image ``(path, uint8 array)`` equals a known evaluation image.

    ``purpose`` (``train`` or ``tune``) words the message.
    """
    items = list(items)
    training = {pixel_digest(image): path for path, image in items}
    if not training:
        return
    shapes = {(int(image.shape[0]), int(image.shape[1])) for _, image in items}
    for digest, label in _builtin_digests().items():
        if digest in training:
            _refuse(training[digest], label, purpose)
    for path in evaluation_files():
        size = _header_size(path)
        if size is not None and size not in shapes:
            continue  # a different size cannot hold the same pixels: skip decoding
        digest = _file_digest(path)
        if digest in training:
            _refuse(training[digest], f"'{path}'", purpose)


def _refuse(training_path: str, evaluation: str, purpose: str = "train") -> None:
    if purpose == "tune":
        raise BenchError(
            f"refusing to tune on '{training_path}': it has the same pixels as the evaluation image {evaluation}; "
            f"{TUNE_FIX}"
        )
    raise BenchError(
        f"refusing to train: training image '{training_path}' has the same pixels as the evaluation image "
        f"{evaluation}; remove it from the training folder (evaluation images must never be trained on)."
    )


def evaluation_folders() -> list[Path]:
    """The folders of known evaluation images that exist (builtin images aside)."""
    folders = [SHARED_EVAL_DIR]
    div2k = os.environ.get("BENCH_DIV2K_ROOT")
    if div2k:
        folders.append(Path(div2k) / "DIV2K_valid_HR")
    folders += [Path(p) for p in os.environ.get(EVAL_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    folders += standard_set_folders()  # the standard test sets, wherever this machine keeps them
    return list(dict.fromkeys(folder.expanduser() for folder in folders if folder.expanduser().is_dir()))


def evaluation_files() -> list[Path]:
    """Every image file under :func:`evaluation_folders` (recursively)."""
    from bench.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for folder in evaluation_folders():
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


_BUILTIN_DIGESTS: dict[str, str] = {}
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _builtin_digests() -> dict[str, str]:
    """``digest → label`` of the builtin dataset's images, computed once per process."""
    if not _BUILTIN_DIGESTS:
        from bench.datasets import load_dataset
        from bench.images import to_uint8

        for item in load_dataset("builtin"):
            _BUILTIN_DIGESTS[pixel_digest(to_uint8(item.image))] = f"'{item.id}' of the builtin dataset ({item.source})"
    return _BUILTIN_DIGESTS


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file header, without decoding; None when the header is not readable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
        return int(height), int(width)
    except Exception:  # any unreadable header: decode the file instead
        return None


def _file_digest(path: Path) -> str:
    """:func:`pixel_digest` of an image file as a trainer would load it, cached per file identity."""
    from bench.checkpoints import file_version
    from bench.images import load_image, to_uint8

    key = file_version(path)
    if key not in _FILE_DIGESTS:
        try:
            _FILE_DIGESTS[key] = pixel_digest(to_uint8(load_image(path)))
        except ImageError:
            _FILE_DIGESTS[key] = ""  # unreadable: no training image can match it
    return _FILE_DIGESTS[key]


# --------------------------------------------------------------------------- the tuning split

TUNE_FIX = (
    "tune only on the tuning split (bench/training/splits.py; list it with "
    "`python benchmarks/tune_constants.py split`), e.g. pass no image option to use the whole split."
)


def exclude_tuning_split(items: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """``items`` without the images whose pixels are a tuning-split image (:mod:`bench.training.splits`).

    Every trainer's images pass through here (in :func:`load_training_images`,
    or directly when a trainer is given images); a warning line names how
    many were excluded and why. Compared by :func:`pixel_digest`, so a renamed
    copy is excluded too.

    >>> exclude_tuning_split([("a.png", np.zeros((4, 4, 3), np.uint8))])[0][0]
    'a.png'
    """
    from bench.training.splits import tuning_digests

    split = tuning_digests()
    kept, excluded = [], []
    for path, image in items:
        (excluded if pixel_digest(image) in split else kept).append((path, image))
    if excluded:
        log.warning(
            "excluding %d tuning-split image(s) from training (bench/training/splits.py: constants are tuned on them): %s",
            len(excluded),
            ", ".join(Path(path).parent.name + "/" + Path(path).name for path, _ in excluded),
        )
    return kept


def check_tuning_images(items: Iterable[tuple[str, np.ndarray]]) -> list[str]:
    """The split names of tuning images ``(path or name, uint8 array)``; :class:`BenchError` for any other image.

    Refused, each with one line naming the image and the fix: an image equal to a
    known evaluation image, a split name whose file's pixels changed, and any
    image whose pixels are not a split image.
    """
    from bench.training.splits import TUNING_SPLIT, tuning_digests

    items = list(items)
    check_no_evaluation_images(items, purpose="tune")
    split = tuning_digests()
    names = []
    for label, image in items:
        digest = pixel_digest(image)
        relative = "/".join(Path(label).parts[-2:])
        if relative in TUNING_SPLIT and digest != TUNING_SPLIT[relative]:
            raise BenchError(
                f"refusing to tune on '{label}': it is named like the tuning-split image '{relative}' but its pixels "
                "differ from the split's digest (the file changed); restore the original file, or change "
                "TUNING_SPLIT in bench/training/splits.py deliberately (and re-run every tuning)."
            )
        if digest not in split:
            raise BenchError(f"refusing to tune on '{label}': it is not in the tuning split; {TUNE_FIX}")
        names.append(split[digest])
    return names


def load_tuning_images(
    images: Sequence[str | os.PathLike] | None = None, *, unseen_by: str | None = None, root: str | os.PathLike | None = None
) -> list[tuple[str, np.ndarray]]:
    """``(split name, uint8 H×W×3)`` of tuning images: the only way a script that chooses a constant reads images.

    ``images``: split names (relative to ``root``, default
    :func:`bench.training.splits.train_root`) or image paths; default: the
    split, without the images the shipped weights ``unseen_by`` trained on
    (:func:`bench.training.splits.tuning_names`). A path under an ``eval``
    folder is refused, and every image passes :func:`check_tuning_images`.
    """
    from bench.images import load_image, to_uint8
    from bench.training.splits import TUNING_SPLIT, train_root, tuning_names

    base = Path(root) if root is not None else train_root()
    wanted = [str(x) for x in images] if images else tuning_names(unseen_by)
    items = []
    for entry in wanted:
        path = base / entry if entry in TUNING_SPLIT else Path(entry)
        if "eval" in path.resolve().parts:
            raise BenchError(
                f"refusing to tune on '{path}': it lies in an evaluation folder (a path component is named 'eval'); "
                f"{TUNE_FIX}"
            )
        if not path.is_file():
            hint = f"the training root is '{base}' (set $BENCH_TRAIN_ROOT)" if entry in TUNING_SPLIT else TUNE_FIX
            raise BenchError(f"tuning image '{entry}' not found at '{path}'; {hint}")
        try:
            image = to_uint8(load_image(path))
        except ImageError as err:
            raise BenchError(f"cannot read tuning image '{path}': {err}") from err
        items.append((entry if entry in TUNING_SPLIT else str(path), image))
    names = check_tuning_images(items)
    return [(name, image) for name, (_, image) in zip(names, items)]


# --------------------------------------------------------------------------- holdout and patches


def split_holdout(items: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Deterministic split: every ``round(1/fraction)``-th item is held out for validation.

    >>> split_holdout(list(range(10)), 0.2)
    ([0, 1, 2, 3, 5, 6, 7, 8], [4, 9])
    """
    if fraction <= 0:
        return list(items), []
    k = max(2, round(1 / fraction))
    train = [x for i, x in enumerate(items) if i % k != k - 1]
    val = [x for i, x in enumerate(items) if i % k == k - 1]
    return train, val


def random_patches(images: list[np.ndarray], n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` random ``size``×``size`` crops with random horizontal and vertical flips, ``(n, 3, size, size)``.

    Draws from the torch ``generator`` (image, top, left, two flips per patch, in that order).

    >>> images = [np.zeros((20, 24, 3), np.uint8)]
    >>> tuple(random_patches(images, 2, 16, torch.Generator().manual_seed(0)).shape)
    (2, 3, 16, 16)
    """
    batch = []
    for _ in range(n):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = image.shape[:2]
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        patch = torch.from_numpy(np.ascontiguousarray(image[top : top + size, left : left + size])).permute(2, 0, 1)
        flips = torch.rand(2, generator=generator)
        if flips[0] < 0.5:
            patch = patch.flip(-1)
        if flips[1] < 0.5:
            patch = patch.flip(-2)
        batch.append(patch)
    return torch.stack(batch).float() / 255.0


# --------------------------------------------------------------------------- numpy sampler (the DAE trainer)


def split_validation(images: list[Any], count: int) -> tuple[list[Any], list[Any]]:
    """Hold out ``count`` images spread evenly over the list (deterministic).

    >>> split_validation(list(range(6)), 2)
    ([1, 2, 3, 4], [0, 5])
    """
    if count <= 0:
        return images, []
    count = min(count, len(images) // 2)
    idx = set(np.linspace(0, len(images) - 1, count).round().astype(int).tolist())
    train = [im for i, im in enumerate(images) if i not in idx]
    val = [im for i, im in enumerate(images) if i in idx]
    return train, val


def sample_patches(images: list[np.ndarray], batch: int, patch: int, rng: np.random.Generator) -> Tensor:
    """``batch`` random ``patch``² crops with random flips and 90° rotations, float in [0, 1] (numpy ``rng``).

    >>> x = sample_patches([np.zeros((20, 20, 3), np.uint8)], 2, 8, np.random.default_rng(0))
    >>> tuple(x.shape)
    (2, 3, 8, 8)
    """
    out = np.empty((batch, patch, patch, 3), np.uint8)
    for b in range(batch):
        image = images[rng.integers(len(images))]
        h, w = image.shape[:2]
        p = min(patch, h, w)
        i, j = rng.integers(h - p + 1), rng.integers(w - p + 1)
        crop = image[i : i + p, j : j + p]
        if p < patch:
            crop = np.pad(crop, ((0, patch - p), (0, patch - p), (0, 0)), mode="reflect")
        crop = np.rot90(crop, rng.integers(4))
        if rng.integers(2):
            crop = crop[:, ::-1]
        out[b] = crop
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


# the ``--data`` option of the trainers that read image folders through :mod:`bench.training.data`
data_click_option = click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of training images (repeatable). Evaluation folders and images are refused.",
)


MIN_TRAINING_SIZE = 48  # smaller training images are skipped (the denoiser and patch-prior trainers)


def training_images(folders: Sequence[str | os.PathLike], images: list[tuple[str, np.ndarray]] | None = None,
                    min_size: int = MIN_TRAINING_SIZE) -> list[tuple[str, np.ndarray]]:
    """``(folder/file, uint8 image)`` of the training ``folders`` (or the given ``images``), evaluation images
    refused, the tuning split left out; one error line when none is left."""
    if images is None:
        loaded = load_training_images(folders, min_size)
        images = [(f"{Path(path).parent.name}/{Path(path).name}", image) for path, image in loaded]
    else:
        check_no_evaluation_images(images)
        images = exclude_tuning_split(images)
    if not images:
        raise BenchError(f"no training images of at least {min_size} px found in {', '.join(map(str, folders))}.")
    return images


def validation_batch(images: list[np.ndarray], crop: int, sigma: float, seed: int) -> tuple[Tensor, Tensor]:
    """Centre crops of the held-out images and their fixed noisy versions (AWGN of ``sigma`` on the 0-255 scale)."""
    c = min([crop] + [min(im.shape[:2]) for im in images])
    clean = []
    for image in images:
        h, w = image.shape[:2]
        i, j = (h - c) // 2, (w - c) // 2
        clean.append(torch.from_numpy(np.ascontiguousarray(image[i : i + c, j : j + c])).permute(2, 0, 1).float() / 255)
    x = torch.stack(clean)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, x + sigma / 255.0 * noise


def batch_psnr(ref: Tensor, out: Tensor) -> float:
    """Mean PSNR (dB) over a batch, outputs clipped to [0, 1].

    >>> round(batch_psnr(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.1)), 2)
    20.0
    """
    mse = (out.clamp(0, 1) - ref).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())
