"""Which stored rows results are made of: the one row filter and the one choice of "current" rows.

:func:`select_rows` filters. Every argument left as ``None`` (or empty) keeps all
rows. Methods and degradations match a row's label (``tv[weight=0.5]``) or, unless
``labels_only``, its plugin name (``tv``), so ``--methods tv`` selects every ``tv``
instance of a parameter grid.

:func:`select` decides which rows reports, statistics, baselines and figures show,
so that one cell of a table is one result, within each (dataset, profile):

* **code versions**: per method setting (plugin and parameters) and per degradation
  setting, the rows of the plugin's current code version (:mod:`bench.codeversion`,
  through the registry) are shown; where the current code has no rows, or the plugin
  is not installed, the newest version in the store is. Rows of other versions are
  hidden ("not mixed in").
* **images**: per image id the newest content digest counts; rows of a replaced image
  (another file, another ``--crop``) are hidden.
* **settings**: several parameter settings under one label become distinct labels
  naming the parameters that differ: ``noise[sigma=25]``, ``noise[sigma=50]``.
* ``all_versions`` shows hidden code versions, labelled ``tv[code=1a2b3c4d]``, and rows
  of replaced images as their own dataset ``builtin [replaced images]`` (image ids
  ``astronaut@1a2b3c4d``), never mixed with the current ones.
* what is still duplicated (same setting, code version and image, e.g. a checkpoint
  re-trained in place) shows the newest ok row; :attr:`Selection.ambiguous` lists those
  cells, and ``bench baseline save`` refuses them.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"method": ["tv", "tv", "identity"], "method_label": ["tv[w=1]", "tv[w=2]", "identity"],
    ...     "degradation": ["noise"] * 3, "degradation_label": ["noise"] * 3, "status": ["ok", "failed", "ok"]})
    >>> list(select_rows(df, methods=["tv"])["method_label"])
    ['tv[w=1]', 'tv[w=2]']
    >>> list(select_rows(df, methods=["tv"], labels_only=True)["method_label"])
    []
    >>> list(select_rows(df, status="ok")["method_label"])
    ['tv[w=1]', 'identity']
    >>> two = pd.DataFrame({"method": ["identity"] * 2, "method_label": ["identity"] * 2,
    ...     "degradation": ["noise"] * 2, "degradation_label": ["noise"] * 2,
    ...     "degradation_params": ['{"sigma": 25.0}', '{"sigma": 50.0}'], "image": ["a"] * 2, "seed": [0, 0]})
    >>> list(current_rows(two)["degradation_label"])
    ['noise[sigma=25]', 'noise[sigma=50]']
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("method", "degradation")
# The labels a row was stored with; their presence marks a frame as already selected.
STORED_LABEL = {kind: f"stored_{kind}_label" for kind in KINDS}
REPLACED = " [replaced images]"
OLDER_CODE, REPLACED_IMAGE, DUPLICATE = "older code", "replaced image", "duplicate"


def select_rows(
    df: pd.DataFrame,
    methods: Collection[str] | None = None,
    degradations: Collection[str] | None = None,
    dataset: str | None = None,
    profile: str | None = None,
    images: Collection[str] | None = None,
    image_digests: Collection[str] | None = None,
    seeds: Collection[int] | None = None,
    status: str | None = None,
    labels_only: bool = False,
) -> pd.DataFrame:
    """Rows of ``df`` matching every given filter, in their original order and index."""
    mask = pd.Series(True, index=df.index)
    for kind, wanted in (("method", methods), ("degradation", degradations)):
        if wanted:
            wanted = list(wanted)
            match = df[f"{kind}_label"].isin(wanted)
            if not labels_only:
                match |= df[kind].isin(wanted)
            mask &= match
    if dataset:
        mask &= df["dataset"] == dataset
    if profile:
        mask &= df["profile"] == profile
    for column, wanted in (("image", images), ("image_digest", image_digests), ("seed", seeds)):
        if wanted:
            mask &= df[column].isin(list(wanted))
    if status:
        mask &= df["status"] == status
    return df[mask]


@dataclass
class Selection:
    """The rows to show (labels made distinct) and what was left out, and why.

    >>> sel = select(pd.DataFrame({"method_label": ["a"], "degradation_label": ["noise"]}))
    >>> list(sel.rows["method_label"]), sel.notes()
    (['a'], [])
    """

    rows: pd.DataFrame
    hidden: pd.DataFrame  # rows not shown, with a ``reason``: older code, replaced image or duplicate
    stale: list[str]  # labels whose shown results come from code older than the current
    ambiguous: pd.DataFrame  # shown rows standing for several ok results of the same cell

    def notes(self) -> list[str]:
        """One-line explanations for the user (empty when every stored row is shown as stored)."""
        out = []
        parts = []
        for reason, text in ((OLDER_CODE, "older code versions"), (REPLACED_IMAGE, "replaced images")):
            sub = self.hidden[self.hidden["reason"] == reason] if len(self.hidden) else self.hidden
            if len(sub):
                column = "image" if reason == REPLACED_IMAGE else "method_label"
                parts.append(f"{len(sub)} result(s) of {text} ({_names(sub[column])})")
        if parts:
            out.append(f"not shown: {' and '.join(parts)}; --all-versions shows them, labelled.")
        if self.stale:
            out.append(f"{_names(self.stale)}: no results of the current code yet, those of an older code version "
                       "are shown (re-run to refresh).")
        if len(self.ambiguous):
            out.append(f"{ambiguity(self.ambiguous)}; the newest is shown.")
        return out


def ambiguity(cells: pd.DataFrame) -> str:
    """What is ambiguous about these cells (shown rows that stand for several ok results)."""
    names = [f"{r['method_label']}/{r['degradation_label']}/{r.get('image', '?')}/seed {r.get('seed', '?')}"
             for _, r in cells.iterrows()]
    return (f"{len(names)} cell(s) hold several results with the same parameters, code version and image "
            f"({_names(names)}), e.g. a checkpoint re-trained in place or results of an older bench release")


def match_settings(rows: pd.DataFrame, kind: str, wanted: Mapping[str, tuple[str, Any]]) -> dict[str, str]:
    """``{wanted label: label in rows}`` pairing wanted (plugin name, parameters) with the settings of selected
    ``rows``: equal parameters first, then the only unpaired setting of a plugin on both sides.

    >>> rows = pd.DataFrame({"degradation": ["noise"] * 2, "degradation_label": ["noise[sigma=25]", "noise[sigma=50]"],
    ...     "degradation_params": ['{"sigma": 25.0}', '{"sigma": 50.0}']})
    >>> match_settings(rows, "degradation", {"noise": ("noise", {"sigma": 50}), "jpeg": ("jpeg", {})})
    {'noise': 'noise[sigma=50]'}
    """
    shown: dict[str, tuple[str, Any]] = {}
    for label, group in rows.groupby(f"{kind}_label", sort=True):
        shown[str(label)] = (str(group[kind].iloc[0]), _decode(_text(group, f"{kind}_params").iloc[-1]))
    out: dict[str, str] = {}
    for label, (name, params) in wanted.items():
        same = [s for s, (n, p) in shown.items() if n == name and p == params and s not in out.values()]
        if same:
            out[label] = label if label in same else same[0]
    for name in {n for n, _ in wanted.values()}:
        left = [w for w, (n, _) in wanted.items() if n == name and w not in out]
        free = [s for s, (n, _) in shown.items() if n == name and s not in out.values()]
        if len(left) == 1 and len(free) == 1:
            out[left[0]] = free[0]
    return out


def _names(values: Any, limit: int = 6) -> str:
    names = list(dict.fromkeys(str(v) for v in values))
    return ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def is_selected(df: pd.DataFrame) -> bool:
    """Whether ``df`` already is the output of :func:`select` (selecting again changes nothing)."""
    return STORED_LABEL["method"] in df.columns


def current_versions(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(kind, plugin name): code version of the installed plugin}`` for the plugins of ``df``'s rows."""
    out: dict[tuple[str, str], str] = {}
    kinds = [k for k in KINDS if f"{k}_version" in df.columns and k in df.columns]
    if not kinds:
        return out
    from bench.codeversion import code_version
    from bench.errors import BenchError
    from bench.registry import lookup

    for kind in kinds:
        for name in sorted(set(df[kind].dropna().astype(str))):
            try:
                out[(kind, name)] = code_version(lookup(kind, name))
            except (BenchError, OSError, TypeError, ValueError):
                continue  # not installed (or no source): the newest version in the store counts
    return out


