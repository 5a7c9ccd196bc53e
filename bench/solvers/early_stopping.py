"""No-reference early stopping for DIP-type fits: the windowed moving variance rule (ES-WMV).

Wang, Li, Zhuang, Chen, Liang & Sun, "Early Stopping for Deep Image Prior" (TMLR 2023): the
reconstruction quality of DIP rises, peaks and falls as the net starts to fit the noise, and the
variance of the recent reconstructions is lowest near the peak. After every iteration the newest
output joins a window of the last ``window`` outputs; its variance is the mean squared distance of the
window's outputs to their mean. The iteration with the smallest variance so far is the detected
point; the fit stops once the variance has not improved for ``patience`` iterations. The defaults
(window 100, patience 1000) are the paper's and its public notebook's. Only the outputs are used:
never the clean image.

Example (outputs that settle, then drift away: the detected point is where they were stillest):
    >>> import torch
    >>> rule = WindowedVariance(window=3, patience=2)
    >>> path = [0.0, 1.0, 1.5, 1.6, 1.6, 1.6, 3.0, 5.0, 8.0]
    >>> stops = [rule.update(torch.tensor([v]), i) for i, v in enumerate(path)]
    >>> rule.best_iteration, stops.index(True)
    (5, 7)
"""

from __future__ import annotations

from collections import deque

import torch

from bench.physics.operator import Tensor

DEFAULT_WINDOW = 100
DEFAULT_PATIENCE = 1000


MODES = ("off", "wmv")


def check_options(mode: str, window: int, patience: int) -> None:
    """Raise ``ValueError`` for an unknown mode or a window/patience the rule cannot use.

    >>> check_options("wmv", 100, 1000)
    >>> check_options("val", 100, 1000)
    Traceback (most recent call last):
    ...
    ValueError: early_stop='val' must be one of off, wmv
    """
    if mode not in MODES:
        raise ValueError(f"early_stop='{mode}' must be one of {', '.join(MODES)}")
    if window < 2:
        raise ValueError(f"es_window={window} must be >= 2")
    if patience < 1:
        raise ValueError(f"es_patience={patience} must be >= 1")


class WindowedVariance:
    """The ES-WMV rule: :meth:`update` with each new output; ``best_iteration`` is the detected point.

    Args:
        window: number of recent outputs whose variance is tracked (paper: 100).
        patience: iterations without a new variance minimum before stopping (paper: 1000).
    """

    def __init__(self, window: int = DEFAULT_WINDOW, patience: int = DEFAULT_PATIENCE):
        check_options("wmv", window, patience)
        self.window, self.patience = int(window), int(patience)
        # running sums over the window (float64 against cancellation): Σ outputs and Σ mean(output²)
        self.outputs: deque[tuple[Tensor, float]] = deque()
        self.total: Tensor | None = None
        self.square_mean = 0.0
        self.best_variance = float("inf")
        self.best_iteration = -1
        self.wait = 0
        self.improved = False

    def variance(self) -> float:
        """Mean squared distance of the window's outputs to their mean (per pixel), from the running sums:
        ``mean_i mean(x_i²) − mean(x̄²)``, O(pixels) per iteration whatever the window."""
        n = len(self.outputs)
        assert self.total is not None and n
        return max(self.square_mean / n - float((self.total / n).pow(2).mean()), 0.0)

    def update(self, output: Tensor, iteration: int) -> bool:
        """Add ``output`` (of ``iteration``); True when the fit should stop. ``improved`` says whether it is the new best."""
        x = output.detach().to(torch.float64)
        square = float(x.pow(2).mean())
        self.total = x.clone() if self.total is None else self.total.add_(x)
        self.square_mean += square
        self.outputs.append((x, square))
        if len(self.outputs) > self.window:
            old, old_square = self.outputs.popleft()
            self.total.sub_(old)
            self.square_mean -= old_square
        self.improved = False
        if len(self.outputs) < self.window:
            return False
        value = self.variance()
        if value < self.best_variance:
            self.best_variance, self.best_iteration, self.wait, self.improved = value, iteration, 0, True
            return False
        self.wait += 1
        return self.wait >= self.patience
