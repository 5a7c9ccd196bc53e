"""DeFlow: a degradation learned from unpaired clean and degraded images.

The model (:mod:`bench.nets.deflow`, trained by ``bench train deflow``:
:mod:`bench.training.deflow`) is a conditional normalising flow whose shared
latent space holds clean images at ``N(0, I)`` and degraded ones at
``N(m, I + ΣΣᵀ)``; translating clean → degraded adds a draw of ``N(m, ΣΣᵀ)``
to the latents of the clean image (Wolf et al., CVPR 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from bench.api import Degradation, Operator, Tensor, quantize
from bench.checkpoints import ModelCache
from bench.errors import CheckpointError
from bench.nets.deflow import TRAIN_HINT, DeFlowNet, load_deflow
from bench.physics.operator import protocol_text
from bench.registry import register_degradation


def load_frozen(path: Path) -> tuple[DeFlowNet, dict[str, float]]:
    """The frozen network of checkpoint ``path`` and its effective-σ record (``heat0``, ``heat1``)."""
    net, data = load_deflow(path)
    net.requires_grad_(False)
    sigma = data.get("effective_sigma")
    if not isinstance(sigma, dict) or "heat1" not in sigma:
        raise CheckpointError(f"DeFlow checkpoint '{path}' has no effective noise level (written by an "
                              f"interrupted or foreign trainer); {TRAIN_HINT}.")
    return net, {"heat0": float(sigma.get("heat0", 0.0)), "heat1": float(sigma["heat1"])}


MODELS: ModelCache[tuple[DeFlowNet, dict[str, float]]] = ModelCache(load_frozen)


def load_model(checkpoint: str) -> tuple[DeFlowNet, dict[str, float]]:
    """The network of ``checkpoint`` (cached per file identity) and its effective-σ record."""
    if not checkpoint:
        raise CheckpointError(f"deflow.checkpoint is empty: {TRAIN_HINT}.")
    return MODELS.get(Path(checkpoint).expanduser())


def sigma_at_heat(sigma: dict[str, float], heat: float) -> float:
    """Effective σ at ``heat`` from the two measured ones, treating the mean shift and the noise as independent.

    >>> round(sigma_at_heat({"heat0": 0.03, "heat1": 0.05}, 2.0), 4)
    0.0854
    """
    bias2 = sigma["heat0"] ** 2
    noise2 = max(sigma["heat1"] ** 2 - bias2, 0.0)
    return math.sqrt(bias2 + heat**2 * noise2)


@register_degradation("deflow")
class DeFlow(Degradation):
    """Learned degradation (DeFlow): clean → degraded translation by a flow trained on unpaired images.

    ``checkpoint`` comes from ``bench train deflow --clean DIR --degraded DIR
    --out FILE``; ``heat`` scales the sampled part ``Σn`` of the latent shift
    (0: only the mean shift, deterministic). The output is rounded to 8 bits;
    sizes that are not multiples of the flow's 2^L (and 4× conditioning) are
    reflect-padded and cropped back.

    Operator for MAP methods: the identity, with the effective noise level σ
    measured once per checkpoint at the end of training as the RMS of
    ``quantize(translate(x)) − x`` on held-out clean patches, at heat 0 and 1
    (stored in the checkpoint); other heats combine the two by
    :func:`sigma_at_heat`. The task is ``learned``, its own (not one of
    :data:`bench.api.TASKS`): the flow learns an arbitrary degradation (e.g.
    signal-dependent noise then JPEG), which is not white Gaussian noise, so it
    no longer pretends to be ``noise``. Methods that use only the operator and σ
    (``identity``, ``tv``, ``dmsp``, ``daep``, ``flowprior``, ``patchnr``,
    ``doubledip``, ``srflow*``, ``epll`` with its general schedule) restore it;
    those whose recipes assume Gaussian noise (``dip``, ``pnp``, ``bm3d``) are n/a
    (:class:`bench.solvers.applicability.NotApplicable`). ``--set dip.task=noise``
    still runs DIP's denoising recipe on it, as an explicit choice.

    Example (an untrained tiny model, only to show the calls):
        >>> import os, tempfile, torch
        >>> from bench.nets.deflow import DeFlowNet, get_config, save_deflow
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt")
        >>> save_deflow(path, DeFlowNet(get_config("tiny")), {"effective_sigma": {"heat0": 0.0, "heat1": 0.02}})
        >>> d = DeFlow(DeFlow.Params(checkpoint=path, heat=1.0))
        >>> obs = d.degrade(torch.rand(1, 3, 70, 66), torch.Generator().manual_seed(0))
        >>> tuple(obs.y.shape), round(obs.sigma, 3), obs.task
        ((1, 3, 70, 66), 0.02, 'learned')
    """

    task: ClassVar[str] = "learned"  # its own task: an arbitrary learned degradation, identity operator with σ

    @dataclass
    class Params:
        checkpoint: str = ""
        heat: float = 1.0

        def __post_init__(self) -> None:
            if not self.heat >= 0:
                raise ValueError(f"heat={self.heat} must be >= 0 (1 = the learned noise level), e.g. heat=1")

    def make_operator(self, shape: tuple[int, int], generator: torch.Generator) -> Operator:
        _, sigma = load_model(self.params.checkpoint)
        return Operator(lambda x: x, shape, shape, sigma=sigma_at_heat(sigma, self.params.heat), name="identity", linear=True)

    def simulate(self, clean: Tensor, operator: Operator, generator: torch.Generator) -> Tensor:
        net, _ = load_model(self.params.checkpoint)
        net = net.to(clean.device)
        return quantize(net.translate(clean, self.params.heat, generator))

    def describe(self) -> str:
        name = Path(self.params.checkpoint).name or "(no checkpoint)"
        return f"DeFlow learned degradation ({name}, heat {self.params.heat:g}), {protocol_text(True, True)}"
