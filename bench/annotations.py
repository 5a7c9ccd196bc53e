"""What a report says about a table cell besides its value: "n/a" and † (below the reference budget).

* **n/a**: every cell of a (method, degradation) has the status ``n/a`` — the method raised
  :class:`bench.solvers.applicability.NotApplicable` because the task is outside what it handles
  by design. Shown as "n/a", distinct from "–" (missing or failed); the reason is given once.
* **†**: the method ran below its reference (published) budget (:class:`bench.api.Budget`,
  the ``budget_fraction`` and ``budget`` columns of :func:`bench.compute.cell_budget`). One caption
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
from bench.record import CAPTION_NOTES

NA = "n/a"
DAGGER = "†"
BUNDLE, OLDER_CODE, OTHER_HARDWARE = "‡", "§", "¶"  # provenance marks: imported, older code, other hardware
MARKS = DAGGER + BUNDLE + OLDER_CODE + OTHER_HARDWARE
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
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (degradation, method) -> "‡", "‡§", "¶", ...
    imported: dict[str, str] = field(default_factory=dict)  # method -> what its imported cells are, for headings


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
    origin_lines = provenance(df[status == "ok"], notes, profile)
    notes.lines = (na_lines(notes.na) + budget_lines(notes.below, profile) + origin_lines
                   + weights_lines(df, methods, status) + caption_note_lines(df, status) + missing_lpips_lines(df, status))
    return notes


def _day(text: Any) -> str:
    return str(text)[:10] if isinstance(text, str) and text else "?"


def _installed_versions(df: pd.DataFrame) -> dict[str, str]:
    """``{method plugin: code version installed here}`` (empty where unknown: no marks then)."""
    if "method_version" not in df.columns or "method" not in df.columns or df.empty:
        return {}
    from bench.selection import current_versions

    try:
        return {name: v for (kind, name), v in current_versions(df).items() if kind == "method"}
    except Exception:  # noqa: BLE001 (a report never fails over provenance: no § marks then)
        return {}


def provenance(ok: pd.DataFrame, notes: CellNotes, profile: str) -> list[str]:
    """Mark the (degradation, method) cells of one table whose ok rows were not all computed here by the installed
    code on the table's hardware, in ``notes.origin``; return their caption lines:

    * ``‡`` imported from a bundle (columns ``bundle``, ``bundle_made``, ``bundle_bench``: :func:`bench.bundle_cli.
      with_provenance`), with the bundle, the code version and the date its cells were computed;
    * ``§`` computed by another code version than the installed one (``method_version``);
    * ``¶`` computed on other hardware than most cells of the table (``hardware``).

    >>> ok = pd.DataFrame({"method": ["dip", "tv"], "method_label": ["dip", "tv"], "degradation_label": ["jpeg"] * 2,
    ...     "bundle": ["paper_cpu.zip", None], "bundle_made": ["2026-11-30", None], "bundle_bench": ["0.1.0", None],
    ...     "created": ["2026-11-29T10:00:00+0000", "t"], "hardware": ["CPU A", "CPU B"]})
    >>> notes = CellNotes()
    >>> print("\\n".join(provenance(ok, notes, "paper")))
    ‡ dip (jpeg): imported from the reference bundle paper_cpu.zip (made 2026-11-30 by bench 0.1.0); computed 2026-11-29 on CPU A, profile paper.
    ¶ dip (jpeg): computed on CPU A, the table's other cells on CPU B.
    >>> notes.origin
    {('jpeg', 'dip'): '‡¶'}
    """
    if ok.empty:
        return []
    installed = _installed_versions(ok)
    hardware = ok["hardware"].where(ok["hardware"].notna(), "") if "hardware" in ok else pd.Series("", index=ok.index)
    bundle = ok["bundle"].where(ok["bundle"].notna(), "") if "bundle" in ok else pd.Series("", index=ok.index)
    local = hardware[(hardware != "") & (bundle == "")]  # the usual hardware: that of the cells computed here
    usual = (local if len(local) else hardware[hardware != ""]).mode()
    usual_hw = str(usual.iloc[0]) if len(usual) and hardware[hardware != ""].nunique() > 1 else ""
    groups: dict[tuple[str, str, str], list[str]] = {}  # (mark, method, line body) -> degradations
    for (degradation, method), cells in ok.groupby(["degradation_label", "method_label"], sort=False):
        degradation, method = str(degradation), str(method)
        marks = ""
        plugin = str(cells["method"].iloc[0]) if "method" in cells else method
        versions = sorted({str(v) for v in cells.get("method_version", pd.Series(dtype=object)) if isinstance(v, str)})
        days = sorted({_day(c) for c in cells.get("created", pd.Series(dtype=object))})
        computed = " to ".join(dict.fromkeys([days[0], days[-1]])) if days else "?"
        made_on = ", ".join(sorted({h for h in hardware[cells.index] if h})) or "unknown hardware"
        names = sorted({b for b in bundle[cells.index] if b})
        if names:
            marks += BUNDLE
            first = cells[bundle[cells.index] != ""].iloc[0]
            version = f"{plugin} code version {', '.join(v[:8] for v in versions)} " if versions else ""
            body = (f"imported from the reference bundle {', '.join(names)} (made {_day(first.get('bundle_made'))} by "
                    f"bench {first.get('bundle_bench') or '?'}); {version}computed {computed} on {made_on}, profile "
                    f"{profile}")
            groups.setdefault((BUNDLE, method, body), []).append(degradation)
            notes.imported.setdefault(method, f"{plugin} version of {days[-1] if days else '?'}")
        current = installed.get(plugin)
        if current and versions and any(v != current for v in versions):
            marks += OLDER_CODE
            body = (f"computed {computed} by {plugin} code version {', '.join(v[:8] for v in versions)}, not the "
                    f"installed {current[:8]}")
            groups.setdefault((OLDER_CODE, method, body), []).append(degradation)
        if usual_hw and any(h and h != usual_hw for h in hardware[cells.index]):
            marks += OTHER_HARDWARE
            body = f"computed on {made_on}, the table's other cells on {usual_hw}"
            groups.setdefault((OTHER_HARDWARE, method, body), []).append(degradation)
        if marks:
            notes.origin[(degradation, method)] = marks
    return [f"{mark} {method} ({', '.join(degs)}): {body}." for (mark, method, body), degs in
            sorted(groups.items(), key=lambda item: MARKS.index(item[0][0]))]


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
    """One line per method whose cells say what their trained weights are (the ``weights`` column,
    :func:`bench.compute.weights_note`; rows stored before it existed kept it in the budget JSON): a learned prior
    trained at a fraction of its published scale reads as that, not as the published model.

    >>> df = pd.DataFrame({"method_label": ["flowprior", "tv", "dmsp"], "weights": ["trained on a CPU", None, None],
    ...                    "budget": [None, None, '{"weights": "an older row"}']})
    >>> weights_lines(df, ["flowprior", "tv", "dmsp"])
    ['Weights of flowprior: trained on a CPU.', 'Weights of dmsp: an older row.']
    """
    if "weights" not in df.columns and "budget" not in df.columns:
        return []
    ok = df if status is None else df[status == "ok"]
    column = ok["weights"] if "weights" in ok.columns else pd.Series(None, index=ok.index, dtype=object)
    older = ok["budget"].map(lambda b: _json(b).get("weights")) if "budget" in ok.columns else column
    notes_of = column.where(column.notna() & (column != ""), older)
    lines = []
    for method in methods:
        notes = dict.fromkeys(n for n in notes_of[ok["method_label"] == method] if isinstance(n, str) and n)
        if notes:
            lines.append(f"Weights of {method}: {' / '.join(str(n).rstrip('.') for n in notes)}.")
    return lines


def caption_note_lines(df: pd.DataFrame, status: pd.Series | None = None) -> list[str]:
    """One line per method and note its ok cells said (:meth:`bench.api.RestoreContext.note`, in their traces),
    naming the degradations it applies to; none when no cell said anything. Reports know no method's features.

    >>> df = pd.DataFrame({"method_label": ["flowprior", "flowprior", "pnp"], "degradation_label": ["jpeg", "multi",
    ...     "jpeg"], "trace": ['{"caption_notes": ["JPEG data term: QCS"]}'] * 2 + [None]})
    >>> caption_note_lines(df)
    ['flowprior (jpeg, multi): JPEG data term: QCS.']
    """
    if "trace" not in df.columns:
        return []
    said: dict[tuple[str, str], list[str]] = {}
    candidates = df[df["trace"].astype(str).str.contains(CAPTION_NOTES, regex=False)]  # few rows: parse only those
    for index, row in candidates.iterrows():
        if status is not None and status[index] != "ok":
            continue
        trace = row["trace"] if isinstance(row["trace"], dict) else _json(row["trace"])
        for note in trace.get(CAPTION_NOTES) or []:
            degradations = said.setdefault((str(row["method_label"]), str(note).rstrip(".")), [])
            if str(row["degradation_label"]) not in degradations:
                degradations.append(str(row["degradation_label"]))
    return [f"{method} ({', '.join(degradations)}): {note}." for (method, note), degradations in said.items()]


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
