"""What the suite knows about each metric, in one record per metric (pure Python, no torch).

Reports, statistics, baselines, the store and figures all read labels, directions,
decimals and check tolerances from here; :mod:`bench.metrics` computes the values.

Example:
    >>> spec("lpips").label, spec("lpips").higher_is_better
    ('LPIPS ↓', False)
    >>> METRIC_NAMES
    ('psnr', 'ssim', 'ms_ssim', 'lpips')
    >>> spec_for_label("PSNR ↑").name
    'psnr'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its column name, display facts and regression-check tolerance.

    Example:
        >>> s = MetricSpec("psnr", "PSNR", True, decimals=2, check_decimals=3, figure_decimals=2,
        ...                tolerance=0.05, unit="dB")
        >>> s.label, s.axis_label, s.format(27.3141)
        ('PSNR ↑', 'PSNR (dB)', '27.31')
    """

    name: str  # column name in the store and key of MetricSuite's result
    title: str  # display name without direction, e.g. "MS-SSIM"
    higher_is_better: bool
    decimals: int  # report tables and confidence intervals
    check_decimals: int  # `bench check` delta table
    figure_decimals: int  # values printed on comparison-grid panels
    tolerance: float  # default allowed change in `bench check`
    unit: str = ""

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, else ``↓``."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def label(self) -> str:
        """Row label of report tables, e.g. ``"PSNR ↑"``."""
        return f"{self.title} {self.arrow}"

    @property
    def axis_label(self) -> str:
        """Axis label of figures, e.g. ``"PSNR (dB)"``."""
        return f"{self.title} ({self.unit})" if self.unit else self.title

    def format(self, value: float) -> str:
        """``value`` with the report's decimals."""
        return f"{value:.{self.decimals}f}"

    def gain(self, old: float, new: float) -> float:
        """How much better ``new`` is than ``old`` (negative: worse), direction-aware."""
        return (new - old) if self.higher_is_better else (old - new)


METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("psnr", "PSNR", True, decimals=2, check_decimals=3, figure_decimals=2, tolerance=0.05, unit="dB"),
    MetricSpec("ssim", "SSIM", True, decimals=4, check_decimals=4, figure_decimals=4, tolerance=0.002),
    MetricSpec("ms_ssim", "MS-SSIM", True, decimals=4, check_decimals=4, figure_decimals=4, tolerance=0.002),
    MetricSpec("lpips", "LPIPS", False, decimals=4, check_decimals=4, figure_decimals=3, tolerance=0.005),
)
METRIC_NAMES: tuple[str, ...] = tuple(s.name for s in METRIC_SPECS)
_BY_NAME = {s.name: s for s in METRIC_SPECS}
# Why a missing LPIPS is missing, recorded in a row's ``metric_impl`` (bench.metrics) and said by reports (bench.annotations)
LPIPS_NOT_COMPUTED, LPIPS_NO_WEIGHTS = "missing: not computed (--no-lpips)", "missing: AlexNet weights unavailable"
_BY_LABEL = {s.label: s for s in METRIC_SPECS}


def spec(name: str) -> MetricSpec:
    """The record of metric ``name`` (``KeyError`` for unknown names)."""
    return _BY_NAME[name]


def spec_for_label(label: str) -> MetricSpec:
    """The record whose report label is ``label`` (``KeyError`` for unknown labels)."""
    return _BY_LABEL[label]


def default_tolerances() -> dict[str, float]:
    """``{metric: tolerance}`` of `bench check`, in metric order.

    >>> default_tolerances()["ssim"]
    0.002
    """
    return {s.name: s.tolerance for s in METRIC_SPECS}
