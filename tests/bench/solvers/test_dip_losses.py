"""Tests of the Double-DIP losses (bench/solvers/dip_losses.py)."""

import torch

from bench.solvers.dip_losses import exclusion_loss, std_loss


def test_exclusion_loss_is_zero_for_disjoint_edges_and_positive_for_shared_ones():
    left = torch.zeros(1, 3, 32, 32)
    left[..., :16, :8] = 1.0  # an edge in the top half
    right = torch.zeros(1, 3, 32, 32)
    right[..., 16:, 24:] = 1.0  # an edge in the bottom half, far from the first
    assert float(exclusion_loss(left, right)) < 1e-3
    assert float(exclusion_loss(left, left)) > 0.1


def test_std_loss_measures_local_variation():
    assert float(std_loss(torch.full((1, 3, 16, 16), 0.4))) < 1e-10
    assert float(std_loss(torch.rand(1, 3, 16, 16))) > 1e-3
