"""Table-1 blocks of a results frame: rows = degradation × metric, columns = methods.

Values are means over images (and seeds) of the rows :func:`bench.selection.select`
shows (one result per cell; several parameter settings under one label as distinct,
labelled columns or rows). A (method, degradation) whose cells are not all present
and ok is missing (NaN, shown as "–"), never a partial mean; one whose cells are all
"n/a" (the method does not apply to the task by design) shows "n/a". The best value
of each row is bold, compared as displayed: not when the best is tied (as displayed), and, with fewer than
3 images or with ``--ci``, only where it differs from the runner-up significantly (:data:`ALPHA`, Wilcoxon
signed-rank test paired over images, :func:`bench.significance.paired_p_value`; the caption says so).
Captions name the dataset, the number of images, each degradation's definition (with its
observation protocol) and the profile, then the metric conventions in one line; note lines
(:mod:`bench.annotations`) give each n/a reason once and each method below its reference
budget (marked †) and where cells come from when not computed here by the installed code (‡ imported from a
bundle, § another code version, ¶ other hardware). :mod:`bench.report` renders these
blocks; :mod:`bench.stats` adds intervals to them. :func:`text_table` is the plain
aligned table of ``bench check``.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method_label": ["a", "b"], "method": ["a", "b"], "degradation_label": ["noise"] * 2,
    ...     "degradation": ["noise"] * 2, "degradation_description": ["σ=25"] * 2, "dataset": ["d"] * 2,
    ...     "profile": ["smoke"] * 2, "image": ["x"] * 2, "seed": [0, 0], "status": ["ok"] * 2,
    ...     "psnr": [20.0, 25.0], "ssim": [0.5, 0.6], "ms_ssim": [None, None], "lpips": [0.3, 0.2]})
    >>> table = build_tables(df)[0]
    >>> key = ("noise", "LPIPS ↓")
    >>> float(table.values.loc[("noise", "PSNR ↑"), "b"]), bool(table.top.loc[key, "b"]), bool(table.best.loc[key, "b"])
    (25.0, True, False)
    >>> format_value(table.values.loc[("noise", "MS-SSIM ↑"), "a"], "MS-SSIM ↑")
    '–'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.annotations import (
    BUNDLE,
    DAGGER,
    NA,
    OLDER_CODE,
    OTHER_HARDWARE,
    CellNotes,
    cell_notes,
    conventions_line,
    percent,
)
from bench.metric_specs import METRIC_SPECS, MetricSpec, spec_for_label
from bench.selection import shown_rows
from bench.significance import paired_p_value

MISSING = "–"
ALPHA = 0.05  # significance level of the paired test that decides bold with few images or with --ci
FEW_IMAGES = 3  # below this many images, bold only where significant


@dataclass
class Table:
    """One Table-1 block: ``values`` indexed by (degradation, metric label), columns = methods.

    Example:
        >>> t = Table(values=pd.DataFrame(), best=pd.DataFrame(), caption="c", dataset="builtin", profile="smoke")
        >>> t.dataset, t.heading, t.mark("noise", "tv")
        ('builtin', 'builtin · profile smoke', '')
    """

    values: pd.DataFrame
    best: pd.DataFrame  # bool mask of the best value per row (compared as displayed)
    caption: str
    dataset: str
    profile: str
    notes: CellNotes = field(default_factory=CellNotes)  # n/a cells, cells below budget, their caption lines
    top: pd.DataFrame | None = None  # the best value(s) per row as displayed, bold or not (the p-values' reference)
    subtitle: str = ""  # what an imported reference bundle holds, for the heading

    @property
    def heading(self) -> str:
        """The block's title: dataset and profile (a report of several runs has one block each)."""
        return f"{self.dataset} · profile {self.profile}" + (f" — {self.subtitle}" if self.subtitle else "")

    def mark(self, degradation: str, method: str) -> str:
        """``"n/a"`` where the method does not apply, else ``"†"`` below its reference budget followed by the
        provenance marks (``‡`` imported, ``§`` other code version, ``¶`` other hardware), or ``""``."""
        if (degradation, method) in self.notes.na:
            return NA
        return (DAGGER if (degradation, method) in self.notes.below else "") + \
            self.notes.origin.get((degradation, method), "")

    def text(self, key: tuple[str, str], method: str, value_text: str) -> tuple[str, str]:
        """(text, mark) of a cell whose value reads ``value_text``: "n/a" replaces it; "†" follows it."""
        mark = self.mark(key[0], method)
        if mark == NA:
            return NA, ""
        return value_text, (mark if value_text != MISSING else "")

    def lines(self) -> list[str]:
        """The caption, then the metric conventions, one line per n/a reason and per method below its budget."""
        return [self.caption, *self.notes.lines]


