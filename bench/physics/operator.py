"""The forward operator ``A``, the observation a method receives, and the observation protocol (clipping, 8 bits).

Physics (the forward operator and its noise level) is kept apart from the
restoration methods, as in deepinv. A degradation draws its random parts (blur
kernel, inpainting mask) to build an :class:`Operator`, then simulates the
observation ``y = A(x) + noise``. A method receives only the :class:`Observation`
(``y``, ``A``, the noise level, the declared task); never the clean image.

Example:
    >>> import torch
    >>> op = Operator(lambda x: x, out_shape=(8, 8), in_shape=(8, 8), sigma=0.1)
    >>> obs = Observation(y=torch.zeros(1, 3, 8, 8), operator=op, task="noise")
    >>> tuple(obs.operator.init(obs.y).shape), obs.task
    ((1, 3, 8, 8), 'noise')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

# Tasks with built-in recipes: the tasks the built-in degradations declare, for which the built-in methods
# ship task-specific recipes. Not a closed vocabulary: a degradation may declare any task of the form
# :func:`check_task` accepts; a method without a recipe for it raises
# :class:`bench.solvers.applicability.NotApplicable` (shown as n/a) or restores it from the operator and σ.
TASKS = ("noise", "jpeg", "blur", "sr", "inpaint", "multi")
TASK_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # a short identifier: "impulse", "salt_pepper", "learned"


def check_task(task: object) -> str:
    """``task`` when it has the form of a task name (any name, not only :data:`TASKS`), else a one-line error.

    A task is a short identifier: a lower-case letter, then up to 31 lower-case letters, digits, ``_`` or ``-``.

    >>> check_task("impulse"), check_task("noise")
    ('impulse', 'noise')
    >>> check_task("Salt & pepper")
    Traceback (most recent call last):
    ...
    ValueError: task='Salt & pepper' is not a task name: use a short identifier (a lower-case letter, then up to 31 lower-case letters, digits, '_' or '-'), e.g. task = "impulse"
    """
    if not isinstance(task, str) or not TASK_PATTERN.fullmatch(task):
        raise ValueError(
            f"task={task!r} is not a task name: use a short identifier (a lower-case letter, then up "
            "to 31 lower-case letters, digits, '_' or '-'), e.g. task = \"impulse\""
        )
    return task


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
        linear: ``forward`` is linear, ``A(a·x + b·v) = a·A(x) + b·A(v)``: solvers may then
            apply the Jacobian as ``A`` itself instead of differentiating twice.
        noise_level: standard deviation of the noise actually added to ``A(x)`` ([0, 1] scale), without the
            floor a degradation may keep in ``sigma`` for MAP data terms (``sr``: 1/255); None: ``sigma``.
            DPIR's trade-off ρ is set from it (``pnp``).

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
        linear: bool = False,
        noise_level: float | None = None,
    ):
        self._forward = forward
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.sigma = float(sigma)
        self.mask = mask
        self._initializer = initializer
        self.name = name
        self.linear = bool(linear)
        self.noise_level = self.sigma if noise_level is None else float(noise_level)

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
    """What a method is given: the degraded image and the physics that made it.

    ``task`` is the restoration task the degradation declares: any short identifier (:func:`check_task`;
    :data:`TASKS` are those with built-in recipes), or ``""`` when undeclared. Methods choose recipes from it
    and from the operator's properties, never from ``description``, which is only a caption; a method with no
    recipe for a declared task raises :class:`bench.solvers.applicability.NotApplicable`.

    Example:
        >>> import torch
        >>> op = Operator(lambda x: x, in_shape=(4, 4), out_shape=(4, 4), sigma=25 / 255)
        >>> obs = Observation(torch.zeros(1, 3, 4, 4), op, description="noise σ=25", task="noise")
        >>> round(obs.sigma * 255), obs.task
        (25, 'noise')
    """

    y: Tensor
    operator: Operator
    description: str = ""
    task: str = ""  # the restoration task the degradation declares (any identifier, see ``check_task``); "" undeclared

    def __post_init__(self) -> None:
        if self.task:
            check_task(self.task)

    @property
    def sigma(self) -> float:
        """Effective noise standard deviation on the [0, 1] scale."""
        return self.operator.sigma


def is_identity(operator: Operator, shape: tuple[int, int]) -> bool:
    """Whether ``operator`` maps a random image of ``shape`` to itself (no mask, same shape).

    >>> is_identity(Operator(lambda x: x, (8, 8), (8, 8), 0.1), (8, 8))
    True
    """
    if operator.mask is not None or tuple(operator.out_shape) != tuple(shape):
        return False
    probe = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool(torch.allclose(operator(probe).cpu(), probe, atol=1e-6))


MAX_SIGMA = 255.0  # a noise standard deviation as large as the whole 0-255 range; published tables stop at 100


def check_sigma(sigma: float, name: str = "sigma") -> None:
    """Refuse a noise level (0-255 scale) that is negative, not finite, or beyond the image range.

    >>> check_sigma(25.0)
    >>> check_sigma(1e9)
    Traceback (most recent call last):
    ...
    ValueError: sigma=1e+09 is beyond the image range: a noise level must be in 0..255 (0-255 scale), e.g. sigma=25
    """
    if not sigma >= 0:
        raise ValueError(f"{name}={sigma} must be >= 0 (0-255 scale), e.g. {name}=25")
    if not sigma <= MAX_SIGMA:
        raise ValueError(f"{name}={sigma:g} is beyond the image range: a noise level must be in 0..{MAX_SIGMA:g} "
                         f"(0-255 scale), e.g. {name}=25")


def quantize(x: Tensor) -> Tensor:
    """Clip to [0, 1] and round to 8-bit levels, like a stored image.

    Example:
        >>> import torch
        >>> float(quantize(torch.tensor([1.5, 0.5001])).mul(255)[1])
        128.0
    """
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def check_protocol(clip: bool, quantize: bool) -> None:
    """Refuse ``quantize`` without ``clip``: rounding to 8-bit levels needs the [0, 1] range of a stored image.

    >>> check_protocol(False, True)
    Traceback (most recent call last):
    ...
    ValueError: quantize=true needs clip=true: 8-bit levels exist only in [0, 1] (set clip=true too, or quantize=false)
    """
    if quantize and not clip:
        raise ValueError("quantize=true needs clip=true: 8-bit levels exist only in [0, 1] "
                         "(set clip=true too, or quantize=false)")


def apply_protocol(y: Tensor, clip: bool, quantize: bool) -> Tensor:
    """The observation protocol: ``y`` as it is (unclipped float, the literature's synthetic protocol), clipped to
    [0, 1] (``clip``, as the DIP notebooks), or clipped and rounded to 8-bit levels (``quantize``, a stored image).

    >>> import torch
    >>> y = torch.tensor([-0.1, 0.5001, 1.2])
    >>> apply_protocol(y, False, False).tolist() == y.tolist(), apply_protocol(y, True, False).tolist()
    (True, [0.0, 0.5001000165939331, 1.0])
    >>> [round(v * 255, 3) for v in apply_protocol(y, True, True).tolist()]
    [0.0, 128.0, 255.0]
    """
    check_protocol(clip, quantize)
    if quantize:
        return torch.round(y.clamp(0.0, 1.0) * 255.0) / 255.0  # :func:`quantize` (the argument hides its name)
    return y.clamp(0.0, 1.0) if clip else y


def protocol_text(clip: bool, quantize: bool) -> str:
    """How a caption states the observation protocol.

    >>> protocol_text(False, False), protocol_text(True, False), protocol_text(True, True)
    ('unclipped float', 'clipped to [0, 1], float', 'clipped to [0, 1] and rounded to 8 bits')
    """
    if quantize:
        return "clipped to [0, 1] and rounded to 8 bits"
    return "clipped to [0, 1], float" if clip else "unclipped float"
