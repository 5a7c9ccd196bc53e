"""Physics: the forward operator, the observation and the image operators (blur, resize, JPEG) that degradations and methods share.

Layer L2: imports only torch/numpy/Pillow (kornia lazily), never plugins.

Example:
    >>> import torch
    >>> from bench.physics import Operator, bicubic_down, bicubic_up
    >>> op = Operator(lambda x: bicubic_down(x, 2), (8, 8), (4, 4), sigma=0.0, initializer=lambda y: bicubic_up(y, 2))
    >>> tuple(op.init(op(torch.rand(1, 3, 8, 8))).shape)
    (1, 3, 8, 8)
"""

from bench.physics.blur import convolve, gaussian_kernel, motion_kernel
from bench.physics.jpeg import KORNIA_JPEG_SIGMA, jpeg_effective_sigma, kornia_jpeg, pillow_jpeg
from bench.physics.operator import TASKS, Observation, Operator, Tensor, quantize
from bench.physics.resize import bicubic_down, bicubic_up

__all__ = [
    "KORNIA_JPEG_SIGMA",
    "TASKS",
    "Observation",
    "Operator",
    "Tensor",
    "bicubic_down",
    "bicubic_up",
    "convolve",
    "gaussian_kernel",
    "jpeg_effective_sigma",
    "kornia_jpeg",
    "motion_kernel",
    "pillow_jpeg",
    "quantize",
]
