"""The paper's "Multi Degr.", defined explicitly: blur, then noise, then JPEG."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from bench.api import Degradation, Operator, Tensor, quantize
from bench.physics.blur import convolve, gaussian_kernel
from bench.physics.jpeg import check_subsampling, jpeg_effective_sigma, jpeg_encoder, pillow_jpeg
from bench.physics.jpeg_qcs import QuantizedOperator, jpeg_with_quantization
from bench.physics.operator import check_sigma, protocol_text
from bench.registry import register_degradation


@register_degradation("multi")
class Multi(Degradation):
    """Gaussian blur σ=1 (9×9) → white noise σ=10/255 → 8 bits → JPEG quality 40 (Pillow, 4:2:0).

    Helminger et al. do not specify their "Multi Degr."; this is the suite's
    definition, printed in every report caption. The stages: the blur and the
    noise in float; the noisy image clipped to [0, 1] and rounded to 8 bits,
    because that is what a JPEG encoder takes (``clip`` and ``quantize`` are
    therefore fixed at true); JPEG with ``subsampling`` chroma (4:2:0, libjpeg's
    default, as for ``jpeg``); the decoded 8-bit image. The forward operator is the
    blur; the noise and the JPEG error are folded into an effective noise level
    sqrt(σ² + σ_jpeg(q)²). The operator also carries what the JPEG file says
    (``operator.quantization``, :mod:`bench.physics.jpeg_qcs`; the encoder's
    input is the blurred image plus noise of σ).

    Example:
        >>> import torch
        >>> obs = Multi().degrade(torch.rand(1, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> round(obs.sigma * 255, 1) > 10
        True
    """

    task: ClassVar[str] = "multi"
    noise_param: ClassVar[str] = "sigma"  # simulate adds Gaussian noise of Params.sigma (0-255)
    simulate_when_cached: ClassVar[bool] = True  # the file's coefficients are part of the observation

    @dataclass
    class Params:
        kernel_sigma: float = 1.0
        kernel_size: int = 9
        sigma: float = 10.0
        quality: int = 40
        subsampling: Literal["4:2:0", "4:4:4"] = field(
            default="4:2:0", metadata={"help": "chroma subsampling of the encoder"}
        )
        clip: bool = field(default=True, metadata={"help": "the encoder's input is clipped to [0, 1] ..."})
        quantize: bool = field(
            default=True, metadata={"help": "... and rounded to 8 bits: fixed, JPEG encodes 8-bit pixels"}
        )

        def __post_init__(self) -> None:
            if not (self.clip and self.quantize):
                raise ValueError("clip and quantize are fixed at true: its JPEG stage encodes 8-bit "
                                 "pixels, so the noisy image is always clipped to [0, 1] and rounded to 8 bits "
                                 "(use blur for an unclipped float observation)")
            check_subsampling(self.subsampling)
            if not self.kernel_sigma > 0:
                raise ValueError(f"kernel_sigma={self.kernel_sigma} must be > 0")
            if self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f"kernel_size={self.kernel_size} must be a positive odd number")
            check_sigma(self.sigma)
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality={self.quality} is outside 1..100 (JPEG quality factor)")

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        p = self.params
        kernel = gaussian_kernel(p.kernel_size, p.kernel_sigma)
        sigma = math.hypot(p.sigma / 255.0, jpeg_effective_sigma(p.quality, p.subsampling))
        return QuantizedOperator(lambda x: convolve(x, kernel), shape, shape, sigma=sigma, name="blur", linear=True)

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        p = self.params
        noisy = super().simulate(clean, operator, generator)  # blurred, noisy, clipped and rounded (the encoder's input)
        if noisy.shape[0] != 1:  # a batch: pixels only
            return quantize(pillow_jpeg(noisy, p.quality, p.subsampling))
        y, operator.quantization = jpeg_with_quantization(noisy, p.quality, sigma=p.sigma / 255,
                                                          subsampling=p.subsampling)
        return y

    def describe(self) -> str:
        p = self.params
        return (
            f"Gaussian blur σ={p.kernel_sigma:g} ({p.kernel_size}×{p.kernel_size}) → noise σ={p.sigma:g}/255 "
            f"→ {protocol_text(*self.protocol())} → JPEG quality {p.quality} ({jpeg_encoder()}, {p.subsampling})"
        )
