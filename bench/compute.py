"""Computing one cell: its observation, the restoration, the scores and its :class:`~bench.record.CellRecord`.

:func:`execute_cell` is a pure function of its inputs (it never writes), so executors can run it anywhere; the
runner is the single writer to the store. The clean image is used only for the scores, after restoring.

Example:
    >>> import numpy as np
    >>> from bench.cells import Cell, instantiate
    >>> from bench.datasets import ImageItem
    >>> from bench.metrics import MetricSuite
    >>> method = instantiate("method", "identity", {}, "smoke")[0]
    >>> noise = instantiate("degradation", "noise", {}, "smoke")[0]
    >>> cell = Cell.make(method, noise, ImageItem("flat", np.full((16, 16, 3), 0.5, np.float32)), 0, "smoke", "demo")
    >>> record = execute_cell(cell, MetricSuite(lpips=False))
    >>> record.status, record.psnr == record.input_psnr
    ('ok', True)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import platform
import resource
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import __version__
from bench.api import Degradation, Method, Observation, RestoreContext, quantize
from bench.cells import Cell, PluginInstance, degradation_generator, derived_seed
from bench.errors import BenchError
from bench.metrics import MetricSuite, psnr
from bench.record import CellRecord
from bench.registry import lookup
from bench.solvers.applicability import NotApplicable

log = logging.getLogger(__name__)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` array -> ``(1, 3, H, W)`` float tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def to_array(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` tensor -> ``(H, W, 3)`` array (on the CPU)."""
    return x.detach().cpu()[0].permute(1, 2, 0).numpy()


def make_observation(degradation: Degradation, clean: torch.Tensor, seed: int, image_digest: str, name: str,
                     cached_y: np.ndarray | None = None) -> Observation:
    """The cell's observation; with ``cached_y`` only the operator is rebuilt (same draws), unless the
    degradation's observation holds more than ``y`` (``simulate_when_cached``: a JPEG file's coefficients) or more
    than 8 bits (a float observation, :meth:`bench.api.Degradation.eight_bit`, which its stored PNG shows only
    clipped and rounded), which is simulated again (same draws, same ``y``, bit for bit)."""
    generator = degradation_generator(seed, image_digest, name)
    if cached_y is None or degradation.simulate_when_cached or not degradation.eight_bit():
        return degradation.degrade(clean, generator)
    degradation.check_shape(tuple(clean.shape[-2:]))
    operator = degradation.make_operator(tuple(clean.shape[-2:]), generator)
    return degradation.observation(to_tensor(cached_y), operator)


def compute_cell(cell: Cell, obs: Observation, metrics: MetricSuite, device: str = "cpu",
                 progress: bool = False) -> CellRecord:
    """Restore one cell and score it. Returns its record (status 'ok', 'failed', or 'n/a' when the method
    declares the task outside its scope, :class:`NotApplicable`); never raises for method errors. The
    clean image is used only here, for the metrics, after restoring."""
    method: Method = cell.method.plugin
    # Every draw follows from the experiment (never from code versions, display labels or file names): same
    # experiment, same draws, also after code was tidied (the key, which includes code, decides recomputation).
    draws_from = cell.draws_id()
    ctx = RestoreContext(
        generator=torch.Generator().manual_seed(derived_seed("method", draws_from)),
        seed=cell.seed,
        profile=cell.profile,
        device=torch.device(device),
        progress=progress,
    )
    torch.manual_seed(derived_seed("global", draws_from) % (2**31))
    record = identify(cell)
    start = time.perf_counter()
    try:
        restore_obs = dataclasses.replace(obs, y=obs.y.to(device), operator=obs.operator.to(device))
        out = method.restore(restore_obs, ctx)
        seconds = time.perf_counter() - start
        expected = (1, 3, *cell.image.image.shape[:2])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"method returned shape {shape}, expected {expected}")
        if not torch.isfinite(out).all():
            raise ValueError("method returned NaN or Inf values")
        restored = np.round(to_array(out.float().clamp(0, 1)) * 255.0).astype(np.uint8)
        del out  # not needed while scoring: a large image's float copy (bench/memory.py)
        clean = to_tensor(cell.image.image)
        crop = metric_crop(cell.degradation)  # PSNR-Y's border: sr cells only
        scores = metrics(clean, to_tensor(restored.astype(np.float32) / 255.0), crop=crop)
        record = dataclasses.replace(record, status="ok", error=None, seconds=seconds, trace=ctx.trace or None,
                                     **clean_scores(scores), metric_impl=metrics.implementations(scores, crop=crop),
                                     **cell_budget(cell, ctx.steps), restored=restored)
    except NotApplicable as err:  # by design, not a failure: stored, shown as "n/a", never retried
        record = dataclasses.replace(record, status="n/a", error=str(err), seconds=time.perf_counter() - start,
                                     budget_fraction=None, budget=None)
    except Exception as err:  # the cell fails; the run goes on
        record = dataclasses.replace(record, status="failed", error=f"{type(err).__name__}: {err}",
                                     seconds=time.perf_counter() - start)
        log.debug("cell failed:\n%s", traceback.format_exc())
    record.peak_memory_mb = peak_memory_mb(device)
    record.hardware = hardware(str(device))
    return record


