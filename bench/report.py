"""Table-1 style reports in markdown, LaTeX, CSV and self-contained HTML.

The blocks (rows = degradation × metric, columns = methods, means over images and
seeds, missing cells as "–", best per row in bold) come from :mod:`bench.tables`;
this module renders them, the per-image rows and, with ``--ci``, the statistics
of :mod:`bench.stats`.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method_label": ["a", "b"], "degradation_label": ["noise"] * 2,
    ...     "degradation_description": ["σ=25"] * 2, "dataset": ["d"] * 2, "profile": ["smoke"] * 2,
    ...     "image": ["x"] * 2, "seed": [0, 0], "status": ["ok"] * 2, "psnr": [20.0, 25.0],
    ...     "ssim": [0.5, 0.6], "ms_ssim": [None, None], "lpips": [0.3, 0.2], "seconds": [0.1, 1.0]})
    >>> print(to_markdown(build_tables(df)[0]).splitlines()[2])
    | noise | PSNR ↑ | 20.00 | **25.00** |
"""

from __future__ import annotations

import html
import logging
from typing import Any

import pandas as pd

from bench.metric_specs import METRIC_NAMES
from bench.selection import current_rows, select_rows
from bench.tables import Table, build_tables, format_value, latex_escape, latex_symbols

log = logging.getLogger(__name__)
PER_IMAGE_COLUMNS = ["method", "degradation", "image", "seed", *METRIC_NAMES, "seconds"]
# What tells two results of one (method, degradation, image, seed) apart, after the status columns.
IDENTITY_COLUMNS = ("image_digest", "method_params", "method_version", "degradation_params", "degradation_version",
                    "key")


