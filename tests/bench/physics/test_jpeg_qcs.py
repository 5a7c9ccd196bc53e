"""JPEG quantisation read from the file, and the QCS distance (bench.physics.jpeg_qcs)."""

from __future__ import annotations

import pytest
import torch

from bench.physics.jpeg_qcs import (
    QuantizedOperator,
    dct_matrix,
    encode_jpeg,
    jpeg_with_quantization,
    qcs_residual,
    read_quantization,
)


def smooth_image(size: int = 48, seed: int = 0) -> torch.Tensor:
    """A natural-ish test image: smooth colour gradients plus mild texture."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(size, size), mode="bicubic")
    return (base + 0.05 * torch.rand(1, 3, size, size, generator=g)).clamp(0, 1)


@pytest.mark.parametrize(("quality", "floor"), [(10, 0.97), (40, 0.97), (90, 0.9)])
def test_our_dct_reproduces_the_files_coefficients(quality, floor):
    """Rounding our differentiable transform of the encoder's input gives the coefficients jpeglib reads."""
    x = smooth_image()
    _, q = jpeg_with_quantization(x, quality)
    for coef, table, k in zip(q.dct(x), q.tables, q.coefficients):
        agreement = (torch.round(coef / table) == k).float().mean()
        assert agreement > floor  # the encoder's integer DCT rounds a few coefficients the other way (more when Q is small)


def test_tables_follow_the_quality():
    x = smooth_image()
    coarse, fine = (read_quantization(encode_jpeg(x, q)).tables for q in (10, 90))
    assert coarse.shape == (3, 8, 8) and bool((coarse >= fine).all()) and float(coarse[0, 0, 0]) > float(fine[0, 0, 0])


def test_residual_is_zero_inside_and_grows_outside():
    x = smooth_image()
    _, q = jpeg_with_quantization(x, 10)
    inside = q.residual(x).abs().max()
    moved = q.residual(x + 0.2).abs().max()
    assert float(inside) < 1.5 / 255 and float(moved) > 20 / 255
    # narrowing the cells can only increase the distance
    assert float(q.residual(x, width=0.5).pow(2).sum()) >= float(q.residual(x).pow(2).sum())
    with pytest.raises(ValueError, match="width"):
        q.residual(x, width=0)


def test_residual_has_gradients_towards_the_set():
    x = smooth_image()
    _, q = jpeg_with_quantization(x, 10)
    estimate = (x + 0.1).requires_grad_(True)
    before = q.residual(estimate).pow(2).sum()
    before.backward()
    after = q.residual((estimate - 0.01 * estimate.grad / estimate.grad.abs().max()).detach()).pow(2).sum()
    assert float(after) < float(before)


def test_dct_is_orthonormal_so_distances_are_pixel_distances():
    c = dct_matrix()
    block = torch.rand(8, 8)
    assert torch.allclose((c @ block @ c.T).pow(2).sum(), block.pow(2).sum(), atol=1e-4)


def test_operator_carries_the_quantisation_and_the_encoder_input():
    x = smooth_image()
    op = QuantizedOperator(lambda t: t * 0.5, (48, 48), (48, 48), sigma=0.05, encoder_input=lambda t: t)
    assert qcs_residual(op, x) is None
    _, op.quantization = jpeg_with_quantization(x, 10)
    assert float(qcs_residual(op, x).abs().max()) < 1.5 / 255  # the constraint is on the encoder input, x


def test_grayscale_files_are_refused():
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="JPEG")
    with pytest.raises(ValueError, match="colour"):
        read_quantization(buffer.getvalue())