def build_tables(
    df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None,
    all_versions: bool = False, ci: bool = False,
) -> list[Table]:
    """One :class:`Table` per (dataset, profile) present in the rows (of :func:`bench.selection.select`); ``ci``:
    bold only where significant. A table of imported cells only (a reference bundle) is titled as such, follows
    the tables computed here on the same dataset, and names them."""
    df = shown_rows(df, all_versions, methods, degradations)
    tables = []
    for (dataset, profile), group in df.groupby(["dataset", "profile"], sort=True):
        tables.append(one_table(group, str(dataset), str(profile), ci=ci))
    for table in [t for t in tables if t.subtitle]:
        here = [t.profile for t in tables if t.dataset == table.dataset and not t.subtitle]
        if here:
            table.notes.lines.append(f"Computed here on the same images ({table.dataset}): profile "
                                     f"{', '.join(here)}, the table(s) before this one.")
    tables.sort(key=lambda t: (t.dataset, bool(t.subtitle)))  # stable: a reference bundle after the local tables
    return tables


def reference_subtitle(notes: CellNotes, methods: list[str]) -> str:
    """The heading's words for a table whose every shown cell came from a bundle: each method at its budget.

    >>> from bench.annotations import BudgetUse
    >>> n = CellNotes(origin={("jpeg", "dip"): "‡§"}, imported={"dip": "dip version of 2026-11-29"})
    >>> reference_subtitle(n, ["dip"])
    'dip at its published budget (reference bundle, dip version of 2026-11-29)'
    >>> n.below[("jpeg", "dip")] = BudgetUse(0.5, 2000, "iterations", "S")
    >>> reference_subtitle(n, ["dip"])
    'dip at 50 % of its published budget (reference bundle, dip version of 2026-11-29)'
    """
    parts = []
    for method in methods:
        uses = [u for (_, m), u in notes.below.items() if m == method]
        budget = f"{percent(min(u.fraction for u in uses))} of its published budget" if uses else \
            "its published budget"
        parts.append(f"{method} at {budget} (reference bundle, {notes.imported.get(method, method)})")
    return "; ".join(parts)


def ordered(values: pd.Series, preferred: list[str] | None = None) -> list[str]:
    """Distinct values in order of appearance, ``preferred`` ones first."""
    seen = list(dict.fromkeys(values))
    if preferred:
        seen.sort(key=lambda v: preferred.index(v) if v in preferred else len(preferred))
    return seen


