"""The step loop every trainer shares: time budget, resume, periodic atomic saves, progress bar, JSON-lines log.

A trainer declares its model, loss and configuration and hands the loop four
callbacks; the loop owns the step count, the time budget (``--max-minutes``),
the progress bar, the record written every ``save_every`` steps (and at the
last step) and the log file ``OUT.log.jsonl`` next to the checkpoint ``OUT``:

- ``step_fn(state)``: one optimiser step; returns the progress-bar postfix (or None);
- ``validate_fn(state)``: the record's fields at a save point (running training
  statistics, validation metrics), after ``{"step", "seconds"}``;
- ``save_fn(record)``: write the checkpoint (atomically: :func:`bench.checkpoints.save_checkpoint`);
- ``schedule_fn(state)``: called before every step, e.g. to set the learning rate
  from :meth:`LoopState.fraction` with :func:`cosine_decay`.

Resuming (``--resume``): :meth:`TrainingLoop.checkpoint_to_resume` says whether
``OUT`` exists; the trainer loads its model from it and calls
:meth:`TrainingLoop.resume_from`, which restores the step count, the training
time, the optimiser and the random generator. :meth:`TrainingLoop.checkpoint_fields`
gives those back for the next save. Random draws stay where the trainer makes
them (in ``step_fn``), so a run is reproducible from its seed.

Example (a one-parameter model fitted to 3, saved every 2 steps, then resumed):
    >>> import os, tempfile, torch
    >>> from bench.checkpoints import load_checkpoint, save_checkpoint
    >>> out = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> def train(steps, resume=False):
    ...     w = torch.zeros(1, requires_grad=True)
    ...     optimizer = torch.optim.SGD([w], lr=0.1)
    ...     loop = TrainingLoop(LoopOptions(steps=steps, out=out, save_every=2, resume=resume, progress=False))
    ...     if loop.checkpoint_to_resume():
    ...         payload = load_checkpoint(out)
    ...         w.data.copy_(payload["w"])
    ...         loop.resume_from(payload, optimizer=optimizer)
    ...     def step(state):
    ...         loss = (w - 3).pow(2).sum()
    ...         optimizer.zero_grad()
    ...         loss.backward()
    ...         optimizer.step()
    ...     def save(record):
    ...         save_checkpoint({"w": w.detach().clone(), **loop.checkpoint_fields(optimizer=optimizer)}, out)
    ...     return loop.run(step, lambda state: {"w": round(float(w.detach()), 3)}, save)
    >>> record = train(3)  # doctest: +ELLIPSIS
    {"step": 2, "seconds": ..., "w": 1.08}
    {"step": 3, "seconds": ..., "w": 1.464}
    >>> record = train(4, resume=True)  # doctest: +ELLIPSIS
    resumed ... at step 3
    {"step": 4, "seconds": ..., "w": 1.771}
    >>> load_checkpoint(out)["step"], open(out + ".log.jsonl").read().count("\\n")
    (4, 3)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from bench.checkpoints import load_checkpoint
from bench.errors import BenchError

StepFn = Callable[["LoopState"], "Mapping[str, Any] | None"]
RecordFn = Callable[["LoopState"], "Mapping[str, Any]"]
SaveFn = Callable[[dict[str, Any]], None]
ScheduleFn = Callable[["LoopState"], None]


# run options of a trainer's configuration, not properties of the trained network: kept out of its metadata
RUN_ONLY = ("extra", "progress", "out", "resume")


def run_click_options(release: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``bench train`` options of :class:`RunOptions` that every patch trainer shares: ``--threads``,
    ``--max-minutes``, ``--progress``, ``--resume`` and (``release``) ``--release``.

    Example:
        >>> @click.command()
        ... @run_click_options()
        ... def train(**options): print(sorted(options))
        >>> train([], standalone_mode=False)
        ['max_minutes', 'progress', 'release', 'resume', 'threads']
    """
    options = [
        click.option(
            "--threads",
            type=int,
            default=RunOptions.threads,
            show_default=True,
            help="CPU threads (0 = torch default).",
        ),
        click.option(
            "--max-minutes",
            type=float,
            default=RunOptions.max_minutes,
            show_default=True,
            help="Stop after this much training time in total (resumes included), annealing to it (0 = no limit).",
        ),
        click.option("--progress/--no-progress", default=RunOptions.progress, show_default=True),
        click.option(
            "--resume", is_flag=True, help="Continue from --out (weights, optimiser, step, random generators)."
        ),
    ]
    if release:
        options.append(
            click.option(
                "--release",
                type=click.Path(dir_okay=False),
                default=None,
                help="Also write the weights alone (no optimiser or resume state) to this file, with its model "
                "card: the file to ship. --out stays resumable.",
            )
        )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@dataclass(kw_only=True)
