"""Metric baselines and regression checks: ``bench baseline save`` and ``bench check``.

A baseline is a JSON file with the mean (over images and seeds) and count of every metric per (method,
degradation) of one dataset and profile, plus the metadata needed to judge a comparison: the dataset's content
hash and image digests, seeds, parameters and code versions, package and torch versions, and the cells whose
method does not apply ("n/a", with the reason). Both use the rows :func:`bench.selection.select` shows (current
code, one result per cell; a cell still ambiguous makes ``baseline save`` fail). A check restricts the store to
the baseline's dataset, profile, images and seeds, pairs each baseline method and degradation with the stored
setting of the same plugin and parameters (else the only one left), and compares the means direction-aware
(LPIPS: lower is better) with per-metric tolerances; a cell n/a both times passes (verdict ``n/a``).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method": ["tv"] * 2, "method_label": ["tv"] * 2, "method_params": ["{}"] * 2,
    ...     "method_version": ["v"] * 2, "degradation": ["noise"] * 2, "degradation_label": ["noise"] * 2,
    ...     "degradation_params": ["{}"] * 2, "dataset": ["builtin"] * 2, "profile": ["smoke"] * 2,
    ...     "image": ["a", "b"], "image_digest": ["da", "db"], "seed": [0, 0], "status": ["ok"] * 2,
    ...     "psnr": [20.0, 22.0], "ssim": [0.5, 0.7], "ms_ssim": [None, None], "lpips": [0.3, 0.2],
    ...     "created": ["t"] * 2})
    >>> base = make_baseline(df)
    >>> base.cells["tv"]["noise"]["psnr"]
    {'mean': 21.0, 'count': 2}
    >>> worse = df.assign(psnr=[19.0, 21.0])
    >>> result = compare(base, worse, parse_tolerances(""))
    >>> result.failed, [d.verdict for d in result.deltas if d.metric == "psnr"]
    (True, ['REGRESSED'])
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from bench import __version__
from bench.annotations import NA, na_map
from bench.errors import BenchError, UsageError
from bench.metric_specs import METRIC_NAMES, default_tolerances, spec
from bench.params import suggest
from bench.selection import ambiguity, current_versions, match_settings, select, select_rows
from bench.tables import text_table

FORMAT = "restoration-bench-baseline/1"
DEFAULT_TOLERANCES = default_tolerances()
# Verdicts; upper case ones fail the check (IMPROVED and NEW only with --strict).
FAILING = {"REGRESSED", "MISSING", "INCOMPLETE", "IMPROVED", "NEW"}


@dataclass
class Baseline:
    """``cells[method][degradation][metric] = {"mean": float | None, "count": int}``.

    >>> Baseline({"dataset": "builtin", "profile": "smoke"}, {}).to_json().startswith('{')
    True
    """

    metadata: dict[str, Any]
    cells: dict[str, dict[str, dict[str, dict[str, Any]]]]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "metadata": self.metadata, "cells": self.cells},
                          sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@dataclass
class Delta:
    """One compared (method, degradation, metric).

    >>> Delta("tv", "noise", "psnr", 20.0, 20.5, "within tol").delta
    0.5
    """

    method: str
    degradation: str
    metric: str
    baseline: float | None
    current: float | None
    verdict: str
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


@dataclass
class CheckResult:
    """The deltas of a check and its notes; ``failed`` when any verdict fails it.

    >>> CheckResult([Delta("tv", "noise", "psnr", 20.0, None, "MISSING")]).failed
    True
    """

    deltas: list[Delta]
    notes: list[str] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(d.verdict in FAILING for d in self.deltas)


def _num(value: Any) -> float | None:
    """A finite float, or None for missing/NaN (or not a number)."""
    out = pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").iloc[0]
    return float(out) if pd.notna(out) and math.isfinite(out) else None


def dataset_hash(digests: list[str]) -> str:
    """Content hash of a set of images: sha256 over their sorted digests.

    >>> dataset_hash(["b", "a"]) == dataset_hash(["a", "b"])
    True
    """
    return hashlib.sha256("\n".join(sorted(set(digests))).encode()).hexdigest()[:20]


def aggregate(df: pd.DataFrame) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Mean and count of each metric per (method label, degradation label), NaN excluded."""
    cells: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (method, degradation), group in df.groupby(["method_label", "degradation_label"], sort=True):
        entry = cells.setdefault(str(method), {}).setdefault(str(degradation), {})
        for metric in METRIC_NAMES:
            values = pd.to_numeric(group[metric], errors="coerce").dropna() if metric in group else pd.Series(dtype=float)
            values = values[values.map(math.isfinite)]
            if spec(metric).tasks and not len(values):  # a task's own metric (PSNR-Y: sr) is no entry elsewhere
                continue
            mean = round(float(values.mean()), 6) if len(values) else None
            entry[metric] = {"mean": mean, "count": int(len(values))}
    return cells