def execute_cell(cell: Cell, metrics: MetricSuite, device: str = "cpu", progress: bool = False,
                 cached_y: np.ndarray | None = None) -> CellRecord:
    """Degrade (or rebuild the operator for a cached observation), restore and score one cell.

    Runs anywhere (the local process or a worker) and never touches the store: the record it returns
    carries the restored and degraded images (``restored``, ``degraded``) for the single writer.
    """
    degradation = cell.degradation.plugin
    clean = to_tensor(cell.image.image)
    try:
        obs = make_observation(degradation, clean, cell.seed, cell.image.digest, cell.degradation.name, cached_y)
    except Exception as err:  # a degradation failing on one image fails that cell only
        return failed_record(cell, f"degradation failed: {type(err).__name__}: {err}")
    record = compute_cell(cell, obs, metrics, device, progress=progress)
    record.input_psnr = input_psnr(cell, obs)
    if cached_y is None:  # the observation as a PNG shows it (a float one clipped to [0, 1], for display only)
        record.degraded = np.round(to_array(obs.y.clamp(0, 1)) * 255.0).astype(np.uint8)
    return record


def input_psnr(cell: Cell, obs: Observation) -> float | None:
    """PSNR of the observation's initial estimate (e.g. bicubic for sr) as the metrics score an output (clipped to
    [0, 1] and rounded to 8 bits: the ``identity`` row's value), for reference only."""
    init = obs.operator.init(obs.y)
    if tuple(init.shape[-2:]) != cell.image.image.shape[:2]:
        return None
    return psnr(to_tensor(cell.image.image), quantize(init.cpu().float()))


def metric_crop(degradation: PluginInstance | str, params: dict[str, Any] | str | None = None) -> int | None:
    """The border crop of the SR literature's PSNR-Y (:func:`bench.metrics.psnr_y`): the scale factor of a cell
    whose degradation's task is ``sr``; None (no PSNR-Y) for every other task. ``degradation`` is a plugin
    instance, or a degradation's name with its parameters (a stored row's, JSON allowed).

    >>> metric_crop("sr", '{"factor": 4, "sigma": 0.0}'), metric_crop("noise", {"sigma": 25})
    (4, None)
    """
    if isinstance(degradation, PluginInstance):
        task, params = degradation.plugin.task, degradation.params
    else:
        try:
            task = lookup("degradation", degradation).task
        except BenchError:  # a plugin no longer installed: no task known
            return None
        params = json.loads(params) if isinstance(params, str) else params
    factor = params.get("factor") if isinstance(params, dict) else None
    return int(factor) if task == "sr" and factor else None


def clean_scores(scores: dict[str, float]) -> dict[str, float | None]:
    """NaN scores (a metric that does not apply) as None, stored as missing."""
    return {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in scores.items()}