def one_table(df: pd.DataFrame, dataset: str, profile: str, ci: bool = False) -> Table:
    """The block of the rows of one (dataset, profile) (``ci``: bold only where significant)."""
    methods = ordered(df["method_label"], ["identity"])
    degradations = ordered(df["degradation_label"])
    rows = {d: metric_rows(df[df["degradation_label"] == d]) for d in degradations}
    index = pd.MultiIndex.from_tuples(
        [(d, label) for d in degradations for _, label in rows[d]], names=["degradation", "metric"]
    )
    values = pd.DataFrame(index=index, columns=methods, dtype=float)
    for degradation in degradations:
        sub = df[df["degradation_label"] == degradation]
        expected = set(zip(sub["image"], sub["seed"]))
        for method in methods:
            cells = sub[sub["method_label"] == method]
            ok = cells[cells["status"] == "ok"]
            complete = set(zip(ok["image"], ok["seed"])) == expected and len(ok) == len(expected)
            for s, label in rows[degradation]:
                column = pd.to_numeric(ok[s.name] if s.name in ok else pd.Series(dtype=float), errors="coerce")
                if complete and column.notna().all() and len(column):
                    values.loc[(degradation, label), method] = column.mean()
    best = pd.DataFrame(False, index=index, columns=methods)
    top = best.copy()
    few = df["image"].nunique() < FEW_IMAGES
    for degradation, label in index:
        row = displayed(values.loc[(degradation, label)].astype(float), label)
        if row.notna().sum() >= 2:  # a lone value is not "best" of anything: no bold
            higher = spec_for_label(label).higher_is_better
            target = row.max() if higher else row.min()
            top.loc[(degradation, label)] = row == target
            leaders = list(row.index[row == target])
            if len(leaders) == 1:  # a tie as displayed: no bold
                runner_up = str(row.drop(leaders[0]).dropna().sort_values(ascending=not higher).index[0])
                best.loc[(degradation, label), leaders[0]] = not (ci or few) or significant(
                    df, degradation, label, leaders[0], runner_up)
    descriptions = {  # each degradation's definition from its own rows (one per setting, normally)
        d: " / ".join(dict.fromkeys(str(v) for v in df.loc[df["degradation_label"] == d, "degradation_description"]
                                    if isinstance(v, str) and v))
        for d in degradations
    } if "degradation_description" in df.columns else {}
    seeds = sorted(df["seed"].unique().tolist())
    named = f"scikit-image's {', '.join(dict.fromkeys(df['image'].astype(str)))}; " if dataset == "builtin" else ""
    parts = "; ".join(f"{d}: {descriptions.get(d, '')}" for d in degradations)
    notes = cell_notes(df, degradations, methods, profile)
    notes.lines.insert(0, conventions_line(df))  # the metric conventions: one line in every format
    legend = "; n/a = not applicable (the method does not handle the task by design)" if notes.na else ""
    caption = (
        f"Mean over {image_counts(df, degradations)} of {dataset} ({named}seeds {', '.join(map(str, seeds))}), "
        f"profile {profile}. "
        f"Degradations — {parts}. {bold_rule(few, ci)}; – = missing or failed cells{legend}."
        + marks_legend(notes)
    )
    shown = [(d, m) for d in degradations for m in methods if (d, m) not in notes.na]
    all_imported = bool(notes.imported) and all(BUNDLE in notes.origin.get(c, "") for c in shown
                                                if values.loc[c[0], c[1]].notna().any())
    subtitle = reference_subtitle(notes, list(notes.imported)) if all_imported else ""
    return Table(values=values, best=best, caption=caption, dataset=dataset, profile=profile, notes=notes, top=top,
                 subtitle=subtitle)


def bold_rule(few: bool, ci: bool) -> str:
    """The caption's words on what bold means.

    >>> bold_rule(False, False)
    'Best per row in bold (none when the best is tied as displayed)'
    """
    rule = "Best per row in bold (none when the best is tied as displayed)"
    if not (few or ci):
        return rule
    why = f"fewer than {FEW_IMAGES} images" if few else "--ci"
    return (f"{rule}; with {why}, bold only where the best differs from the runner-up at p < {ALPHA:g} "
            "(Wilcoxon signed-rank test, two-sided, paired over images, seeds averaged"
            + ("; with fewer than 3 images it cannot reach that, so nothing is bold" if few else "") + ")")


def marks_legend(notes: CellNotes) -> str:
    """The caption's legend of the provenance marks the table uses (each explained by a note line)."""
    used = "".join(notes.origin.values())
    words = [f"{mark} = {text}" for mark, text in ((BUNDLE, "imported from a result bundle, not computed here"),
                                                    (OLDER_CODE, "computed by an earlier code version"),
                                                    (OTHER_HARDWARE, "computed on other hardware")) if mark in used]
    return f" Provenance: {'; '.join(words)} (one line each below)." if words else ""


