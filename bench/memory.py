"""Will the cells fit in memory? Each cell's peak is estimated from its image size and method, before any runs.

One 8000×8000 image took 15 GB for the ``identity`` row alone (metrics in one piece; now in bands, see
:mod:`bench.metric_bands`), and two such cells with ``--jobs 2`` would have been killed by the kernel
halfway. :func:`check_memory` refuses such a grid up front, with the estimate and the fix.

The model is deliberately simple, one line per cell::

    peak ≈ BASE_BYTES + bytes_per_pixel(method) × width × height

* :data:`BASE_BYTES` (1.6 GB): Python, torch, the plugins, LPIPS's AlexNet and the metrics' bounded
  working set (LPIPS scores images of up to 4 Mpx in one piece, at about 160 bytes per pixel).
* ``bytes_per_pixel``: what the method's class declares as ``memory_bytes_per_pixel`` (a plugin may), else
  the figure measured for the packaged method in :data:`MEASURED_BYTES_PER_PIXEL`, else
  :data:`DEFAULT_BYTES_PER_PIXEL`. The figures are the slopes of peak resident memory between two image
  sizes, measured with ``benchmarks/bench_memory.py`` (one fresh ``bench run`` per cell, LPIPS on; they are
  kept here, not in the plugin files, because a plugin's source is part of its cells' cache keys: declaring
  them there would recompute every stored cell of the method). They include the harness: the clean image
  (float32), the observation, the restored image and the metrics' float64 luma (about 55 bytes per pixel)
  besides what the method itself allocates. A method whose memory follows something else than the pixels
  (``patchnr``'s batch of 40 000 patches at the paper profile: 2.8 GB at 256²) is described only roughly.
* On a GPU (``--device cuda``) the method's own memory is on the device: host memory is checked with the
  harness's share only (``identity``'s figure).

Available memory is ``MemAvailable`` (``psutil`` when installed, else ``/proc/meminfo``; a cgroup limit
lowers it), or ``BENCH_MEMORY_AVAILABLE`` (bytes, or with a unit: ``512MB``, ``8GB``) where set, divided by
the number of worker processes (``--jobs``). ``BENCH_MEMORY_CHECK=off`` skips the check; a Dask run on an
existing scheduler (``--scheduler``) is not checked (its workers are other machines). Where the available
memory cannot be read, nothing is refused.

Example:
    >>> from methods.identity import Identity
    >>> round(estimate_bytes(Identity, "identity", 8000, 8000) / GB, 1)
    6.4
    >>> parse_bytes("512MB"), parse_bytes("2 GB"), parse_bytes("1000")
    (536870912, 2147483648, 1000)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from bench.errors import BenchError, UsageError

GB = 2**30
BASE_BYTES = int(1.6 * GB)
DEFAULT_BYTES_PER_PIXEL = 2500.0  # above the other packaged learned priors measured at 128²→256² (daep 2300)
MEASURED_BYTES_PER_PIXEL = {  # benchmarks/bench_memory.py, profile paper, LPIPS on; peak resident memory
    "identity": 80.0,  # 3000² 2.10 GB, 4000² 2.65 GB, 5000² 3.26 GB (slopes 99 and 73 bytes/pixel)
    "tv": 150.0,  # 3000² 2.17 GB, 4000² 3.14 GB (its Adam fit peaks above the metrics from about 3000²)
    "bm3d": 950.0,  # 512² 1.33 GB, 1024² 2.02 GB
    "dip": 7900.0,  # float32 (CPUs without bf16 units): 128² 1.41 GB, 256² 1.77 GB; bfloat16 3500, float64 20200
}
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": GB, "gb": GB, "t": 2**40, "tb": 2**40}


def bytes_per_pixel(cls: type, name: str, device: str = "cpu") -> float:
    """The bytes per pixel of a cell of method ``name`` (class ``cls``) beyond :data:`BASE_BYTES`.

    >>> from bench.api import Method
    >>> bytes_per_pixel(Method, "identity"), bytes_per_pixel(Method, "unknown"), bytes_per_pixel(Method, "dip", "cuda")
    (80.0, 2500.0, 80.0)
    """
    if not str(device).startswith("cpu"):
        return MEASURED_BYTES_PER_PIXEL["identity"]
    declared = cls.memory_bytes_per_pixel  # bench.api.Method declares it (None: no figure of its own)
    if declared is not None:
        return float(declared)
    return MEASURED_BYTES_PER_PIXEL.get(name, DEFAULT_BYTES_PER_PIXEL)


def estimate_bytes(cls: type, name: str, width: int, height: int, device: str = "cpu") -> int:
    """Estimated peak resident memory of one cell of method ``name`` on a ``width`` × ``height`` image."""
    return int(BASE_BYTES + bytes_per_pixel(cls, name, device) * width * height)


def parse_bytes(text: str) -> int:
    """``"8GB"``, ``"512 MB"``, ``"1.5g"`` or a number of bytes (binary units: 1 GB = 2**30 bytes)."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not found or found.group(2).lower() not in UNITS:
        raise UsageError(f"BENCH_MEMORY_AVAILABLE={text!r}: expected bytes, or a number with a unit (e.g. 8GB).")
    return int(float(found.group(1)) * UNITS[found.group(2).lower()])


