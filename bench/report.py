"""Table-1 style reports in markdown, LaTeX, CSV and self-contained HTML.

The blocks (rows = degradation × metric, columns = methods, means over images and
seeds, missing cells as "–", methods that do not apply as "n/a", cells below the
method's reference budget with †, cells not computed here by the installed code with ‡ (imported), § (older
code) or ¶ (other hardware), best per row in bold unless tied, and with one image or two, or with ``--ci``, only
where significant: none in this one-image example) come from :mod:`bench.tables`;
this module renders them, each under a heading (dataset, profile) with its caption
and note lines, the per-image rows and, with ``--ci``, the statistics of
:mod:`bench.stats`. LaTeX needs ``booktabs`` and ``multirow``.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method_label": ["a", "b"], "degradation_label": ["noise"] * 2,
    ...     "degradation_description": ["σ=25"] * 2, "dataset": ["d"] * 2, "profile": ["smoke"] * 2,
    ...     "image": ["x"] * 2, "seed": [0, 0], "status": ["ok"] * 2, "psnr": [20.0, 25.0],
    ...     "ssim": [0.5, 0.6], "ms_ssim": [None, None], "lpips": [0.3, 0.2], "seconds": [0.1, 1.0]})
    >>> for line in to_markdown(build_tables(df)[0]).splitlines()[:5]: print(line)
    ### d · profile smoke
    <BLANKLINE>
    | Degradation | Metric | a | b |
    |---|---|---:|---:|
    | noise | PSNR ↑ | 20.00 | 25.00 |
"""

from __future__ import annotations

import html
import importlib
import logging
import math
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd

from bench.annotations import BUNDLE, DAGGER, NA, OLDER_CODE, OTHER_HARDWARE, percent
from bench.metric_specs import METRIC_NAMES
from bench.selection import select_rows, shown_rows
from bench.stored_images import damaged_note, quick_state
from bench.tables import MISSING, Table, build_tables, format_value, latex_table

log = logging.getLogger(__name__)
PER_IMAGE_COLUMNS = ["method", "degradation", "image", "seed", *METRIC_NAMES, "seconds"]
# What tells two results of one (method, degradation, image, seed) apart, after the status columns.
IDENTITY_COLUMNS = ("image_digest", "method_params", "method_version", "degradation_params", "degradation_version",
                    "key")


