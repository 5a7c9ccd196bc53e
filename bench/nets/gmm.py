"""Gaussian mixture models of image patches (the EPLL prior of Zoran & Weiss 2011) and their EM.

A :class:`GaussianMixture` holds mixing weights, means and full covariances of
``K`` components in ``D`` dimensions. :meth:`GaussianMixture.em_step` is one
expectation-maximisation iteration over a data matrix, processed in chunks so
the memory stays bounded: the E-step and the M-step both work on the upper
triangle of each sample's outer product (``D(D+1)/2`` numbers), so one
iteration is two matrix products of size ``N × D(D+1)/2 × K`` (float32, with
the sufficient statistics accumulated in float64).

:class:`PatchGMM` is the EPLL prior: a zero-mean mixture over the ``p² − 1``
AC coordinates of ``p``×``p`` patches in the orthonormal 2-D DCT basis without
its DC atom (:func:`dc_free_basis`). Removing the DC and modelling the rest
with zero-mean components follows the original model
(``GSModel_8x8_200_2M_noDC_zeromean``); the DC is left to the data term. White
noise of variance σ² on a patch stays white of variance σ² on its AC
coordinates, since the basis is orthonormal.

Example (EM recovers two well-separated clusters):
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.cat([torch.randn(500, 2, generator=g) - 4, torch.randn(500, 2, generator=g) + 4]).double()
    >>> gmm = GaussianMixture.from_data(x, 2, g, zero_mean=False)
    >>> for _ in range(40):
    ...     gmm, loglik = gmm.em_step(x, reg=1e-6)
    >>> sorted(round(float(m)) for m in gmm.means[:, 0])
    [-4, 4]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

Tensor = torch.Tensor
FORMAT = "restoration-bench/patch-gmm/v1"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "methods" / "weights" / "epll_gmm200.pt"  # the packaged prior


def dc_free_basis(patch: int) -> Tensor:
    """Orthonormal ``(p², p² − 1)`` basis of zero-mean ``p``×``p`` patches: the 2-D DCT-II atoms but the DC.

    A row-major flattened patch ``v`` has AC coordinates ``v @ B`` and DC ``v.mean()``;
    ``B @ a + dc`` rebuilds it.

    >>> B = dc_free_basis(4)
    >>> tuple(B.shape), bool(torch.allclose(B.T @ B, torch.eye(15, dtype=B.dtype))), float(B.sum(0).abs().max()) < 1e-12
    ((16, 15), True, True)
    """
    n = torch.arange(patch, dtype=torch.float64)
    dct = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * patch)) * math.sqrt(2 / patch)
    dct[0] /= math.sqrt(2)
    atoms = torch.kron(dct, dct)  # row k1·p + k2 is the separable atom (k1, k2), flattened row-major
    return atoms[1:].T.contiguous()


def upper_outer(x: Tensor) -> Tensor:
    """The upper triangle of every row's outer product, ``(N, D(D+1)/2)``, in ``torch.triu_indices`` order.

    (Slicing row by row is several times faster than gathering with the triangle's indices.)

    >>> x = torch.tensor([[1.0, 2.0, 3.0]])
    >>> upper_outer(x).tolist()
    [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """
    n, d = x.shape
    out = torch.empty(n, d * (d + 1) // 2, dtype=x.dtype, device=x.device)
    start = 0
    for i in range(d):
        torch.mul(x[:, i : i + 1], x[:, i:], out=out[:, start : start + d - i])
        start += d - i
    return out


@dataclass
class GaussianMixture:
    """Weights ``(K,)``, means ``(K, D)`` and covariances ``(K, D, D)`` of a Gaussian mixture (float64)."""

    weights: Tensor
    means: Tensor
    covs: Tensor

    @property
    def components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @classmethod
    def from_data(
        cls, x: Tensor, components: int, generator: torch.Generator, zero_mean: bool = True, subset: int = 0,
        reg: float = 1e-6,
    ) -> GaussianMixture:
        """Initial mixture: component ``k`` gets the mean and covariance of its own random subset of ``x``.

        Subsets of ``subset`` samples (default ``4·D``) differ in scale and orientation, which breaks the
        symmetry between components; weights start uniform.
        """
        n, d = x.shape
        size = min(n, subset or 4 * d)
        means, covs = [], []
        for _ in range(components):
            sample = x[torch.randperm(n, generator=generator)[:size]].double()
            mean = torch.zeros(d, dtype=torch.float64) if zero_mean else sample.mean(0)
            centred = sample - mean
            means.append(mean)
            covs.append(centred.T @ centred / size + reg * torch.eye(d, dtype=torch.float64))
        weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
        return cls(weights, torch.stack(means), torch.stack(covs))

    @property
    def zero_mean(self) -> bool:
        return bool((self.means == 0).all())

    def log_joint(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """``log w_k + log N(x_n; μ_k, Σ_k)`` for every sample and component, ``(N, K)`` float32."""
        terms = _QuadraticTerms(self)
        return torch.cat([terms.log_joint(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])

    def log_prob(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """Log density of every sample, ``(N,)`` (float32 accumulation, float64 result)."""
        return torch.logsumexp(self.log_joint(x, chunk).double(), dim=1)

    def em_step(self, x: Tensor, reg: float, chunk: int = 8192, min_count: float = 1.0) -> tuple[GaussianMixture, float]:
        """One EM iteration on ``x`` ``(N, D)``; returns the new mixture and the mean log-likelihood of ``x``
        under the current one. Means stay zero for a zero-mean mixture; ``reg`` is added to every covariance's
        diagonal. A component with fewer than ``min_count`` samples' responsibility keeps its mean and
        covariance (a degenerate covariance would break the Cholesky factorisation)."""
        terms = _QuadraticTerms(self)
        k, d = self.components, self.dim
        iu, ju = torch.triu_indices(d, d)
        s0 = torch.zeros(k, dtype=torch.float64)
        s1 = torch.zeros(k, d, dtype=torch.float64)
        s2 = torch.zeros(k, iu.numel(), dtype=torch.float64)
        total = 0.0
        for i in range(0, x.shape[0], chunk):
            xc = x[i : i + chunk].float()
            outer = upper_outer(xc)
            joint = terms.log_joint(xc, outer)
            norm = torch.logsumexp(joint, dim=1, keepdim=True)
            total += float(norm.double().sum())
            resp = torch.exp(joint - norm)
            s0 += resp.double().sum(0)
            s1 += (resp.T @ xc).double()
            s2 += (resp.T @ outer).double()
        n = x.shape[0]
        weights = s0 / n
        safe = s0.clamp_min(1e-12)[:, None]
        means = torch.zeros(k, d, dtype=torch.float64) if self.zero_mean else s1 / safe
        second = torch.zeros(k, d, d, dtype=torch.float64)
        second[:, iu, ju] = s2 / safe
        second = second + second.transpose(1, 2) - torch.diag_embed(second.diagonal(dim1=1, dim2=2))
        covs = second - means[:, :, None] * means[:, None, :] + reg * torch.eye(d, dtype=torch.float64)
        dead = s0 < max(min_count, 1e-9)
        if dead.any():  # too few samples: keep the old component rather than a degenerate one
            covs[dead], means[dead] = self.covs[dead], self.means[dead]
        weights = weights.clamp_min(1e-12)
        return GaussianMixture(weights / weights.sum(), means, covs), total / n

    def to_payload(self) -> dict[str, Tensor]:
        return {"weights": self.weights.clone(), "means": self.means.clone(), "covs": self.covs.clone()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> GaussianMixture:
        return cls(payload["weights"].double(), payload["means"].double(), payload["covs"].double())


class _QuadraticTerms:
    """Per-component constants for ``log w + log N(x; μ, Σ)`` written as quadratic forms of ``x``:
    ``xᵀPx`` from the upper triangle of ``x xᵀ`` (off-diagonal precision entries doubled), ``−2 μᵀP x``
    and ``μᵀPμ``."""

    def __init__(self, gmm: GaussianMixture):
        d = gmm.dim
        chol = torch.linalg.cholesky(gmm.covs)
        precision = torch.cholesky_inverse(chol)
        iu, ju = torch.triu_indices(d, d)
        tri = precision[:, iu, ju] * torch.where(iu == ju, 1.0, 2.0).double()
        self.tri = tri.T.float().contiguous()  # (D(D+1)/2, K)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        pm = (precision @ gmm.means[:, :, None])[:, :, 0]  # P μ, (K, D)
        const = torch.log(gmm.weights) - 0.5 * (logdet + d * math.log(2 * math.pi) + (gmm.means * pm).sum(1))
        self.linear = pm.T.float().contiguous()  # (D, K)
        self.const = const.float()
        self.has_means = bool((gmm.means != 0).any())

    def log_joint(self, x: Tensor, outer: Tensor | None = None) -> Tensor:
        x = x.float()
        if outer is None:
            outer = upper_outer(x)
        out = self.const - 0.5 * (outer @ self.tri)
        if self.has_means:
            out = out + x @ self.linear
        return out


@dataclass
class PatchGMM:
    """The EPLL prior: a zero-mean :class:`GaussianMixture` of the AC coordinates of ``patch``×``patch`` patches.

    ``meta`` records how it was trained (the trainer's configuration and figures).

    >>> import torch
    >>> gmm = GaussianMixture(torch.ones(1), torch.zeros(1, 15, dtype=torch.float64), torch.eye(15).double()[None])
    >>> prior = PatchGMM(4, gmm)
    >>> tuple(prior.ac(torch.ones(2, 16)).shape), round(float(prior.ac(torch.ones(2, 16)).abs().max()), 6)
    ((2, 15), 0.0)
    """

    patch: int
    gmm: GaussianMixture
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.basis = dc_free_basis(self.patch)
        if self.gmm.dim != self.patch**2 - 1:
            raise ValueError(f"a {self.patch}×{self.patch} patch GMM needs {self.patch ** 2 - 1} dimensions, "
                             f"not {self.gmm.dim}")

    def ac(self, patches: Tensor) -> Tensor:
        """AC coordinates ``(N, p² − 1)`` of flattened patches ``(N, p²)``."""
        return patches @ self.basis.to(patches.dtype)

    def to_payload(self) -> dict[str, Any]:
        return {"format": FORMAT, "patch": self.patch, "basis": "dct-ii-without-dc", **self.gmm.to_payload(),
                "meta": dict(self.meta or {})}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str = "payload") -> PatchGMM:
        if payload.get("format") != FORMAT:
            raise ValueError(f"{source} is not a patch GMM ({FORMAT}); train one with `bench train epll`.")
        return cls(int(payload["patch"]), GaussianMixture.from_payload(payload), dict(payload.get("meta") or {}))