def to_markdown(table: Table) -> str:
    methods = list(table.values.columns)
    lines = ["| Degradation | Metric | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for (degradation, metric), row in table.values.iterrows():
        cells = []
        for method in methods:
            text = format_value(row[method], metric)
            cells.append(f"**{text}**" if table.best.loc[(degradation, metric), method] else text)
        lines.append(f"| {degradation} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{table.caption}\n"


def _styler(table: Table) -> Any:
    display = table.values.copy().astype(object)
    for (degradation, metric), row in table.values.iterrows():
        for method in table.values.columns:
            display.loc[(degradation, metric), method] = format_value(row[method], metric)
    styler = display.style
    styler = styler.apply(
        lambda _: table.best.replace({True: "font-weight: bold", False: ""}).values, axis=None
    )
    return styler


def to_latex(table: Table) -> str:
    """LaTeX via pandas' Styler with booktabs rules; names and caption escaped."""
    styler = _styler(table)
    styler = styler.format(escape="latex").format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    latex = styler.to_latex(hrules=True, convert_css=True, caption=latex_escape(table.caption),
                            position_float="centering", multirow_align="t", clines="skip-last;data")
    return latex_symbols(latex)


def to_html(tables: list[Table], per_image: pd.DataFrame | None = None, title: str = "restoration-bench report",
            figures: list[tuple[str, str]] | None = None, extra: list[str] | None = None) -> str:
    """One self-contained HTML page (no external assets); names are HTML-escaped.

    ``figures`` are (title, base64 PNG) pairs embedded as data URIs; ``extra`` are HTML
    fragments (e.g. confidence-interval tables) placed after the tables.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4;cursor:pointer}"
        "caption{caption-side:bottom;text-align:left;color:#555;max-width:60em}"
        "figure{margin:1em 0}figure img{max-width:100%}figcaption{color:#555}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for table in tables:
        styler = _styler(table).format(escape="html").format_index(escape="html", axis=0)
        parts.append(styler.format_index(escape="html", axis=1).set_caption(html.escape(table.caption)).to_html())
    parts.extend(extra or [])
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, data in figures:
            parts.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if per_image is not None and len(per_image):
        parts.append("<h2>Per image</h2>")
        parts.append(per_image.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–",
                                       classes="sortable", escape=True))
        parts.append(_SORT_SCRIPT)
    parts.append("</body></html>")
    return "\n".join(parts)


_SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach(function(th, i){th.onclick=function(){
var t=th.closest('table'),b=t.tBodies[0],r=Array.from(b.rows),d=th.dataset.d==='1'?-1:1;th.dataset.d=d===1?'1':'0';
r.sort(function(x,y){var a=x.cells[i].innerText,c=y.cells[i].innerText,p=parseFloat(a),q=parseFloat(c);
return (isNaN(p)||isNaN(q)?a.localeCompare(c):p-q)*d;});r.forEach(function(e){b.appendChild(e);});};});
</script>"""


def per_image_frame(df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None,
                    all_versions: bool = False) -> pd.DataFrame:
    """Per-image rows with the columns method,degradation,image,seed,psnr,ssim,ms_ssim,lpips,seconds, then
    status, error, dataset, profile and the columns that tell rows apart (digest, parameters, versions, key)."""
    df = select_rows(current_rows(df, all_versions), methods, degradations)
    out = df.assign(method=df["method_label"], degradation=df["degradation_label"])
    extra = [c for c in ("status", "error", "dataset", "profile", *IDENTITY_COLUMNS) if c in out.columns]
    return out[PER_IMAGE_COLUMNS + extra].sort_values(["degradation", "method", "image", "seed"]).reset_index(drop=True)


def render(df: pd.DataFrame, fmt: str, per_image: bool = False, methods: list[str] | None = None,
           degradations: list[str] | None = None, ci: bool = False, figures_root: str | None = None,
           colors: dict[str, Any] | None = None, all_versions: bool = False) -> str:
    """Render the store's rows as ``latex``, ``markdown``, ``csv`` or ``html``.

    The rows shown are those of :func:`bench.selection.select` (``all_versions``: older code
    versions and replaced images too, labelled). ``ci`` replaces each table by means with
    bootstrap confidence intervals plus a table of paired p-values (:mod:`bench.stats`). For
    ``html``, ``figures_root`` (the results directory) embeds the figures of
    :mod:`bench.figures` (method ``colors`` kept fixed).
    """
    df = current_rows(df, all_versions)
    if per_image and fmt == "csv" and not ci:
        return per_image_frame(df, methods, degradations).to_csv(index=False)
    if ci:
        from bench.stats import build_stats, render_stats

        stats = build_stats(df, methods, degradations)
        if fmt != "html":
            text = render_stats(stats, fmt)
            if per_image and fmt == "markdown":
                text += "\n\n" + per_image_frame(df, methods, degradations).to_csv(index=False)
            return text
    tables = build_tables(df, methods, degradations)
    if fmt == "html":
        figures = None
        if figures_root is not None:
            from bench.figures import build_figures, png_base64

            selected = select_rows(df, methods, degradations)
            built = build_figures(selected, figures_root, colors=colors, first_image_only=True)
            figures = [(f.title, png_base64(f)) for f in built]
            for f in built:
                f.figure.clear()
                for note in f.notes:  # e.g. a damaged stored image: its panel is left empty, the report goes on
                    log.warning("%s: %s", f.name, note)
        extra = [render_stats(stats, "html")] if ci else None
        return to_html([] if ci else tables, per_image_frame(df, methods, degradations) if per_image else None,
                       figures=figures, extra=extra)
    if fmt == "markdown":
        text = "\n\n".join(to_markdown(t) for t in tables)
        if per_image:
            text += "\n\n" + per_image_frame(df, methods, degradations).to_csv(index=False)
        return text
    if fmt == "latex":
        return "\n\n".join(to_latex(t) for t in tables)
    if fmt == "csv":
        frames = []
        for t in tables:
            frame = t.values.reset_index()
            frame.insert(0, "profile", t.profile)
            frame.insert(0, "dataset", t.dataset)
            frames.append(frame)
        return pd.concat(frames).to_csv(index=False) if frames else ""
    raise ValueError(f"unknown format '{fmt}'")