class RunOptions:
    """What every patch trainer's configuration shares besides its hyper-parameters (keyword-only fields).

    ``out`` (checkpoint written at every save and at the end; empty: none) and ``resume`` (continue
    from ``out``) are run options (:data:`RUN_ONLY`), kept out of the checkpoint's metadata.

    Example:
        >>> RunOptions(resume=True).check()
        Traceback (most recent call last):
        ...
        ValueError: resume needs out: the checkpoint to continue from
    """

    seed: int = 0
    val_images: int = 8
    val_crop: int = 128
    threads: int = 1
    max_minutes: float = 0.0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    out: str = ""
    resume: bool = False

    def make_loop(self, steps: int, save_every: int, desc: str) -> TrainingLoop:
        """The :class:`TrainingLoop` of these options (saves to ``out`` every ``save_every`` steps)."""
        return TrainingLoop(
            LoopOptions(
                steps=steps,
                out=self.out or None,
                save_every=save_every,
                max_minutes=self.max_minutes or None,
                resume=self.resume,
                progress=self.progress,
                desc=desc,
                echo=self.progress,
                mininterval=1.0,
            )
        )

    def run_metadata(self, loop: TrainingLoop, train_images: int, val_image_ids: list[str]) -> dict[str, Any]:
        """What every trainer's checkpoint records: its configuration (run options left out), ``extra``, the
        steps done and requested, the data, the image counts and the training time."""
        fields = {k: v for k, v in asdict(self).items() if k not in RUN_ONLY}
        return {
            **fields,
            **self.extra,
            "steps": loop.state.step,
            "steps_requested": fields.get("steps"),
            "data": [str(d) for d in fields.get("data", [])],
            "train_images": train_images,
            "val_image_ids": val_image_ids,
            "seconds": round(loop.state.elapsed, 1),
        }

    def check(self) -> None:
        """Raise ``ValueError`` for options no run can use."""
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes={self.max_minutes} must be >= 0 (0 = no time limit)")
        if self.resume and not self.out:
            raise ValueError("resume needs out: the checkpoint to continue from")


@dataclass
class LoopOptions:
    """How a run proceeds: the flags every trainer shares.

    ``steps``: total optimiser steps (a resumed run continues to this total);
    ``out``: the checkpoint path (the log is ``OUT.log.jsonl``; None: no log);
    ``save_every``: record (validate, save, log) every N steps, and always at
    the last step (None: only at the last); ``max_minutes``: stop after the
    step that exceeds this much training time (resumed time included);
    ``resume``: continue from ``out`` when it exists; ``log``/``echo``: append
    each record to the log file / print it as JSON; ``desc``, ``mininterval``:
    the progress bar's label and refresh interval.

    >>> LoopOptions(steps=10, out="m.pt").log_path.name
    'm.pt.log.jsonl'
    """

    steps: int
    out: str | Path | None = None
    save_every: int | None = None
    max_minutes: float | None = None
    resume: bool = False
    progress: bool = True
    desc: str = "train"
    log: bool = True
    echo: bool = True
    mininterval: float = 2.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"save_every={self.save_every} must be >= 1")

    @property
    def log_path(self) -> Path | None:
        if self.out is None or not self.log:
            return None
        out = Path(self.out)
        return out.with_name(out.name + ".log.jsonl")


@dataclass
class LoopState:
    """Where a run is: ``step`` optimiser steps done, ``elapsed`` training seconds, ``last`` on the final step.

    >>> LoopState(step=5, elapsed=30.0).fraction(steps=10, max_minutes=0.75)
    0.6666666666666666
    """

    step: int = 0
    elapsed: float = 0.0
    last: bool = False

    def fraction(self, steps: int, max_minutes: float | None = None) -> float:
        """How far the run is: steps done / steps, or the time budget used when that is further (not clipped)."""
        done = self.step / steps
        return max(done, self.elapsed / (60 * max_minutes)) if max_minutes else done


def cosine_decay(fraction: float, floor: float) -> float:
    """Cosine learning-rate factor: 1 at the start, ``floor`` at ``fraction`` >= 1.

    >>> cosine_decay(0.0, 0.05), cosine_decay(1.0, 0.05), round(cosine_decay(0.5, 0.05), 3)
    (1.0, 0.05, 0.525)
    """
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))


