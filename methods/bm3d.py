"""BM3D / CBM3D (Dabov et al. 2007; Mäkinen, Azzari & Foi 2020) through the ``bm3d`` package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.api import Method, Observation, RestoreContext, Tensor
from bench.physics.operator import is_identity
from bench.registry import register_method
from bench.solvers.applicability import NotApplicable
from bench.solvers.bm3d import PROFILES, deblur, denoise_rgb, operator_psf, package_version


@register_method("bm3d")
class BM3D(Method):
    """BM3D reference: CBM3D for noise and JPEG at the operator's σ; BM3D deblurring (RI + RWI) for blur and Multi.

    Recipes by ``obs.task`` (never by caption), always with the operator's effective
    noise level ``obs.sigma`` (0-1 scale, as the package expects for images in [0, 1]):

    - ``noise``, ``jpeg`` (identity operator): CBM3D (``bm3d.bm3d_rgb``, opponent
      colour space), JPEG error treated as white noise of its measured RMS level;
    - ``blur``, ``multi``: BM3D deblurring with the operator's PSF, read through the
      operator (its impulse response, verified to be a shift-invariant convolution),
      per opponent channel (:mod:`bench.solvers.bm3d`); Multi's noise and JPEG error
      are its effective σ;
    - ``sr``, ``inpaint``, non-identity JPEG operators and any task without a built-in recipe (not one of
      :data:`bench.api.TASKS`, e.g. a third-party ``impulse``; CBM3D assumes white Gaussian noise, so an
      identity operator alone does not justify it): not applicable — ``restore``
      raises :class:`bench.solvers.applicability.NotApplicable` (reported as n/a).

    ``profile`` is the package's: ``lc`` (low complexity, smaller search, ~3× faster),
    ``np`` (normal, the reference setting) or ``high``. Profiles: smoke ``lc``, quick
    and paper ``np``. BM3D needs at least 8×8 px.

    Example:
        >>> import torch
        >>> from bench.api import RestoreContext
        >>> from degradations.noise import Noise
        >>> clean = torch.full((1, 3, 32, 32), 0.5)
        >>> obs = Noise().degrade(clean, torch.Generator().manual_seed(0))
        >>> x = BM3D(BM3D.Params(profile="lc")).restore(obs, RestoreContext(generator=torch.Generator()))
        >>> float((x - clean).abs().mean()) < 0.2 * float((obs.y - clean).abs().mean())
        True
    """

    @dataclass
    class Params:
        profile: Literal["lc", "np", "high"] = "np"

        def __post_init__(self) -> None:
            if self.profile not in PROFILES:
                raise ValueError(f"profile='{self.profile}' is not a BM3D profile; choose one of {', '.join(PROFILES)}")

    profiles = {"smoke": {"profile": "lc"}, "quick": {"profile": "np"}, "paper": {"profile": "np"}}
    version = package_version()

    def restore(self, obs: Observation, ctx: RestoreContext) -> Tensor:
        task, op, profile = obs.task, obs.operator, self.params.profile
        if task in ("noise", "jpeg"):
            if not is_identity(op, tuple(obs.y.shape[-2:])):
                raise NotApplicable("bm3d", task, f"CBM3D treats the error as noise; the operator '{op.name}' is "
                                                  "not the identity (use the identity JPEG operator)")
            out = denoise_rgb(obs.y, obs.sigma, profile)
        elif task in ("blur", "multi"):
            psf = operator_psf(op)
            if psf is None:
                raise NotApplicable("bm3d", task, f"BM3D deblurring needs a shift-invariant convolution; the "
                                                  f"operator '{op.name}' is not one")
            out = deblur(obs.y, obs.sigma, psf, profile)
        else:
            reason = {
                "sr": "BM3D has no super-resolution scheme here",
                "inpaint": "BM3D has no inpainting scheme here",
                "": "the degradation declares no task",
            }.get(
                task,
                "BM3D's recipes are for noise and jpeg (CBM3D, white Gaussian noise) and blur and multi "
                "(deblurring) only",
            )
            raise NotApplicable("bm3d", task, reason)
        ctx.log("sigma", obs.sigma)
        return out.clamp(0, 1)
