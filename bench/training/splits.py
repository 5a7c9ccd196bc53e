"""The tuning split: the training-folder images every constant is chosen on, and that no trainer trains on.

:data:`TUNING_SPLIT` names 22 images of the shared training folders
(``../shared/data/train``: ``bsd200``, ``yang91``), each with the
:func:`bench.training.data.pixel_digest` of its decoded 8-bit pixels, so a
changed or substituted file is detected. None of them is an evaluation image
(checked by the evaluation-image guard of :mod:`bench.training.data`).

Why these 22. No training-folder image was held out by *every* shipped
trainer: the shipped weights hold out two disjoint sets.

- :data:`HOLDOUT_8` (``split_validation(images, 8)``): held out by
  ``dae_sigma11.pt``, ``dae_sigma25.pt``, ``drunet_cpu.pt`` and
  ``patchnr_cpu.pt``; trained on by the flow priors and SRFlow; ``epll_gmm200.pt``
  held out ``yang91/t55.png`` only.
- :data:`HOLDOUT_14` (``split_holdout(images, 0.05)``, every 20th file): held out
  by ``flowprior_default.pt``, ``flowprior_cpu_continued.pt``,
  ``srflow4x_small.pt``, ``srflow8x_small.pt`` and ``epll_gmm200.pt`` (whose 29
  held-out images contain them); trained on by the DAEs, DRUNet and PatchNR.

Their intersection is empty, so the split is their union, and
:data:`SHIPPED_WEIGHTS_TRAINED_ON` records which shipped weights saw which split
image: a constant of a learned prior is tuned only on the split images its
weights never saw (:func:`tuning_names` with ``unseen_by``); constants of
methods without learned weights (TV, BM3D, the JPEG σ table, Double-DIP) use
the whole split. From now on every trainer excludes the whole split
(:func:`bench.training.data.exclude_tuning_split`), so weights trained after
this change saw none of it.

The shipped model cards' "Reproduce" commands therefore no longer reproduce
those weights bit for bit: their trainers now see 22 images fewer, and their
validation images are drawn from the remaining ones.

Example:
    >>> len(TUNING_SPLIT), len(tuning_names(unseen_by="drunet_cpu.pt")), len(tuning_names(unseen_by="flowprior_default.pt"))
    (22, 8, 14)
    >>> sorted(set(HOLDOUT_8) & set(HOLDOUT_14))
    []
"""

from __future__ import annotations

import os
from pathlib import Path

TRAIN_ROOT_ENV = "BENCH_TRAIN_ROOT"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRAIN_ROOT = PROJECT_ROOT.parent / "shared" / "data" / "train"

# held out by dae_sigma11/25, drunet_cpu, patchnr_cpu (bench.training.data.split_validation(images, 8))
HOLDOUT_8 = (
    "bsd200/100075.png",
    "bsd200/153077.png",
    "bsd200/202012.png",
    "bsd200/274007.png",
    "bsd200/42078.png",
    "yang91/t16.png",
    "yang91/t55.png",
    "yang91/tt9.png",
)
# held out by flowprior_default/_cpu_continued, srflow4x/8x_small and epll_gmm200 (split_holdout(images, 0.05))
HOLDOUT_14 = (
    "bsd200/12003.png",
    "bsd200/15088.png",
    "bsd200/176019.png",
    "bsd200/198004.png",
    "bsd200/231015.png",
    "bsd200/26031.png",
    "bsd200/314016.png",
    "bsd200/376001.png",
    "bsd200/61086.png",
    "bsd200/97017.png",
    "yang91/t27.png",
    "yang91/t46.png",
    "yang91/t64.png",
    "yang91/tt23.png",
)

