"""Data terms shared by the optimisation-based priors (``flowprior``, ``patchnr``).

:func:`data_fidelity` is the negative log-likelihood of ``y`` given an estimate
``x`` (up to a constant), chosen by name:

- ``"operator"``: Gaussian, ``‖A(x) − y‖² / (2σ²)`` with the operator's mask
  and effective noise level (JPEG error counted as noise).
- ``"qcs"``: where the observation was JPEG-compressed and its operator carries
  the encoder's quantisation (:class:`bench.physics.jpeg_qcs.JpegQuantization`),
  the squared distance of the DCT coefficients of ``A(x)`` to their
  quantisation cells (narrowed by ``qcs_width``), over ``2s²`` with ``s`` the
  noise before compression (a floor of 1/255 for pure JPEG). Elsewhere
  (noise, blur, sr, inpaint) it is the ``"operator"`` term.

:func:`log_data_term` records in the cell's trace (``qcs_width``) that a run used
the quantisation constraint, which report captions state.

Example:
    >>> import torch
    >>> from bench.physics.operator import Observation, Operator
    >>> obs = Observation(torch.zeros(1, 3, 8, 8), Operator(lambda x: x, (8, 8), (8, 8), sigma=0.5), task="noise")
    >>> float(data_fidelity(obs, torch.ones(1, 3, 8, 8)))  # 192 pixels · 1² / (2 · 0.25)
    384.0
    >>> from bench.api import RestoreContext
    >>> ctx = RestoreContext(generator=torch.Generator())
    >>> log_data_term(ctx, obs, "qcs", 0.5), ctx.trace  # no JPEG quantisation here: the Gaussian term
    (False, {})
"""

from __future__ import annotations

from typing import Literal

from bench.api import RestoreContext
from bench.physics.jpeg_qcs import qcs_residual, quantization_of
from bench.physics.operator import Observation, Tensor

DataTerm = Literal["operator", "qcs"]
DATA_TERMS: tuple[str, ...] = ("operator", "qcs")
MIN_SIGMA = 1e-3
QCS_TRACE_KEY = "qcs_width"  # the trace entry holding the QCS width a cell used (diagnostics)


def data_fidelity(obs: Observation, x: Tensor, term: DataTerm = "operator", qcs_width: float = 1.0) -> Tensor:
    """The scalar data term of ``x`` (``(1, 3, H, W)``) for ``obs`` (see the module docstring)."""
    if term not in DATA_TERMS:
        raise ValueError(f"data term {term!r} is not one of {', '.join(DATA_TERMS)}")
    residual = qcs_residual(obs.operator, x, qcs_width) if term == "qcs" else None
    if residual is not None:
        return residual.pow(2).sum() * (0.5 / quantization_of(obs.operator).sigma ** 2)  # type: ignore[union-attr]
    residual = obs.operator.data_residual(x, obs.y)
    return residual.pow(2).sum() * (0.5 / max(obs.sigma, MIN_SIGMA) ** 2)


def log_data_term(ctx: RestoreContext, obs: Observation, term: DataTerm, qcs_width: float) -> bool:
    """When ``term`` uses the JPEG quantisation of ``obs``: record the width in the trace (``qcs_width``) and say so
    in a caption note (:meth:`bench.api.RestoreContext.note`), so a report names the data term of such cells.
    Returns whether it did."""
    used = term == "qcs" and quantization_of(obs.operator) is not None
    if used:
        ctx.log(QCS_TRACE_KEY, qcs_width)
        ctx.note(f"JPEG data term: the quantisation cells of the JPEG file (width {qcs_width:g} of the step), not the "
                 "Gaussian ‖A(x) − y‖²/2σ² of the other cells (JPEG error as noise of the effective σ)")
    return used
