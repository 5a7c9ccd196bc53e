"""SRFlow 4× as a generic restorer (restore logic and model loading: :mod:`bench.families.srflow`).

The default weights are the small CPU model trained here
(``methods/weights/srflow4x_small.pt``, ``bench train srflow --scale 4``); the
official ``SRFlow_DF2K_4X.pth`` loads with ``--set srflow4x.checkpoint=PATH``.
"""

from __future__ import annotations

from pathlib import Path

from bench.checkpoints import packaged_weights_note, weights_version
from bench.families.srflow import SRFlowMethod
from bench.registry import register_method

DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "srflow4x_small.pt"


@register_method("srflow4x")
class SRFlow4x(SRFlowMethod):
    """SRFlow 4× (Lugmayr et al. 2020): conditional-flow SR; other degradations via ↓4 then SR.

    ``heat`` is the latent temperature (0 decodes all-zero latents), drawn
    from the cell's generator. A sample that is non-finite or far outside
    [0, 1] (the inverse of a weak flow can diverge) is redrawn at half the heat
    (below 0.05: heat 0); the heat used is logged in the trace. ``checkpoint`` = "" uses the packaged small CPU
    model; an official ``SRFlow_DF2K_4X.pth`` loads strictly.

    Example:
        >>> import torch
        >>> from bench.api import Observation, Operator, RestoreContext
        >>> obs = Observation(torch.rand(1, 3, 20, 20), Operator(lambda x: x, (20, 20), (20, 20), sigma=25 / 255))
        >>> x = SRFlow4x().restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0)))
        >>> tuple(x.shape), 0 <= float(x.min()) <= float(x.max()) <= 1
        ((1, 3, 20, 20), True)
    """

    factor = 4
    default_checkpoint = DEFAULT_CHECKPOINT
    version = weights_version(DEFAULT_CHECKPOINT)  # cached results follow the packaged weights
    weights_note = packaged_weights_note(
        "the packaged srflow4x_small.pt, trained here on one CPU core (2.13 M parameters; the official 4× model has 39.5 M, trained on DF2K)"
    )
