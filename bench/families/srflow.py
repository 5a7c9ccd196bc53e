"""SRFlow as a generic restorer: model loading (ours and the official release) and the shared ``restore``.

:class:`SRFlowMethod` is the base of the ``srflow4x`` / ``srflow8x`` plugins
(``methods/srflow4x.py``, ``methods/srflow8x.py``), which set ``factor`` and
``default_checkpoint``. For an ``sr`` observation of the matching factor the
low-resolution ``y`` goes in directly; any other degradation's ``y``
(clean-image size) is first brought to the input scale by antialiased bicubic
downsampling, then super-resolved back.

Example:
    >>> import torch
    >>> from bench.nets.srflow import SRFlowConfig, SRFlowNet
    >>> net = SRFlowNet(SRFlowConfig.tiny(4))
    >>> model_from_payload({"state_dict": net.state_dict(), "config": net.cfg.to_dict()}, 4).cfg == net.cfg
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bench.api import Method, Observation, RestoreContext, Tensor, quantize
from bench.checkpoints import ModelCache, load_checkpoint
from bench.errors import CheckpointError
from bench.nets.srflow import SRFlowConfig, SRFlowNet, strip_module_prefix
from bench.physics.resize import bicubic_down

MIN_HEAT = 0.05  # below this, a diverging sample falls back to heat 0


def model_from_payload(payload: dict[str, Any], scale: int, source: str = "checkpoint") -> SRFlowNet:
    """Build the network a checkpoint describes.

    Two formats: ours (``{"state_dict", "config", ...}``) and the official
    release (a plain state dict, possibly ``module.``-prefixed, loaded into the
    official configuration of ``scale`` with ``strict=True``).

    >>> net = SRFlowNet(SRFlowConfig.tiny(4))
    >>> payload = {"state_dict": net.state_dict(), "config": net.cfg.to_dict()}
    >>> model_from_payload(payload, 4).cfg.K
    1
    """
    if "state_dict" in payload and "config" in payload:
        cfg = SRFlowConfig(**payload["config"])
        state = payload["state_dict"]
    else:
        cfg = SRFlowConfig.official(scale)
        state = payload.get("params", payload) if isinstance(payload.get("params"), dict) else payload
    if cfg.scale != scale:
        raise CheckpointError(f"{source} is a {cfg.scale}× SRFlow model, but a {scale}× one is needed")
    net = SRFlowNet(cfg)
    try:
        net.load_state_dict(strip_module_prefix(dict(state)), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{source} does not match the SRFlow {scale}× architecture ({first}); expected the official "
            f"SRFlow_DF2K_{scale}X.pth or a file written by `bench train srflow --scale {scale}`."
        ) from None
    return net.eval()


# one cache per scale: the same file loads into a 4× or an 8× network (or refuses to)
MODELS: dict[int, ModelCache[SRFlowNet]] = {
    scale: ModelCache(lambda path, scale=scale: model_from_payload(load_checkpoint(path), scale, f"checkpoint '{path}'"))
    for scale in (4, 8)
}


def load_model(path: str | Path, scale: int) -> SRFlowNet:
    """Load (and cache per file identity) an SRFlow checkpoint, weights_only."""
    if scale not in MODELS:
        raise ValueError(f"scale={scale}: SRFlow restores 4× or 8×")
    return MODELS[scale].get(Path(path))


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad bottom/right to multiples of ``multiple`` (replicate where the image is too small to reflect).

    >>> tuple(pad_to_multiple(torch.rand(1, 3, 5, 7), 4).shape)
    (1, 3, 8, 8)
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class SRFlowMethod(Method):
    """SRFlow ``factor``× as a restorer of any degradation (a plugin sets ``factor`` and ``default_checkpoint``).

    ``heat`` is the latent temperature (0 decodes all-zero latents), drawn
    from the cell's generator. A sample that is non-finite or far outside
    [0, 1] (the inverse of a weak flow can diverge) is redrawn at half the heat
    (below 0.05: heat 0); the heat used is logged in the trace.

    Example:
        >>> import os, tempfile
        >>> from bench.api import Observation, Operator, RestoreContext
        >>> from bench.checkpoints import save_checkpoint
        >>> net = SRFlowNet(SRFlowConfig.tiny(4))
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> save_checkpoint({"state_dict": net.state_dict(), "config": net.cfg.to_dict()}, path)
        >>> class Tiny(SRFlowMethod):
        ...     factor = 4
        ...     default_checkpoint = Path(path)
        >>> obs = Observation(torch.rand(1, 3, 20, 20), Operator(lambda x: x, (20, 20), (20, 20), sigma=0.1))
        >>> tuple(Tiny().restore(obs, RestoreContext(generator=torch.Generator().manual_seed(0))).shape)
        (1, 3, 20, 20)
    """

    factor: ClassVar[int] = 4
    default_checkpoint: ClassVar[Path] = Path("")

    @dataclass
    class Params:
        heat: float = 0.9
        checkpoint: str = ""

        def __post_init__(self) -> None:
            if not (math.isfinite(self.heat) and self.heat >= 0):
                raise ValueError(f"heat={self.heat} must be a finite number >= 0")
            if not isinstance(self.checkpoint, str):
                raise ValueError(f"checkpoint={self.checkpoint!r} must be a path string ('' = packaged default)")

    def network(self) -> SRFlowNet:
        path = self.params.checkpoint or self.default_checkpoint
        return load_model(path, self.factor)

    def restore(self, obs: Observation, ctx: RestoreContext, net: SRFlowNet | None = None) -> Tensor:
        f = self.factor
        net = (net or self.network()).to(ctx.device)
        op = obs.operator
        y = obs.y.to(ctx.device)
        lr_multiple = net.cfg.multiple // f
        if (op.out_shape[0] * f, op.out_shape[1] * f) == tuple(op.in_shape):
            height, width = op.in_shape
            lr = pad_to_multiple(y, lr_multiple)
        else:
            # any other degradation: the image-space estimate (y itself when the shapes agree; for sr of another
            # factor the operator's bicubic upsampling), downscaled by this model's factor and super-resolved back
            first = y if tuple(y.shape[-2:]) == tuple(op.in_shape) else op.init(y)
            height, width = first.shape[-2:]
            lr = quantize(bicubic_down(pad_to_multiple(first, net.cfg.multiple), f))  # 8-bit, like the training LR
        heat = self.params.heat
        while True:
            with torch.no_grad():
                x = net.sample(lr, heat=heat, generator=ctx.generator)
            # an under-trained flow's inverse can blow up on unlikely latents (seen with the small 8× model at
            # heat 0.9): then resample at half the heat, from the same generator, so results stay reproducible
            if heat == 0 or (bool(torch.isfinite(x).all()) and -1.0 <= float(x.min()) and float(x.max()) <= 2.0):
                break
            heat = heat / 2 if heat / 2 >= MIN_HEAT else 0.0
        ctx.log("heat_used", heat)
        return x[..., :height, :width].clamp(0, 1)
