"""A lean repository (issue 28 item 6): tracked files ≤ 35 MB, shipped checkpoints without training state, stored in
the dtype ``benchmarks/slim_weights.py`` chose (float16 weights are cast back to float32 on load), and every model
card's sha256 matching its file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.checkpoints import load_checkpoint, sha256_file

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "methods" / "weights"
SHIPPED = sorted(WEIGHTS.glob("*.pt"))
LIMIT_BYTES = 35_000_000
TRAINING_STATE = {"optimizer", "generator", "rng", "scheduler", "scaler", "ema_optimizer"}

sys.path.insert(0, str(ROOT / "benchmarks"))
import slim_weights  # noqa: E402


def test_shipped_weights_are_found():
    assert {p.name for p in SHIPPED} == set(slim_weights.STORAGE)


def test_tracked_files_fit_35_mb():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    if not paths:
        pytest.skip("not a git checkout")
    total = sum(p.stat().st_size for p in paths if p.is_file())
    assert total <= LIMIT_BYTES, f"tracked files hold {total / 1e6:.1f} MB (limit {LIMIT_BYTES / 1e6:.0f} MB)"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_no_training_state_and_storage_dtype(path):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert not TRAINING_STATE & set(payload), f"{path.name} ships training state {TRAINING_STATE & set(payload)}"
    assert slim_weights.weight_dtypes(path) == {slim_weights.STORAGE[path.name]}
    # the loader casts half-precision storage back to float32
    loaded = load_checkpoint(path)
    tensors = [loaded[k] for k in ("weights", "means", "covs") if k in loaded]
    tensors += list(loaded.get("state_dict", {}).values())
    assert tensors and not {t.dtype for t in tensors} & {torch.float16, torch.bfloat16}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_model_card_sha256_matches(path):
    card = path.with_suffix(".md")
    assert card.is_file(), f"{path.name} has no model card"
    text = card.read_text()
    digests = re.findall(r"sha256\**:?\**\s*`([0-9a-f]{64})`", text)
    assert digests, f"{card.name} states no sha256"
    assert set(digests) == {sha256_file(path)}, f"{card.name}'s sha256 is not that of {path.name}"
    assert "Reproduce" in text


def test_slimming_is_idempotent(tmp_path):
    slim_weights.main(["--out-dir", str(tmp_path), "dae_sigma11.pt"])
    assert sha256_file(tmp_path / "dae_sigma11.pt") == sha256_file(WEIGHTS / "dae_sigma11.pt")


def test_slim_payload_drops_training_state():
    payload = {"format": "f", "state_dict": {"w": torch.ones(3), "flag": torch.tensor(1, dtype=torch.uint8)},
               "optimizer": {"state": {}}, "generator": torch.zeros(4, dtype=torch.uint8), "meta": {"steps": 3}}
    slim = slim_weights.slim_payload(payload, torch.float16)
    assert set(slim) == {"format", "state_dict", "meta"}
    assert slim["state_dict"]["w"].dtype == torch.float16 and slim["state_dict"]["flag"].dtype == torch.uint8