def to_markdown(table: Table) -> str:
    """A heading (dataset, profile), the table, then its caption and note lines as paragraphs."""
    methods = list(table.values.columns)
    lines = [f"### {table.heading}", "",
             "| Degradation | Metric | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for (degradation, metric), row in table.values.iterrows():
        cells = []
        for method in methods:
            text, mark = table.text((degradation, metric), method, format_value(row[method], metric))
            cells.append((f"**{text}**" if table.best.loc[(degradation, metric), method] else text) + mark)
        lines.append(f"| {degradation} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n\n".join(table.lines()) + "\n"


def display_frame(table: Table) -> pd.DataFrame:
    """The table's cells as shown: values with their decimals, "–", "n/a", a trailing † below budget."""
    display = table.values.copy().astype(object)
    for (degradation, metric), row in table.values.iterrows():
        for method in table.values.columns:
            text, mark = table.text((degradation, metric), method, format_value(row[method], metric))
            display.loc[(degradation, metric), method] = text + mark
    return display


def _styler(table: Table) -> Any:
    styler = display_frame(table).style
    styler = styler.apply(
        lambda _: table.best.replace({True: "font-weight: bold", False: ""}).values, axis=None
    )
    return styler


def to_latex(table: Table) -> str:
    """A booktabs table (:func:`bench.tables.latex_table`: one header row, no rule doubled); names and caption
    escaped, the caption starting with what an imported reference bundle holds."""
    caption = " ".join(([f"{table.subtitle}."] if table.subtitle else []) + table.lines())
    return latex_table(display_frame(table), table.best, caption,
                       f"dataset {table.dataset}, profile {table.profile}")


STYLE = (
    "body{font-family:sans-serif;margin:0 auto;padding:1em 2em;max-width:1400px;box-sizing:border-box}"
    "h2{margin-top:1.6em}.scroll{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
    "th{background:#f4f4f4}table.sortable th{cursor:pointer}"
    "span.long{display:inline-block;min-width:16em;max-width:32em;white-space:normal;overflow-wrap:anywhere;"
    "text-align:left}"
    "p.caption{color:#555;max-width:110ch;margin:0.3em 0}"
    "figure{margin:1em 0}figure img{max-width:100%;height:auto}figcaption{color:#555}"
)


def to_html(tables: list[Table], per_image: pd.DataFrame | None = None, title: str = "restoration-bench report",
            figures: list[tuple[str, str]] | None = None, extra: list[str] | None = None) -> str:
    """One self-contained HTML page (no external assets); names are HTML-escaped.

    Up to 1400 px wide (narrower windows: the page follows, wide tables scroll sideways). Each table
    has a heading (dataset, profile). ``figures`` are (title, base64 PNG) pairs embedded as data URIs;
    ``extra`` are HTML fragments (e.g. confidence-interval tables) placed after the tables.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for table in tables:
        styler = _styler(table).format(escape="html").format_index(escape="html", axis=0)
        parts.append(f"<h2>{html.escape(table.heading)}</h2>")
        parts.append(scroll(styler.format_index(escape="html", axis=1).to_html()) + captions_html(table.lines()))
    parts.extend(extra or [])
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, data in figures:
            parts.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if per_image is not None and len(per_image):
        parts.append("<h2>Per image</h2>")
        parts.append(scroll(per_image_html(per_image)))
        parts.append(_SORT_SCRIPT)
    parts.append("</body></html>")
    return "\n".join(parts)


def captions_html(lines: list[str]) -> str:
    """Caption and note lines as paragraphs below a table (as wide as the page allows, not the table)."""
    return "".join(f"<p class='caption'>{html.escape(line)}</p>" for line in lines)


def scroll(fragment: str) -> str:
    """``fragment`` in a box that scrolls sideways when wider than the page."""
    return f"<div class='scroll'>{fragment}</div>"


def per_image_html(frame: pd.DataFrame) -> str:
    """The per-image rows as a sortable table: floats with 4 decimals, every missing value (NaN, None) as "–",
    long texts (errors, parameters) in a box that wraps; everything HTML-escaped.

    >>> "None" in per_image_html(pd.DataFrame({"psnr": [20.0, None], "error": [None, "<boom>"]}))
    False
    """
    shown = frame.astype(object).copy()
    for column in frame.columns:
        floats = pd.api.types.is_float_dtype(frame[column])
        shown[column] = [hash_html(v) if column in HASH_COLUMNS else cell_html(v, floats) for v in frame[column]]
    return shown.to_html(index=False, classes="sortable", escape=False)


HASH_COLUMNS = ("image_digest", "key")  # 64 hex digits: shortened, so that the parameter columns stay in view


def hash_html(value: Any) -> str:
    """A digest shown by its first 12 characters, the whole in its tooltip.

    >>> hash_html("0123456789abcdef0123")
    "<span title='0123456789abcdef0123'>0123456789ab…</span>"
    """
    if not isinstance(value, str) or len(value) <= 12:
        return cell_html(value, False)
    return f"<span title='{html.escape(value, quote=True)}'>{html.escape(value[:12])}…</span>"



def cell_html(value: Any, is_float: bool) -> str:
    """One per-image cell, escaped: "–" when missing, 4 decimals for floats, a wrapping box past 40 characters."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    text = html.escape(f"{value:.4f}" if is_float else str(value))
    return f"<span class='long'>{text}</span>" if len(text) > 40 else text


_SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach(function(th, i){th.onclick=function(){
var t=th.closest('table'),b=t.tBodies[0],r=Array.from(b.rows),d=th.dataset.d==='1'?-1:1;th.dataset.d=d===1?'1':'0';
r.sort(function(x,y){var a=x.cells[i].innerText,c=y.cells[i].innerText,p=parseFloat(a),q=parseFloat(c);
return (isNaN(p)||isNaN(q)?a.localeCompare(c):p-q)*d;});r.forEach(function(e){b.appendChild(e);});};});
</script>"""


def per_image_frame(df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None,
                    all_versions: bool = False) -> pd.DataFrame:
    """Per-image rows with the columns method,degradation,image,seed,psnr,ssim,ms_ssim,lpips,psnr_y,seconds, then
    status, error, dataset, profile and the columns that tell rows apart (digest, parameters, versions, key)."""
    df = shown_rows(df, all_versions, methods, degradations)
    out = df.assign(method=df["method_label"], degradation=df["degradation_label"])
    out = out.assign(**{m: None for m in METRIC_NAMES if m not in out})  # rows made before a metric existed
    extra = [c for c in ("status", "error", "budget_fraction", "dataset", "profile", *IDENTITY_COLUMNS)
             if c in out.columns]
    return out[PER_IMAGE_COLUMNS + extra].sort_values(["degradation", "method", "image", "seed"]).reset_index(drop=True)


def stored_image_notes(df: pd.DataFrame, root: str | Path, methods: list[str] | None = None,
                       degradations: list[str] | None = None) -> dict[tuple[str, str], str]:
    """``{(dataset, profile): note}`` for the tables whose ok cells' stored PNGs (restored or degraded) are
    missing, emptied or truncated (:func:`bench.stored_images.quick_state`: no decoding)."""
    rows = select_rows(df, methods, degradations)
    rows = rows[rows["status"] == "ok"] if "status" in rows else rows
    notes = {}
    for (dataset, profile), group in rows.groupby(["dataset", "profile"], sort=True):
        paths = dict.fromkeys(p for column in ("output_path", "degraded_path") if column in group
                              for p in group[column] if isinstance(p, str) and p)
        damaged = [p for p in paths if quick_state(Path(root) / p) != "ok"]
        if damaged:
            notes[(str(dataset), str(profile))] = damaged_note(damaged)
    return notes


def render(df: pd.DataFrame, fmt: str, per_image: bool = False, methods: list[str] | None = None,
           degradations: list[str] | None = None, ci: bool = False, figures_root: str | None = None,
           colors: dict[str, Any] | None = None, all_versions: bool = False,
           image_notes: dict[tuple[str, str], str] | None = None) -> str:
    """Render the store's rows as ``latex``, ``markdown``, ``csv`` or ``html``.

    The rows shown are those of :func:`bench.selection.select` (``all_versions``: older code
    versions and replaced images too, labelled). ``ci`` replaces each table by means with
    bootstrap confidence intervals plus a table of paired p-values (:mod:`bench.stats`). For
    ``html``, ``figures_root`` (the results directory) embeds the figures of
    :mod:`bench.figures` (method ``colors`` kept fixed). ``image_notes`` (:func:`stored_image_notes`) end the
    captions of their tables.
    """
    rows = shown_rows(df, all_versions, methods, degradations)  # selected once; everything below takes it as it is
    if per_image and fmt == "csv" and not ci:
        return per_image_frame(rows).to_csv(index=False)
    if ci:
        from bench.stats import build_stats, render_stats

        stats = build_stats(rows)
        if fmt != "html":
            text = render_stats(stats, fmt)
            if per_image and fmt == "markdown":
                text += "\n\n" + per_image_frame(rows).to_csv(index=False)
            return text
    tables = build_tables(rows)
    for table in tables:
        if (table.dataset, table.profile) in (image_notes or {}):
            table.notes.lines.append(image_notes[(table.dataset, table.profile)])
    if fmt == "html":
        figures = None
        if figures_root is not None:
            from bench.figures import build_figures, png_base64

            built = build_figures(rows, figures_root, colors=colors, first_image_only=True)
            figures = [(f.title, png_base64(f)) for f in built]
            for f in built:
                f.figure.clear()
                for note in f.notes:  # e.g. a damaged stored image: its panel is left empty, the report goes on
                    log.warning("%s: %s", f.name, note)
        extra = [render_stats(stats, "html")] if ci else None
        return to_html([] if ci else tables, per_image_frame(rows) if per_image else None,
                       figures=figures, extra=extra)
    if fmt == "markdown":
        text = "\n\n".join(to_markdown(t) for t in tables)
        if per_image:
            text += "\n\n" + per_image_frame(rows).to_csv(index=False)
        return text
    if fmt == "latex":
        return "\n\n".join(to_latex(t) for t in tables)
    if fmt == "csv":
        frames = [csv_frame(t) for t in tables]
        return pd.concat(frames).to_csv(index=False) if frames else ""
    raise ValueError(f"unknown format '{fmt}'")


def csv_frame(table: Table) -> pd.DataFrame:
    """A block for CSV: full-precision means, "n/a" where the method does not apply (empty = missing), and a
    ``notes`` column per degradation (n/a reasons, † methods below their reference budget) and a ``provenance``
    column naming, per row, the methods whose cells were imported (‡), made by other code (§) or hardware (¶)."""
    values = table.values.astype(object)
    notes: dict[str, list[str]] = {}
    for (degradation, method), reason in table.notes.na.items():
        values.loc[degradation, method] = NA  # every metric row of the degradation
        notes.setdefault(degradation, []).append(f"{NA} {method}: {reason}")
    for (degradation, method), use in table.notes.below.items():
        notes.setdefault(degradation, []).append(f"{DAGGER} {method}: {percent(use.fraction)} of the reference "
                                                 f"{use.reference} {use.unit} (profile {table.profile})")
    frame = values.reset_index()
    frame.insert(0, "profile", table.profile)
    frame.insert(0, "dataset", table.dataset)
    frame["notes"] = ["; ".join(notes.get(d, [])) for d in frame["degradation"]]
    frame["provenance"] = [provenance_text(table, d) for d in frame["degradation"]]
    return frame


def provenance_text(table: Table, degradation: str) -> str:
    """The provenance lines (‡ § ¶) of the table that concern ``degradation``, for the CSV column.

    >>> from bench.annotations import CellNotes
    >>> t = Table(pd.DataFrame(), pd.DataFrame(), "c", "d", "paper", CellNotes(lines=["‡ dip (jpeg, noise): from b."]))
    >>> provenance_text(t, "noise"), provenance_text(t, "sr")
    ('‡ dip (jpeg, noise): from b', '')
    """
    out = []
    for line in table.notes.lines:
        head = line.split("): ", 1)[0]
        if line[:1] in (BUNDLE, OLDER_CODE, OTHER_HARDWARE) and " (" in head and \
                degradation in head.split(" (", 1)[1].split(", "):
            out.append(line.rstrip("."))
    return "; ".join(out)



class CallableModule(types.ModuleType):
    """This module, callable: ``bench.report(...)`` is the Python API's report, :func:`bench.python_api.report`.

    The package attribute ``bench.report`` is this module as soon as anything imports it, so the module answers the
    call (found by name, as the registry finds plugins: the API module sits above this one).

    >>> import bench.report
    >>> bench.report("/nonexistent/results")
    Traceback (most recent call last):
    bench.errors.BenchError: no results in '/nonexistent/results'; run `bench run` first or pass --results-dir.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return importlib.import_module("bench.python_api").report(*args, **kwargs)


sys.modules[__name__].__class__ = CallableModule
