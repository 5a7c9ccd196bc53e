"""JPEG compression with Pillow, and kornia's differentiable JPEG as the operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from bench.api import Degradation, Operator, Tensor
from bench.physics.jpeg import (
    KORNIA_JPEG_SIGMA,
    check_subsampling,
    jpeg_effective_sigma,
    jpeg_encoder,
    kornia_jpeg,
    pillow_jpeg,
)
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

    ``subsampling`` is the encoder's chroma subsampling: 4:2:0 (default) is libjpeg's default for colour, which
    the colour JPEG-artifact-removal literature encodes with (FBCNN's main_test_fbcnn_color.py: OpenCV's
    ``cv2.imencode`` with the quality only; Pillow's default is the same); 4:4:4 keeps the chroma at full size.
    kornia's differentiable operator always models 4:2:0. The output is 8-bit by nature (docs/protocol.md).

    Example:
        >>> import torch
        >>> obs = Jpeg(Jpeg.Params(quality=10)).degrade(torch.rand(1, 3, 32, 32), torch.Generator())
        >>> tuple(obs.y.shape), tuple(obs.operator.quantization.tables.shape), obs.operator.quantization.factors
        ((1, 3, 32, 32), (3, 8, 8), (2, 2))
    """

    task: ClassVar[str] = "jpeg"
    simulate_when_cached: ClassVar[bool] = True  # the file's coefficients are part of the observation

    @dataclass
    class Params:
        quality: int = 10
        operator: Literal["identity", "differentiable"] = "identity"
        subsampling: Literal["4:2:0", "4:4:4"] = field(
            default="4:2:0", metadata={"help": "chroma subsampling of the encoder"}
        )

        def __post_init__(self) -> None:
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality={self.quality} is outside 1..100 (JPEG quality factor), e.g. quality=10")
            check_subsampling(self.subsampling)

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        quality = self.params.quality
        sigma = jpeg_effective_sigma(quality, self.params.subsampling)
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
        p = self.params
        if clean.shape[0] != 1:  # a batch: pixels only
            return pillow_jpeg(clean, p.quality, p.subsampling)
        y, operator.quantization = jpeg_with_quantization(clean, p.quality, subsampling=p.subsampling)
        return y

    def describe(self) -> str:
        return f"JPEG quality {self.params.quality} ({jpeg_encoder()}, {self.params.subsampling})"
