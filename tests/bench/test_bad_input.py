"""Bad input: one test per row of the README's table, each checking the exact message the user sees."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.cli import main
from bench.errors import CheckpointError
from bench.images import save_png


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr("sys.argv", ["bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def folder_with(tmp_path, name, writer):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    save_png(np.full((32, 32, 3), 0.5, np.float32), folder / "good.png")
    writer(folder / name)
    return folder


def run_on(monkeypatch, capsys, tmp_path, folder, *extra):
    return run_cli(monkeypatch, capsys, "run", "--dataset", f"folder:{folder}", "--methods", "identity",
                   "--degradations", "noise", "--profile", "smoke", "--no-lpips", "--no-progress",
                   "--results-dir", str(tmp_path / "res"), *extra)


@pytest.mark.parametrize(
    "name, writer, message",
    [
        ("bad.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
         "error: cannot read image '{p}': the file is corrupt or not an image"),
        ("empty.png", lambda p: p.write_bytes(b""), "error: image '{p}' is empty (0 bytes); delete or replace the file."),
        ("dot.png", lambda p: Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(p),
         "error: image '{p}' is 1×1 px; images must be at least 16×16 px."),
    ],
)
def test_unusable_images_stop_with_the_file_named(monkeypatch, capsys, tmp_path, name, writer, message):
    folder = folder_with(tmp_path, name, writer)
    code, _, err = run_on(monkeypatch, capsys, tmp_path, folder)
    assert code == 1
    assert message.format(p=folder / name) in err


@pytest.mark.parametrize(
    "name, writer, message",
    [
        ("deep.png", lambda p: Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(p),
         "16-bit image, scaled to [0, 1] by 1/65535"),
        ("alpha.png", lambda p: Image.fromarray(np.full((32, 32, 4), 200, np.uint8), "RGBA").save(p),
         "alpha channel dropped (it was not fully opaque)"),
        ("gray.png", lambda p: Image.fromarray(np.full((32, 32), 90, np.uint8), "L").save(p),
         "grayscale image, replicated to 3 RGB channels"),
        ("notes.txt", lambda p: p.write_text("not an image"), "skipped 1 non-image file(s): notes.txt"),
    ],
)
def test_convertible_inputs_are_converted_with_a_warning(monkeypatch, capsys, caplog, tmp_path, name, writer, message):
    folder = folder_with(tmp_path, name, writer)
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_on(monkeypatch, capsys, tmp_path, folder)
    assert code == 0, out
    assert message in caplog.text
    assert "failed 0" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--degradations", "sr", "--crop", "50"],
         "error: sr cannot degrade image 'astronaut': sr factor 4 does not divide the image size 50×50; use --crop 48"),
        (["--degradations", "jpeg", "--set", "jpeg.quality=0"],
         "error: jpeg: quality=0 is outside 1..100 (JPEG quality factor), e.g. quality=10"),
        (["--degradations", "jpeg", "--set", "jpeg.quality=101"],
         "error: jpeg: quality=101 is outside 1..100 (JPEG quality factor), e.g. quality=10"),
        (["--degradations", "noise", "--set", "noise.sigma=-5"],
         "error: noise: sigma=-5.0 must be >= 0 (0-255 scale), e.g. sigma=25"),
        (["--methods", "dipp"], "error: unknown method 'dipp'."),
        (["--methods", "tv", "--set", "tv.iterationz=3"],
         "error: unknown parameter 'tv.iterationz'. Did you mean 'iterations'?"),
    ],
)
def test_invalid_runs_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message):
    base = ["run", "--profile", "smoke", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res")]
    if "--methods" not in args:
        base += ["--methods", "identity"]
    code, _, err = run_cli(monkeypatch, capsys, *base, *args)
    assert code == (1 if "sr cannot" in message else 2)
    assert message in err and "Traceback" not in err


def test_unwritable_results_directory(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--profile", "smoke", "--methods", "identity",
                           "--degradations", "noise", "--no-progress", "--results-dir", str(blocker / "res"))
    assert code == 1
    assert f"error: results directory '{blocker / 'res'}' is not writable" in err
    assert "choose another with --results-dir or fix its permissions." in err


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({"state_dict": {"w": torch.randn(64, 64)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is truncated or corrupt .*re-download or re-train it"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "hook": Payload()}, path)
    with pytest.raises(CheckpointError, match="contains pickled code or objects, not just tensors; refusing to load"):
        load_checkpoint(path)


def test_failed_cells_show_as_missing_in_reports(tmp_path, monkeypatch):
    from bench.report import render
    from bench.runner import RunConfig, run_grid
    from bench.store import Store
    from methods.identity import Identity

    monkeypatch.setattr(Identity, "restore", lambda self, obs, ctx: torch.zeros(1, 3, 7, 7))
    run_grid(RunConfig(methods=["identity", "tv"], degradations=["noise"], profile="smoke", limit=1,
                       results_dir=str(tmp_path), lpips=False, progress=False, overrides={"tv": {"iterations": "5"}}))
    table = render(Store(tmp_path).dataframe(), "markdown")
    line = next(line for line in table.splitlines() if "PSNR" in line)
    assert line.split("|")[3].strip() == "–", line  # identity column is missing, not a number
    assert "wrong" not in table
    assert Store(tmp_path).rows(status="failed")[0]["error"] == "ValueError: method returned shape (1, 3, 7, 7), expected (1, 3, 64, 64)"


def test_image_smaller_than_the_flow_prior_patch(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    save_png(np.random.default_rng(0).random((40, 40, 3)).astype(np.float32), folder / "tiny40.png")
    code, out, err = run_cli(monkeypatch, capsys, "run", "--dataset", f"folder:{folder}", "--methods", "flowprior",
                             "--degradations", "noise", "--profile", "quick", "--no-lpips", "--no-progress",
                             "--results-dir", str(tmp_path / "res"))
    assert code == 1 and "failed 1" in out
    assert ("failed: flowprior on noise/tiny40: ValueError: flowprior restores 64×64 patches but the image is "
            "40×40 px; use images or crops of at least 64 px (e.g. --crop 64)") in err