def significant(df: pd.DataFrame, degradation: str, label: str, best: str, runner_up: str) -> bool:
    """Whether ``best`` differs from ``runner_up`` on this row at p < :data:`ALPHA` (Wilcoxon signed-rank test of
    the per-image means, seeds averaged, paired over the images both have)."""
    name = spec_for_label(label).name
    sub = df[(df["degradation_label"] == degradation) & (df["status"] == "ok")]
    per = {m: pd.to_numeric(sub.loc[sub["method_label"] == m, name], errors="coerce")
           .groupby(sub.loc[sub["method_label"] == m, "image"]).mean().dropna() for m in (best, runner_up)}
    common = per[best].index.intersection(per[runner_up].index)
    return bool(paired_p_value(per[best][common].to_numpy(), per[runner_up][common].to_numpy()) < ALPHA)


def metric_rows(rows: pd.DataFrame) -> list[tuple[MetricSpec, str]]:
    """The metrics of one degradation's block with their row labels: every metric that applies to all tasks, and a
    task-specific one (PSNR-Y: ``sr`` only) where the block's rows have its values, labelled with the crop their
    ``metric_impl`` records (else the ``factor`` parameter).

    >>> rows = pd.DataFrame({"psnr_y": [30.0], "metric_impl": ['{"psnr_y": "bench psnr_y bt601 crop 4 float64"}']})
    >>> [label for _, label in metric_rows(rows)][-1]
    'PSNR-Y (crop 4) ↑'
    >>> [label for _, label in metric_rows(pd.DataFrame({"psnr_y": [None]}))]
    ['PSNR ↑', 'SSIM ↑', 'MS-SSIM ↑', 'LPIPS ↓']
    """
    out = []
    for s in METRIC_SPECS:
        if not s.tasks:
            out.append((s, s.label))
            continue
        have = rows[pd.to_numeric(rows[s.name], errors="coerce").notna()] if s.name in rows else rows.iloc[:0]
        if have.empty:  # not this block's task (or none computed): no row; the conventions line says why
            continue
        crops = {match.group(1) for text in have.get("metric_impl", pd.Series(dtype=object)) if isinstance(text, str)
                 for match in [re.search(rf'"{s.name}": "[^"]* crop (\d+)', text)] if match}
        crops |= {str(_json(p).get("factor")) for p in have.get("degradation_params", pd.Series(dtype=object))
                  if not crops and _json(p).get("factor")}
        out.append((s, s.row_label("crop " + "/".join(sorted(crops, key=int))) if crops else s.label))
    return out


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def image_counts(df: pd.DataFrame, degradations: list[str]) -> str:
    """How many images the means cover: one count, or one per degradation where they differ (a partial store:
    a row's cells are shown only when complete over the images that degradation has).

    >>> df = pd.DataFrame({"degradation_label": ["noise", "noise", "jpeg"], "image": ["a", "b", "a"]})
    >>> image_counts(df, ["noise"]), image_counts(df, ["noise", "jpeg"])
    ('2 image(s)', 'the images each degradation has (noise: 2, jpeg: 1)')
    """
    counts = {d: df.loc[df["degradation_label"] == d, "image"].nunique() for d in degradations}
    if len(set(counts.values())) <= 1:
        return f"{next(iter(counts.values()), 0)} image(s)"
    return "the images each degradation has (" + ", ".join(f"{d}: {n}" for d, n in counts.items()) + ")"


def displayed(row: pd.Series, metric_label: str) -> pd.Series:
    """``row``'s values rounded as a table shows them (ties are judged on these).

    >>> list(displayed(pd.Series([0.77731, 0.77729]), "SSIM ↑"))
    [0.7773, 0.7773]
    """
    metric = spec_for_label(metric_label)
    return row.map(lambda v: float(metric.format(v)) if pd.notna(v) else math.nan)  # the text's rounding


