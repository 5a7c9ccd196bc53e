"""Additive white Gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from bench.api import Degradation, Operator
from bench.physics.operator import check_protocol, check_sigma, protocol_text
from bench.registry import register_degradation


@register_degradation("noise")
class Noise(Degradation):
    """Additive white Gaussian noise, sigma on the 0-255 scale; A is the identity.

    The observation protocol (docs/protocol.md) defaults to the Gaussian-denoising literature's: ``y = x + n`` in
    float, unclipped (BM3D/CBM3D, DnCNN, FFDNet, DRUNet/DPIR's main_dpir_denoising.py, deepinv); ``clip=true``
    clips to [0, 1] as the DIP notebooks do; ``clip=true quantize=true`` also rounds to 8 bits, a stored image.

    Example:
        >>> import torch
        >>> d = Noise(Noise.Params(sigma=25))
        >>> obs = d.degrade(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
        >>> round(obs.sigma * 255), obs.description
        (25, 'Gaussian noise σ=25/255, unclipped float')
    """

    task: ClassVar[str] = "noise"
    noise_param: ClassVar[str] = "sigma"  # simulate adds Gaussian noise of Params.sigma (0-255)

    @dataclass
    class Params:
        sigma: float = 25.0
        clip: bool = field(default=False, metadata={"help": "clip the observation to [0, 1]"})
        quantize: bool = field(default=False, metadata={"help": "round it to 8-bit levels (needs clip)"})

        def __post_init__(self) -> None:
            check_sigma(self.sigma)
            check_protocol(self.clip, self.quantize)

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        return Operator(lambda x: x, in_shape=shape, out_shape=shape, sigma=self.params.sigma / 255.0, name="identity", linear=True)

    def describe(self) -> str:
        return f"Gaussian noise σ={self.params.sigma:g}/255, {protocol_text(*self.protocol())}"
