"""EPLL restoration (Zoran & Weiss 2011): half-quadratic splitting with a Gaussian-mixture patch prior.

EPLL maximises ``−λ/2‖A(x) − y‖² + Σ_i log p(P_i x)`` over all overlapping
patches ``P_i x``. Half-quadratic splitting alternates, for an increasing
sequence of β:

- **z-step** (:meth:`PatchPrior.map_patches`): every patch, with its DC removed,
  is treated as a noisy observation of noise variance 1/β; the mixture component
  with the highest posterior ``w_k N(z; 0, Σ_k + I/β)`` is chosen and the patch
  is Wiener-filtered with it, ``Σ_k (Σ_k + I/β)⁻¹ z``; the DC is put back (the
  original's ``aprxMAPGMM``). The patches are averaged into ``x̄``.
- **x-step** (:func:`bench.solvers.linear.x_step`): ``argmin_x ‖A(x) − y‖²/σ² + β‖x − x̄‖²`` (the
  original's ``λ = p²/σ²`` against the patch sum, divided by ``p²``), solved by
  conjugate gradients on the Gauss–Newton normal equations
  ``(JᵀJ/σ² + β) d = −Jᵀr/σ² − β(x − x̄)``, ``J`` the operator's Jacobian from
  autograd (exact in one step for the linear operators of the suite; masked
  residuals for inpainting).

β schedule (:func:`beta_schedule`): the original code's — ``[1, 4, 8, 16, 32]/σ²``
for denoising (noise, JPEG as noise) and ``50·[1, 2, 4, 8, 16, 32, 64]`` for
deblurring, used here for every other task (blur, Multi, sr, inpaint), one
iteration per β. Colour: the prior is applied to each channel of the
orthonormal opponent space (:func:`bench.physics.color.to_opponent`); the x-step
runs in RGB, which the orthogonal transform leaves unchanged.

Example (a flat image with noise; a two-component prior):
    >>> import torch
    >>> from bench.nets.gmm import GaussianMixture, PatchGMM
    >>> covs = torch.stack([1e-4 * torch.eye(15), 1e-2 * torch.eye(15)]).double()
    >>> prior = PatchPrior(PatchGMM(4, GaussianMixture(torch.tensor([0.5, 0.5]).double(), torch.zeros(2, 15).double(), covs)))
    >>> from bench.api import Observation, Operator
    >>> y = 0.5 + 0.1 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> obs = Observation(y, Operator(lambda x: x, (16, 16), (16, 16), sigma=0.1), task="noise")
    >>> x = epll_restore(obs, prior, beta_schedule("noise", 0.1))
    >>> float((x - 0.5).pow(2).mean()) < 0.5 * float((y - 0.5).pow(2).mean())
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.checkpoints import ModelCache, load_checkpoint
from bench.errors import CheckpointError
from bench.nets.gmm import PatchGMM, upper_outer
from bench.physics.color import from_opponent, to_opponent
from bench.physics.operator import Observation, Tensor
from bench.solvers.linear import x_step

DENOISE_BETAS = (1, 4, 8, 16, 32)  # × 1/σ², EPLL's denoising demo
DEBLUR_BETAS = (50, 100, 200, 400, 800, 1600, 3200)  # 50·[1 2 4 8 16 32 64], EPLL's deblurring demo


def beta_schedule(task: str, sigma: float) -> list[float]:
    """The original β values: ``[1, 4, 8, 16, 32]/σ²`` for noise and JPEG, ``50·2^k`` (k = 0..6) otherwise.

    "Otherwise" includes every task without a built-in recipe (e.g. ``impulse``): the general restoration
    schedule, never the Gaussian-denoising one for a task that does not declare Gaussian noise.

    >>> [round(b) for b in beta_schedule("noise", 0.1)], beta_schedule("blur", 0.01)[:2]
    ([100, 400, 800, 1600, 3200], [50.0, 100.0])
    """
    if task in ("noise", "jpeg"):
        return [b / max(sigma, 1e-3) ** 2 for b in DENOISE_BETAS]
    return [float(b) for b in DEBLUR_BETAS]


class PatchPrior:
    """A :class:`PatchGMM` ready for restoration: eigendecompositions and per-noise-level filters.

    ``map_patches(ac, noise_var)`` returns the MAP (most likely component, then Wiener) estimate of
    AC coordinates ``(N, D)`` observed with white noise of variance ``noise_var``.
    """

    def __init__(self, model: PatchGMM, chunk: int = 4096):
        self.model = model
        self.patch = model.patch
        self.chunk = chunk
        self.basis = model.basis.float()
        gmm = model.gmm
        self.eigvals, self.eigvecs = torch.linalg.eigh(gmm.covs)  # float64
        self.eigvals = self.eigvals.clamp_min(0)
        self.log_weights = torch.log(gmm.weights)
        d = gmm.dim
        self.iu, self.ju = torch.triu_indices(d, d)
        self.offdiag = torch.where(self.iu == self.ju, 1.0, 2.0).double()
        self._filters: dict[float, tuple[Tensor, Tensor, Tensor]] = {}

    def filters(self, noise_var: float) -> tuple[Tensor, Tensor, Tensor]:
        """(quadratic-form weights ``(D(D+1)/2, K)``, constants ``(K,)``, Wiener matrices ``(K, D, D)``) at ``noise_var``."""
        key = float(noise_var)
        if key not in self._filters:
            lam, u = self.eigvals, self.eigvecs
            total = lam + noise_var
            precision = (u / total[:, None, :]) @ u.transpose(1, 2)
            tri = (precision[:, self.iu, self.ju] * self.offdiag).T.float().contiguous()
            const = (self.log_weights - 0.5 * torch.log(total).sum(1)).float()
            wiener = ((u * (lam / total)[:, None, :]) @ u.transpose(1, 2)).float()
            self._filters = {key: (tri, const, wiener)}  # one noise level at a time: bounded memory
        return self._filters[key]

    def map_patches(self, ac: Tensor, noise_var: float) -> Tensor:
        tri, const, wiener = self.filters(noise_var)
        out = torch.empty_like(ac)
        for i in range(0, ac.shape[0], self.chunk):
            z = ac[i : i + self.chunk]
            best = (const - 0.5 * (upper_outer(z) @ tri)).argmax(1)
            filtered = torch.empty_like(z)
            for k in best.unique().tolist():  # grouped by component: one matrix product each
                rows = (best == k).nonzero()[:, 0]
                filtered[rows] = z[rows] @ wiener[k].T
            out[i : i + self.chunk] = filtered
        return out


def patch_positions(size: int, patch: int, stride: int) -> Tensor:
    """Top-left offsets along one axis: every ``stride`` px, and always the last position.

    >>> patch_positions(10, 4, 4).tolist()
    [0, 4, 6]
    """
    positions = list(range(0, size - patch + 1, stride))
    if positions[-1] != size - patch:
        positions.append(size - patch)
    return torch.tensor(positions)


def z_step(prior: PatchPrior, x: Tensor, noise_var: float, stride: int = 1) -> Tensor:
    """Average of the MAP-filtered overlapping patches of ``x`` (``(1, 3, H, W)``, RGB), in RGB."""
    p = prior.patch
    opp = to_opponent(x.float())[0][:, None]  # (3, 1, H, W): each channel is a grayscale image
    h, w = opp.shape[-2:]
    rows, cols = patch_positions(h, p, stride), patch_positions(w, p, stride)
    keep = (rows[:, None] * (w - p + 1) + cols[None, :]).reshape(-1)
    columns = F.unfold(opp, p)  # (3, p², L) at stride 1
    patches = columns[:, :, keep].permute(0, 2, 1).reshape(-1, p * p)
    dc = patches.mean(1, keepdim=True)
    basis = prior.basis.to(patches)
    ac = prior.map_patches((patches @ basis).cpu(), noise_var).to(patches)
    restored = (ac @ basis.T + dc).reshape(3, -1, p * p).permute(0, 2, 1)
    full = torch.zeros_like(columns)
    full[:, :, keep] = restored
    selected = torch.zeros_like(columns[:1])
    selected[:, :, keep] = 1.0
    total = F.fold(full, (h, w), p)
    count = F.fold(selected, (h, w), p)
    return from_opponent((total / count).permute(1, 0, 2, 3)).to(x)


def epll_restore(obs: Observation, prior: PatchPrior, betas: Sequence[float], stride: int = 1, cg_steps: int = 20,
                 init: Tensor | None = None, log: Callable[[str, float], None] | None = None) -> Tensor:
    """EPLL by half-quadratic splitting (module docstring); returns the estimate clipped to [0, 1]."""
    if min(obs.operator.in_shape) < prior.patch:
        raise ValueError(f"epll needs images of at least {prior.patch}×{prior.patch} px (its patch size); got "
                         f"{obs.operator.in_shape[0]}×{obs.operator.in_shape[1]}")
    x = (obs.operator.init(obs.y) if init is None else init).detach().float()
    y, sigma = obs.y, obs.sigma

    def residual(v: Tensor) -> Tensor:
        return obs.operator.data_residual(v, y)

    for beta in betas:
        target = z_step(prior, x, 1.0 / beta, stride)
        x = x_step(residual, x, target, sigma, beta, cg_steps, obs.operator.linear)
        if log is not None:
            log("beta", beta)
            log("data_rmse", float(residual(x).detach().pow(2).mean().sqrt()))
    return x.clamp(0, 1)


def load_prior(path: Path) -> PatchPrior:
    """A :class:`PatchPrior` from a model file written by ``bench train epll``."""
    payload = load_checkpoint(path)
    try:
        return PatchPrior(PatchGMM.from_payload(payload, f"'{path}'"))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"'{path}' is not a usable EPLL model ({err}); train one with `bench train epll`.") \
            from None


PRIORS: ModelCache[PatchPrior] = ModelCache(load_prior)  # one loaded prior per model file
