"""Generic linear-algebra steps that several restoration schemes share (no method-specific code).

:func:`x_step` solves the quadratic data sub-problem of half-quadratic splitting by conjugate gradients through any
differentiable operator; EPLL (:mod:`bench.solvers.epll`) and DPIR's plug-and-play HQS (:mod:`bench.solvers.pnp`)
both use it; :func:`data_gradient` and :func:`operator_gain` are the data term's gradient and gain through any
operator (the DAE-prior methods' loop, :mod:`bench.families.dae_prior`).

Example:
    >>> import torch
    >>> y = torch.full((1, 3, 4, 4), 0.5)
    >>> x = x_step(lambda v: v - y, torch.zeros_like(y), torch.zeros_like(y), sigma=1.0, beta=1.0, steps=5)
    >>> round(float(x.mean()), 4)  # argmin ‖x − y‖² + ‖x‖²: y / 2
    0.25
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.physics.operator import Operator, Tensor


def x_step(residual: Callable[[Tensor], Tensor], x: Tensor, target: Tensor, sigma: float, beta: float,
           steps: int, linear: bool = False) -> Tensor:
    """``steps`` conjugate-gradient iterations on ``(JᵀJ/σ² + β) d = −Jᵀr/σ² − β(x − target)``; returns ``x + d``.

    ``residual(x)`` is ``A(x) − y`` (masked); ``J`` its Jacobian at ``x``: ``Jᵀv`` by autograd and ``J d``
    by differentiating ``Jᵀu`` with respect to ``u`` (the double-backward trick), so any differentiable
    operator works; for a linear one the system is exact. ``linear=True`` (the operator declares it) applies
    ``J d = r(d) − r(0)`` directly, one forward pass instead of a double backward (much cheaper for large
    blur kernels), with the same result.
    """
    inv_var = 1.0 / max(sigma, 1e-4) ** 2
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        r = residual(xg)
        if linear:
            with torch.no_grad():
                offset = residual(torch.zeros_like(x))

            def jacobian(d: Tensor) -> Tensor:
                with torch.no_grad():
                    return residual(d) - offset
        else:
            u = torch.zeros_like(r, requires_grad=True)
            (jt_u,) = torch.autograd.grad(r, xg, grad_outputs=u, create_graph=True)

            def jacobian(d: Tensor) -> Tensor:
                return torch.autograd.grad(jt_u, u, grad_outputs=d, retain_graph=True)[0]

        def normal(d: Tensor) -> Tensor:
            (jtjd,) = torch.autograd.grad(r, xg, grad_outputs=jacobian(d), retain_graph=True)
            return inv_var * jtjd + beta * d

        (jt_r,) = torch.autograd.grad(r, xg, grad_outputs=r.detach(), retain_graph=True)
        rhs = -(inv_var * jt_r + beta * (x - target)).detach()
        d = torch.zeros_like(x)
        res = rhs.clone()
        direction = res.clone()
        rr = float((res * res).sum())
        for _ in range(steps):
            if rr <= 1e-20:
                break
            q = normal(direction).detach()
            alpha = rr / max(float((direction * q).sum()), 1e-30)
            d = d + alpha * direction
            res = res - alpha * q
            rr_new = float((res * res).sum())
            direction = res + (rr_new / rr) * direction
            rr = rr_new
    return (x + d).detach()


def data_gradient(operator: Operator, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``Aᵀ M (A(x) − y)`` by one vector–Jacobian product, and the masked residual ``M (A(x) − y)``.

    Example:
        >>> import torch
        >>> from bench.api import Operator
        >>> op = Operator(lambda x: 2 * x, in_shape=(2, 2), out_shape=(2, 2), sigma=0.0)
        >>> g, r = data_gradient(op, torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
        >>> float(g[0, 0, 0, 0]), float(r[0, 0, 0, 0])
        (4.0, 2.0)
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        residual = operator.data_residual(xg, y)
        (grad,) = torch.autograd.grad(residual, xg, grad_outputs=residual.detach())
    return grad.detach(), residual.detach()


def operator_gain(operator: Operator, x: Tensor, probe: Tensor, h: float = 1e-2) -> float:
    """Mean ``‖M A ε‖²`` per observed value for white unit noise ``ε`` (``‖k‖²`` for a blur kernel).

    A finite difference around ``x``, exact for linear operators, so it also
    serves differentiable non-linear ones (kornia JPEG) approximately.
    """
    with torch.no_grad():
        diff = operator.data_residual(x + h * probe, torch.zeros(())) - operator.data_residual(x, torch.zeros(()))
        count = operator.mask.sum() if operator.mask is not None else torch.tensor(float(diff.numel()))
        return float(diff.pow(2).sum() / (h * h) / count.clamp_min(1.0))
