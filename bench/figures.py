"""Figures of a results store (matplotlib, Agg; PNG and PDF): ``bench figures``.

* a visual comparison grid per (image, degradation): clean, degraded, then every
  method, with PSNR/LPIPS in the corner and an optional zoomed inset (the
  paper's Figure 1). The store keeps restored and degraded PNGs but not the
  clean image: it is reloaded from the dataset spec with the profile's crop and
  matched by image id and content digest; if that fails the clean panel is
  skipped with a note;
* per-image PSNR distributions per degradation and convergence curves of the stored
  traces (:mod:`bench.plots`).

A method that does not apply to a task (status "n/a") gets a labelled empty panel; one
that ran below its reference budget has the share in its panel's corner text.

Each method keeps one colour in every figure: the sorted method names of the
whole store mapped onto tab10 (tab20 beyond 10 methods).

Example:
    >>> colors = method_colors(["tv", "identity", "tv"])
    >>> list(colors), colors["identity"] != colors["tv"]
    (['identity', 'tv'], True)
    >>> parse_zoom("8,8,16,16")
    (8, 8, 16, 16)
    >>> print(outcome_text(pd.Series({"status": "n/a", "error": "bm3d does not apply to the task 'sr': no sr scheme"})))
    n/a
    no sr scheme
"""

from __future__ import annotations

import base64
import io
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from bench.annotations import NA, is_below, percent
from bench.errors import BenchError, UsageError, storage_writes
from bench.metric_specs import spec
from bench.plots import Color, NamedFigure, convergence_figure, distribution_figure, method_order, slug
from bench.selection import current_rows, shown_rows
from bench.store import stored_image

log = logging.getLogger(__name__)

Zoom = tuple[int, int, int, int]
__all__ = ["CleanImages", "NamedFigure", "build_figures", "comparison_grid", "method_colors", "parse_zoom", "slug"]


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
        from bench.datasets import list_folder, load_dataset
        from bench.images import load_image, safe_id
        from bench.standard_sets import STANDARD_SETS, locate

        if dataset.startswith("folder:") or dataset in STANDARD_SETS:
            # Only the one file, not the whole folder (DIV2K images are large).
            folder = Path(dataset[len("folder:"):]).expanduser() if dataset not in STANDARD_SETS else locate(
                dataset, self.data_root)
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
    ax.set_title("\n".join(textwrap.wrap(title, 30)), fontsize=9, color="black")  # long grid labels wrap
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
    same = [m for m in by_method if m.split("[", 1)[0] == "identity" and degraded is not None
            and outputs[m] is not None and outputs[m].shape == degraded.shape and np.array_equal(outputs[m], degraded)]
    if same:  # identity's output is the degraded image itself: one panel, labelled as both
        panels[-1] = (f"degraded ({degradation}) = {same[0]}", *panels[-1][1:])
    for method in method_order(list(by_method)):
        if method in same:
            continue
        row = by_method[method]
        text = _metric_text(row) if row["status"] == "ok" else outcome_text(row)
        if row["status"] == "ok" and is_below(row.get("budget_fraction")):  # below the reference budget
            text += f"\n{percent(float(row['budget_fraction']))} of budget"
        panels.append((method, outputs[method], text, colors.get(method, "black")))
    legend_room = 0.45 if any(c != "black" for *_, c in panels) else 0.0
    fig = Figure(figsize=(2.3 * len(panels), (2.75 if not notes else 2.95) + legend_room), layout="constrained")

    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, img, text, color) in zip(axes, panels):
        _panel(ax, img, title, text, color, zoom, ref_shape)
    from matplotlib.patches import Patch

    framed = [(t, c) for t, _, _, c in panels if c != "black"]
    if framed:  # what the coloured frames mean: each method's colour, the same in every figure
        fig.legend(handles=[Patch(facecolor="none", edgecolor=c, linewidth=2, label=t) for t, c in framed],
                   loc="outside lower center", ncol=min(len(framed), 6), fontsize=7, frameon=False,
                   title="frame colour = method (the same in every figure)", title_fontsize=7)

    title = f"{image} · {degradation} · {slug(dataset)} · {profile} · seed {first['seed']}"
    fig.suptitle(title, fontsize=10)
    if notes:
        fig.supxlabel("; ".join(notes), fontsize=8, color="dimgray")
    name = f"grid_{slug(dataset)}_{profile}_{slug(degradation)}_{slug(image)}"
    return NamedFigure(name, title, fig, panels=[p[0] for p in panels], notes=notes)


def outcome_text(row: pd.Series) -> str:
    """The text of a panel without an image: "n/a" and why (the method does not apply), or "failed" and why."""
    error = str(row.get("error") or "")
    if row.get("status") == NA:
        reason = error.split(": ", 1)[1] if ": " in error else error
        return "\n".join([NA, *textwrap.wrap(reason, 24, max_lines=3, placeholder=" …")])
    return "\n".join(["failed", *textwrap.wrap(error, 24, max_lines=3, placeholder=" …")])


# all figures ----------------------------------------------------------------------------------------------------
def build_figures(df: pd.DataFrame, root: str | Path, colors: dict[str, Color] | None = None,
                  image: str | None = None, zoom: Zoom | None = None, first_image_only: bool = False,
                  data_root: str | None = None, all_versions: bool = False) -> list[NamedFigure]:
    """Grids (every image, or ``image``, or the first one per degradation), distributions and convergence,
    per (dataset, profile), of the rows :func:`bench.selection.select` shows."""
    df = shown_rows(df, all_versions)
    root = Path(root)
    colors = colors or store_colors(df)
    clean_images = CleanImages(data_root)
    if image is not None:
        if image not in set(df["image"]):
            raise UsageError(f"no results for image '{image}'; images in the store: "
                             f"{', '.join(sorted(map(str, set(df['image'])))[:10])}.")
    out: list[NamedFigure] = []
    for (_dataset, _profile), group in df.groupby(["dataset", "profile"], sort=True):
        cells = group[group["image"] == image] if image is not None else group
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
    paths = []
    for fmt in formats:
        path = out_dir / f"{fig.name}.{fmt}"
        with storage_writes(path, "--out", folder=out_dir):  # a read-only folder, a full disk: one line
            out_dir.mkdir(parents=True, exist_ok=True)
            fig.figure.savefig(path, dpi=dpi, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    return paths


def png_base64(fig: NamedFigure, dpi: int = 110) -> str:
    """The figure as a base64 PNG for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    fig.figure.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
