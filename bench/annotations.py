"""What a report says about a table cell besides its value: "n/a" and † (below the reference budget).

* **n/a**: every cell of a (method, degradation) has the status ``n/a`` — the method raised
  :class:`bench.solvers.applicability.NotApplicable` because the task is outside what it handles
  by design. Shown as "n/a", distinct from "–" (missing or failed); the reason is given once.
* **†**: the method ran below its reference (published) budget (:class:`bench.api.Budget`,
  the ``budget_fraction`` and ``budget`` columns of :func:`bench.cells.cell_budget`). One caption
  line per method says how far below, with the profile and the reference's source.

Rows of stores made before these columns existed simply carry no marks.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method_label": ["bm3d", "dip"], "degradation_label": ["sr", "sr"],
    ...     "image": ["x", "x"], "seed": [0, 0], "status": ["n/a", "ok"],
    ...     "error": ["bm3d does not apply to the task 'sr': no scheme", None], "budget_fraction": [None, 0.1],
    ...     "budget": [None, '{"reference": 2000, "source": "DIP", "unit": "iterations", "used": 200}']})
    >>> notes = cell_notes(df, ["sr"], ["bm3d", "dip"], "quick")
    >>> notes.na, list(notes.below)
    ({('sr', 'bm3d'): "bm3d does not apply to the task 'sr': no scheme"}, [('sr', 'dip')])
    >>> print("\\n".join(notes.lines))
    n/a: bm3d does not apply to the task 'sr': no scheme.
    † dip: 10 % of the reference 2000 iterations (profile quick; reference: DIP).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.metric_specs import CONVENTIONS, LPIPS_NO_WEIGHTS, LPIPS_NOT_COMPUTED, PSNR_Y_CONVENTION

NA = "n/a"
DAGGER = "†"
FULL = 1 - 1e-9  # a fraction at least this is the full reference budget (float noise aside)


@dataclass(frozen=True)
class BudgetUse:
    """How much of its reference budget a (method, degradation) used.

    >>> BudgetUse(0.1, 3000, "iterations", "paper").describe()
    '10 % of the reference 3000 iterations'
    """

    fraction: float
    reference: int
    unit: str
    source: str

    def describe(self) -> str:
        return f"{percent(self.fraction)} of the reference {self.reference} {self.unit}"


@dataclass
class CellNotes:
    """The n/a cells with their reasons, the cells below budget, and the caption lines about them."""

    na: dict[tuple[str, str], str] = field(default_factory=dict)  # (degradation, method) -> reason
    below: dict[tuple[str, str], BudgetUse] = field(default_factory=dict)  # (degradation, method) -> use
    lines: list[str] = field(default_factory=list)


def percent(fraction: float) -> str:
    """A budget fraction as a percentage with 3 significant digits.

    >>> percent(0.1), percent(0.01), percent(5 / 3000), percent(5000 / 6001)
    ('10 %', '1 %', '0.167 %', '83.3 %')
    """
    return f"{100 * fraction:.3g} %"


def budget_use(rows: pd.DataFrame) -> BudgetUse | None:
    """The smallest budget share among ``rows`` (ok rows of one method and degradation); None when unknown."""
    if rows.empty or "budget_fraction" not in rows.columns or "budget" not in rows.columns:
        return None
    fractions = pd.to_numeric(rows["budget_fraction"], errors="coerce")
    if fractions.isna().all():
        return None
    lowest = rows.loc[fractions.idxmin()]
    info = _json(lowest["budget"])
    if not info.get("reference"):
        return None
    return BudgetUse(
        float(fractions.min()), int(info["reference"]), str(info.get("unit", "")), str(info.get("source", ""))
    )


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def cell_notes(df: pd.DataFrame, degradations: list[str], methods: list[str], profile: str) -> CellNotes:
    """The notes of one table's rows (one dataset and profile): n/a cells, cells below budget, caption lines."""
    notes = CellNotes()
    status = df["status"].astype(str) if "status" in df.columns else pd.Series("ok", index=df.index)
    for degradation in degradations:
        sub = df[df["degradation_label"] == degradation]
        expected = set(zip(sub["image"], sub["seed"]))
        for method in methods:
            cells = sub[sub["method_label"] == method]
            if len(cells) and (status[cells.index] == NA).all() and set(zip(cells["image"], cells["seed"])) == expected:
                reasons = [e for e in cells.get("error", pd.Series(dtype=object)) if isinstance(e, str) and e]
                notes.na[(degradation, method)] = reasons[0] if reasons else "not applicable"
                continue
            use = budget_use(cells[status[cells.index] == "ok"])
            if use is not None and use.fraction < FULL:
                notes.below[(degradation, method)] = use
    notes.lines = (na_lines(notes.na) + budget_lines(notes.below, profile) + weights_lines(df, methods, status)
                   + data_term_lines(df, status) + missing_lpips_lines(df, status))
    return notes


