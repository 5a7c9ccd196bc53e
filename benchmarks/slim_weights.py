"""Rewrite the shipped checkpoints (``methods/weights/*.pt``) with only what inference needs.

    python benchmarks/slim_weights.py            # rewrite in place, print sizes and sha256
    python benchmarks/slim_weights.py --check    # exit 1 if a shipped file holds training state or other dtypes
    python benchmarks/slim_weights.py --out-dir DIR [--dtype NAME=float32]   # write elsewhere (measurements)

Each file is read with ``torch.load(weights_only=True)`` (:func:`bench.checkpoints.load_checkpoint`) and written
back as plain tensors and primitives:

- training-resume state is dropped: the optimiser's (``optimizer``), the generators' (``generator``, ``rng``).
  The model's ``state_dict``, its ``config``, ``format``/``version`` and the metadata the loaders and model cards
  use (``meta``, ``train``, ``history``, ``last``, ``step``, ...) stay. Resuming training needs the trainer's own
  ``--out`` file (``bench train ... --out FILE --resume``), never a shipped release;
- floating-point weights are stored in the dtype of :data:`STORAGE` (float16 where the smoke grid's restored
  images stay within the CI tolerance, measured per file and recorded in its model card);
  :func:`bench.checkpoints.load_checkpoint` casts float16/bfloat16 back to float32 on load. Integer and bool
  buffers are kept as they are.

Rewriting an already slim file gives the same bytes (the script is idempotent).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.checkpoints import sha256_file  # noqa: E402

WEIGHTS = ROOT / "methods" / "weights"

#: keys of training-resume state, never shipped
TRAINING_STATE = ("optimizer", "generator", "rng", "scheduler", "scaler", "ema_optimizer")

#: storage dtype of each shipped file's floating-point tensors (measured: see each model card's "Storage" line)
STORAGE: dict[str, torch.dtype] = {
    "dae_sigma11.pt": torch.float16,
    "dae_sigma25.pt": torch.float16,
    "drunet_cpu.pt": torch.float16,
    "epll_gmm200.pt": torch.float32,
    "flowprior_default.pt": torch.float16,
    "flowprior_cpu_continued.pt": torch.float32,
    "patchnr_cpu.pt": torch.float16,
    "srflow4x_small.pt": torch.float16,
    "srflow8x_small.pt": torch.float16,
}

#: payload keys whose tensors are weights (cast to the storage dtype); other tensors are kept as they are
WEIGHT_KEYS = ("state_dict", "weights", "means", "covs")


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        out = value.to(dtype) if value.is_floating_point() else value
        return out.detach().clone().contiguous()  # its own storage: nothing of a larger tensor is saved
    if isinstance(value, dict):  # an OrderedDict state dict stays one, with its ``_metadata`` (module versions)
        out = type(value)((k, _cast(v, dtype)) for k, v in value.items())
        if hasattr(value, "_metadata"):
            out._metadata = value._metadata
        return out
    return value


def slim_payload(payload: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """``payload`` without training state, its weights stored as ``dtype``.

    Example:
        >>> p = {"format": "f", "state_dict": {"w": torch.ones(2), "n": torch.tensor(3)}, "optimizer": {"state": {}}}
        >>> out = slim_payload(p, torch.float16)
        >>> sorted(out), out["state_dict"]["w"].dtype, out["state_dict"]["n"].dtype
        (['format', 'state_dict'], torch.float16, torch.int64)
    """
    return {k: (_cast(v, dtype) if k in WEIGHT_KEYS else v) for k, v in payload.items() if k not in TRAINING_STATE}


def training_state_keys(payload: dict[str, Any]) -> list[str]:
    """The training-resume keys a payload holds (empty for a slim one)."""
    return [k for k in TRAINING_STATE if k in payload]


def weight_dtypes(path: Path) -> set[torch.dtype]:
    """Dtypes of the floating-point weight tensors as stored in ``path`` (read without the loader's upcast)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    found: set[torch.dtype] = set()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found.add(value.dtype)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    for key in WEIGHT_KEYS:
        visit(payload.get(key))
    return found


def save_reproducibly(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` into memory, then an atomic write: the archive's inner folder is then always ``archive``
    (saving to a file names it after the file, and :func:`bench.checkpoints.save_checkpoint` writes a randomly
    named temporary file first), so the same payload always gives the same bytes and sha256."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the shipped files; exit 1 if one is not slim")
    parser.add_argument("--out-dir", type=Path, default=None, help="write the slim files here (default: in place)")
    parser.add_argument("--dtype", action="append", default=[], metavar="NAME=DTYPE",
                        help="override a file's storage dtype, e.g. drunet_cpu.pt=float32")
    parser.add_argument("names", nargs="*", help="file names in methods/weights (default: all of STORAGE)")
    args = parser.parse_args(argv)
    storage = dict(STORAGE)
    for item in args.dtype:
        name, _, dtype = item.partition("=")
        storage[name] = getattr(torch, dtype)
    bad = 0
    for name in args.names or sorted(storage):
        path = WEIGHTS / name
        if args.check:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            extra, dtypes = training_state_keys(payload), weight_dtypes(path)
            ok = not extra and dtypes <= {storage[name]}
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {name}: {path.stat().st_size} bytes, weights {sorted(map(str, dtypes))}"
                  + (f", training state {extra}" if extra else ""))
            continue
        before = path.stat().st_size
        slim = slim_payload(torch.load(path, map_location="cpu", weights_only=True), storage[name])
        out = (args.out_dir or WEIGHTS) / name
        save_reproducibly(slim, out)
        print(f"{name}: {before} -> {out.stat().st_size} bytes, {str(storage[name]).removeprefix('torch.')}, "
              f"sha256 {sha256_file(out)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
