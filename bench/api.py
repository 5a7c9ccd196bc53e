"""The interfaces plugins implement: degradations and methods (physics re-exported from :mod:`bench.physics`).

Physics (the forward operator ``A`` and its noise level, :mod:`bench.physics`) is
kept apart from the restoration methods, as in deepinv. A degradation draws its random parts (blur
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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

import torch

# Re-exported so plugins keep writing ``from bench.api import Operator, quantize``.
from bench import draws
from bench.physics.operator import TASKS, Observation, Operator, Tensor, apply_protocol, quantize
from bench.record import CAPTION_NOTES

__all__ = [
    "TASKS",
    "NumericalError",
    "Budget",
    "Degradation",
    "Method",
    "Observation",
    "Operator",
    "Plugin",
    "RestoreContext",
    "Tensor",
    "check_finite_step",
    "quantize",
]


@dataclass
class RestoreContext:
    """Per-cell facilities a method may use: a seeded generator, budget, progress, trace.

    ``generator`` is the only source of randomness a method may use; it is seeded
    from the cell's seed so results reproduce. ``trace`` collects diagnostics
    (e.g. the data-term loss per iteration) stored with the result.

    Example:
        >>> import torch
        >>> ctx = RestoreContext(generator=torch.Generator().manual_seed(0))
        >>> for _ in ctx.iterations(2):
        ...     ctx.log("loss", 0.5)
        >>> ctx.trace, tuple(ctx.randn(1, 3).shape)
        ({'loss': [0.5, 0.5]}, (1, 3))
    """

    generator: torch.Generator
    seed: int = 0
    profile: str = "quick"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False
    trace: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0  # iterations asked for through :meth:`iterations`: the budget a cell used (see :class:`Budget`)

    def iterations(self, n: int, desc: str = "iter") -> Iterator[int]:
        """``range(n)`` with a nested progress bar when progress is enabled. ``n`` counts as budget used (a
        method that stops early by its own criterion still had the budget ``n``)."""
        self.steps += n
        if not self.progress:
            return iter(range(n))
        from tqdm.auto import tqdm

        return iter(tqdm(range(n), desc=desc, leave=False, mininterval=0.5))

    def log(self, key: str, value: float) -> None:
        """Append ``value`` to the named trace (stored with the result)."""
        self.trace.setdefault(key, []).append(float(value))

    def note(self, text: str) -> None:
        """Say something about how this cell was computed that a reader of the table needs (one line, e.g. which data
        term it used). Stored in the trace (:data:`CAPTION_NOTES`); reports add one caption line per method and note,
        naming the degradations it applies to. A note said twice in one cell counts once.

        >>> ctx = RestoreContext(generator=torch.Generator())
        >>> ctx.note("used the JPEG file's quantisation cells"); ctx.note("used the JPEG file's quantisation cells")
        >>> ctx.trace
        {'caption_notes': ["used the JPEG file's quantisation cells"]}
        """
        notes, line = self.trace.setdefault(CAPTION_NOTES, []), " ".join(str(text).split())
        if line not in notes:
            notes.append(line)

    def randn(self, *shape: int, like: Tensor | None = None) -> Tensor:
        """Standard normal draw from the cell's generator (on CPU, the same on every CPU kernel path, then moved)."""
        out = draws.randn(shape, generator=self.generator)
        return out.to(like.device if like is not None else self.device)


class NumericalError(FloatingPointError):
    """An optimisation left the finite numbers: the cell fails with this reason instead of storing a result."""