def _cgroup_room() -> int | None:
    """What a cgroup memory limit leaves (limit − usage), if this process has one (v2, else v1)."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                            "memory/memory.usage_in_bytes")):
        try:
            cap = Path("/sys/fs/cgroup", limit).read_text().strip()
            if cap.isdigit() and int(cap) < 2**60:
                return int(cap) - int(Path("/sys/fs/cgroup", usage).read_text())
        except (OSError, ValueError):
            continue
    return None


def available_bytes() -> int | None:
    """Memory available to new allocations now (see the module docstring); None when it cannot be told."""
    if os.environ.get("BENCH_MEMORY_AVAILABLE"):
        return parse_bytes(os.environ["BENCH_MEMORY_AVAILABLE"])
    found = None
    try:
        import psutil

        found = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            text = Path("/proc/meminfo").read_text()
            found = int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M).group(1)) * 1024
        except (OSError, AttributeError):
            found = None
    room = _cgroup_room()
    return found if room is None else room if found is None else min(found, room)


def suggest_crop(budget: int, per_pixel: float) -> int | None:
    """The largest ``--crop`` (a multiple of 64, at least 64) that the model fits in ``budget`` bytes; None if none.

    >>> suggest_crop(4 * GB, 80.0), suggest_crop(GB, 80.0)
    (5632, None)
    """
    side = math.isqrt(max(0, int((budget - BASE_BYTES) / per_pixel))) // 64 * 64
    return side if side >= 64 else None


def check_memory(cells: list[Any], config: Any) -> None:
    """Raise a :class:`BenchError` naming the largest cell of ``cells`` (the ones to compute) when its estimate
    exceeds the available memory divided by the worker processes; do nothing when it fits."""
    if not cells or os.environ.get("BENCH_MEMORY_CHECK", "").strip().lower() in ("off", "0", "no", "false"):
        return
    if getattr(config, "executor", "local") == "dask" and getattr(config, "scheduler", None):
        return
    available = available_bytes()
    if available is None:
        return
    jobs = max(1, int(getattr(config, "jobs", 1) or 1))
    device = str(getattr(config, "device", "cpu"))
    sizes = {(c.method.name, c.image_id): (type(c.method.plugin), c.image.image.shape[1], c.image.image.shape[0])
             for c in cells if c.image is not None}
    if not sizes:
        return
    (method, image), (cls, width, height) = max(
        sizes.items(), key=lambda item: estimate_bytes(item[1][0], item[0][0], item[1][1], item[1][2], device))
    needed = estimate_bytes(cls, method, width, height, device)
    budget = available // jobs
    if needed <= budget:
        return
    crop = suggest_crop(budget, bytes_per_pixel(cls, method, device))
    fixes = ([f"--crop {crop}"] if crop is not None and crop < max(width, height) else []) + \
        (["fewer --jobs"] if jobs > 1 else []) + ["a smaller image"]
    advice = fixes[0] if len(fixes) == 1 else ", ".join(fixes[:-1]) + ("," if len(fixes) > 2 else "") + \
        f" or {fixes[-1]}"
    raise BenchError(f"{method} on image '{image}' ({width}×{height}) needs about {needed / GB:.1f} GB but this "
                     f"machine has {budget / GB:.1f} GB available for each of {jobs} job(s); use {advice}.")
