"""JPEG compression with Pillow, and kornia's differentiable JPEG as the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from bench.api import Degradation, Operator, Tensor
from bench.physics.jpeg import KORNIA_JPEG_SIGMA, jpeg_effective_sigma, kornia_jpeg, pillow_jpeg
from bench.physics.jpeg_qcs import QuantizedOperator, jpeg_with_quantization
from bench.registry import register_degradation


@register_degradation("jpeg")
class Jpeg(Degradation):
    """JPEG compression with Pillow at a quality factor (default 10, the paper's setting).

    The forward operator is chosen by ``operator``: ``identity`` (default) treats
    JPEG error as noise of the effective level :func:`jpeg_effective_sigma`;
    ``differentiable`` uses kornia's differentiable JPEG at the same quality
    (agrees with Pillow to about 37 dB and has gradients). Either way the
    operator also carries what the JPEG file says (``operator.quantization``:
    tables and quantised DCT coefficients, :mod:`bench.physics.jpeg_qcs`), for
    methods that use the quantisation constraint as their data term.

    Example:
        >>> import torch
        >>> obs = Jpeg(Jpeg.Params(quality=10)).degrade(torch.rand(1, 3, 32, 32), torch.Generator())
        >>> tuple(obs.y.shape), tuple(obs.operator.quantization.tables.shape)
        ((1, 3, 32, 32), (3, 8, 8))
    """

    task: ClassVar[str] = "jpeg"
    simulate_when_cached: ClassVar[bool] = True  # the file's coefficients are part of the observation

    @dataclass
    class Params:
        quality: int = 10
        operator: Literal["identity", "differentiable"] = "identity"

        def __post_init__(self) -> None:
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality={self.quality} is outside 1..100 (JPEG quality factor), e.g. quality=10")

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        quality = self.params.quality
        sigma = jpeg_effective_sigma(quality)
        if self.params.operator == "differentiable":
            return QuantizedOperator(
                lambda x: kornia_jpeg(x, quality),
                shape,
                shape,
                sigma=KORNIA_JPEG_SIGMA,
                name="diffjpeg",
                encoder_input=lambda x: x,
            )
        return QuantizedOperator(lambda x: x, shape, shape, sigma=sigma, name="identity", linear=True)

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        if clean.shape[0] != 1:  # a batch: pixels only
            return pillow_jpeg(clean, self.params.quality)
        y, operator.quantization = jpeg_with_quantization(clean, self.params.quality)
        return y

    def describe(self) -> str:
        return f"JPEG quality {self.params.quality} (Pillow)"