@functools.cache
def hardware(device: str = "cpu") -> str:
    """What computes on ``device``, without the host's name: the GPU (CUDA) and the CPU model and thread count.

    >>> hardware("cpu").startswith("CPU ")
    True
    """
    cpu = platform.processor() or platform.machine() or "unknown"
    try:  # Linux names the model here (platform.processor() is often just "x86_64")
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"CPU {cpu} ({os.cpu_count()} threads)"
    if device.startswith("cuda") and torch.cuda.is_available():
        text = f"GPU {torch.cuda.get_device_name(torch.device(device))}, {text}"
    elif device.startswith(("mps", "xpu")):
        text = f"{device}, {text}"
    return text


def peak_memory_mb(device: str) -> float:
    """Peak resident memory of this process (CPU) or peak allocated CUDA memory, in MB."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        value = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def identify(cell: Cell) -> CellRecord:
    """The record of ``cell`` before its outcome: what identifies it, and the budget its parameters ask for."""
    return CellRecord(
        key=cell.key,
        method=cell.method.name,
        method_label=cell.method.label,
        method_params=cell.method.params,
        method_version=cell.method.version,
        degradation=cell.degradation.name,
        degradation_label=cell.degradation.label,
        degradation_params=cell.degradation.params,
        degradation_version=cell.degradation.version,
        degradation_description=cell.degradation.plugin.describe(),
        dataset=cell.dataset,
        image=cell.image.id,
        image_digest=cell.image.digest,
        seed=cell.seed,
        profile=cell.profile,
        bench_version=__version__,
        torch_version=torch.__version__,
        **cell_budget(cell),
    )


def cell_budget(cell: Cell, steps: int | None = None) -> dict[str, Any]:
    """The ``budget_fraction``, ``budget`` (JSON: used, reference, unit, source) and ``weights`` (the method's
    :func:`weights_note`, None when it has none) columns of a cell: the share
    of its method's reference budget (:class:`bench.api.Budget`) it uses. ``steps`` are those counted while it
    ran; before that (None), what its parameters ask for (an automatic 0: the reference). None where the method
    declares no budget for the task.

    >>> from bench.datasets import ImageItem
    >>> m = PluginInstance("method", "identity", Method(), {}, "identity", "v1")
    >>> d = PluginInstance("degradation", "noise", Degradation(), {}, "noise", "v2")
    >>> cell_budget(Cell.make(m, d, ImageItem("x", np.zeros((4, 4, 3), np.float32)), 0, "smoke", "demo"))
    {'budget_fraction': None, 'budget': None, 'weights': None}
    """
    budget = type(cell.method.plugin).reference_budget
    task = cell.degradation.plugin.task
    reference = budget.reference(task, cell.degradation.params.get("factor")) if budget is not None else None
    if not reference:
        used = None
    elif steps is None:  # before running: a planned 0 is an automatic count, predicted to be the reference
        used = budget.planned(cell.method.params, reference) or reference
    else:
        used = steps or budget.planned(cell.method.params, reference)
    weights = weights_note(cell.method) or None
    if used is None:
        return {"budget_fraction": None, "budget": None, "weights": weights}
    info = {"used": used, "reference": reference, "unit": budget.unit, "source": budget.source}
    return {"budget_fraction": used / reference, "budget": json.dumps(info, sort_keys=True), "weights": weights}


def weights_note(method: PluginInstance) -> str:
    """What a method says of the trained weights a cell runs with: its class's ``weights_note(params)`` (e.g. that
    the packaged prior was trained here on a CPU, far smaller than the published model), "" when it says nothing
    or the cell uses other weights. Stored in the ``weights`` column; report captions repeat it.

    >>> weights_note(PluginInstance("method", "tv", Method(), {}, "tv", "v"))
    ''
    """
    return str(type(method.plugin).weights_note(method.params) or "")


def failed_record(cell: Cell, reason: str) -> CellRecord:
    """The record of a cell that could not be computed."""
    return dataclasses.replace(identify(cell), status="failed", error=reason)
