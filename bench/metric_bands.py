"""Metrics of large images in row bands: the same definitions (:mod:`bench.metrics`) with bounded memory.

Scoring one 8000×8000 pair in one piece took over 10 GB: SSIM and MS-SSIM hold a dozen float64 maps of
the image (the Gaussian-filtered means, squares and products), LPIPS holds AlexNet's activations of both
images (about 40 bytes per pixel each) and PSNR a float64 copy of both. Small images are still scored
in one piece, by exactly the code as before (the same values, bit for bit): up to :data:`SSIM_BAND_PIXELS`
(1 Mpx, 1024×1024) for PSNR, SSIM and MS-SSIM, up to :data:`LPIPS_BAND_PIXELS` (4 Mpx, 2048×2048: any DIV2K
image) for LPIPS. Larger ones are scored in bands of whole rows of about that many pixels:

* luma is computed band by band into one float64 image (element-wise: the same values);
* PSNR sums the squared errors band by band in float64 (the mean differs in the last bits at most);
* SSIM and MS-SSIM filter each band with the 10 rows of context the 11-tap window needs, so every value of
  the SSIM and contrast maps is computed from the same numbers as in one piece; the means are combined
  weighted by rows (last bits at most);
* LPIPS runs AlexNet on each band with the context its receptive field needs (conv5 sees 195 input rows),
  zero-padding only at the image's own top and bottom, as the convolutions' padding does; each layer's
  normalised feature differences are scored over the band's own rows and summed in float64. Values agree
  with one piece to about 1e-8 (float32 convolutions of a band may round differently); the reference's
  features are not kept between calls for these images (that would take the memory saved).

Example:
    >>> row_bands(100, 100, band_pixels=2500)
    [(0, 25), (25, 50), (50, 75), (75, 100)]
    >>> row_bands(50, 50, band_pixels=2500)  # at most band_pixels: one piece
    [(0, 50)]
"""

from __future__ import annotations

import math
from typing import Any

import torch

Tensor = torch.Tensor
SSIM_BAND_PIXELS = 2**20  # PSNR, luma, SSIM and MS-SSIM: one piece up to 1 Mpx, else bands of ~1 Mpx (~150 B/px)
LPIPS_BAND_PIXELS = 2**22  # LPIPS: one piece up to 4 Mpx, else bands of ~4 Mpx (and ~100 rows of context per side)


