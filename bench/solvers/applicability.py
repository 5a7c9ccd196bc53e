"""A method's declaration that it does not apply to a task: reported as "n/a", never as a failed cell.

A method raises :class:`NotApplicable` from ``restore`` when the observation's
task (``obs.task``) is outside what it restores by design (e.g. a denoiser on
inpainting). The harness records such a cell with the status ``n/a`` and the
reason, and tables show "n/a" where a failed cell shows "–".

Example:
    >>> err = NotApplicable("bm3d", "sr", "BM3D has no super-resolution scheme")
    >>> str(err), err.method, err.task
    ("bm3d does not apply to the task 'sr': BM3D has no super-resolution scheme", 'bm3d', 'sr')
    >>> require_task("bm3d", "noise", ("noise", "jpeg"))
    >>> require_task("bm3d", "inpaint", ("noise", "jpeg"))
    Traceback (most recent call last):
    ...
    bench.solvers.applicability.NotApplicable: bm3d does not apply to the task 'inpaint': it restores noise, jpeg only
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.errors import BenchError


class NotApplicable(BenchError):
    """``method`` does not restore ``task`` by design (not an error of the run): a cell shown as "n/a"."""

    exit_code = 1

    def __init__(self, method: str, task: str, reason: str):
        self.method, self.task, self.reason = method, task, reason
        super().__init__(f"{method} does not apply to the task '{task or 'unknown'}': {reason}")

    def __reduce__(self):  # picklable with its three fields (cells may run in worker processes)
        return type(self), (self.method, self.task, self.reason)


def require_task(method: str, task: str, supported: Iterable[str], reason: str | None = None) -> None:
    """Raise :class:`NotApplicable` unless ``task`` is one of ``supported``."""
    supported = tuple(supported)
    if task not in supported:
        raise NotApplicable(method, task, reason or f"it restores {', '.join(supported)} only")
