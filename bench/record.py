"""The result of one cell, defined once: :class:`CellRecord`'s fields are the store's columns.

A run computes a :class:`CellRecord` per cell (:mod:`bench.cells`), executors carry it from their workers, the runner
stores its images and then its columns (:mod:`bench.store` creates its table from :data:`COLUMNS`), and bundles,
reports and rescoring read the same columns back. The restored and degraded images travel with the record
(``restored``, ``degraded``: not columns) until the single writer stores them as PNGs.

Example:
    >>> record = CellRecord(key="k", method="tv", status="ok", psnr=27.5)
    >>> record.columns()["psnr"], "restored" in record.columns(), COLUMNS["key"]
    (27.5, False, 'TEXT PRIMARY KEY')
    >>> CellRecord.from_columns({"key": "k", "status": "failed", "error": "boom"}).error
    'boom'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.metric_specs import METRIC_NAMES


def column(sql: str = "TEXT", default: Any = None, doc: str = "") -> Any:
    """A stored field: its SQL type (the store's schema) and a one-line description."""
    return field(default=default, metadata={"sql": sql, "doc": doc})


def carried_image(doc: str) -> Any:
    """An image the record carries to the writer; never a column."""
    return field(default=None, repr=False, compare=False, metadata={"doc": doc})


@dataclass
class CellRecord:
    """One computed cell: what identifies it, its outcome, where its images are, and what computed it."""

    # what identifies the cell (the cache key hashes them; :func:`bench.compute.identify` fills them in)
    key: str = column("TEXT PRIMARY KEY", "", "the cache key")
    method: str = column(doc="the method's registered name")
    method_label: str = column(doc="the method as reports name it (parameters that differ in brackets)")
    method_params: Any = column(doc="the method's effective parameters (JSON when stored)")
    method_version: str = column(doc="the method's code version (bench.codeversion)")
    degradation: str = column(doc="the degradation's registered name")
    degradation_label: str = column(doc="the degradation as reports name it")
    degradation_params: Any = column(doc="the degradation's effective parameters (JSON when stored)")
    degradation_version: str = column(doc="the degradation's code version")
    degradation_description: str = column(doc="the degradation's caption line")
    dataset: str = column(doc="the dataset spec (builtin, folder:PATH, a standard set)")
    image: str = column(doc="the image id")
    image_digest: str = column(doc="sha256 prefix of the clean image's pixels")
    seed: int = column("INTEGER", doc="the run seed")
    profile: str = column(doc="the compute profile")
    # the outcome
    status: str = column(default="failed", doc="ok, failed or n/a (the method declares the task outside its scope)")
    error: str | None = column(doc="why a cell failed or is n/a")
    psnr: float | None = column("REAL", doc="PSNR (dB) of the 8-bit output; bench.metrics defines every metric")
    ssim: float | None = column("REAL")
    ms_ssim: float | None = column("REAL")
    lpips: float | None = column("REAL")
    psnr_y: float | None = column("REAL", doc="sr cells only: the SR literature's PSNR-Y with a border crop")
    metric_impl: Any = column(doc="JSON {metric: implementation that produced its value}")
    input_psnr: float | None = column("REAL", doc="PSNR of the degraded input (the identity row's value)")
    seconds: float | None = column("REAL", doc="wall-clock seconds of restore")
    peak_memory_mb: float | None = column("REAL", doc="peak process RSS, or the CUDA peak")
    budget_fraction: float | None = column("REAL", doc="share of the method's reference budget the cell used")
    budget: str | None = column(doc="JSON: used, reference, unit, source of that budget")
    weights: str | None = column(doc="what the method says of its trained weights (Method.weights_note)")
    # where its images are (filled by the writer) and what computed it
    output_path: str | None = column(doc="the restored PNG, relative to the results directory")
    degraded_path: str | None = column(doc="the degraded PNG, relative to the results directory")
    trace: Any = column(doc="JSON diagnostics, e.g. the loss per iteration")
    bench_version: str | None = column()
    torch_version: str | None = column()
    created: str | None = column(doc="when the row was written")
    hardware: str | None = column(doc="what computed the cell (bench.compute.hardware)")
    # carried to the writer, never stored as columns
    restored: Any = carried_image("the restored image, uint8 H×W×3 (ok cells)")
    degraded: Any = carried_image("the observation as its PNG shows it, uint8 H×W×3 (when it is not stored yet)")

    def columns(self) -> dict[str, Any]:
        """The stored columns and their values."""
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> CellRecord:
        """The record of a stored row (columns it does not know are an error: one schema)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown cell columns: {sorted(unknown)}")
        return cls(**row)


# The trace entry holding a cell's caption notes (bench.api.RestoreContext.note; reports read it, torch-free).
CAPTION_NOTES = "caption_notes"

COLUMNS: dict[str, str] = {f.name: f.metadata["sql"] for f in dataclasses.fields(CellRecord) if "sql" in f.metadata}
missing_metrics = [name for name in METRIC_NAMES if name not in COLUMNS]
if missing_metrics:  # a metric registered in bench.metric_specs needs its column here
    raise TypeError(f"CellRecord has no column for the metric(s) {missing_metrics}: add them to bench/record.py")