def format_value(value: Any, metric_label: str) -> str:
    """A table value with its metric's decimals; "–" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return spec_for_label(metric_label).format(value)


def latex_escape(text: str) -> str:
    r"""Caption text for LaTeX: special characters escaped, σ/×/→ as math, em dash as ``--``, a flag's ``--`` kept
    as two hyphens (not an en dash).

    >>> latex_escape("σ=25 & 50%"), latex_escape("--crop")
    ('$\\sigma$=25 \\& 50\\%', '-{}-crop')
    """
    out = text
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                       ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                       ("--", "-{}-")):
        out = out.replace(char, repl)
    return out.replace("σ", r"$\sigma$").replace("×", r"$\times$").replace("→", r"$\rightarrow$").replace("—", "--")


def latex_symbols(latex: str) -> str:
    r"""Arrows and the missing-value dash of rendered LaTeX as LaTeX.

    >>> latex_symbols("PSNR ↑ – 27.1†")
    'PSNR $\\uparrow$ -- 27.1$^\\dagger$'
    """
    return latex.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace(MISSING, "--") \
        .replace(DAGGER, r"$^\dagger$").replace(BUNDLE, r"$^\ddagger$").replace(OLDER_CODE, r"$^\S$") \
        .replace(OTHER_HARDWARE, r"$^\P$")


def latex_table(display: pd.DataFrame, bold: pd.DataFrame, caption: str, comment: str) -> str:
    r"""A booktabs table: one header row (Degradation, Metric, the methods), the degradation in a ``\multirow`` on its
    first metric row, ``\midrule`` between degradations and none before ``\bottomrule``; cells as ``display`` shows
    them (bold where ``bold``), names and caption escaped. Needs ``booktabs`` and ``multirow``.

    >>> index = pd.MultiIndex.from_tuples([("noise", "PSNR ↑"), ("noise", "SSIM ↑")], names=["degradation", "metric"])
    >>> d = pd.DataFrame({"a_b": ["20.00", "0.5"], "c": ["25.00", "–"]}, index=index)
    >>> print(latex_table(d, d == "25.00", "Mean.", "dataset d"))
    % dataset d
    \begin{table}
    \centering
    \caption{Mean.}
    \begin{tabular}{llrr}
    \toprule
    Degradation & Metric & a\_b & c \\
    \midrule
    \multirow[t]{2}{*}{noise} & PSNR $\uparrow$ & 20.00 & \bfseries 25.00 \\
     & SSIM $\uparrow$ & 0.5 & -- \\
    \bottomrule
    \end{tabular}
    \end{table}
    <BLANKLINE>
    """
    methods = list(display.columns)
    lines = [f"% {comment}", r"\begin{table}", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             rf"\begin{{tabular}}{{ll{'r' * len(methods)}}}", r"\toprule",
             " & ".join(["Degradation", "Metric", *(latex_escape(str(m)) for m in methods)]) + r" \\", r"\midrule"]
    for i, degradation in enumerate(dict.fromkeys(display.index.get_level_values(0))):
        block = display.loc[degradation]
        if i:
            lines.append(r"\midrule")
        for j, (metric, row) in enumerate(block.iterrows()):
            first = rf"\multirow[t]{{{len(block)}}}{{*}}{{{latex_escape(str(degradation))}}}" if j == 0 else ""
            cells = [(r"\bfseries " if bold.loc[(degradation, metric), m] else "") + latex_escape(str(row[m]))
                     for m in methods]
            lines.append(" & ".join([first, latex_escape(str(metric)), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return latex_symbols("\n".join(lines))



def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (first column left-aligned, numbers right-aligned).

    >>> print(text_table(["a", "b"], [["x", "1.0"]]))
    a    b
    -  ---
    x  1.0
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    numeric = [i > 0 and all(r[i][:1] in "+-–0123456789" for r in rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])