LPIPS_WHY = {  # the reason a row records in metric_impl for a missing LPIPS (bench.metrics) -> the caption line
    LPIPS_NO_WEIGHTS: "LPIPS –: its AlexNet weights were not available when {n} cell(s) were computed (set "
                      "BENCH_LPIPS_ALEXNET, then run bench rescore --metrics lpips).",
    LPIPS_NOT_COMPUTED: "LPIPS –: not computed for {n} cell(s) (bench run --no-lpips); bench rescore --metrics lpips "
                        "fills it in.",
    "": "LPIPS –: {n} cell(s) have no LPIPS (computed with --no-lpips or without its AlexNet weights); "
        "bench rescore --metrics lpips fills it in.",
}


def missing_lpips_lines(df: pd.DataFrame, status: pd.Series | None = None) -> list[str]:
    """Why LPIPS is missing ("–") from ok cells: one line per reason their rows record (``metric_impl``).

    >>> df = pd.DataFrame({"lpips": [None, 0.2], "metric_impl": ['{"lpips": "missing: AlexNet weights unavailable"}',
    ...     '{"lpips": "lpips 0.1.4"}']})
    >>> missing_lpips_lines(df)
    ['LPIPS –: its AlexNet weights were not available when 1 cell(s) were computed (set BENCH_LPIPS_ALEXNET, then run bench rescore --metrics lpips).']
    """
    if "lpips" not in df.columns:
        return []
    lacking = df[pd.to_numeric(df["lpips"], errors="coerce").isna() & ((status == "ok") if status is not None else True)]
    impl = lacking["metric_impl"] if "metric_impl" in lacking.columns else pd.Series("", index=lacking.index)
    reasons = [why if why in LPIPS_WHY else "" for why in (str(_json(text).get("lpips", "")) for text in impl)]
    return [LPIPS_WHY[why].format(n=reasons.count(why)) for why in dict.fromkeys(reasons)]


def conventions_line(df: pd.DataFrame) -> str:
    """The caption line with the metric conventions (:data:`bench.metric_specs.CONVENTIONS`), and PSNR-Y's where
    the table has super-resolution values (:data:`bench.metric_specs.PSNR_Y_CONVENTION`).

    >>> conventions_line(pd.DataFrame({"psnr_y": [None]})).startswith("Metrics: PSNR on RGB")
    True
    >>> "PSNR-Y (crop s), on sr cells only" in conventions_line(pd.DataFrame({"psnr_y": [31.2]}))
    True
    """
    has_y = "psnr_y" in df.columns and pd.to_numeric(df["psnr_y"], errors="coerce").notna().any()
    return CONVENTIONS + (" " + PSNR_Y_CONVENTION if has_y else "")


def weights_lines(df: pd.DataFrame, methods: list[str], status: pd.Series | None = None) -> list[str]:
    """One line per method whose cells say what their trained weights are (the ``weights`` entry of the budget
    JSON, :func:`bench.cells.weights_note`): a learned prior trained at a fraction of its published scale reads
    as that, not as the published model.

    >>> df = pd.DataFrame({"method_label": ["flowprior", "tv"], "budget": ['{"weights": "trained on a CPU"}', None]})
    >>> weights_lines(df, ["flowprior", "tv"])
    ['Weights of flowprior: trained on a CPU.']
    """
    if "budget" not in df.columns:
        return []
    ok = df if status is None else df[status == "ok"]
    lines = []
    for method in methods:
        notes = dict.fromkeys(n for n in (_json(b).get("weights") for b in ok.loc[ok["method_label"] == method,
                                                                                   "budget"]) if n)
        if notes:
            lines.append(f"Weights of {method}: {' / '.join(str(n).rstrip('.') for n in notes)}.")
    return lines


QCS_TRACE_KEY = "qcs_width"  # = bench.solvers.data_terms.QCS_TRACE_KEY (not imported: reports stay torch-free)


