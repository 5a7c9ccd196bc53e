"""Checkpoint files of the suite's own trained networks (DAE, DRUNet): one format, the same checks and errors.

A file holds ``format`` (which network), ``version``, ``config`` (the constructor's
arguments), ``meta`` (training record, primitives only), the ``state_dict`` and any
extra top-level entries a trainer needs to resume (ignored when loading). Reading
checks each part and turns every failure into one :class:`bench.errors.CheckpointError`
line that says what to do; the file is read with ``torch.load(weights_only=True)``.

Example:
    >>> import tempfile, os
    >>> from torch import nn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> net = nn.Linear(2, 1)
    >>> len(save_model(net, path, "demo/linear", {"in_features": 2}, {"steps": 3}))
    64
    >>> info, state = read_model(Path(path), "demo/linear", "Linear", "retrain it")
    >>> info["config"], info["meta"], sorted(state)
    ({'in_features': 2}, {'steps': 3}, ['bias', 'weight'])
    >>> build_model(lambda config: nn.Linear(config["in_features"], 1), info, state, "Linear").training
    False
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import checkpoints
from bench.checkpoints import sha256_file, to_primitive
from bench.errors import CheckpointError


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    fmt: str,
    config: dict[str, Any],
    meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``model`` atomically in format ``fmt`` (``extra``: more top-level entries); returns the sha256."""
    payload = {
        "format": fmt,
        "version": 1,
        "config": config,
        **(extra or {}),
        "meta": to_primitive(dict(meta or {})),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    checkpoints.save_checkpoint(payload, Path(path))
    return sha256_file(path)


def read_model(
    path: Path, fmt: str, kind: str, hint: str, fields: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked info (config, meta, path and the top-level ``fields``) and state dict of ``path``, uncached.

    ``kind`` names the network in messages ("DAE"); ``hint`` says how to get a valid file.
    """
    if not path.is_file():
        raise CheckpointError(f"{kind} checkpoint '{path}' does not exist; {hint}.")
    try:
        payload = checkpoints.load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"{kind} {err} ({hint})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"'{path}' is not a restoration-bench {kind} checkpoint (format '{fmt}'); {hint}.")
    config, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{kind} checkpoint '{path}' lacks its 'config' or 'state_dict'; {hint}.")
    info = {"config": config, **{f: payload.get(f) for f in fields}, "meta": payload.get("meta", {}), "path": str(path)}
    return info, state


def build_model(
    factory: Callable[[dict[str, Any]], nn.Module], info: dict[str, Any], state: dict[str, torch.Tensor], kind: str
) -> nn.Module:
    """``factory(config)`` with ``state`` loaded, in eval mode without gradients; a mismatch is a CheckpointError."""
    try:
        model = factory(info["config"])
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{kind} checkpoint '{info['path']}' does not match its own config ({first}).") from None
    return model.eval().requires_grad_(False)