def _first_json(values: pd.Series) -> Any:
    text = values.dropna().iloc[-1] if values.notna().any() else None
    try:
        return json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return text


def _plugins(df: pd.DataFrame, kind: str) -> dict[str, dict[str, Any]]:
    """Parameters and code version per label (of the most recent cells)."""
    out = {}
    for label, group in df.groupby(f"{kind}_label", sort=True):
        info: dict[str, Any] = {"name": str(group[kind].iloc[-1]), "params": _first_json(group[f"{kind}_params"])}
        if f"{kind}_version" in group:
            info["version"] = group[f"{kind}_version"].iloc[-1]
        out[str(label)] = info
    return out


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def make_baseline(df: pd.DataFrame, methods: list[str] | None = None, degradations: list[str] | None = None,
                  dataset: str | None = None, profile: str | None = None, all_versions: bool = False) -> Baseline:
    """Aggregate the ok cells of exactly one (dataset, profile), as the report shows them (current code and
    images; ``all_versions``: older code versions too, labelled), into a :class:`Baseline`. Cells whose method
    does not apply are listed in the metadata (``not_applicable``) with their reason."""
    shown = select(select_rows(df, dataset=dataset, profile=profile), all_versions, replaced_images=False)
    rows = select_rows(shown.rows, methods, degradations, status="ok")
    if rows.empty:
        raise BenchError("no successful results match the filters; nothing to save.")
    ambiguous = select_rows(shown.ambiguous, methods, degradations)
    if len(ambiguous):
        raise BenchError(f"{ambiguity(ambiguous)}; a baseline cannot choose between them. Re-run the grid into a "
                         "fresh --results-dir and save the baseline from there.")
    combos = sorted(set(zip(rows["dataset"], rows["profile"])))
    if len(combos) > 1:
        names = ", ".join(f"{d} / {p}" for d, p in combos)
        raise UsageError(f"the results hold several dataset/profile pairs ({names}); choose one with --dataset and "
                         "--profile.")
    images = dict(sorted(zip(rows["image"].astype(str), rows["image_digest"].astype(str))))
    meta = {
        "dataset": combos[0][0],
        "profile": combos[0][1],
        "dataset_hash": dataset_hash(list(images.values())),
        "images": images,
        "seeds": sorted(int(s) for s in rows["seed"].unique()),
        "methods": _plugins(rows, "method"),
        "degradations": _plugins(rows, "degradation"),
        "bench_version": __version__,
        "torch_version": _version("torch"),
        "created": time.strftime("%Y-%m-%d"),
        "not_applicable": na_map(select_rows(shown.rows, methods, degradations, *combos[0], status=NA)),
    }
    return Baseline(metadata=meta, cells=aggregate(rows))