# name (relative to the training root) → pixel digest (bench.training.data.pixel_digest of the decoded 8-bit pixels)
TUNING_SPLIT: dict[str, str] = {
    "bsd200/100075.png": "944b9078efb9f785e977db187ba11f3da315e9990dbe389f03e7ac6bcae6a9d0",
    "bsd200/153077.png": "16023417b7a3a9b8985330d55c4d501f896085746a50d4bf033390faefc59913",
    "bsd200/202012.png": "b0f9809e4ade2f44a8e7115cac9dceefd3d0c8587494785fe7fec55b7493e205",
    "bsd200/274007.png": "1770229e6a568eb113debec384e214172915a67799a5ff1c12c39277937af764",
    "bsd200/42078.png": "99f4911c730245c487f0803885ec4824eedca47a345430d248f16f7830b27150",
    "yang91/t16.png": "c0079e8fb7c7b0a32393f263827a4b78f4e005d4f4ba91dad68c0b459b24becb",
    "yang91/t55.png": "c8b9dddb8d9a1d0de41cbba88167c43e06c7e2418435287a7537b8395561ca86",
    "yang91/tt9.png": "a21dc6dff3c87d13971158a2bad918d757400dbe62764efed6bfbb38d9db03d5",
    "bsd200/12003.png": "4c79ce83e359f1810fb0b66ef76b13e77b1ea14863567f3e8e601330b89a4fe9",
    "bsd200/15088.png": "fdb2cedf5d9f38b006b2980092fe8e2da9adbb782398813b5295e281dddda42c",
    "bsd200/176019.png": "38bbcafa34f3533a860d95fe6fb88dc65b019a7e1555e0f5202ff040e7fc07c0",
    "bsd200/198004.png": "6f6d28ae83910166f39bfb099d89509727191ff19a59559a1240922bf42d4417",
    "bsd200/231015.png": "192f2fcf4f5982b662bdbcdbff4b61d9f8ba6b7cc5ea2a4c39d4de412f094b6c",
    "bsd200/26031.png": "659ac3079994b55e88c406f008dfb276e48a154593a93c5bda14b906cb4bdb02",
    "bsd200/314016.png": "35dbc57bfc3acea3181b720280a889753c07392b4c4da4a3e9919c0eaf0a494f",
    "bsd200/376001.png": "a54e5061fe1e252615dac148349cfba1e7f848105a34b63f46b556b822733799",
    "bsd200/61086.png": "9171f852b6a8208e03ce8ef3351bbfa5bcc1031c4bc251dcf4dc2b825d1ca873",
    "bsd200/97017.png": "eab6bd041dd684c591cd42bbc80e652e4b80a626ca1c1ab3d8df69258434afc4",
    "yang91/t27.png": "84bd03af2312ffe12be3a088918730243dc6b38e643a561d8d43b332d41c5bad",
    "yang91/t46.png": "f6bfdd1ebf0b661f24528c86e7c35f1e14e2d7a20aec3fd92e047424e617ba7f",
    "yang91/t64.png": "2b17e2f57d0b32b0a76e420f7018ba99899ae2892a6dbdddf9cee430932a1e92",
    "yang91/tt23.png": "6bfbb638aad24f1ed1859724d787024703230bd42897bc5ed13f6584907605b9",
}

# shipped weights (methods/weights/*.pt) → the tuning-split images they were trained on (from their model cards
# and checkpoint metadata: dae/drunet/patchnr meta.val_image_ids; flowprior/srflow train.val_images; epll
# meta.val_fraction 0.1 = every 10th file, which contains HOLDOUT_14 and yang91/t55.png)
SHIPPED_WEIGHTS_TRAINED_ON: dict[str, tuple[str, ...]] = {
    "dae_sigma11.pt": HOLDOUT_14,
    "dae_sigma25.pt": HOLDOUT_14,
    "drunet_cpu.pt": HOLDOUT_14,
    "patchnr_cpu.pt": HOLDOUT_14,
    "epll_gmm200.pt": tuple(name for name in HOLDOUT_8 if name != "yang91/t55.png"),
    "flowprior_default.pt": HOLDOUT_8,
    "flowprior_cpu_continued.pt": HOLDOUT_8,
    "srflow4x_small.pt": HOLDOUT_8,
    "srflow8x_small.pt": HOLDOUT_8,
}


def train_root() -> Path:
    """The folder the split's names are relative to: ``$BENCH_TRAIN_ROOT`` or ``<project>/../shared/data/train``."""
    return Path(os.environ.get(TRAIN_ROOT_ENV) or DEFAULT_TRAIN_ROOT).expanduser()


def tuning_names(unseen_by: str | None = None) -> list[str]:
    """The split's names (in :data:`TUNING_SPLIT`'s order), without those the shipped weights ``unseen_by`` saw.

    ``unseen_by`` is a shipped weights file name (``drunet_cpu.pt``) or path; any
    other checkpoint is assumed to have been trained after the split existed
    (its trainer excluded the whole split).

    >>> tuning_names(unseen_by="methods/weights/patchnr_cpu.pt")[:2]
    ['bsd200/100075.png', 'bsd200/153077.png']
    """
    seen = set(SHIPPED_WEIGHTS_TRAINED_ON.get(Path(unseen_by).name, ())) if unseen_by else set()
    return [name for name in TUNING_SPLIT if name not in seen]


def tuning_digests() -> dict[str, str]:
    """``pixel digest → name`` of the split."""
    return {digest: name for name, digest in TUNING_SPLIT.items()}
