"""Random draws that are the same on every x86 CPU kernel path.

torch's float32 samplers are compiled once per CPU capability, and the paths round differently:
``torch.randn`` fills contiguous float32 tensors of 16 or more values with a vectorised Box-Muller
whose log/cos approximations differ between the AVX2/AVX-512 and the default build (up to 1.5e-6), and
``uniform_(a, b)`` rounds ``a + (b - a)·u`` with or without a fused multiply-add (1 ulp). A seed then
gives another observation, another DIP code or another initial net on another machine (or under
``ATEN_CPU_CAPABILITY=default``), and a short fit amplifies that into visible metric changes.

In float64 these samplers take one scalar path everywhere and differ at most in the last bit of a
double, which the cast to float32 removes (measured: bit-identical float32 draws under
``ATEN_CPU_CAPABILITY=default`` and on AVX-512). So every draw in the suite's results goes through here.
``torch.rand`` and ``torch.randint`` are already exact (no arithmetic after the integer draw).

Example:
    >>> import torch
    >>> a = randn((4, 32), generator=torch.Generator().manual_seed(0))
    >>> a.dtype, tuple(a.shape)
    (torch.float32, (4, 32))
    >>> torch.equal(a, randn((4, 32), generator=torch.Generator().manual_seed(0)))
    True
    >>> layer = build(lambda: torch.nn.Conv2d(3, 8, 3))
    >>> layer.weight.dtype
    torch.float32
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def randn(shape: Sequence[int], generator: torch.Generator | None = None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws of ``shape`` in ``dtype``, drawn in float64 on the CPU (see the module doc)."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)


def normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place with standard normal draws (float64 on the CPU, then copied in); returns it.

    Values follow ``tensor``'s storage order when it is a permuted view of contiguous memory, as
    ``Tensor.normal_`` does (the DIP noise buffers rely on that for their channels-last layout).
    """
    base = tensor
    if not tensor.is_contiguous():
        base = tensor.permute(0, 2, 3, 1) if tensor.dim() == 4 else tensor.contiguous()
        if not base.is_contiguous():
            raise ValueError("normal_ needs a contiguous tensor or a channels-last 4-d view of one")
    base.copy_(randn(base.shape, generator))
    return tensor


def build(factory: Callable[[], ModuleT]) -> ModuleT:
    """``factory()`` with torch's default initialisation drawn in float64, its parameters then cast to float32.

    The module is the one torch's default init would give up to float32 rounding (the same uniform and
    normal laws), and the same on every CPU kernel path.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        module = factory()
    finally:
        torch.set_default_dtype(previous)
    return module.float()
