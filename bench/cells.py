"""One grid cell: its plugin instances, its cache key and the seeds its random draws derive from.

A cell is (method instance, degradation instance, image, seed, profile). Its
cache key hashes the method (name, effective parameters, code version), the
degradation (the same), the image content, the seed and the profile; file
parameters (``checkpoint=...``) count by their content hash, not their path.
Code versions come from :func:`bench.codeversion.code_version`; random draws never depend on them
(:meth:`Cell.draws_id`). Computing a cell (observe, restore, score) is :mod:`bench.compute`.

Example:
    >>> import numpy as np
    >>> from bench.datasets import ImageItem
    >>> method = instantiate("method", "identity", {}, "smoke")[0]
    >>> noise = instantiate("degradation", "noise", {}, "smoke")[0]
    >>> cell = Cell.make(method, noise, ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32)), 0, "smoke", "demo")
    >>> len(cell.key), cell.key != cell.degraded_key
    (32, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.checkpoints import file_version, sha256_file
from bench.codeversion import code_version
from bench.config import MAX_SEED
from bench.datasets import ImageItem
from bench.errors import ParameterError
from bench.params import build_params, expand_grid, params_to_dict
from bench.registry import lookup

log = logging.getLogger(__name__)


@dataclass
class PluginInstance:
    """A method or degradation with concrete parameters, a label and a code version.

    Example:
        >>> PluginInstance("method", "tv", None, {"weight": 0.9}, "tv", "abc").key_data()
        {'name': 'tv', 'params': {'weight': 0.9}, 'version': 'abc'}
    """

    kind: str
    name: str
    plugin: Any
    params: dict[str, Any]
    label: str
    version: str
    files: dict[str, str] = field(default_factory=dict)

    def key_data(self) -> dict[str, Any]:
        data = {"name": self.name, "params": self.params, "version": self.version}
        if self.files:  # only when set, so keys of runs without file parameters stay as they were
            data["files"] = self.files
        return data


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # file_version -> short sha256


def is_file_parameter(name: str) -> bool:
    """Parameters that name a file whose *content* defines the result (``checkpoint``, ``*_checkpoint``, ``*_file``)."""
    return name == "checkpoint" or name.endswith(("_checkpoint", "_file"))


def file_digests(params: dict[str, Any]) -> dict[str, str]:
    """sha256 of every existing file named by a file parameter, so the cache follows the file, not its path.

    A checkpoint re-trained in place gets new cells instead of stale cached ones.
    Missing files are left out (the plugin reports them when it runs).
    """
    out = {}
    for name, value in params.items():
        if not (is_file_parameter(name) and isinstance(value, str) and value):
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            continue
        memo = file_version(path)
        if memo not in _FILE_DIGESTS:
            _FILE_DIGESTS[memo] = sha256_file(path)[:16]
        out[name] = _FILE_DIGESTS[memo]
    return out


def instantiate(kind: str, name: str, overrides: dict[str, Any], profile: str,
                device: str = "cpu") -> list[PluginInstance]:
    """Instances of ``name`` for each point of the override grid (lists expand).

    Parameters a plugin resolves for the machine (e.g. ``precision=auto``) are resolved here, through the
    plugin's ``resolve_params``, so the cache key records what actually runs: a key pins its result on any
    machine.
    """
    cls = lookup(kind, name)
    base = dict(cls.profiles.get(profile, {})) if kind == "method" else {}
    grid = expand_grid(overrides) if overrides else [{}]
    instances = []
    for point in grid:
        values = {**base, **point}
        params = build_params(cls.Params, values, owner=name)
        params = cls.resolve_params(params, device)
        label = name
        if len(grid) > 1:
            label = name + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"
        values = params_to_dict(params)
        instances.append(
            PluginInstance(kind, name, cls(params), values, label, code_version(cls), file_digests(values))
        )
    return instances


def digest(payload: Any) -> str:
    """32 hex digits of sha256 over ``payload`` as sorted JSON (the cache-key hash)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class Cell:
    """One grid point. ``image`` may be None while the cell travels to a worker without its pixels.

    Example:
        >>> import numpy as np
        >>> m = PluginInstance("method", "identity", None, {}, "identity", "v1")
        >>> d = PluginInstance("degradation", "noise", None, {"sigma": 25.0}, "noise", "v2")
        >>> image = ImageItem("flat", np.zeros((4, 4, 3), np.float32))
        >>> len(Cell.make(m, d, image, 0, "smoke", "demo").key)
        32
    """

    method: PluginInstance
    degradation: PluginInstance
    image: ImageItem | None
    seed: int
    profile: str
    dataset: str
    key: str = ""
    image_id: str = ""
    degraded_key: str = ""

    @staticmethod
    def make(method: PluginInstance, degradation: PluginInstance, image: ImageItem, seed: int, profile: str,
             dataset: str) -> Cell:
        # checked before computing: an out-of-range seed would only fail when its row is stored
        if isinstance(seed, bool) or not hasattr(seed, "__index__") or not 0 <= operator.index(seed) <= MAX_SEED:
            raise ParameterError(f"seed {seed!r}: seeds are integers from 0 to 2**63 - 1 (stored as 64-bit).")
        seed = operator.index(seed)  # a numpy integer hashes like the same Python int
        payload = {
            "method": method.key_data(),
            "degradation": degradation.key_data(),
            "image": image.digest,
            "seed": seed,
            "profile": profile,
        }
        degraded = digest({"degradation": degradation.key_data(), "image": image.digest, "seed": seed})
        return Cell(method, degradation, image, seed, profile, dataset, key=digest(payload), image_id=image.id,
                    degraded_key=degraded)

    def draws_id(self) -> str:
        """What the method's random draws derive from: the seed, the image content, and the method's and the
        degradation's names, resolved parameters and files — the key without code versions, so a comment or a
        refactoring recomputes a cell (its key changed) with the same draws."""
        return digest({"method": experiment_data(self.method), "degradation": experiment_data(self.degradation),
                       "image": self.image.digest if self.image is not None else self.image_id, "seed": self.seed,
                       "profile": self.profile})


def experiment_data(plugin: PluginInstance) -> dict[str, Any]:
    """What of a plugin defines an experiment: its name, resolved parameters and the content of the files they
    name (checkpoints), never its code version.

    >>> experiment_data(PluginInstance("method", "tv", None, {"weight": 0.9}, "tv", "abc"))
    {'name': 'tv', 'params': {'weight': 0.9}}
    """
    data = plugin.key_data()
    del data["version"]
    return data


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (independent of execution order)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def degradation_generator(seed: int, image_digest: str, degradation: str) -> torch.Generator:
    """The generator a cell's degradation draws from: seeded by the seed, the image *content* (two files with
    the same pixels draw the same noise, whatever their names) and the degradation's name (so settings of one
    degradation share their draws), all of which the cell's key contains."""
    return torch.Generator().manual_seed(derived_seed("degrade", seed, image_digest, degradation))
