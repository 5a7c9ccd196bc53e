"""Super-resolution: bicubic downsampling with antialiasing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from bench.api import Degradation, Operator
from bench.physics.operator import check_protocol, check_sigma, protocol_text
from bench.physics.resize import bicubic_down, bicubic_up, lanczos2_down
from bench.registry import register_degradation


@register_degradation("sr")
class SuperResolution(Degradation):
    """Downsampling ×2/×4/×8 by antialiased bicubic interpolation (torch), optional noise.

    ``kernel=lanczos2`` downsamples instead with the forward operator of the official Deep Image Prior
    super-resolution notebook (``Downsampler(kernel_type='lanczos2', phase=0.5, preserve_size=True)``,
    :func:`bench.physics.resize.lanczos2_down`), for comparisons with DIP as published (docs/dip.md).

    The observation is the low-resolution image; the operator's initialiser
    upsamples it bicubically, which is also what ``identity`` returns. It is float and unclipped by default
    (bicubic overshoot kept), as DPIR's main_dpir_sisr.py makes it for bicubic degradation; ``clip=true
    quantize=true`` gives the stored 8-bit LR images of the SR benchmarks (e.g. DIV2K's LR_bicubic PNGs that
    SRFlow and EDSR read). See docs/protocol.md.

    Example:
        >>> import torch
        >>> obs = SuperResolution(SuperResolution.Params(factor=4)).degrade(torch.rand(1, 3, 32, 32), torch.Generator())
        >>> tuple(obs.y.shape), tuple(obs.operator.init(obs.y).shape)
        ((1, 3, 8, 8), (1, 3, 32, 32))
    """

    task: ClassVar[str] = "sr"
    noise_param: ClassVar[str] = "sigma"  # simulate adds Gaussian noise of Params.sigma (0-255)

    @dataclass
    class Params:
        factor: int = 4
        kernel: Literal["bicubic", "lanczos2"] = field(
            default="bicubic", metadata={"help": "lanczos2: the DIP notebook's Downsampler (docs/dip.md)"}
        )
        sigma: float = 0.0
        clip: bool = field(default=False, metadata={"help": "clip the observation to [0, 1]"})
        quantize: bool = field(default=False, metadata={"help": "round it to 8-bit levels (needs clip)"})

        def __post_init__(self) -> None:
            if self.factor not in (2, 4, 8):
                raise ValueError(f"factor={self.factor} is not supported; use 2, 4 or 8")
            if self.kernel not in ("bicubic", "lanczos2"):
                raise ValueError(f"kernel={self.kernel!r} is not supported; use bicubic or lanczos2")
            check_sigma(self.sigma)
            check_protocol(self.clip, self.quantize)

    def check_shape(self, shape: tuple[int, int]) -> None:
        f = self.params.factor
        if shape[0] % f or shape[1] % f:
            fit = (min(shape) // f) * f
            raise ValueError(
                f"sr factor {f} does not divide the image size {shape[0]}×{shape[1]}; "
                f"use --crop {fit} (or another multiple of {f})"
            )

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        f = self.params.factor
        # bicubic quantisation error alone is ~1/255; keep a floor so MAP data terms stay finite
        sigma = max(self.params.sigma, 1.0) / 255.0
        down = lanczos2_down if self.params.kernel == "lanczos2" else bicubic_down
        return Operator(
            lambda x: down(x, f),
            in_shape=shape,
            out_shape=(shape[0] // f, shape[1] // f),
            sigma=sigma,
            initializer=lambda y: bicubic_up(y, f),
            name=f"{self.params.kernel}_down_x{f}",
            linear=True,
            noise_level=self.params.sigma / 255.0,  # the noise added, without the data-term floor
        )

    def describe(self) -> str:
        noise = f" + noise σ={self.params.sigma:g}/255" if self.params.sigma else ""
        kernel = "Lanczos-2 (DIP's Downsampler)" if self.params.kernel == "lanczos2" else "bicubic"
        return f"{kernel} ×{self.params.factor} downsampling (antialiased){noise}, {protocol_text(*self.protocol())}"
