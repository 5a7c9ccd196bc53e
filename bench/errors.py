"""User-facing errors: each names the problem and how to fix it.

The CLI turns :class:`BenchError` into a one-line message and its ``exit_code``
(2 for usage problems, as click does) instead of a traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by the user's input, reported without a traceback.

    >>> BenchError("no results").exit_code
    1
    """

    exit_code = 1


class UsageError(BenchError):
    """Bad command-line input: unknown names, malformed overrides.

    >>> UsageError("bad option").exit_code
    2
    """

    exit_code = 2


class UnknownNameError(UsageError):
    """A method, degradation, dataset or profile name that is not registered.

    >>> isinstance(UnknownNameError("dip2"), UsageError)
    True
    """


class ParameterError(UsageError):
    """A parameter that does not exist or has an invalid value.

    >>> ParameterError("tv.wieght").exit_code
    2
    """


class ImageError(BenchError):
    """An image file that cannot be used (corrupt, empty, too small).

    >>> isinstance(ImageError("empty.png"), BenchError)
    True
    """


class CheckpointError(BenchError):
    """A checkpoint that is missing, truncated or unsafe to load.

    >>> CheckpointError("x.pt").exit_code
    1
    """