def save_baseline(baseline: Baseline, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(baseline.to_json(), encoding="utf-8")
    return path


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; problems become one-line :class:`BenchError` messages."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"baseline '{path}' not found; create it with `bench baseline save --out {path}`.") from None
    except OSError as err:
        raise BenchError(f"cannot read baseline '{path}': {err.strerror}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"baseline '{path}' is not valid JSON ({err}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BenchError(f"'{path}' is not a restoration-bench baseline (format {found!r}, expected '{FORMAT}').")
    meta, cells = data.get("metadata"), data.get("cells")
    if not isinstance(meta, dict) or not all(k in meta for k in ("dataset", "profile")):
        raise BenchError(f"baseline '{path}' has no metadata with dataset and profile.")
    try:
        for method, by_degradation in cells.items():
            for degradation, by_metric in by_degradation.items():
                for metric, entry in by_metric.items():
                    if metric not in METRIC_NAMES or entry["mean"] is not None and not isinstance(entry["mean"], (int, float)):
                        raise ValueError(f"{method}/{degradation}/{metric}")
                    int(entry["count"])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise BenchError(f"baseline '{path}' has a malformed cell entry ({err}).") from None
    if not cells:
        raise BenchError(f"baseline '{path}' has no cells.")
    return Baseline(metadata=meta, cells=cells)


def parse_tolerances(text: str | None) -> dict[str, float]:
    """``"psnr=0.1,lpips=0.01"`` over the defaults; unknown metrics and bad numbers are usage errors.

    >>> parse_tolerances("psnr=0.1")["psnr"], parse_tolerances("psnr=0.1")["ssim"]
    (0.1, 0.002)
    """
    out = dict(DEFAULT_TOLERANCES)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep:
            raise UsageError(f"--tolerance '{item.strip()}' must look like METRIC=VALUE, e.g. psnr=0.05.")
        if name not in METRIC_NAMES:
            raise UsageError(f"unknown metric '{name}' in --tolerance.{suggest(name, list(METRIC_NAMES))} "
                             f"Metrics: {', '.join(METRIC_NAMES)}.")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"--tolerance {name}={value.strip()!r} is not a number.") from None
        if not number >= 0 or not math.isfinite(number):
            raise UsageError(f"--tolerance {name}={value.strip()} must be a finite number >= 0.")
        out[name] = number
    return out


def _verdict(base: float | None, base_count: int, cur: float | None, cur_count: int, metric: str,
             tolerance: float, strict: bool) -> str:
    if base is None and cur is None:
        return "unchanged" if cur_count >= base_count else "MISSING"
    if cur is None:
        return "MISSING"
    if cur_count < base_count:
        return "INCOMPLETE"
    if base is None:
        return "NEW" if strict else "new"
    gain = spec(metric).gain(base, cur)
    if gain < -tolerance:
        return "REGRESSED"
    if gain > tolerance:
        return "IMPROVED" if strict else "improved"
    return "unchanged" if cur == base else "within tol"


def _dict_diff(old: Any, new: Any) -> str:
    """``"weight 0.9 -> 9.0"`` for parameter dicts (the whole values otherwise).

    >>> _dict_diff({"a": 1, "b": 2}, {"a": 1, "b": 3})
    'b 2 -> 3'
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return f"{old} -> {new}"
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys if old.get(k) != new.get(k))


def _param_notes(baseline: Baseline, rows: pd.DataFrame) -> list[str]:
    notes = []
    for kind in ("method", "degradation"):
        then = baseline.metadata.get(f"{kind}s", {})
        now = _plugins(rows, kind) if len(rows) else {}
        for label, info in sorted(now.items()):
            old = then.get(label)
            if not old:
                continue
            if old.get("params") != info.get("params"):
                notes.append(f"{kind} {label}: parameters differ from the baseline: "
                             f"{_dict_diff(old.get('params'), info.get('params'))}")
            elif old.get("version") and info.get("version") and old["version"] != info["version"]:
                notes.append(f"{kind} {label}: code changed since the baseline ({old['version']} -> {info['version']})")
    return notes


def compare(baseline: Baseline, df: pd.DataFrame, tolerances: dict[str, float], strict: bool = False) -> CheckResult:
    """Compare the store's rows with ``baseline`` (restricted to its dataset, profile, images, seeds and cells)."""
    meta = baseline.metadata
    same_data = select_rows(df, dataset=meta["dataset"], profile=meta["profile"], seeds=meta.get("seeds"))
    not_applicable = meta.get("not_applicable") or {}  # {method: {degradation: reason}}, n/a in the baseline
    methods = sorted(set(baseline.cells) | set(not_applicable))
    degradations = sorted({d for cells in (baseline.cells, not_applicable) for by_deg in cells.values() for d in by_deg})
    versions = current_versions(same_data)
    digests = set((meta.get("images") or {}).values())
    found = set(select(same_data, versions=versions).rows.get("image_digest", []))
    shown = select(same_data, versions=versions, image_digests=digests or None)
    pairs = {}  # per kind {shown label: baseline label}: the same plugin with the same parameters (see match_settings)
    for kind, labels in (("method", methods), ("degradation", degradations)):
        info = meta.get(f"{kind}s", {})
        wanted = {b: (info.get(b, {}).get("name", b.split("[")[0]), info.get(b, {}).get("params")) for b in labels}
        pairs[kind] = {s: b for b, s in match_settings(shown.rows, kind, wanted).items()}
    notes = []
    extra = sorted(set(shown.rows["method_label"]) - set(pairs["method"])) if len(shown.rows) else []
    if extra:
        notes.append(f"not in the baseline (not checked): {', '.join(map(str, extra))}; regenerate the baseline "
                     "to include them.")
    if digests and found and not digests <= found:
        notes.append(f"dataset content differs from the baseline (hash {meta.get('dataset_hash')}, now "
                     f"{dataset_hash(sorted(found))}): images changed or are missing.")
    if len(shown.ambiguous):
        notes.append(f"{ambiguity(shown.ambiguous)}; the newest is compared.")
    rows = select_rows(shown.rows, list(pairs["method"]), list(pairs["degradation"]), status="ok", labels_only=True)
    rows = rows.assign(method_label=rows["method_label"].map(pairs["method"]),
                       degradation_label=rows["degradation_label"].map(pairs["degradation"]))
    current = aggregate(rows) if len(rows) else {}
    present = set(zip(rows["method_label"], rows["degradation_label"]))
    na_now = na_map(select_rows(shown.rows, list(pairs["method"]), list(pairs["degradation"]), status=NA,
                                labels_only=True), pairs["method"], pairs["degradation"])
    notes += _param_notes(baseline, rows)
    deltas = []
    for method, by_degradation in sorted(not_applicable.items()):  # n/a both times is fine; now computed is new
        for degradation, reason in sorted(by_degradation.items()):
            now = na_now.get(method, {}).get(degradation)
            verdict = NA if now else ("NEW" if strict else "new") if (method, degradation) in present else "MISSING"
            deltas.append(Delta(method, degradation, NA, None, None, verdict, "" if now else f"was n/a: {reason}"))
    for method in methods:
        for degradation, by_metric in sorted(baseline.cells.get(method, {}).items()):
            now = current.get(method, {}).get(degradation, {})
            for metric in METRIC_NAMES:
                if metric not in by_metric:
                    continue
                base = by_metric[metric]
                cur = now.get(metric, {"mean": None, "count": 0})
                b, c = _num(base.get("mean")), _num(cur["mean"])
                if (method, degradation) in present:
                    verdict = _verdict(b, int(base.get("count", 0)), c, cur["count"], metric,
                                       tolerances.get(metric, 0.0), strict)
                else:
                    verdict = "MISSING"
                note = f"{cur['count']} of {base.get('count')} values" if verdict == "INCOMPLETE" else \
                    f"now n/a: {na_now[method][degradation]}" if degradation in na_now.get(method, {}) else ""
                deltas.append(Delta(method, degradation, metric, b, c, verdict, note))
    return CheckResult(deltas=deltas, notes=notes, tolerances=tolerances)


def _fmt(value: float | None, metric: str, sign: bool = False) -> str:
    if value is None:
        return "–"
    decimals = spec(metric).check_decimals
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def format_check(result: CheckResult, only_changes: bool = False) -> str:
    """The delta table, notes and a one-line verdict."""
    shown = [d for d in result.deltas if not (only_changes and d.verdict == "unchanged")]
    rows = [[d.method, d.degradation, d.metric, _fmt(d.baseline, d.metric), _fmt(d.current, d.metric),
             _fmt(d.delta, d.metric, sign=True), d.verdict + (f" ({d.note})" if d.note else "")] for d in shown]
    parts = [text_table(["method", "degradation", "metric", "baseline", "current", "delta", "verdict"], rows)]
    parts += [f"note: {n}" for n in result.notes]
    counts: dict[str, int] = {}
    for d in result.deltas:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (kv[0] not in FAILING, kv[0])))
    tol = ", ".join(f"{k}={v:g}" for k, v in result.tolerances.items())
    failing = [f"{d.method}/{d.degradation}/{d.metric}" for d in result.deltas if d.verdict in FAILING]
    if failing:
        listed = ", ".join(failing[:8]) + (f", … ({len(failing) - 8} more)" if len(failing) > 8 else "")
        parts.append(f"check FAILED ({tally}; tolerances {tol}): {listed}")
    else:
        parts.append(f"check passed ({tally}; tolerances {tol})")
    return "\n".join(parts)