def data_term_lines(df: pd.DataFrame, status: pd.Series | None = None) -> list[str]:
    """One line naming the methods whose cells used the JPEG quantisation constraint as their data term (from
    their traces), and what every other cell used; none when no cell used it.

    >>> df = pd.DataFrame({"method_label": ["flowprior", "pnp"], "degradation_label": ["jpeg", "jpeg"],
    ...     "trace": ['{"qcs_width": [0.5]}', None]})
    >>> data_term_lines(df)
    ['JPEG data term: flowprior (jpeg) used the quantisation cells of the JPEG file (width 0.5 of the step); every other cell: Gaussian ‖A(x) − y‖²/2σ² (JPEG error as noise of the effective σ).']
    """
    if "trace" not in df.columns:
        return []
    used: dict[str, dict[str, set[float]]] = {}
    candidates = df[df["trace"].astype(str).str.contains(QCS_TRACE_KEY, regex=False)]  # few rows: parse only those
    for index, row in candidates.iterrows():
        if status is not None and status[index] != "ok":
            continue
        trace = row["trace"] if isinstance(row["trace"], dict) else _json(row["trace"])
        widths = trace.get(QCS_TRACE_KEY)
        if widths:
            by_degradation = used.setdefault(str(row["method_label"]), {})
            by_degradation.setdefault(str(row["degradation_label"]), set()).update(float(w) for w in widths)
    if not used:
        return []
    parts = []
    for method, by_degradation in used.items():
        widths = sorted(set().union(*by_degradation.values()))
        parts.append(
            f"{method} ({', '.join(by_degradation)}) used the quantisation cells of the JPEG file "
            f"(width {', '.join(f'{w:g}' for w in widths)} of the step)"
        )
    return [
        f"JPEG data term: {'; '.join(parts)}; every other cell: Gaussian ‖A(x) − y‖²/2σ² (JPEG error as noise "
        "of the effective σ)."
    ]


def na_lines(na: dict[tuple[str, str], str]) -> list[str]:
    """One line per (method, reason), naming the degradations when the reason covers several."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for (degradation, method), reason in na.items():
        grouped.setdefault((method, reason), []).append(degradation)
    return [
        f"{NA}: {reason.rstrip('.')}" + (f" ({', '.join(degs)})" if len(degs) > 1 else "") + "."
        for (_method, reason), degs in grouped.items()
    ]


def budget_lines(below: dict[tuple[str, str], BudgetUse], profile: str, sources: bool = True) -> list[str]:
    """One † line per method below its reference budget (``sources``: with the reference's source).

    >>> uses = {("noise", "dip"): BudgetUse(0.1, 3000, "iterations", "S"), ("sr", "dip"): BudgetUse(0.1, 2000,
    ...         "iterations", "S")}
    >>> budget_lines(uses, "quick")
    ['† dip: 10 % of the reference budget: noise 3000, sr 2000 iterations (profile quick; reference: S).']
    """
    by_method: dict[str, list[tuple[str, BudgetUse]]] = {}
    for (degradation, method), use in below.items():
        by_method.setdefault(method, []).append((degradation, use))
    lines = []
    for method, uses in by_method.items():
        first = uses[0][1]
        shares = {percent(u.fraction) for _, u in uses}
        if len(shares) == 1 and len({u.reference for _, u in uses}) == 1:
            body = first.describe()
        elif len(shares) == 1:
            body = (
                f"{percent(first.fraction)} of the reference budget: "
                + ", ".join(f"{d} {u.reference}" for d, u in uses)
                + f" {first.unit}"
            )
        else:
            body = ", ".join(f"{d} {percent(u.fraction)} of {u.reference}" for d, u in uses) + f" {first.unit}"
        source = f"; reference: {first.source}" if first.source and sources else ""
        lines.append(f"{DAGGER} {method}: {body} (profile {profile}{source}).")
    return lines


def is_below(fraction: Any) -> bool:
    """Whether a stored ``budget_fraction`` is below the full reference budget (False when unknown).

    >>> is_below(0.1), is_below(1.0), is_below(None)
    (True, False, False)
    """
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value < FULL


def na_map(
    rows: pd.DataFrame, methods: dict[str, str] | None = None, degradations: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """``{method label: {degradation label: reason}}`` of the "n/a" rows among ``rows`` (for baselines); labels
    renamed through ``methods`` and ``degradations`` where given.

    >>> na_map(pd.DataFrame({"method_label": ["bm3d"], "degradation_label": ["sr"], "status": ["n/a"],
    ...     "error": ["no sr scheme"]}), {"bm3d": "bm3d[profile=lc]"})
    {'bm3d[profile=lc]': {'sr': 'no sr scheme'}}
    """
    out: dict[str, dict[str, str]] = {}
    if rows.empty or "status" not in rows.columns:
        return out
    for _, row in rows[rows["status"] == NA].iterrows():
        method, degradation = str(row["method_label"]), str(row["degradation_label"])
        method, degradation = (methods or {}).get(method, method), (degradations or {}).get(degradation, degradation)
        reason = row.get("error") if isinstance(row.get("error"), str) else "not applicable"
        out.setdefault(method, {}).setdefault(degradation, reason)
    return out
