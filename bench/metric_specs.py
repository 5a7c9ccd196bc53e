"""What the suite knows about each metric, in one record per metric (pure Python, no torch).

Reports, statistics, baselines, the store and figures all read labels, directions,
decimals and check tolerances from here; :mod:`bench.metrics` computes the values.

Example:
    >>> spec("lpips").label, spec("lpips").higher_is_better
    ('LPIPS ↓', False)
    >>> METRIC_NAMES
    ('psnr', 'ssim', 'ms_ssim', 'lpips', 'psnr_y')
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
    tasks: tuple[str, ...] = ()  # the only tasks whose cells have this metric (bench.physics.TASKS); () = every cell

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, else ``↓``."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def label(self) -> str:
        """Row label of report tables, e.g. ``"PSNR ↑"``."""
        return f"{self.title} {self.arrow}"

    def row_label(self, detail: str = "") -> str:
        """A table row's label, with the detail of a definition that depends on the cells (PSNR-Y's crop), e.g.
        ``"PSNR-Y (crop 4) ↑"``; :func:`spec_for_label` reads it back."""
        return f"{self.title} ({detail}) {self.arrow}" if detail else self.label

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
    # the SR literature's PSNR: BT.601 luma, a border of the scale factor cropped (bench.metrics.psnr_y); sr cells only
    MetricSpec("psnr_y", "PSNR-Y", True, decimals=2, check_decimals=3, figure_decimals=2, tolerance=0.05, unit="dB",
               tasks=("sr",)),
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
    """The record whose report label is ``label``, also with a detail (:meth:`MetricSpec.row_label`; ``KeyError``
    for unknown labels).

    >>> spec_for_label("PSNR-Y (crop 4) ↑").name
    'psnr_y'
    """
    if label not in _BY_LABEL and label.endswith(")" + label[-2:]) and " (" in label:  # "TITLE (detail) ARROW"
        return _BY_LABEL[label[: label.rindex(" (")] + label[-2:]]
    return _BY_LABEL[label]


# The conventions every report states in one caption line (bench.annotations.conventions_line); bench.metrics holds
# the code, README "Metrics and their conventions" the details and the calibration.
CONVENTIONS = ("Metrics: PSNR on RGB (data range 255); SSIM and MS-SSIM on the luma Y = 0.299 R + 0.587 G + 0.114 B "
               "(Gaussian window 11, σ = 1.5); LPIPS AlexNet v0.1 (inputs in [-1, 1]); each of the restored image "
               "clipped to [0, 1] and rounded to 8 bits against the clean image, no border cropped.")
PSNR_Y_CONVENTION = ("PSNR-Y (crop s), on sr cells only: the super-resolution literature's PSNR (EDSR, BasicSR "
                     "evaluation code) on the BT.601 luma of MATLAB's rgb2ycbcr (Y = 16 + 65.481 R + 128.553 G + "
                     "24.966 B, not rounded), s px (the scale factor) cropped at every border; other degradations "
                     "have no scale factor, so no PSNR-Y.")


def default_tolerances() -> dict[str, float]:
    """``{metric: tolerance}`` of `bench check`, in metric order.

    >>> default_tolerances()["ssim"]
    0.002
    """
    return {s.name: s.tolerance for s in METRIC_SPECS}
