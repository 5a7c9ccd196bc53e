"""The reference row: no restoration."""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import Method, Observation, RestoreContext, Tensor
from bench.registry import register_method


@register_method("identity")
class Identity(Method):
    """Returns the degraded input (bicubic upsampling for ``sr``): the reference row.

    Example:
        >>> import torch
        >>> from degradations.noise import Noise
        >>> obs = Noise().degrade(torch.rand(1, 3, 16, 16), torch.Generator())
        >>> bool((Identity().restore(obs, None) == obs.y.clamp(0, 1)).all())
        True
    """

    @dataclass
    class Params:
        pass

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        # an unclipped float observation (the literature's AWGN protocol) leaves [0, 1]; a restoration is an image
        return obs.operator.init(obs.y).clamp(0, 1)
