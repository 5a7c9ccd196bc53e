"""Confidence intervals and paired tests for reports (``bench report --ci``).

Per table cell (degradation, metric, method): the mean over images with a 95 %
percentile-bootstrap confidence interval (seeded, numpy only; seeds of one
image are averaged first, so images are the resampled unit), and a Wilcoxon
signed-rank test of the method against the best method of the row, paired
over the images both have. With fewer than 2 images there is no interval and
no p-value ("–").

Example:
    >>> m, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> lo < m < hi, m
    (True, 2.5)
    >>> paired_p_value([1.0, 2.0], [1.0, 2.0])
    1.0
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.annotations import MARKS
from bench.metric_specs import spec, spec_for_label
from bench.selection import shown_rows
from bench.significance import paired_p_value
from bench.tables import MISSING, Table, build_tables, latex_table

N_RESAMPLES = 2000
LEVEL = 0.95
TEST_NAME = "Wilcoxon signed-rank test"


def bootstrap_ci(values: list[float] | np.ndarray, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the mean; low/high are NaN when n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def paired_bootstrap_p(a: list[float] | np.ndarray, b: list[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                       seed: int = 0) -> float:
    """Two-sided paired-bootstrap p-value of mean(a - b) = 0 (resampling the centred differences).

    >>> paired_bootstrap_p([2.0, 3.0, 4.0], [2.0, 3.0, 4.0])
    1.0
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    rng = np.random.default_rng(seed)
    null = (d - d.mean())[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    return float((np.sum(np.abs(null) >= abs(d.mean())) + 1) / (n_resamples + 1))


@dataclass
class StatsTable:
    """A report :class:`Table` with interval bounds, sample sizes and p-values in the same layout.

    >>> empty = pd.DataFrame()
    >>> StatsTable(Table(empty, empty, "", "builtin", "smoke"), empty, empty, empty, empty).table.profile
    'smoke'
    """

    table: Table
    low: pd.DataFrame
    high: pd.DataFrame
    n: pd.DataFrame
    p: pd.DataFrame


def per_image(ok: pd.DataFrame, degradation: str, method: str, metric: str) -> pd.Series:
    """One value per image (mean over seeds) of the ok cells ``ok`` of one table."""
    cells = ok[(ok["method_label"] == method) & (ok["degradation_label"] == degradation)]
    values = pd.to_numeric(cells[metric], errors="coerce")
    return values.groupby(cells["image"]).mean().dropna()


def build_stats(df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None,
                n_resamples: int = N_RESAMPLES, seed: int = 0, all_versions: bool = False) -> list[StatsTable]:
    """CIs and p-values for each table of :func:`bench.tables.build_tables` (rows of :func:`bench.selection.select`)."""
    df = shown_rows(df, all_versions, methods, degradations)
    out = []
    for table in build_tables(df, ci=True):  # bold only where the best differs significantly from the runner-up
        rows = df[(df["dataset"].astype(str) == table.dataset) & (df["profile"].astype(str) == table.profile)
                  & (df["status"] == "ok")]
        frames = {k: pd.DataFrame(np.nan, index=table.values.index, columns=table.values.columns)
                  for k in ("low", "high", "n", "p")}
        for (degradation, label), row in table.values.iterrows():
            metric = spec_for_label(label).name
            best_methods = [m for m in table.values.columns if _leaders(table).loc[(degradation, label), m]]
            best = per_image(rows, degradation, best_methods[0], metric) if best_methods else None
            for method in table.values.columns:
                if pd.isna(row[method]):
                    continue
                values = per_image(rows, degradation, method, metric)
                _, low, high = bootstrap_ci(values.to_numpy(), n_resamples, seed=seed)
                frames["low"].loc[(degradation, label), method] = low
                frames["high"].loc[(degradation, label), method] = high
                frames["n"].loc[(degradation, label), method] = len(values)
                if best is not None and method not in best_methods:
                    common = values.index.intersection(best.index)
                    frames["p"].loc[(degradation, label), method] = paired_p_value(values[common], best[common])
        out.append(StatsTable(table=table, **frames))
    return out


def ci_text(mean: float, low: float, high: float, metric: str) -> str:
    """``"27.31 [26.90, 27.72]"``; just the mean without an interval; "–" when missing.

    >>> ci_text(27.314, 26.9, 27.72, "psnr"), ci_text(0.5, math.nan, math.nan, "ssim")
    ('27.31 [26.90, 27.72]', '0.5000')
    """
    if mean is None or not math.isfinite(mean):
        return "–"
    k = spec(metric).decimals
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{k}f}"
    return f"{mean:.{k}f} [{low:.{k}f}, {high:.{k}f}]"


def _leaders(table: Table) -> pd.DataFrame:
    """The best value(s) of each row as displayed, bold or not: what the p-values compare against."""
    return table.best if table.top is None else table.top


