"""Summary figures of a results store: per-image metric distributions and convergence curves.

Shared by :mod:`bench.figures` (which adds the comparison grids and writes files): a
:class:`NamedFigure` record, file-name slugs and the method order (``identity`` first).

* distributions: per-image values of a metric per method (points, with a box from 5 values on), one panel per
  degradation; a method that does not apply to a degradation is labelled "n/a" in its slot;
* convergence: the stored traces (``loss`` preferred) vs iteration, one panel per method
  (losses of different methods have unrelated scales), the legend of line styles below the
  panels. Positive losses use a log axis; when any loss goes negative (a negative
  log-likelihood, where neither a log nor a symlog axis reads well) every curve of every
  method is drawn scaled between its minimum (0) and maximum (1): all normalised or none.

Example:
    >>> slug("folder:/data/div2k_crops"), method_order(["tv", "identity", "tv"])
    ('div2k_crops', ['identity', 'tv'])
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from bench.annotations import NA
from bench.metric_specs import spec
from bench.selection import select_rows

Color = tuple[float, float, float, float]
MIN_BOX = 5  # fewer values per method: points only, no box


@dataclass
class NamedFigure:
    """A figure with a file stem, a title and (for grids) the panel names in order.

    >>> NamedFigure("grid", "Grid", Figure()).panels
    []
    """

    name: str
    title: str
    figure: Figure
    panels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """A file-name-safe short form (``folder:/a/b`` -> ``b``).

    >>> slug("folder:/data/div2k_crops"), slug("noise[sigma=15]")
    ('div2k_crops', 'noise_sigma_15')
    """
    if text.startswith("folder:"):
        text = Path(text[len("folder:") :].rstrip("/")).name or "folder"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "x"


def method_order(methods: list[str]) -> list[str]:
    """``identity`` (the reference) first, then by name."""
    return sorted(dict.fromkeys(methods), key=lambda m: (m != "identity", m))


def grid_axes(n: int, width: float = 3.6, height: float = 3.0) -> tuple[Figure, list[Any]]:
    """A constrained-layout figure with ``n`` panels, at most 4 per row."""
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def distribution_figure(df: pd.DataFrame, colors: dict[str, Color], metric: str = "psnr") -> NamedFigure | None:
    """Per-image values of ``metric`` per method (jittered points, with a box where a method has at least
    :data:`MIN_BOX` values: a box of fewer summarises nothing), one panel per degradation."""
    ok = select_rows(df, status="ok").copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    ok = ok.dropna(subset=[metric])
    if ok.empty:
        return None
    na = select_rows(df, status=NA)
    first = ok.iloc[0]
    degradations = list(dict.fromkeys(ok["degradation_label"]))
    methods = method_order(list(ok["method_label"].astype(str)) + list(na["method_label"].astype(str)))
    fig, axes = grid_axes(len(degradations), width=max(3.0, 0.7 * len(methods) + 1.2))
    rng = np.random.default_rng(0)  # fixed jitter: identical figures for identical results
    for ax, degradation in zip(axes, degradations):
        sub = ok[ok["degradation_label"] == degradation]
        data = [sub.loc[sub["method_label"] == m, metric].to_numpy(dtype=float) for m in methods]
        positions = [i for i, d in enumerate(data) if len(d) >= MIN_BOX]
        box = ax.boxplot(
            [data[i] for i in positions], positions=positions, widths=0.6, patch_artist=True, showfliers=False
        ) if positions else {"boxes": []}
        for patch, i in zip(box["boxes"], positions):
            patch.set_facecolor((*colors.get(methods[i], (0.5, 0.5, 0.5, 1))[:3], 0.25))
        for i, values in enumerate(data):
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, len(values)),
                values,
                s=12,
                color=colors.get(methods[i]),
                zorder=3,
                edgecolor="none",
            )
        not_applicable = set(na.loc[na["degradation_label"] == degradation, "method_label"].astype(str))
        for i, method in enumerate(methods):
            if method in not_applicable and not len(data[i]):  # x in data, y in axes units: mid-height
                ax.text(
                    i,
                    0.5,
                    NA,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="dimgray",
                    transform=ax.get_xaxis_transform(),
                )
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(degradation, fontsize=10)
        ax.set_ylabel(spec(metric).axis_label)
        ax.grid(axis="y", alpha=0.3)
    title = f"Per-image {spec(metric).title} · {slug(str(first['dataset']))} · {first['profile']}"
    fig.suptitle(title, fontsize=11)
    fig.supxlabel(f"one point per image (and seed); boxes (quartiles, whiskers 1.5 IQR) only where a method has "
                  f"at least {MIN_BOX} points", fontsize=7, color="dimgray")
    return NamedFigure(f"{metric}_per_image_{slug(str(first['dataset']))}_{first['profile']}", title, fig)


def trace_of(text: Any) -> dict[str, list[float]]:
    """The stored trace JSON as ``{name: values}`` (series of at least 2 values only)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return (
        {str(k): list(v) for k, v in data.items() if isinstance(v, list) and len(v) > 1}
        if isinstance(data, dict)
        else {}
    )


