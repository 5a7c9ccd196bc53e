"""Inpainting of randomly missing pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from bench.api import Degradation, Operator, Tensor
from bench.physics.operator import check_protocol, check_sigma, protocol_text
from bench.registry import register_degradation


@register_degradation("inpaint")
class Inpaint(Degradation):
    """A seeded random pixel mask removes a fraction of pixels (all channels); A(x) = mask·x.

    Missing pixels are 0 in the observation; the mask is part of the operator. With noise (``sigma``), the
    observation is float and unclipped by default, ``clip`` and ``quantize`` as for ``noise`` (docs/protocol.md);
    without noise (the default, as the DIP inpainting notebooks) the protocol changes nothing but the key.

    Example:
        >>> import torch
        >>> obs = Inpaint().degrade(torch.ones(1, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> 0.4 < float(obs.operator.mask.mean()) < 0.6
        True
    """

    task: ClassVar[str] = "inpaint"
    noise_param: ClassVar[str] = "sigma"  # simulate adds Gaussian noise of Params.sigma (0-255)

    @dataclass
    class Params:
        missing: float = 0.5
        sigma: float = 0.0
        clip: bool = field(default=False, metadata={"help": "clip the observation to [0, 1]"})
        quantize: bool = field(default=False, metadata={"help": "round it to 8-bit levels (needs clip)"})

        def __post_init__(self) -> None:
            if not 0.0 <= self.missing < 1.0:
                raise ValueError(f"missing={self.missing} must be in [0, 1), the fraction of removed pixels")
            check_sigma(self.sigma)
            check_protocol(self.clip, self.quantize)

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        keep = (torch.rand((1, 1, *shape), generator=generator) >= self.params.missing).float()
        mask = keep.expand(1, 3, *shape).contiguous()

        def forward(x: Tensor) -> Tensor:
            return x * mask.to(x.device, x.dtype)

        return Operator(
            forward, shape, shape, sigma=max(self.params.sigma, 0.5) / 255.0, mask=mask, name="mask", linear=True,
            noise_level=self.params.sigma / 255.0,  # the noise added, without the data-term floor
        )

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        y = super().simulate(clean, operator, generator)
        return y * operator.mask

    def describe(self) -> str:
        noise = f" + noise σ={self.params.sigma:g}/255" if self.params.sigma else ""
        return f"inpainting, {self.params.missing:.0%} of pixels missing at random{noise}, {protocol_text(*self.protocol())}"
