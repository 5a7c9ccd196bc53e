"""Blur by a Gaussian or a seeded motion kernel, followed by mild Gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from bench.api import Degradation, Operator, Tensor
from bench.physics.blur import convolve, gaussian_kernel, motion_kernel
from bench.physics.operator import check_protocol, check_sigma, protocol_text
from bench.registry import register_degradation


@register_degradation("blur")
class Blur(Degradation):
    """Gaussian (default σ=1.6, 25×25, as in IRCNN/DPIR) or seeded motion blur, then noise σ=2.55/255.

    The observation is float and unclipped by default, as DPIR's main_dpir_deblur.py makes it (AWGN added to the
    blurred image in float, never clipped or rounded); ``clip`` and ``quantize`` as for ``noise`` (docs/protocol.md).

    Example:
        >>> import torch
        >>> d = Blur(Blur.Params(kind="motion"))
        >>> obs = d.degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(1))
        >>> tuple(obs.operator(torch.rand(1, 3, 32, 32)).shape)
        (1, 3, 32, 32)
    """

    task: ClassVar[str] = "blur"
    noise_param: ClassVar[str] = "sigma"  # simulate adds Gaussian noise of Params.sigma (0-255)

    @dataclass
    class Params:
        kind: Literal["gaussian", "motion"] = "gaussian"
        kernel_size: int = 25
        kernel_sigma: float = 1.6
        motion_length: float = 15.0
        sigma: float = 2.55
        clip: bool = field(default=False, metadata={"help": "clip the observation to [0, 1]"})
        quantize: bool = field(default=False, metadata={"help": "round it to 8-bit levels (needs clip)"})

        def __post_init__(self) -> None:
            check_protocol(self.clip, self.quantize)
            if self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f"kernel_size={self.kernel_size} must be a positive odd number, e.g. 25")
            if not self.kernel_sigma > 0:
                raise ValueError(f"kernel_sigma={self.kernel_sigma} must be > 0")
            if not self.motion_length > 0:
                raise ValueError(f"motion_length={self.motion_length} must be > 0")
            check_sigma(self.sigma)

    def kernel(self, generator: torch.Generator) -> Tensor:
        p = self.params
        if p.kind == "gaussian":
            return gaussian_kernel(p.kernel_size, p.kernel_sigma)
        return motion_kernel(p.kernel_size, min(p.motion_length, p.kernel_size - 2), generator)

    def check_shape(self, shape: tuple[int, int]) -> None:
        if min(shape) <= self.params.kernel_size // 2:
            raise ValueError(
                f"image {shape[0]}×{shape[1]} is too small for a {self.params.kernel_size}-px blur kernel"
            )

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        kernel = self.kernel(generator)
        return Operator(lambda x: convolve(x, kernel), shape, shape, sigma=self.params.sigma / 255.0, name="blur", linear=True)

    def describe(self) -> str:
        p = self.params
        what = f"Gaussian blur σ={p.kernel_sigma:g}" if p.kind == "gaussian" else f"motion blur {p.motion_length:g} px"
        return f"{what} ({p.kernel_size}×{p.kernel_size}) + noise σ={p.sigma:g}/255, {protocol_text(*self.protocol())}"
