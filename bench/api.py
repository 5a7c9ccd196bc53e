"""The interfaces plugins implement: forward operators, degradations and methods.

Physics (the forward operator ``A`` and its noise level) is kept apart from the
restoration methods, as in deepinv. A degradation draws its random parts (blur
kernel, inpainting mask) to build an :class:`Operator`, then simulates the
observation ``y = A(x) + noise``. A method receives only the :class:`Observation`
(``y``, ``A``, the noise level) and a :class:`RestoreContext`; never the clean
image.

Example:
    >>> import torch
    >>> op = Operator(lambda x: x, out_shape=(8, 8), in_shape=(8, 8), sigma=0.1)
    >>> obs = Observation(y=torch.zeros(1, 3, 8, 8), operator=op)
    >>> tuple(obs.operator.init(obs.y).shape)
    (1, 3, 8, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

Tensor = torch.Tensor


class Operator:
    """A differentiable forward operator ``A`` with the observation's noise level.

    Args:
        forward: maps a clean image batch ``(N, 3, H, W)`` in [0, 1] to the
            observation space; must be differentiable (autograd gives ``A^T``).
        in_shape: ``(H, W)`` of clean images.
        out_shape: ``(h, w)`` of observations.
        sigma: effective standard deviation of the observation noise on the
            [0, 1] scale (includes model error for approximate operators).
        mask: optional observation mask (1 = observed), same shape as ``y``.
        initializer: maps ``y`` to a first estimate in image space (defaults to
            ``y`` when shapes agree; super-resolution uses bicubic upsampling).

    Example:
        >>> import torch
        >>> op = Operator(lambda x: 2 * x, in_shape=(4, 4), out_shape=(4, 4), sigma=0.0)
        >>> float(op(torch.ones(1, 3, 4, 4)).mean())
        2.0
    """

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        sigma: float,
        mask: Tensor | None = None,
        initializer: Callable[[Tensor], Tensor] | None = None,
        name: str = "A",
    ):
        self._forward = forward
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.sigma = float(sigma)
        self.mask = mask
        self._initializer = initializer
        self.name = name

    def __call__(self, x: Tensor) -> Tensor:
        return self._forward(x)

    def init(self, y: Tensor) -> Tensor:
        """A first estimate of the clean image from ``y`` (no clean data used)."""
        if self._initializer is not None:
            return self._initializer(y)
        if tuple(y.shape[-2:]) != self.in_shape:
            raise ValueError(f"operator {self.name} needs an initializer for shape change")
        return y.clone()

    def data_residual(self, x: Tensor, y: Tensor) -> Tensor:
        """``A(x) - y``, masked where the operator has a mask."""
        residual = self(x) - y
        if self.mask is not None:
            residual = residual * self.mask
        return residual

    def to(self, device: torch.device | str) -> Operator:
        """Move the mask to ``device``; the forward closure moves its own tensors."""
        if self.mask is not None:
            self.mask = self.mask.to(device)
        return self


@dataclass
class Observation:
    """What a method is given: the degraded image and the physics that made it."""

    y: Tensor
    operator: Operator
    description: str = ""

    @property
    def sigma(self) -> float:
        """Effective noise standard deviation on the [0, 1] scale."""
        return self.operator.sigma


@dataclass
class RestoreContext:
    """Per-cell facilities a method may use: a seeded generator, budget, progress, trace.

    ``generator`` is the only source of randomness a method may use; it is seeded
    from the cell's seed so results reproduce. ``trace`` collects diagnostics
    (e.g. the data-term loss per iteration) stored with the result.
    """

    generator: torch.Generator
    seed: int = 0
    profile: str = "quick"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False
    trace: dict[str, list[float]] = field(default_factory=dict)

    def iterations(self, n: int, desc: str = "iter") -> Iterator[int]:
        """``range(n)`` with a nested progress bar when progress is enabled."""
        if not self.progress:
            return iter(range(n))
        from tqdm.auto import tqdm

        return iter(tqdm(range(n), desc=desc, leave=False, mininterval=0.5))

    def log(self, key: str, value: float) -> None:
        """Append ``value`` to the named trace (stored with the result)."""
        self.trace.setdefault(key, []).append(float(value))

    def randn(self, *shape: int, like: Tensor | None = None) -> Tensor:
        """Standard normal draw from the cell's generator (on CPU, then moved)."""
        out = torch.randn(*shape, generator=self.generator)
        return out.to(like.device if like is not None else self.device)


@dataclass
class _NoParams:
    pass


class Plugin:
    """Shared behaviour of methods and degradations: a name and parameters."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = _NoParams
    kind: ClassVar[str] = "plugin"

    def __init__(self, params: Any | None = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


class Degradation(Plugin):
    """Base class of degradations: build the operator, then simulate ``y``.

    Subclasses implement :meth:`make_operator` (drawing kernels or masks from the
    generator) and :meth:`simulate` (applying ``A`` and drawing noise). Both draws
    come from one generator in that order, so an observation is deterministic
    for a given (seed, image) and the operator can be rebuilt without
    re-simulating ``y`` when the observation is cached.
    """

    kind: ClassVar[str] = "degradation"

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        raise NotImplementedError

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        """Default: ``A(x)`` plus Gaussian noise of ``params.sigma`` (0-255 scale), clipped and quantised.

        The simulated noise may differ from ``operator.sigma``, which is the
        *effective* level a data term should assume (it includes model error).
        """
        y = operator(clean)
        sigma = float(getattr(self.params, "sigma", 0.0)) / 255.0
        if sigma > 0:
            noise = torch.randn(y.shape, generator=generator, dtype=y.dtype)
            y = y + sigma * noise
        return quantize(y)

    def degrade(self, clean: Tensor, generator: torch.Generator) -> Observation:
        """Observation of ``clean`` (``(1, 3, H, W)`` in [0, 1])."""
        self.check_shape(tuple(clean.shape[-2:]))
        operator = self.make_operator(tuple(clean.shape[-2:]), generator)
        with torch.no_grad():
            y = self.simulate(clean, operator, generator)
        return Observation(y=y, operator=operator, description=self.describe())

    def check_shape(self, shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` when an image of ``shape`` cannot be degraded."""

    def describe(self) -> str:
        """One line for table captions."""
        return self.summary()


class Method(Plugin):
    """Base class of restoration methods.

    ``profiles`` maps a profile name to parameter values (typically iteration
    budgets); the effective parameters are the dataclass defaults, updated by
    the profile, updated by the user's ``--set`` overrides.
    """

    kind: ClassVar[str] = "method"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        raise NotImplementedError


def quantize(x: Tensor) -> Tensor:
    """Clip to [0, 1] and round to 8-bit levels, like a stored image."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
