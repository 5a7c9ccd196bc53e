"""Paired significance tests shared by the report's tables (bold only where a difference is significant) and
by the statistics tables (:mod:`bench.stats`).

Example:
    >>> paired_p_value([1.0, 2.0], [1.0, 2.0])
    1.0
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def paired_p_value(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples; 1.0 if identical, NaN if n < 2.

    >>> round(paired_p_value(np.arange(20) + 1.0, np.arange(20.0)), 6) < 0.05
    True
    """
    from scipy.stats import wilcoxon

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan
    if np.all(d == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value is still the right one
        return float(wilcoxon(d).pvalue)
