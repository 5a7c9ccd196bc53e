"""Additive white Gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bench.api import Degradation, Operator
from bench.physics.operator import check_sigma
from bench.registry import register_degradation


@register_degradation("noise")
class Noise(Degradation):
    """Additive white Gaussian noise, sigma on the 0-255 scale; A is the identity.

    Example:
        >>> import torch
        >>> d = Noise(Noise.Params(sigma=25))
        >>> obs = d.degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
        >>> round(obs.sigma * 255)
        25
    """

    task: ClassVar[str] = "noise"

    @dataclass
    class Params:
        sigma: float = 25.0

        def __post_init__(self) -> None:
            check_sigma(self.sigma)

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        return Operator(lambda x: x, in_shape=shape, out_shape=shape, sigma=self.params.sigma / 255.0, name="identity", linear=True)

    def describe(self) -> str:
        return f"Gaussian noise σ={self.params.sigma:g}/255"
