"""The one row filter of result tables (reports, statistics, baselines, figures, the CLI).

Every argument left as ``None`` (or empty) keeps all rows. Methods and
degradations match a row's label (``tv[weight=0.5]``) or, unless
``labels_only``, its plugin name (``tv``), so ``--methods tv`` selects every
``tv`` instance of a parameter grid.

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
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd


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
