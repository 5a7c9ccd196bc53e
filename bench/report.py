"""Table-1 style reports: rows = degradation × metric, columns = methods.

Values are means over images (and seeds). A (method, degradation) whose cells
are not all present and ok is shown as missing ("–"), never as a partial mean.
The best value of each row is bold. Captions name the dataset, the number of
images, each degradation's definition and the profile.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method_label": ["a", "b"], "degradation_label": ["noise"] * 2,
    ...     "degradation_description": ["σ=25"] * 2, "dataset": ["d"] * 2, "profile": ["smoke"] * 2,
    ...     "image": ["x"] * 2, "seed": [0, 0], "status": ["ok"] * 2, "psnr": [20.0, 25.0],
    ...     "ssim": [0.5, 0.6], "ms_ssim": [None, None], "lpips": [0.3, 0.2], "seconds": [0.1, 1.0]})
    >>> table = build_tables(df)[0]
    >>> float(table.values.loc[("noise", "PSNR ↑"), "b"])
    25.0
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.metrics import HIGHER_IS_BETTER, METRICS

METRIC_LABELS = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "ms_ssim": "MS-SSIM ↑", "lpips": "LPIPS ↓"}
METRIC_DECIMALS = {"psnr": 2, "ssim": 4, "ms_ssim": 4, "lpips": 4}
PER_IMAGE_COLUMNS = ["method", "degradation", "image", "seed", "psnr", "ssim", "ms_ssim", "lpips", "seconds"]


@dataclass
class Table:
    """One Table-1 block: ``values`` indexed by (degradation, metric), columns = methods."""

    values: pd.DataFrame
    best: pd.DataFrame  # bool mask of the best value per row
    caption: str
    dataset: str
    profile: str


def _select(df: pd.DataFrame, methods: list[str] | None, degradations: list[str] | None) -> pd.DataFrame:
    if methods:
        df = df[df["method_label"].isin(methods) | df["method"].isin(methods)]
    if degradations:
        df = df[df["degradation_label"].isin(degradations) | df["degradation"].isin(degradations)]
    return df


def build_tables(
    df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None
) -> list[Table]:
    """One :class:`Table` per (dataset, profile) present in the store's rows."""
    df = _select(df, methods, degradations)
    tables = []
    for (dataset, profile), group in df.groupby(["dataset", "profile"], sort=True):
        tables.append(_one_table(group, str(dataset), str(profile)))
    return tables


def _ordered(values: pd.Series, preferred: list[str] | None = None) -> list[str]:
    seen = list(dict.fromkeys(values))
    if preferred:
        seen.sort(key=lambda v: preferred.index(v) if v in preferred else len(preferred))
    return seen


def _one_table(df: pd.DataFrame, dataset: str, profile: str) -> Table:
    methods = _ordered(df["method_label"], ["identity"])
    degradations = _ordered(df["degradation_label"])
    index = pd.MultiIndex.from_tuples(
        [(d, METRIC_LABELS[m]) for d in degradations for m in METRICS], names=["degradation", "metric"]
    )
    values = pd.DataFrame(index=index, columns=methods, dtype=float)
    for degradation in degradations:
        sub = df[df["degradation_label"] == degradation]
        expected = set(zip(sub["image"], sub["seed"]))
        for method in methods:
            cells = sub[sub["method_label"] == method]
            ok = cells[cells["status"] == "ok"]
            complete = set(zip(ok["image"], ok["seed"])) == expected and len(ok) == len(expected)
            for metric in METRICS:
                column = pd.to_numeric(ok[metric], errors="coerce")
                if complete and column.notna().all() and len(column):
                    values.loc[(degradation, METRIC_LABELS[metric]), method] = column.mean()
    best = pd.DataFrame(False, index=index, columns=methods)
    for degradation, label in index:
        metric = next(k for k, v in METRIC_LABELS.items() if v == label)
        row = values.loc[(degradation, label)].astype(float)
        if row.notna().any():
            target = row.max() if HIGHER_IS_BETTER[metric] else row.min()
            best.loc[(degradation, label)] = row == target
    descriptions = (
        df.drop_duplicates("degradation_label").set_index("degradation_label")["degradation_description"].to_dict()
    )
    n_images = df["image"].nunique()
    seeds = sorted(df["seed"].unique().tolist())
    parts = "; ".join(f"{d}: {descriptions.get(d, '')}" for d in degradations)
    caption = (
        f"Mean over {n_images} image(s) of {dataset} (seeds {', '.join(map(str, seeds))}), profile {profile}. "
        f"Degradations — {parts}. Best per row in bold; – = missing or failed cells."
    )
    return Table(values=values, best=best, caption=caption, dataset=dataset, profile=profile)


def _fmt(value: Any, metric_label: str) -> str:
    metric = next(k for k, v in METRIC_LABELS.items() if v == metric_label)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{METRIC_DECIMALS[metric]}f}"


def to_markdown(table: Table) -> str:
    methods = list(table.values.columns)
    lines = ["| Degradation | Metric | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for (degradation, metric), row in table.values.iterrows():
        cells = []
        for method in methods:
            text = _fmt(row[method], metric)
            cells.append(f"**{text}**" if table.best.loc[(degradation, metric), method] else text)
        lines.append(f"| {degradation} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{table.caption}\n"


def _styler(table: Table) -> Any:
    display = table.values.copy().astype(object)
    for (degradation, metric), row in table.values.iterrows():
        for method in table.values.columns:
            display.loc[(degradation, metric), method] = _fmt(row[method], metric)
    styler = display.style
    styler = styler.apply(
        lambda _: table.best.replace({True: "font-weight: bold", False: ""}).values, axis=None
    )
    return styler


def to_latex(table: Table) -> str:
    """LaTeX via pandas' Styler with booktabs rules; names and caption escaped."""
    styler = _styler(table)
    styler = styler.format(escape="latex").format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    caption = _latex_escape(table.caption)
    latex = styler.to_latex(hrules=True, convert_css=True, caption=caption, position_float="centering",
                            multirow_align="t", clines="skip-last;data")
    return latex.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("–", "--")


def _latex_escape(text: str) -> str:
    out = text
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                       ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        out = out.replace(char, repl)
    return out.replace("σ", r"$\sigma$").replace("×", r"$\times$").replace("→", r"$\rightarrow$").replace("—", "--")


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


def per_image_frame(df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None) -> pd.DataFrame:
    """Per-image rows with the columns method,degradation,image,seed,psnr,ssim,ms_ssim,lpips,seconds."""
    df = _select(df, methods, degradations)
    out = df.assign(method=df["method_label"], degradation=df["degradation_label"])
    extra = ["status", "error", "dataset", "profile"]
    return out[PER_IMAGE_COLUMNS + extra].sort_values(["degradation", "method", "image", "seed"]).reset_index(drop=True)


def render(df: pd.DataFrame, fmt: str, per_image: bool = False, methods: list[str] | None = None,
           degradations: list[str] | None = None, ci: bool = False, figures_root: str | None = None,
           colors: dict[str, Any] | None = None) -> str:
    """Render the store's rows as ``latex``, ``markdown``, ``csv`` or ``html``.

    ``ci`` replaces each table by means with bootstrap confidence intervals plus a table of
    paired p-values (:mod:`bench.stats`). For ``html``, ``figures_root`` (the results
    directory) embeds the figures of :mod:`bench.figures` (method ``colors`` kept fixed).
    """
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

            selected = _select(df, methods, degradations)
            built = build_figures(selected, figures_root, colors=colors, first_image_only=True)
            figures = [(f.title, png_base64(f)) for f in built]
            for f in built:
                f.figure.clear()
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
