"""Every trainer refuses a training folder that holds an evaluation image, before writing anything."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.datasets import load_dataset
from bench.images import save_png
from bench.registry import available

pytestmark = pytest.mark.usefixtures("one_thread")

# the minimal options of each trainer besides its image folders and --out (a new trainer must be added here)
MINIMAL_OPTIONS = {
    "flowprior": ["--steps", "1", "--patch", "16", "--batch", "1"],
    "srflow": ["--steps", "1", "--config", "tiny", "--patch", "32", "--batch", "1"],
    "deflow": ["--steps", "1", "--config", "tiny", "--patch", "16", "--batch", "1", "--no-progress"],
    "dae": ["--sigma", "25", "--steps", "1", "--no-progress"],
    "patchnr": [
        "--steps",
        "1",
        "--layers",
        "1",
        "--hidden",
        "8",
        "--batch-size",
        "4",
        "--val-patches",
        "16",
        "--no-progress",
    ],
    "drunet": [
        "--steps",
        "1",
        "--channels",
        "4,4,4,4",
        "--blocks",
        "1",
        "--patch",
        "16",
        "--batch-size",
        "2",
        "--no-progress",
    ],
    "epll": ["--steps", "1", "--components", "2", "--patches", "200", "--val-patches", "20", "--no-progress"],
}


def folders_option(name: str, training: str, ordinary: str) -> list[str]:
    """The image-folder options of trainer ``name``: the folder with the evaluation image in every role."""
    if name == "deflow":
        return ["--clean", training, "--degraded", ordinary]
    return ["--data", training]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A training folder with a copy of the builtin 'chelsea' (an evaluation image) and one random image."""
    root = tmp_path_factory.mktemp("guard")
    training, ordinary = root / "train", root / "other"
    chelsea = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    save_png(chelsea.image, training / "cat.png")
    rng = np.random.default_rng(0)
    save_png(rng.random((64, 64, 3)).astype(np.float32), training / "random.png")
    save_png(rng.random((64, 64, 3)).astype(np.float32), ordinary / "random.png")
    return training, ordinary


@pytest.mark.parametrize("name", sorted(available("trainer")))
def test_trainer_refuses_an_evaluation_image(name, folders, tmp_path):
    if name not in MINIMAL_OPTIONS:
        pytest.fail(f"trainer '{name}' has no minimal options in MINIMAL_OPTIONS: add them to test its guard")
    training, ordinary = folders
    out = tmp_path / "model.pt"
    args = [
        "train",
        name,
        *folders_option(name, str(training), str(ordinary)),
        "--out",
        str(out),
        *MINIMAL_OPTIONS[name],
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0, result.output
    message = str(result.exception) if not isinstance(result.exception, SystemExit) else result.output.strip()
    assert "cat.png" in message and "'chelsea' of the builtin dataset" in message, message
    assert "\n" not in message, message
    assert list(tmp_path.iterdir()) == [], "nothing may be written before the guard"