def convergence_figure(df: pd.DataFrame, colors: dict[str, Color]) -> NamedFigure | None:
    """Stored traces vs iteration (``loss`` preferred): one panel per method, one line per cell, line style per
    degradation (legend below the panels)."""
    from matplotlib.lines import Line2D

    ok = select_rows(df, status="ok")
    curves: list[tuple[str, str, str, list[float]]] = []
    for _, row in ok.iterrows():
        trace = trace_of(row.get("trace"))
        if trace:
            key = "loss" if "loss" in trace else sorted(trace)[0]
            curves.append((str(row["method_label"]), str(row["degradation_label"]), key, trace[key]))
    if not curves:
        return None
    first = ok.iloc[0]
    methods = method_order([c[0] for c in curves])
    degradations = list(dict.fromkeys(c[1] for c in curves))
    styles = {d: ["-", "--", ":", "-."][i % 4] for i, d in enumerate(degradations)}
    fig, axes = grid_axes(len(methods), width=3.6, height=3.0)
    every = np.concatenate([np.asarray(c[3], dtype=float) for c in curves])
    every = every[np.isfinite(every)]
    # NLL-type losses go negative (no log axis): then every curve of every method is scaled to [0, 1] between its
    # own min and max, so that the panels read alike (all normalised or none)
    normalise = bool(len(every)) and bool(every.min() <= 0)
    for ax, method in zip(axes, methods):
        mine = [c for c in curves if c[0] == method]
        values = np.concatenate([np.asarray(c[3], dtype=float) for c in mine])
        values = values[np.isfinite(values)]
        name = " / ".join(sorted({c[2] for c in mine}))

        for _, degradation, _, trace in mine:
            y = np.asarray(trace, dtype=float)
            if normalise:
                low, high = np.nanmin(y), np.nanmax(y)
                y = (y - low) / (high - low) if high > low else np.zeros_like(y)
            ax.plot(
                np.arange(1, len(y) + 1),
                y,
                color=colors.get(method),
                alpha=0.8,
                linewidth=1,
                linestyle=styles[degradation],
            )
        if len(values) and not normalise:
            ax.set_yscale("log")
        ax.set_title("\n".join(textwrap.wrap(method, 34)), fontsize=9, color=colors.get(method))
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{name}, per curve: 0 = min, 1 = max" if normalise else name, fontsize=8)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="black", linestyle=styles[d], label=d) for d in degradations]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    title = f"Convergence · {slug(str(first['dataset']))} · {first['profile']}"
    fig.suptitle(title, fontsize=11)
    return NamedFigure(f"convergence_{slug(str(first['dataset']))}_{first['profile']}", title, fig)
