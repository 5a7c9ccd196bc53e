"""SRFlow 8× as a generic restorer (restore logic and model loading: :mod:`bench.families.srflow`).

The default weights are the small CPU model trained here
(``methods/weights/srflow8x_small.pt``, ``bench train srflow --scale 8``); the
official ``SRFlow_DF2K_8X.pth`` loads with ``--set srflow8x.checkpoint=PATH``.
"""

from __future__ import annotations

from pathlib import Path

from bench.checkpoints import packaged_weights_note, weights_version
from bench.families.srflow import SRFlowMethod
from bench.registry import register_method

DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "srflow8x_small.pt"


@register_method("srflow8x")
class SRFlow8x(SRFlowMethod):
    """SRFlow 8× (Lugmayr et al. 2020): conditional-flow SR; other degradations via ↓8 then SR.

    Same parameters as ``srflow4x``; official checkpoint ``SRFlow_DF2K_8X.pth``.

    Example:
        >>> import torch
        >>> from bench.api import Observation, Operator, RestoreContext
        >>> from bench.physics import bicubic_down, bicubic_up
        >>> op = Operator(lambda x: bicubic_down(x, 8), (32, 32), (4, 4), sigma=0.0, initializer=lambda y: bicubic_up(y, 8))
        >>> obs = Observation(op(torch.rand(1, 3, 32, 32)), op)
        >>> tuple(SRFlow8x().restore(obs, RestoreContext(generator=torch.Generator())).shape)
        (1, 3, 32, 32)
    """

    factor = 8
    default_checkpoint = DEFAULT_CHECKPOINT
    version = weights_version(DEFAULT_CHECKPOINT)
    weights_note = packaged_weights_note(
        "the packaged srflow8x_small.pt, trained here on one CPU core (3.14 M parameters; the official 8× model has 50.8 M, trained on DF2K)"
    )