class TrainingLoop:
    """Run ``step_fn`` until ``options.steps`` (or the time budget), recording every ``save_every`` steps.

    See the module docstring for the callbacks and a runnable example.
    """

    def __init__(self, options: LoopOptions):
        self.options = options
        self.state = LoopState()
        self.record: dict[str, Any] = {}
        self._bar: Any = None

    def echo(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        (self._bar.write if self._bar is not None else click.echo)(message)

    # ------------------------------------------------------------------ resume

    def checkpoint_to_resume(self) -> Path | None:
        """``options.out`` when ``--resume`` is set and the file exists; None otherwise (saying why when resuming)."""
        o = self.options
        if not o.resume:
            return None
        if o.out is not None and Path(o.out).exists():
            return Path(o.out)
        self.echo(f"--resume: no checkpoint at {o.out} yet, starting from scratch")
        return None

    def resume_from(
        self,
        payload: Mapping[str, Any],
        optimizer: torch.optim.Optimizer | None = None,
        generator: torch.Generator | None = None,
        lr: float | None = None,
    ) -> None:
        """Continue a saved run: its optimiser state (then ``lr``, when given, for every group), step, time, RNG."""
        if optimizer is not None and "optimizer" in payload:
            optimizer.load_state_dict(payload["optimizer"])
            if lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr  # the command line wins over the saved learning rate
        self.state.step = int(payload.get("step", 0))
        self.state.elapsed = float(payload.get("train_seconds", 0.0))
        if generator is not None and "generator" in payload:
            generator.set_state(payload["generator"])
        self.echo(f"resumed {self.options.out} at step {self.state.step}")

    def resume_model(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: Any, fmt: str, config: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """With ``--resume`` and a checkpoint at ``out`` written by :meth:`model_fields`: restore the model,
        the optimiser, the step, the time, numpy's ``rng`` and torch's generator; returns the payload (for the
        trainer's own running statistics), or None when starting from scratch. A checkpoint of another format
        or configuration is a :class:`bench.errors.BenchError`."""
        if not self.checkpoint_to_resume():
            return None
        payload = load_checkpoint(self.options.out)
        if payload.get("format") != fmt or payload.get("config") != dict(config) or "rng" not in payload:
            raise BenchError(
                f"cannot resume from '{self.options.out}': not a resumable {fmt} checkpoint of {dict(config)}."
            )
        model.load_state_dict(payload["state_dict"])
        self.resume_from(payload, optimizer)
        rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        return payload

    def model_fields(self, optimizer: torch.optim.Optimizer, rng: Any) -> dict[str, Any]:
        """:meth:`checkpoint_fields` plus the random generators :meth:`resume_model` restores."""
        return {
            **self.checkpoint_fields(optimizer),
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
        }

    def checkpoint_fields(
        self, optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """What :meth:`resume_from` needs, to store in the checkpoint: optimiser, step, train_seconds, generator."""
        fields: dict[str, Any] = {}
        if optimizer is not None:
            fields["optimizer"] = optimizer.state_dict()
        fields["step"] = self.state.step
        fields["train_seconds"] = self.state.elapsed
        if generator is not None:
            fields["generator"] = generator.get_state()
        return fields

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        step_fn: StepFn,
        validate_fn: RecordFn | None = None,
        save_fn: SaveFn | None = None,
        schedule_fn: ScheduleFn | None = None,
    ) -> dict[str, Any]:
        """Train to ``options.steps`` (or the time budget); returns the last record (``{}`` when none was due)."""
        o, s = self.options, self.state
        if o.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=o.steps, initial=s.step, desc=o.desc, unit="step", mininterval=o.mininterval)
        start = time.perf_counter() - s.elapsed
        try:
            while s.step < o.steps:
                if schedule_fn is not None:
                    s.elapsed = time.perf_counter() - start
                    schedule_fn(s)
                postfix = step_fn(s)
                s.step += 1
                s.elapsed = time.perf_counter() - start
                if self._bar is not None:
                    self._bar.update(1)
                    if postfix:
                        self._bar.set_postfix(postfix, refresh=False)
                s.last = s.step >= o.steps or (o.max_minutes is not None and s.elapsed > 60 * o.max_minutes)
                if (o.save_every and s.step % o.save_every == 0) or s.last:
                    self._record(validate_fn, save_fn)
                if s.last:
                    break
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        return self.record

    def _record(self, validate_fn: RecordFn | None, save_fn: SaveFn | None) -> None:
        s = self.state
        record: dict[str, Any] = {"step": s.step, "seconds": round(s.elapsed, 1)}
        if validate_fn is not None:
            record.update(validate_fn(s))
        self.record = record
        if save_fn is not None:
            save_fn(record)
        log_path = self.options.log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.options.echo:
            self.echo(json.dumps(record))


def defaults_from(config: type) -> Callable[[click.Command], click.Command]:
    """Give a ``bench train`` command's options that set no default of their own the default of the ``config``
    dataclass field of the same name (shown by ``--help``), so each default is written once, on the dataclass.
    Apply it above ``@click.command``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Config:
        ...     steps: int = 3000
        >>> @defaults_from(Config)
        ... @click.command()
        ... @click.option("--steps", type=int)
        ... def train(steps): print(steps)
        >>> train([], standalone_mode=False)
        3000
    """

    def decorate(command: click.Command) -> click.Command:
        fields = {f.name: f for f in dataclasses.fields(config)}
        for param in command.params:
            f = fields.get(param.name or "")
            if not isinstance(param, click.Option) or f is None or param.required or param.is_flag:
                continue
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            if isinstance(default, list | tuple) and not param.multiple:
                default = ",".join(map(str, default))  # a list option given as "a,b,c" on the command line
            param.default, param.show_default = default, True
        return command

    return decorate
