"""restoration-bench: benchmark image restoration priors on equal terms.

The pipeline is dataset -> degradation -> method -> metrics -> store -> report.
"""

import os

# Before torch is imported: OpenMP threads that busy-wait make small tensor operations 10-50×
# slower whenever another process shares the cores (measured: all four metrics on a 256² pair
# 2.4 s -> 80 ms on 2 loaded cores). A user's explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The Python API (bench/python_api.py), loaded on first use so that `import bench` stays cheap.
API = ("run", "restore", "Restoration")


def __getattr__(name: str) -> object:
    """``bench.run``, ``bench.restore`` and ``bench.Restoration`` (:mod:`bench.python_api`), and ``bench.report``:
    the module :mod:`bench.report`, which called is :func:`bench.python_api.report` (a function of that name would
    be replaced by the module as soon as anything imports it).

    >>> import bench
    >>> bench.run.__module__, callable(bench.report), bench.report.__name__
    ('bench.python_api', True, 'bench.report')
    """
    import importlib

    if name in API:
        return getattr(importlib.import_module("bench.python_api"), name)
    if name == "report":
        return importlib.import_module("bench.report")
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API, "report"])
