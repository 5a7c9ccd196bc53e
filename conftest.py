"""Shared test setup: locate ../shared and use its LPIPS backbone offline."""

from __future__ import annotations

import os
from pathlib import Path

# Set before torch is imported: busy-waiting OpenMP threads make small convolutions many times
# slower when other processes compete for the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

SHARED = Path(os.environ.get("BENCH_SHARED", Path(__file__).resolve().parent.parent / "shared"))
ALEXNET = SHARED / "weights" / "alexnet_features.pth"
if ALEXNET.is_file():
    os.environ.setdefault("BENCH_LPIPS_ALEXNET", str(ALEXNET))
torch.set_num_threads(min(2, torch.get_num_threads()))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: shared research data is not checked out beside the project")
    return path


@pytest.fixture
def shared():
    return shared_path
