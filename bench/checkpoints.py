"""Safe checkpoint I/O: tensors and plain containers only, never pickled code.

Checkpoints are dicts of tensors and primitives saved with ``torch.save``.
Loading always uses ``torch.load(..., weights_only=True)``, which refuses
pickled classes and functions; :func:`load_checkpoint` turns every failure
into a :class:`bench.errors.CheckpointError` that says what to do.

Example:
    >>> import tempfile, os, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "c.pt")
    >>> save_checkpoint({"state_dict": {"w": torch.ones(2)}, "config": {"k": 4}}, path)
    >>> load_checkpoint(path)["config"]
    {'k': 4}
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from bench.errors import CheckpointError


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are shared package data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _is_torch_file(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 512 bytes) is one ``torch.load`` reads: ``torch.save``'s zip
    archive (PyTorch >= 1.6), its legacy pickle (protocol 2 or later: the PROTO opcode 0x80 comes first) or the
    pre-0.4 tar archive. Checked first because on anything else (a text file, an image) the unpickler fails on a
    random opcode with ``KeyError: 544502645`` or ``IndexError: pop from empty list``, which name no file."""
    return head.startswith((b"PK\x03\x04", b"\x80")) or head[257:262] == b"ustar"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; clear errors for missing, truncated, unsafe or non-PyTorch files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; check the path given to --set ...checkpoint=.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty (0 bytes); re-download or re-train it.")
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not _is_torch_file(head):
        raise CheckpointError(
            f"checkpoint '{path}' is not a PyTorch checkpoint (it starts with {head[:16]!r}, not the zip archive or "
            "pickle that torch.save writes); pass a file saved by torch.save."
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch wraps every refusal in the same "Weights only load failed" text; a reference to a
        # global (class or function) is what marks pickled code, anything else is a damaged file.
        if "Unsupported global" in str(err) or "GLOBAL" in str(err):
            raise CheckpointError(
                f"checkpoint '{path}' contains pickled code or objects, not just tensors; refusing to load it "
                "(only weights_only=True loading is allowed). Re-save it as a plain state dict."
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' is truncated, corrupt or not a torch file; re-download or re-train it."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as err:
        # KeyError, IndexError: the unpickler's memo and stack on a damaged pickle
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or corrupt ({first}); re-download or re-train it."
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(payload).__name__}, expected a dict.")
    return upcast_half(payload)


HALF_DTYPES = (torch.float16, torch.bfloat16)


def upcast_half(value: Any) -> Any:
    """``value`` with every float16/bfloat16 tensor (in dicts and lists, replaced in place) cast to float32: shipped weights are
    stored in half precision to keep the repository small (``benchmarks/slim_weights.py``), and every model
    computes in float32 (or float64) as before.

    Example:
        >>> upcast_half({"w": torch.ones(2, dtype=torch.float16), "n": [torch.zeros(1, dtype=torch.bfloat16)]})
        {'w': tensor([1., 1.]), 'n': [tensor([0.])]}
    """
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in HALF_DTYPES else value
    if isinstance(value, (dict, list)):  # in place: a state dict keeps its type and ``_metadata``
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            value[k] = upcast_half(v)
    return value


def to_primitive(value: Any) -> Any:
    """``value`` as plain dicts, lists, str, int, float, bool and None (what ``weights_only`` loads).

    Example:
        >>> import numpy as np
        >>> to_primitive({"a": (np.int64(1), np.float32(0.5)), 2: Path("p")})
        {'a': [1, 0.5], '2': 'p'}
    """
    if isinstance(value, dict):
        return {str(k): to_primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_primitive(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)  # str subclasses (torch.__version__), paths


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_version(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(resolved path, mtime_ns, size)``: keys in-memory caches of loaded files, so a file
    rewritten in place is loaded again (a missing file gets a key of its own; loading it then fails)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return str(path.resolve()), 0, -1
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def weights_version(path: str | os.PathLike) -> str:
    """Short content hash of packaged weights, for a plugin's ``version`` (so cached results follow them)."""
    return sha256_file(path)[:16] if Path(path).is_file() else "no-weights"


ModelT = TypeVar("ModelT")


class ModelCache(Generic[ModelT]):
    """Models loaded from files, kept per file identity (path, mtime, size): a file re-written in place
    is loaded again. One instance per kind of model; ``load`` maps a path to the model.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.txt")
        >>> _ = open(path, "w").write("x")
        >>> calls = []
        >>> cache = ModelCache(lambda p: calls.append(p) or len(calls))
        >>> cache.get(path), cache.get(path), len(calls)
        (1, 1, 1)
    """

    def __init__(self, load: Callable[[Path], ModelT]):
        self._load = load
        self._models: dict[tuple[str, int, int], ModelT] = {}

    def get(self, path: str | os.PathLike) -> ModelT:
        key = file_version(path)
        if key not in self._models:
            self._models[key] = self._load(Path(path).expanduser())
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()


def packaged_weights_note(text: str) -> Any:
    """A method's ``weights_note`` (read by :func:`bench.compute.weights_note`): ``text``, what the packaged weights
    are, while a cell uses them (its ``checkpoint`` parameter empty); "" for a cell with other weights.

    >>> note = packaged_weights_note("trained here on a CPU").__func__
    >>> note({"checkpoint": ""}), note({"checkpoint": "mine.pt"})
    ('trained here on a CPU', '')
    """

    def note(params: Any) -> str:
        return "" if dict(params).get("checkpoint") else text

    return staticmethod(note)