def current_rows(df: pd.DataFrame, all_versions: bool = False,
                 versions: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """The rows :func:`select` shows (``df`` itself when it is already selected)."""
    return select(df, all_versions=all_versions, versions=versions).rows


def shown_rows(df: pd.DataFrame, all_versions: bool = False, methods: Collection[str] | None = None,
               degradations: Collection[str] | None = None) -> pd.DataFrame:
    """The rows a report shows, selected once: :func:`select` (current code versions and images, distinct labels),
    then the method and degradation filters of :func:`select_rows`. Tables, statistics, captions, figures and
    per-image tables take this frame as it is: given it again with no filters, this returns it unchanged.

    >>> df = pd.DataFrame({"method": ["tv", "identity"], "method_label": ["tv", "identity"],
    ...     "degradation": ["noise"] * 2, "degradation_label": ["noise"] * 2, "status": ["ok"] * 2})
    >>> rows = shown_rows(df, methods=["tv"])
    >>> list(rows["method_label"]), shown_rows(rows) is rows
    (['tv'], True)
    """
    if is_selected(df) and not methods and not degradations:
        return df
    return select_rows(current_rows(df, all_versions), methods, degradations)


def params_text(params: Any) -> str:
    """``k=v`` parts of a parameter value for a label (integral floats without ``.0``).

    >>> params_text(50.0), params_text(0.9), params_text("a"), params_text([1, 2])
    ('50', '0.9', 'a', '[1, 2]')
    """
    if isinstance(params, float) and math.isfinite(params) and params.is_integer():
        return str(int(params))
    if isinstance(params, (list, dict)):
        return json.dumps(params, sort_keys=True)
    return str(params)


def with_tags(label: str, tags: list[str]) -> str:
    """``label`` with ``k=v`` tags added inside its brackets.

    >>> with_tags("tv", ["a=1"]), with_tags("tv[w=1]", ["code=ab"]), with_tags("tv", [])
    ('tv[a=1]', 'tv[w=1,code=ab]', 'tv')
    """
    if not tags:
        return label
    if label.endswith("]") and "[" in label:
        return f"{label[:-1]},{','.join(tags)}]"
    return f"{label}[{','.join(tags)}]"


def setting_labels(name: str, settings: Mapping[str, Collection[str]]) -> dict[str, str]:
    """Labels of the parameter settings (JSON) of plugin ``name``, given the labels each was stored with.

    The stored labels when they tell the settings apart one to one (a grid's labels), otherwise
    ``name`` plus the parameters that differ.

    >>> setting_labels("noise", {'{"sigma": 25.0}': ["noise"], '{"sigma": 50.0}': ["noise"]})
    {'{"sigma": 25.0}': 'noise[sigma=25]', '{"sigma": 50.0}': 'noise[sigma=50]'}
    >>> setting_labels("tv", {'{"w": 1}': ["tv[w=1]"], '{"w": 2}': ["tv[w=2]"]})
    {'{"w": 1}': 'tv[w=1]', '{"w": 2}': 'tv[w=2]'}
    """
    stored = {p: sorted(set(labels)) for p, labels in settings.items()}
    if all(len(v) == 1 for v in stored.values()) and len({v[0] for v in stored.values()}) == len(stored):
        return {p: v[0] for p, v in stored.items()}
    if len(stored) == 1:
        return {p: name for p in stored}
    decoded = {p: _decode(p) for p in stored}
    keys = list(dict.fromkeys(k for d in decoded.values() for k in d))
    unset = "unset"
    differing = [k for k in keys if len({params_text(d.get(k, unset)) for d in decoded.values()}) > 1]
    return {p: with_tags(name, [f"{k}={params_text(d.get(k, unset))}" for k in differing]) for p, d in decoded.items()}


def _decode(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {"params": text}
    return value if isinstance(value, dict) else {"params": value}


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as strings, missing values (and a missing column) as ``""``."""
    if column not in df.columns:
        return pd.Series("", index=df.index)
    values = df[column]
    return values.astype(object).where(values.notna(), "").astype(str)


def select(df: pd.DataFrame, all_versions: bool = False, replaced_images: bool | None = None,
           versions: Mapping[tuple[str, str], str] | None = None,
           image_digests: Collection[str] | None = None) -> Selection:
    """The rows to show of a results frame (see the module doc).

    ``replaced_images`` (default: ``all_versions``) shows rows of replaced images as their own
    dataset; ``versions`` overrides the current code versions (default: :func:`current_versions`);
    ``image_digests`` makes these digests the current images instead of the newest ones.
    """
    if is_selected(df) or df.empty or not {"method_label", "degradation_label"} <= set(df.columns):
        return Selection(df, df.iloc[:0].assign(reason=""), [], df.iloc[:0])
    replaced_images = all_versions if replaced_images is None else replaced_images
    versions = current_versions(df) if versions is None else versions
    original_index = df.index
    df = df.reset_index(drop=True)
    work = pd.DataFrame({c: _text(df, c) for c in ("dataset", "profile", "image", "image_digest", "created")})
    for kind in KINDS:
        work[kind] = _text(df, kind if kind in df.columns else f"{kind}_label")
        work[f"{kind}_params"] = _text(df, f"{kind}_params")
        work[f"{kind}_stored"] = _text(df, f"{kind}_label")
    work["position"] = range(len(df))
    newest_first = work.sort_values(["created", "position"], ascending=False, kind="stable").index.to_numpy()
    age = np.empty(len(df), dtype=np.int64)  # 0 = the newest row
    age[newest_first] = np.arange(len(df))

    if image_digests is not None:  # the given images are the current ones
        replaced = ~work["image_digest"].isin(set(image_digests)) & (work["image_digest"] != "")
    else:  # the newest digest per (dataset, profile, image id)
        keys = ["dataset", "profile", "image"]
        newest = work.iloc[newest_first].drop_duplicates(keys)[keys + ["image_digest"]]
        current = work[keys].merge(newest, how="left", on=keys)["image_digest"].to_numpy()
        replaced = pd.Series(current != work["image_digest"].to_numpy(), index=df.index)
    outdated, tags, stale_rows = _code_versions(df, work, age, versions)

    hidden_reason = pd.Series("", index=df.index)
    if not all_versions:
        hidden_reason[outdated] = OLDER_CODE
    if not replaced_images:
        hidden_reason[replaced] = REPLACED_IMAGE
    shown = hidden_reason == ""
    out = df.copy()
    for kind in KINDS:
        out[STORED_LABEL[kind]] = df[f"{kind}_label"]
        labels = _labels(work[shown], kind)
        tagged = tags[kind][shown].tolist() if all_versions else [""] * len(labels)
        out.loc[shown, f"{kind}_label"] = [with_tags(label, [tag] if tag else []) for label, tag in zip(labels, tagged)]
    stale = sorted({str(out.at[i, f"{kind}_label"]) for kind, i in stale_rows if shown[i]})
    if replaced_images and replaced.any():  # their own dataset, image ids with their digest
        out.loc[replaced, "dataset"] = out.loc[replaced, "dataset"].astype(str) + REPLACED
        out.loc[replaced, "image"] = [f"{i}@{d[:8]}" for i, d in zip(out.loc[replaced, "image"],
                                                                      work.loc[replaced, "image_digest"])]

    # what is still duplicated: the newest row, results (ok or n/a) before failed ones
    cell = [c for c in ("dataset", "profile", "method_label", "degradation_label", "image", "image_digest", "seed")
            if c in out.columns]
    candidates = out.iloc[newest_first[::-1]][shown.iloc[newest_first[::-1]].to_numpy()]
    candidates = candidates.assign(ok=_text(candidates, "status") != "failed").sort_values("ok", kind="stable")
    duplicate = candidates.duplicated(cell, keep="last")
    hidden_reason[duplicate[duplicate].index] = DUPLICATE
    ok_count = candidates.groupby(cell, dropna=False, sort=False)["ok"].transform("sum")
    ambiguous = df.iloc[:0] if candidates.empty else \
        candidates[~duplicate & candidates["ok"] & (ok_count > 1)].drop(columns="ok")

    rows = out[hidden_reason == ""]
    hidden = out[hidden_reason != ""].assign(reason=hidden_reason[hidden_reason != ""])
    for frame in (rows, hidden, ambiguous):
        frame.index = original_index[frame.index]
    return Selection(rows, hidden, stale, ambiguous.sort_index())


def _code_versions(df: pd.DataFrame, work: pd.DataFrame, age: np.ndarray, versions: Mapping[tuple[str, str], str],
                   ) -> tuple[pd.Series, dict[str, pd.Series], set[tuple[str, int]]]:
    """Rows of a version other than the preferred one of their (dataset, profile, plugin, parameters): the
    current version if present, else the newest; their ``code=`` tags; rows standing for stale settings."""
    outdated = pd.Series(False, index=df.index)
    tags = {kind: pd.Series("", index=df.index) for kind in KINDS}
    stale: set[tuple[str, int]] = set()
    for kind in KINDS:
        if f"{kind}_version" not in df.columns:
            continue
        version = _text(df, f"{kind}_version")
        for key, index in work.groupby(["dataset", "profile", kind, f"{kind}_params"], sort=False).groups.items():
            current = versions.get((kind, key[2]))
            newest_row = index[int(np.argmin(age[index]))]
            preferred = current if current in set(version[index]) else version[newest_row]
            if preferred != current and current is not None and preferred:
                stale.add((kind, int(newest_row)))
            other = version[index] != preferred
            outdated[index] = outdated[index] | other  # outdated in either plugin's code
            tags[kind][index[other.to_numpy()]] = [f"code={v[:8] or 'unknown'}" for v in version[index][other]]
    return outdated, tags, stale


def _labels(work: pd.DataFrame, kind: str) -> list[str]:
    """The label of each row of ``work``: its setting's (see :func:`setting_labels`)."""
    columns = ["dataset", "profile", kind, f"{kind}_params"]
    stored = work.groupby(columns, sort=False)[f"{kind}_stored"].unique()
    labels: dict[tuple[str, ...], str] = {}
    for key, group in stored.groupby(level=[0, 1, 2], sort=False):
        named = setting_labels(key[2], {k[3]: list(v) for k, v in group.items()})
        labels.update({(*key, params): label for params, label in named.items()})
    return [labels[k] for k in zip(*(work[c].tolist() for c in columns))]