def p_text(p: float, is_best: bool) -> str:
    """A p-value for display: "best", "–" (no test), "<0.001" or 3 decimals."""
    if is_best:
        return "best"
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def display_frames(s: StatsTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """String frames (CI table, p-value table) in the report's layout ("n/a" and † as in the report)."""
    ci = s.table.values.astype(object).copy()
    p = ci.copy()
    for (degradation, label), row in s.table.values.iterrows():
        metric = spec_for_label(label).name
        for method in s.table.values.columns:
            key = (degradation, label)
            text = ci_text(row[method], s.low.loc[key, method], s.high.loc[key, method], metric)
            ci.loc[key, method] = "".join(s.table.text(key, method, text))
            present = pd.notna(row[method])
            p_value = p_text(s.p.loc[key, method], bool(_leaders(s.table).loc[key, method]) and present) \
                if present else MISSING
            p.loc[key, method] = s.table.text(key, method, p_value)[0]
    return ci, p


def captions(s: StatsTable, n_resamples: int = N_RESAMPLES) -> tuple[str, str]:
    ci = (f"{s.table.caption} Mean [{LEVEL:.0%} percentile-bootstrap confidence interval over images, "
          f"{n_resamples} resamples, seed 0]; no interval with fewer than 2 images.")
    ci = "\n".join([ci, *s.table.notes.lines])  # n/a reasons and † budgets, one line each
    p = (f"p-values ({TEST_NAME}, two-sided, paired over images) of each method against the best of its row "
         f"(dataset {s.table.dataset}, profile {s.table.profile}); – = fewer than 2 images or missing.")
    return ci, p


def _markdown(frame: pd.DataFrame, best: pd.DataFrame, caption: str, heading: str) -> str:
    methods = list(frame.columns)
    lines = [f"### {heading}", "", "| Degradation | Metric | " + " | ".join(methods) + " |",
             "|---|---|" + "---:|" * len(methods)]
    for (degradation, label), row in frame.iterrows():
        cells = [bold_number(str(row[m])) if best.loc[(degradation, label), m] and row[m] != MISSING else str(row[m])
                 for m in methods]
        lines.append(f"| {degradation} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + caption.replace("\n", "\n\n") + "\n"


def bold_number(text: str) -> str:
    """Markdown bold of a cell's text, a trailing † left outside.

    >>> bold_number("27.31 [26.90, 27.72]†"), bold_number("best")
    ('**27.31 [26.90, 27.72]**†', '**best**')
    """
    core = text.rstrip(MARKS)
    return f"**{core}**{text[len(core):]}"


def _styler(frame: pd.DataFrame, best: pd.DataFrame, escape: str):  # noqa: ANN202 (pandas Styler)
    styler = frame.style.apply(lambda _: best.replace({True: "font-weight: bold", False: ""}).values, axis=None)
    return styler.format(escape=escape).format_index(escape=escape, axis=0).format_index(escape=escape, axis=1)


def _latex(frame: pd.DataFrame, best: pd.DataFrame, caption: str, heading: str) -> str:
    return latex_table(frame, best, caption.replace("\n", " "), heading.replace("·", "-")).replace(
        "<0.001", r"$<$0.001")


def _html(frame: pd.DataFrame, best: pd.DataFrame, caption: str, heading: str) -> str:
    captions = "".join(f"<p class='caption'>{html.escape(line)}</p>" for line in caption.splitlines())
    return f"<h2>{html.escape(heading)}</h2><div class='scroll'>{_styler(frame, best, 'html').to_html()}</div>{captions}"


def to_csv(stats: list[StatsTable]) -> str:
    """Long format: one row per (dataset, profile, degradation, metric, method); ``note``: "n/a" or "†"."""
    records = []
    for s in stats:
        for (degradation, label), row in s.table.values.iterrows():
            key = (degradation, label)
            best = [m for m in row.index if _leaders(s.table).loc[key, m]]
            for method in row.index:
                records.append({
                    "dataset": s.table.dataset, "profile": s.table.profile, "degradation": degradation,
                    "metric": spec_for_label(label).name, "method": method, "mean": row[method],
                    "ci_low": s.low.loc[key, method], "ci_high": s.high.loc[key, method],
                    "n_images": s.n.loc[key, method], "best": best[0] if best else "",
                    "p_vs_best": s.p.loc[key, method], "note": s.table.mark(degradation, method),
                })
    return pd.DataFrame.from_records(records).to_csv(index=False) if records else ""


def render_stats(stats: list[StatsTable], fmt: str) -> str:
    """The CI table and the p-value table of each block, in ``markdown``, ``latex``, ``html`` or ``csv``."""
    if fmt == "csv":
        return to_csv(stats)
    writer = {"markdown": _markdown, "latex": _latex, "html": _html}.get(fmt)
    if writer is None:
        raise ValueError(f"unknown format '{fmt}'")
    parts = []
    for s in stats:
        ci, p = display_frames(s)
        ci_caption, p_caption = captions(s)
        no_best = pd.DataFrame(False, index=s.table.best.index, columns=s.table.best.columns)
        heading = s.table.heading
        parts += [writer(ci, s.table.best, ci_caption, f"{heading}: means and confidence intervals"),
                  writer(p, no_best, p_caption, f"{heading}: p-values")]
    return "\n\n".join(parts)