def row_bands(height: int, width: int, band_pixels: int, one_piece: int | None = None) -> list[tuple[int, int]]:
    """``[(first row, end row), ...]`` covering ``height`` rows in bands of about ``band_pixels`` pixels (at least
    16 rows); one band when the image has at most ``one_piece`` pixels (default ``band_pixels``)."""
    if height * width <= (band_pixels if one_piece is None else one_piece):
        return [(0, height)]
    count = max(1, math.ceil(height / max(16, band_pixels // max(1, width))))
    return [(i * height // count, (i + 1) * height // count) for i in range(count)]


def in_one_piece(x: Tensor, lpips: bool = False) -> bool:
    """Whether ``x`` (``(N, C, H, W)``) is scored in one piece, as before bands existed: by PSNR, SSIM and MS-SSIM
    (``lpips`` False) or by LPIPS."""
    return x.shape[-2] * x.shape[-1] <= (LPIPS_BAND_PIXELS if lpips else SSIM_BAND_PIXELS)


def luma_in_bands(x: Tensor, weights: Tensor) -> Tensor:
    """``(x · 255 · weights).sum(channels)`` in float64, band by band for a large image (the same values)."""
    bands = row_bands(x.shape[-2], x.shape[-1], SSIM_BAND_PIXELS)
    if len(bands) == 1:
        return (x.double() * 255.0 * weights).sum(1, keepdim=True)
    out = torch.empty((x.shape[0], 1, *x.shape[-2:]), dtype=torch.float64, device=x.device)
    for start, end in bands:
        out[:, :, start:end] = (x[:, :, start:end].double() * 255.0 * weights).sum(1, keepdim=True)
    return out


def mse(ref: Tensor, dist: Tensor) -> float:
    """Mean of ``(ref - dist)²`` in float64 over every element, band by band for a large image."""
    bands = row_bands(ref.shape[-2], ref.shape[-1], SSIM_BAND_PIXELS)
    if len(bands) == 1:
        return torch.mean((ref.double() - dist.double()) ** 2).item()
    total = sum(float(((ref[..., a:b, :].double() - dist[..., a:b, :].double()) ** 2).sum()) for a, b in bands)
    return total / ref.numel()


def ssim_stats(x: Tensor, y: Tensor, window: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``pytorch_msssim``'s ``_ssim(x, y, data_range=255, win=window, size_average=False)``: the mean SSIM and
    contrast per channel; for a large image from bands of the maps (each band filtered with its context rows).
    ``window``: the 11-tap Gaussian (σ = 1.5) per channel by default."""
    import importlib

    library = importlib.import_module("pytorch_msssim.ssim")  # the module (its package exports a function ssim)
    if window is None:
        window = library._fspecial_gauss_1d(11, 1.5).repeat([x.shape[1], 1, 1, 1])
    taps = window.shape[-1]
    height, width = x.shape[-2:]
    if in_one_piece(x) or height < taps:
        return library._ssim(x, y, data_range=255.0, win=window, size_average=False)
    rows = height - taps + 1  # valid filtering: the maps have this many rows
    ssim_sum, contrast_sum = 0.0, 0.0
    for start, end in row_bands(rows, width, SSIM_BAND_PIXELS, one_piece=0):
        part = slice(start, end + taps - 1)
        ssim_mean, contrast_mean = library._ssim(x[:, :, part], y[:, :, part], data_range=255.0, win=window,
                                                 size_average=False)
        ssim_sum, contrast_sum = ssim_sum + ssim_mean * (end - start), contrast_sum + contrast_mean * (end - start)
    return ssim_sum / rows, contrast_sum / rows


def _rows_geometry(layer: torch.nn.Module) -> tuple[int, int, int]:
    """(kernel, stride, padding) of ``layer`` along the rows; element-wise layers are (1, 1, 0)."""
    if isinstance(layer, torch.nn.Conv2d):
        if layer.dilation[0] != 1:
            raise ValueError("dilated convolutions are not supported in bands")
        return layer.kernel_size[0], layer.stride[0], layer.padding[0]
    if isinstance(layer, torch.nn.MaxPool2d):
        kernel, stride, padding = (v if isinstance(v, int) else v[0]
                                   for v in (layer.kernel_size, layer.stride, layer.padding))
        if padding or layer.ceil_mode or layer.dilation not in (1, (1, 1)):
            raise ValueError("padded, dilated or ceil-mode max pooling is not supported in bands")
        return kernel, stride, 0
    return 1, 1, 0


def _apply(layer: torch.nn.Module, x: Tensor, top: int, bottom: int) -> Tensor:
    """``layer`` on rows of its input that carry ``top``/``bottom`` rows of its zero padding beyond the image."""
    if isinstance(layer, torch.nn.Conv2d):
        if top or bottom:
            x = torch.nn.functional.pad(x, (0, 0, top, bottom))
        return torch.nn.functional.conv2d(x, layer.weight, layer.bias, layer.stride, (0, layer.padding[1]),
                                          layer.dilation, layer.groups)
    if isinstance(layer, torch.nn.MaxPool2d):  # channels-last: the same maxima, faster (see LpipsMetric)
        return layer(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return layer(x)


def alexnet_features(model: Any, x: Tensor, device: torch.device) -> list[Tensor]:
    """``lpips.pretrained_networks.alexnet.forward`` of ``x`` (in [0, 1]) layer by layer, normalised, in one piece;
    max pooling runs channels-last: the same maxima (a maximum has no rounding), 4-5× faster than torch's NCHW
    CPU kernel at these sizes."""
    import lpips

    h, outs = model.scaling_layer(x.float().to(device) * 2 - 1), []
    for index in range(1, model.L + 1):
        for layer in getattr(model.net, f"slice{index}"):
            if isinstance(layer, torch.nn.MaxPool2d):
                h = layer(h.contiguous(memory_format=torch.channels_last)).contiguous()
            else:
                h = layer(h)
        outs.append(lpips.normalize_tensor(h))
    return outs


def lpips_in_bands(model: Any, ref: Tensor, dist: Tensor, device: torch.device) -> float:
    """LPIPS (``lpips.LPIPS`` ``model``, inputs in [0, 1]) of a large image pair, band by band (module docstring)."""
    import lpips

    slices = [list(getattr(model.net, f"slice{i}")) for i in range(1, model.L + 1)]
    layers = [layer for part in slices for layer in part]
    ends = [sum(len(part) for part in slices[:i + 1]) for i in range(len(slices))]  # output index of each slice
    geometry = [_rows_geometry(layer) for layer in layers]
    heights = [ref.shape[-2]]  # heights[j]: rows of the input of layer j (heights[-1]: the last output)
    for kernel, stride, padding in geometry:
        heights.append((heights[-1] + 2 * padding - kernel) // stride + 1)
    count = min(len(row_bands(ref.shape[-2], ref.shape[-1], LPIPS_BAND_PIXELS, one_piece=0)), max(1, heights[-1]))
    sums, widths = [0.0] * len(ends), [0] * len(ends)
    for band in range(count):
        scored = {end: (band * heights[end] // count, (band + 1) * heights[end] // count) for end in ends}
        needed: list[tuple[int, int]] = [(0, 0)] * (len(layers) + 1)  # rows of each activation to compute
        asked: list[tuple[int, int]] = [(0, 0)] * len(layers)  # rows of each layer's input, padding included
        low, high = scored[ends[-1]]
        for j in range(len(layers) - 1, -1, -1):
            if j + 1 in scored:
                low, high = min(low, scored[j + 1][0]), max(high, scored[j + 1][1])
            needed[j + 1] = (low, high)
            kernel, stride, padding = geometry[j]
            asked[j] = (low * stride - padding, (high - 1) * stride - padding + kernel)
            low, high = max(0, asked[j][0]), min(heights[j], asked[j][1])
        needed[0] = (low, high)
        with torch.no_grad():
            features = []
            for image in (ref, dist):
                x = model.scaling_layer(image[:, :, low:high].float().to(device) * 2 - 1)
                outputs = []
                for j, layer in enumerate(layers):
                    first, last = max(0, asked[j][0]), min(heights[j], asked[j][1])
                    part = x[:, :, first - needed[j][0]:last - needed[j][0]]
                    x = _apply(layer, part, first - asked[j][0], asked[j][1] - last)
                    if j + 1 in scored:
                        a, b = scored[j + 1]
                        outputs.append(lpips.normalize_tensor(x[:, :, a - needed[j + 1][0]:b - needed[j + 1][0]]))
                features.append(outputs)
            for index, (r, d) in enumerate(zip(*features)):
                sums[index] += float(model.lins[index]((d - r) ** 2).sum(dtype=torch.float64))
                widths[index] = r.shape[-1]
    return sum(total / (heights[end] * width) for total, end, width in zip(sums, ends, widths))