def check_finite_step(method: str, iteration: int, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`NumericalError` when ``loss`` or any state of ``optimizer`` (Adam's moments, the
    iterate) is NaN or infinite after a step: an overflowed Adam moment freezes the iterate silently, so
    a method would otherwise return its starting point as its result.

    >>> x = torch.zeros(3, requires_grad=True)
    >>> opt = torch.optim.Adam([x], lr=0.1)
    >>> (x.sum() * 1e30).backward(); opt.step()
    >>> check_finite_step("tv", 0, torch.tensor(1.0), opt)
    Traceback (most recent call last):
    ...
    bench.api.NumericalError: tv: the optimisation overflowed at iteration 0 (exp_avg_sq is not finite: float32 overflow); use smaller parameters (e.g. a smaller weight) or report the case
    """
    if not torch.isfinite(loss).all():
        raise NumericalError(f"{method}: the objective is not finite at iteration {iteration} ({float(loss):g}); "
                             "use smaller parameters (e.g. a smaller weight) or report the case")
    for group in optimizer.param_groups:
        for param in group["params"]:
            tensors = {"the iterate": param.detach(), **optimizer.state.get(param, {})}
            for name, value in tensors.items():
                if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                    raise NumericalError(f"{method}: the optimisation overflowed at iteration {iteration} ({name} is "
                                         "not finite: float32 overflow); use smaller parameters (e.g. a smaller "
                                         "weight) or report the case")


@dataclass(frozen=True)
class Budget:
    """A method's reference compute budget (the published one): the parameter that holds it and its value.

    ``value`` is a count, or ``{task: count}`` where it depends on the task (keys: tasks of
    :data:`TASKS`; ``sr8`` etc. for one super-resolution factor, looked up before ``sr``).
    ``scale`` names the parameter that scales the reference when ``param`` is 0 ("auto"), as
    DIP's ``iteration_scale``. The harness records the fraction of the reference a cell used
    (the iterations asked for through :meth:`RestoreContext.iterations`) and reports mark cells below it.

    Example:
        >>> b = Budget("iterations", {"noise": 3000, "sr": 2000, "sr8": 4000}, scale="iteration_scale")
        >>> b.reference("sr", 8), b.reference("sr", 4), b.reference("blur")
        (4000, 2000, None)
        >>> b.planned({"iterations": 0, "iteration_scale": 0.1}, 3000), b.planned({"iterations": 5}, 3000)
        (300, 5)
    """

    param: str
    value: int | Mapping[str, int]
    unit: str = "iterations"
    source: str = ""
    scale: str = ""

    def reference(self, task: str, factor: Any = None) -> int | None:
        """The reference count for ``task`` (and sr ``factor``); None where none is declared."""
        if not isinstance(self.value, Mapping):
            return int(self.value)
        found = self.value.get(f"{task}{factor}") if factor is not None else None
        return found if found is not None else self.value.get(task)

    def planned(self, params: Mapping[str, Any], reference: int) -> int | None:
        """The count ``params`` ask for: the parameter's value, or (0 = auto) ``reference`` × ``scale``."""
        value = params.get(self.param)
        if self.scale and not value and params.get(self.scale) is not None:
            return max(1, round(reference * float(params[self.scale])))
        return None if value is None else int(value)


@dataclass
class _NoParams:
    pass


class Plugin:
    """Shared behaviour of methods and degradations: a name, parameters and a code version.

    Every attribute the harness reads from a plugin class is declared here or on :class:`Degradation` /
    :class:`Method`, with its default; a plugin overrides only what differs.

    Hooks: ``resolve_params`` (machine-dependent choices), ``summary`` (the docstring's first line).

    Example:
        >>> class Demo(Plugin):
        ...     'A demo plugin.'
        >>> Demo.summary(), repr(Demo())
        ('A demo plugin.', 'Demo(_NoParams())')
    """

    name: ClassVar[str] = ""  # the registered name (set by ``@register_method`` / ``@register_degradation``)
    Params: ClassVar[type] = _NoParams  # a dataclass with a default for every field: the plugin's parameters
    kind: ClassVar[str] = "plugin"  # "method" or "degradation"
    version: ClassVar[str] = ""  # extra text hashed into the code version, e.g. packaged weights' sha256

    def __init__(self, params: Any | None = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def resolve_params(cls, params: Any, device: str) -> Any:
        """Resolve machine-dependent choices (e.g. ``precision="auto"``) into what will run on ``device``.

        Called once per grid point before the cache key is made, so the key records the numeric path
        actually taken. The default changes nothing.
        """
        return params

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
    re-simulating ``y`` when the observation is cached. ``task`` (a short
    identifier; :data:`TASKS` lists those with built-in recipes) tells methods what
    kind of restoration this is; it travels on the :class:`Observation`.

    Gaussian noise is simulated only where asked for: ``noise_param`` names the
    ``Params`` field holding its σ, or an overridden :meth:`simulate` calls
    :meth:`add_noise`; a field called ``sigma`` alone adds nothing.

    Hooks: ``make_operator`` (required), ``simulate``, ``check_shape``, ``describe``, ``protocol``.

    Example:
        >>> import torch
        >>> class Halve(Degradation):
        ...     'Halves the image.'
        ...     task = "blur"
        ...     def make_operator(self, shape, generator):
        ...         return Operator(lambda x: x / 2, shape, shape, sigma=1 / 255)
        >>> obs = Halve().degrade(torch.ones(1, 3, 4, 4), torch.Generator())
        >>> round(float(obs.y.max()) * 255), obs.task, obs.description
        (128, 'blur', 'Halves the image.')
    """

    kind: ClassVar[str] = "degradation"
    task: ClassVar[str] = ""  # what a method may know about the degradation: a task name (built-in: ``TASKS``)
    noise_param: ClassVar[str | None] = None  # the Params field with the σ (0-255) of the noise simulate adds
    simulate_when_cached: ClassVar[bool] = False  # True: y is not all of the observation (JPEG's coefficients)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = {f.name for f in fields(cls.Params)} if is_dataclass(cls.Params) else set()
        if cls.noise_param is not None and cls.noise_param not in names:
            raise TypeError(
                f"{cls.__name__}.noise_param = {cls.noise_param!r} is not a field of its Params "
                f"({', '.join(sorted(names)) or 'none'})"
            )

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        """The forward operator for an image of ``shape``; draw kernels and masks from ``generator`` here."""
        raise NotImplementedError

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        """Default: ``A(x)``, plus Gaussian noise of the ``Params`` field :attr:`noise_param` names (0-255 scale;
        none where it names none), then the observation protocol (:meth:`protocol`: unclipped float, clipped,
        or clipped and rounded to 8 bits).

        The simulated noise may differ from ``operator.sigma``, which is the
        *effective* level a data term should assume (it includes model error).
        """
        y = operator(clean)
        if self.noise_param is not None:
            y = self.add_noise(y, getattr(self.params, self.noise_param), generator)
        return apply_protocol(y, *self.protocol())

    @staticmethod
    def add_noise(y: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
        """``y`` plus white Gaussian noise of ``sigma`` on the 0-255 scale, drawn from ``generator`` through
        :func:`bench.draws.randn` (one draw of ``y``'s shape); ``sigma <= 0`` returns ``y`` and draws nothing.

        >>> g = torch.Generator().manual_seed(0)
        >>> y = Degradation.add_noise(torch.zeros(1, 3, 4, 4), 25.5, g)
        >>> round(float(y.std()), 1), Degradation.add_noise(y, 0, g) is y
        (0.1, True)
        """
        scale = float(sigma) / 255.0
        if scale > 0:
            noise = draws.randn(y.shape, generator=generator, dtype=y.dtype)
            y = y + scale * noise
        return y

    def protocol(self) -> tuple[bool, bool]:
        """``(clip, quantize)`` of the observation: the ``clip`` and ``quantize`` parameters where the degradation
        has them (docs/protocol.md), else ``(True, True)``: an 8-bit image, as before they existed."""
        clip = bool(getattr(self.params, "clip", True))
        return clip, bool(getattr(self.params, "quantize", not hasattr(self.params, "clip")))

    def eight_bit(self) -> bool:
        """Whether observations are 8-bit images in [0, 1], which a stored PNG holds exactly (a float observation
        is simulated again from its seed instead of read back from its PNG, :func:`bench.compute.make_observation`)."""
        return self.protocol() == (True, True)

    def degrade(self, clean: Tensor, generator: torch.Generator) -> Observation:
        """Observation of ``clean`` (``(1, 3, H, W)`` in [0, 1])."""
        self.check_shape(tuple(clean.shape[-2:]))
        operator = self.make_operator(tuple(clean.shape[-2:]), generator)
        with torch.no_grad():
            y = self.simulate(clean, operator, generator)
        return self.observation(y, operator)

    def observation(self, y: Tensor, operator: Operator) -> Observation:
        """The observation of ``y`` made through ``operator``, with this degradation's caption and task."""
        return Observation(y=y, operator=operator, description=self.describe(), task=self.task)

    def check_shape(self, shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` when an image of ``shape`` cannot be degraded."""

    def describe(self) -> str:
        """One line for table captions."""
        return self.summary()


class Method(Plugin):
    """Base class of restoration methods.

    ``profiles`` maps a profile name to parameter values (typically iteration
    budgets); the effective parameters are the dataclass defaults, updated by
    the profile, updated by the user's ``--set`` overrides. An iterative method
    declares its published budget as ``reference_budget`` (a :class:`Budget`).

    Hooks: ``restore`` (required), ``weights_note``, ``resolve_params``.

    Example:
        >>> import torch
        >>> class Keep(Method):
        ...     'Returns the first estimate.'
        ...     def restore(self, obs, ctx):
        ...         return obs.operator.init(obs.y)
        >>> obs = Observation(torch.zeros(1, 3, 4, 4), Operator(lambda x: x, (4, 4), (4, 4), 0.1))
        >>> tuple(Keep().restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 4, 4)
    """

    kind: ClassVar[str] = "method"
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}  # profile name -> parameter values (e.g. iterations)
    reference_budget: ClassVar[Budget | None] = None  # the published budget, where the method has one
    memory_bytes_per_pixel: ClassVar[float | None] = None  # peak bytes per pixel on CPU; None: bench.memory's table

    @staticmethod
    def weights_note(params: Mapping[str, Any]) -> str:
        """What the trained weights a cell with ``params`` runs with are, for captions (e.g. that the packaged prior
        is far smaller than the published one; :func:`bench.checkpoints.packaged_weights_note`); "" says nothing."""
        return ""

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        """The estimate of the clean image (``(1, 3, H, W)`` in [0, 1]) from ``obs`` alone."""
        raise NotImplementedError
