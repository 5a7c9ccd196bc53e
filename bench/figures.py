"""Figures of a results store (matplotlib, Agg; PNG and PDF): ``bench figures``.

* a visual comparison grid per (image, degradation): clean, degraded, then every
  method, with PSNR/LPIPS in the corner and an optional zoomed inset (the
  paper's Figure 1). The store keeps restored and degraded PNGs but not the
  clean image: it is reloaded from the dataset spec with the profile's crop and
  matched by image id and content digest; if that fails the clean panel is
  skipped with a note;
* per-image PSNR distributions per degradation (box + strip plot per method);
* convergence curves of the methods' stored traces (loss vs iteration).

Each method keeps one colour in every figure: the sorted method names of the
whole store mapped onto tab10 (tab20 beyond 10 methods).

Example:
    >>> colors = method_colors(["tv", "identity", "tv"])
    >>> list(colors), colors["identity"] != colors["tv"]
    (['identity', 'tv'], True)
    >>> parse_zoom("8,8,16,16")
    (8, 8, 16, 16)
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from bench.errors import BenchError, UsageError
from bench.metric_specs import spec
from bench.selection import current_rows, select_rows
from bench.store import stored_image

log = logging.getLogger(__name__)

Color = tuple[float, float, float, float]
Zoom = tuple[int, int, int, int]


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


def method_colors(methods: Any) -> dict[str, Color]:
    """A fixed colour per method name: sorted names onto tab10 (tab20 beyond 10, then cycling)."""
    from matplotlib import colormaps

    names = sorted({str(m) for m in methods})
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: tuple(cmap(i % cmap.N)) for i, name in enumerate(names)}


def store_colors(df: pd.DataFrame, all_versions: bool = False) -> dict[str, Color]:
    """Colours for a store: its method labels (as :func:`bench.selection.select` shows them) plus every
    registered method, so a method keeps its colour across filters, figures and reports."""
    from bench.registry import available

    return method_colors(set(current_rows(df, all_versions)["method_label"].astype(str)) | set(available("method")))


def parse_zoom(text: str | None) -> Zoom | None:
    """``"x,y,w,h"`` (pixels of the clean image) -> a tuple; malformed input is a usage error."""
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--zoom '{text}' must be four integers x,y,w,h (pixels), e.g. 96,96,64,64.") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise UsageError(f"--zoom '{text}': x, y must be >= 0 and w, h >= 1.")
    return x, y, w, h


def slug(text: str) -> str:
    """A file-name-safe short form (``folder:/a/b`` -> ``b``).

    >>> slug("folder:/data/div2k_crops"), slug("noise[sigma=15]")
    ('div2k_crops', 'noise_sigma_15')
    """
    if text.startswith("folder:"):
        text = Path(text[len("folder:"):].rstrip("/")).name or "folder"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "x"


# clean images --------------------------------------------------------------------------------------------------
class CleanImages:
    """Reload clean images from dataset specs, matched by id and content digest (cached per image).

    >>> CleanImages().get("folder:/no/such/folder", "smoke", "x", "digest") is None
    True
    """

    def __init__(self, data_root: str | None = None):
        self.data_root = data_root
        self._cache: dict[tuple[str, str], np.ndarray | None] = {}

    def _raw(self, dataset: str, image_id: str) -> np.ndarray | None:
        from bench.datasets import div2k_root, list_folder, load_dataset
        from bench.images import load_image, safe_id

        if dataset.startswith("folder:") or dataset == "div2k":
            # Only the one file, not the whole folder (DIV2K images are large).
            folder = Path(dataset[len("folder:"):]).expanduser() if dataset != "div2k" else div2k_root(self.data_root)
            files = [f for f in list_folder(folder) if safe_id(f.stem) == image_id]
            return load_image(files[0]) if files else None
        items = [item for item in load_dataset(dataset, crop=None, data_root=self.data_root) if item.id == image_id]
        return items[0].image if items else None

    def get(self, dataset: str, profile: str, image_id: str, digest: str, size: int | None = None) -> np.ndarray | None:
        """The clean (cropped) image whose digest is ``digest``, or None."""
        from bench.datasets import image_digest
        from bench.images import center_crop
        from bench.profiles import get_profile

        key = (dataset, digest)
        if key in self._cache:
            return self._cache[key]
        found = None
        try:
            raw = self._raw(dataset, image_id)
            crops = [get_profile(profile).crop, size, None]  # the profile's crop, or a --crop the size reveals
            for crop in dict.fromkeys(crops):
                if raw is not None and image_digest(center_crop(raw, crop)) == digest:
                    found = center_crop(raw, crop)
                    break
        except (BenchError, OSError) as err:
            log.info("clean image %s of %s not available: %s", image_id, dataset, err)
        self._cache[key] = found
        return found


# comparison grid ------------------------------------------------------------------------------------------------
def _scaled_zoom(zoom: Zoom, ref_shape: tuple[int, ...], shape: tuple[int, ...]) -> Zoom:
    """The zoom rectangle in the pixels of an image of ``shape`` (e.g. a ×4 smaller sr input)."""
    sy, sx = shape[0] / ref_shape[0], shape[1] / ref_shape[1]
    x, y, w, h = zoom
    return (int(x * sx), int(y * sy), max(1, round(w * sx)), max(1, round(h * sy)))


def _panel(ax: Any, image: np.ndarray | None, title: str, text: str, color: Any, zoom: Zoom | None,
           ref_shape: tuple[int, ...] | None) -> None:
    from matplotlib.patches import Rectangle

    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9, color="black")
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(3 if color != "black" else 0.8)
    if image is None:
        ax.text(0.5, 0.5, text or "missing", ha="center", va="center", fontsize=9, transform=ax.transAxes)
        return
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    if text:
        ax.text(0.02, 0.98, text, ha="left", va="top", fontsize=7, transform=ax.transAxes,
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5})
    if zoom is not None:
        x, y, w, h = _scaled_zoom(zoom, ref_shape or image.shape, image.shape)
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", linewidth=1))
        inset = ax.inset_axes([0.56, 0.0, 0.44, 0.44])
        inset.imshow(np.clip(image[y:y + h, x:x + w], 0, 1), interpolation="nearest")
        inset.set_xticks([])
        inset.set_yticks([])
        for spine in inset.spines.values():
            spine.set_edgecolor("red")


def _metric_text(row: pd.Series, metrics: tuple[str, ...] = ("psnr", "lpips")) -> str:
    parts = []
    for metric in metrics:
        if pd.notna(row.get(metric)):
            s = spec(metric)
            parts.append(f"{s.title} {float(row[metric]):.{s.figure_decimals}f}" + (f" {s.unit}" if s.unit else ""))
    return "\n".join(parts)


def _order(methods: list[str]) -> list[str]:
    """``identity`` (the reference) first, then by name."""
    return sorted(dict.fromkeys(methods), key=lambda m: (m != "identity", m))


def comparison_grid(rows: pd.DataFrame, root: Path, colors: dict[str, Color], clean_images: CleanImages,
                    zoom: Zoom | None = None) -> NamedFigure:
    """Clean | degraded | each method, for the rows of one (dataset, profile, degradation, image, seed)."""
    first = rows.iloc[0]
    dataset, profile, degradation, image = (str(first[k]) for k in ("dataset", "profile", "degradation_label", "image"))
    latest = rows.sort_values("created", kind="stable").drop_duplicates("method_label", keep="last") \
        if "created" in rows else rows.drop_duplicates("method_label", keep="last")
    by_method = {str(r["method_label"]): r for _, r in latest.iterrows()}
    notes: list[str] = []
    outputs = {m: stored_image(root, r["output_path"], notes) if r["status"] == "ok" else None
               for m, r in by_method.items()}
    size = next((o.shape[0] for o in outputs.values() if o is not None and o.shape[0] == o.shape[1]), None)
    clean = clean_images.get(dataset, profile, image, str(first["image_digest"]), size)
    degraded_path = next((r["degraded_path"] for r in by_method.values() if isinstance(r["degraded_path"], str)), None)
    degraded = stored_image(root, degraded_path, notes)
    ref_shape = clean.shape if clean is not None else next((o.shape for o in outputs.values() if o is not None), None)
    if zoom is not None and ref_shape is not None:
        x, y, w, h = zoom
        if x >= ref_shape[1] or y >= ref_shape[0]:
            raise UsageError(f"--zoom {x},{y},{w},{h} lies outside the {ref_shape[1]}×{ref_shape[0]} image '{image}'.")
        zoom = (x, y, min(w, ref_shape[1] - x), min(h, ref_shape[0] - y))
    panels: list[tuple[str, np.ndarray | None, str, Any]] = []
    if clean is not None:
        panels.append(("clean", clean, "", "black"))
    else:
        notes.append(f"clean image '{image}' not found in {dataset} (profile {profile} crop); clean panel skipped")
    input_psnr = first.get("input_psnr")
    degraded_text = _metric_text(pd.Series({"psnr": input_psnr}), ("psnr",))
    panels.append((f"degraded ({degradation})", degraded, degraded_text, "black"))
    for method in _order(list(by_method)):
        row = by_method[method]
        text = _metric_text(row) if row["status"] == "ok" else f"failed: {str(row['error'])[:40]}"
        panels.append((method, outputs[method], text, colors.get(method, "black")))
    fig = Figure(figsize=(2.3 * len(panels), 2.75 if not notes else 2.95), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, img, text, color) in zip(axes, panels):
        _panel(ax, img, title, text, color, zoom, ref_shape)
    title = f"{image} · {degradation} · {slug(dataset)} · {profile} · seed {first['seed']}"
    fig.suptitle(title, fontsize=10)
    if notes:
        fig.supxlabel("; ".join(notes), fontsize=8, color="dimgray")
    name = f"grid_{slug(dataset)}_{profile}_{slug(degradation)}_{slug(image)}"
    return NamedFigure(name, title, fig, panels=[p[0] for p in panels], notes=notes)


# distributions and convergence ---------------------------------------------------------------------------------
def _grid_axes(n: int, width: float = 3.6, height: float = 3.0) -> tuple[Figure, list[Any]]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def distribution_figure(df: pd.DataFrame, colors: dict[str, Color], metric: str = "psnr") -> NamedFigure | None:
    """Per-image values of ``metric`` per method (box + jittered points), one panel per degradation."""
    ok = select_rows(df, status="ok").copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    ok = ok.dropna(subset=[metric])
    if ok.empty:
        return None
    first = ok.iloc[0]
    degradations = list(dict.fromkeys(ok["degradation_label"]))
    methods = _order(list(ok["method_label"].astype(str)))
    fig, axes = _grid_axes(len(degradations), width=max(3.0, 0.7 * len(methods) + 1.2))
    rng = np.random.default_rng(0)  # fixed jitter: identical figures for identical results
    for ax, degradation in zip(axes, degradations):
        sub = ok[ok["degradation_label"] == degradation]
        data = [sub.loc[sub["method_label"] == m, metric].to_numpy(dtype=float) for m in methods]
        positions = [i for i, d in enumerate(data) if len(d)]
        box = ax.boxplot([data[i] for i in positions], positions=positions, widths=0.6, patch_artist=True,
                         showfliers=False)
        for patch, i in zip(box["boxes"], positions):
            patch.set_facecolor((*colors.get(methods[i], (0.5, 0.5, 0.5, 1))[:3], 0.25))
        for i, values in enumerate(data):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=12, color=colors.get(methods[i]),
                       zorder=3, edgecolor="none")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(degradation, fontsize=10)
        ax.set_ylabel(spec(metric).axis_label)
        ax.grid(axis="y", alpha=0.3)
    title = f"Per-image {spec(metric).title} · {slug(str(first['dataset']))} · {first['profile']}"
    fig.suptitle(title, fontsize=11)
    return NamedFigure(f"{metric}_per_image_{slug(str(first['dataset']))}_{first['profile']}", title, fig)


def _trace(text: Any) -> dict[str, list[float]]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {str(k): list(v) for k, v in data.items() if isinstance(v, list) and len(v) > 1} if isinstance(data, dict) \
        else {}


def convergence_figure(df: pd.DataFrame, colors: dict[str, Color]) -> NamedFigure | None:
    """Stored traces vs iteration (``loss`` preferred): one panel per method (losses of different methods
    have unrelated scales), one line per cell, line style per degradation."""
    from matplotlib.lines import Line2D

    ok = select_rows(df, status="ok")
    curves: list[tuple[str, str, str, list[float]]] = []
    for _, row in ok.iterrows():
        trace = _trace(row.get("trace"))
        if trace:
            key = "loss" if "loss" in trace else sorted(trace)[0]
            curves.append((str(row["method_label"]), str(row["degradation_label"]), key, trace[key]))
    if not curves:
        return None
    first = ok.iloc[0]
    methods = _order([c[0] for c in curves])
    degradations = list(dict.fromkeys(c[1] for c in curves))
    styles = {d: ["-", "--", ":", "-."][i % 4] for i, d in enumerate(degradations)}
    fig, axes = _grid_axes(len(methods), width=3.4, height=2.8)
    for ax, method in zip(axes, methods):
        mine = [c for c in curves if c[0] == method]
        values = np.concatenate([np.asarray(c[3], dtype=float) for c in mine])
        values = values[np.isfinite(values)]
        for _, degradation, _, trace in mine:
            ax.plot(np.arange(1, len(trace) + 1), trace, color=colors.get(method), alpha=0.8, linewidth=1,
                    linestyle=styles[degradation])
        if len(values) and np.all(values > 0):
            ax.set_yscale("log")
        elif np.any(values != 0):
            # NLL-type losses can be negative: symmetric log, linear only around the smallest magnitudes.
            ax.set_yscale("symlog", linthresh=float(np.quantile(np.abs(values[values != 0]), 0.1)))
        ax.set_title(method, fontsize=10, color=colors.get(method))
        ax.set_xlabel("iteration")
        ax.set_ylabel(" / ".join(sorted({c[2] for c in mine})))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="black", linestyle=styles[d], label=d) for d in degradations]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    title = f"Convergence · {slug(str(first['dataset']))} · {first['profile']}"
    fig.suptitle(title, fontsize=11)
    return NamedFigure(f"convergence_{slug(str(first['dataset']))}_{first['profile']}", title, fig)


# all figures ----------------------------------------------------------------------------------------------------
def build_figures(df: pd.DataFrame, root: str | Path, colors: dict[str, Color] | None = None,
                  image: str | None = None, zoom: Zoom | None = None, first_image_only: bool = False,
                  data_root: str | None = None, all_versions: bool = False) -> list[NamedFigure]:
    """Grids (every image, or ``image``, or the first one per degradation), distributions and convergence,
    per (dataset, profile), of the rows :func:`bench.selection.select` shows."""
    df = current_rows(df, all_versions)
    root = Path(root)
    colors = colors or store_colors(df)
    clean_images = CleanImages(data_root)
    if image is not None:
        if image not in set(df["image"]):
            raise UsageError(f"no results for image '{image}'; images in the store: "
                             f"{', '.join(sorted(map(str, set(df['image'])))[:10])}.")
    out: list[NamedFigure] = []
    for (_dataset, _profile), group in df.groupby(["dataset", "profile"], sort=True):
        cells = select_rows(group, images=[image] if image is not None else None)
        keys = ["degradation_label", "image", "seed"]
        seen: set[str] = set()
        for (degradation, _img, _seed), rows in cells.groupby(keys, sort=True):
            if first_image_only and degradation in seen:
                continue
            if rows["seed"].iloc[0] != cells.loc[cells["degradation_label"] == degradation, "seed"].min():
                continue  # one seed per image: the smallest
            seen.add(degradation)
            out.append(comparison_grid(rows, root, colors, clean_images, zoom))
        for fig in (distribution_figure(group, colors), convergence_figure(group, colors)):
            if fig is not None:
                out.append(fig)
    return out


def save_figure(fig: NamedFigure, out_dir: str | Path, formats: tuple[str, ...] = ("png", "pdf"),
                dpi: int = 150) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{fig.name}.{fmt}"
        fig.figure.savefig(path, dpi=dpi, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    return paths


def png_base64(fig: NamedFigure, dpi: int = 110) -> str:
    """The figure as a base64 PNG for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    fig.figure.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
