"""Bad input: one test per row of the README's table, each checking the exact message the user sees."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.errors import CheckpointError
from bench.images import save_png


def folder_with(tmp_path, name, writer):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    save_png(np.full((32, 32, 3), 0.5, np.float32), folder / "good.png")
    writer(folder / name)
    return folder


def run_on(run_cli, tmp_path, folder, *extra):
    return run_cli("run", "--dataset", f"folder:{folder}", "--methods", "identity",
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
def test_unusable_images_stop_with_the_file_named(monkeypatch, capsys, tmp_path, name, writer, message, run_cli):
    folder = folder_with(tmp_path, name, writer)
    code, _, err = run_on(run_cli, tmp_path, folder)
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
def test_convertible_inputs_are_converted_with_a_warning(monkeypatch, capsys, caplog, tmp_path, name, writer, message, run_cli):
    folder = folder_with(tmp_path, name, writer)
    with caplog.at_level(logging.WARNING):
        code, out, err = run_on(run_cli, tmp_path, folder)
    assert code == 0, out
    assert message in caplog.text
    assert "failed 0" in err


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
def test_invalid_runs_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message, run_cli):
    base = ["run", "--profile", "smoke", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res")]
    if "--methods" not in args:
        base += ["--methods", "identity"]
    code, _, err = run_cli(*base, *args)
    assert code == (1 if "sr cannot" in message else 2)
    assert message in err and "Traceback" not in err


def test_unwritable_results_directory(monkeypatch, capsys, tmp_path, run_cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("run", "--profile", "smoke", "--methods", "identity",
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


def test_image_smaller_than_the_flow_prior_patch(monkeypatch, capsys, tmp_path, run_cli):
    folder = tmp_path / "small"
    folder.mkdir()
    save_png(np.random.default_rng(0).random((40, 40, 3)).astype(np.float32), folder / "tiny40.png")
    code, out, err = run_cli("run", "--dataset", f"folder:{folder}", "--methods", "flowprior",
                             "--degradations", "noise", "--profile", "quick", "--no-lpips", "--no-progress",
                             "--results-dir", str(tmp_path / "res"))
    assert code == 1 and "failed 1" in err
    assert ("failed: flowprior on noise/tiny40: ValueError: flowprior restores 64×64 patches but the image is "
            "40×40 px; use images or crops of at least 64 px (e.g. --crop 64)") in err


# --- issue 14, defects 4 and 5: every bad option or config value is one `error:` line before any work ------------

def smoke_run(tmp_path, *extra):
    return ["run", "--profile", "smoke", "--limit", "1", "--methods", "identity", "--degradations", "noise",
            "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"), *extra]


def stored_rows(results):
    import sqlite3

    db = results / "results.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]


@pytest.mark.parametrize("extra, code, message", [
    (["--seed", "abc"], 2, "error: --seed 'abc': not an integer."),
    (["--seed", str(2**63)], 2, f"error: --seed {2**63}: must be at most {2**63 - 1} (2**63 - 1: seeds are stored "
                                "as 64-bit integers)."),
    (["--seed", "-1"], 2, "error: --seed -1: must be at least 0."),
    (["--crop", "0"], 2, "error: --crop 0: must be at least 16 (images must be at least 16×16 px)."),
    (["--crop", "-5"], 2, "error: --crop -5: must be at least 16 (images must be at least 16×16 px)."),
    (["--limit", "0"], 2, "error: --limit 0: must be at least 1 (leave it out to use every image)."),
    (["--limit", "-1"], 2, "error: --limit -1: must be at least 1 (leave it out to use every image)."),
    (["--device", "foo"], 2, "error: --device 'foo': not a device; use cpu, cuda, cuda:N (an index), mps or xpu."),
    (["--limit", "abc"], 2, "error: Invalid value for '--limit': 'abc' is not a valid integer. (see `bench run "
                            "--help`)"),
])
def test_bad_run_options_stop_before_any_cell(monkeypatch, capsys, tmp_path, extra, code, message, run_cli):
    result = run_cli(*smoke_run(tmp_path, *extra))
    assert result[0] == code, result
    assert result[2].strip().splitlines() == [message]  # one line, no traceback
    assert stored_rows(tmp_path / "res") == 0


def test_absent_gpu_is_one_error_up_front(monkeypatch, capsys, tmp_path, run_cli):
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, so absent on every machine
    code, out, err = run_cli(*smoke_run(tmp_path, "--device", absent, "--limit", "2"))
    assert code == 1 and err.startswith(f"error: --device {absent}: this machine has ") and "failed" not in out + err
    assert len(err.strip().splitlines()) == 1 and stored_rows(tmp_path / "res") == 0


@pytest.mark.parametrize("toml, message", [
    ('seeds = [0, "a"]', "error: config '{cfg}': seeds[1]: expected an integer, got the string 'a'."),
    ("limt = 3", "error: config '{cfg}': unknown key 'limt'. Did you mean 'limit'? Keys: methods, degradations, "),
    ('limit = "3"', "error: config '{cfg}': limit: expected an integer, got the string '3'."),
    ("methods = 3", "error: config '{cfg}': methods: expected a list, got the integer 3."),
    ("[params]\nnoise = 3", "error: config '{cfg}': params.noise: expected a table, got the integer 3."),
    ("limit = 1\nlimit = 2", "error: config '{cfg}' is not valid TOML: "),
])
def test_bad_config_files_stop_before_any_cell(monkeypatch, capsys, tmp_path, toml, message, run_cli):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml + "\n")
    code, _, err = run_cli("run", "--config", str(cfg), "--profile", "smoke", "--limit", "1",
                           "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"))
    assert code == 2 and err.startswith(message.format(cfg=cfg)) and len(err.strip().splitlines()) == 1, err
    assert stored_rows(tmp_path / "res") == 0


def test_a_string_for_a_list_key_is_comma_separated(monkeypatch, capsys, tmp_path, run_cli):
    """`methods = "tv"` used to run the method "t" (a string iterated character by character)."""
    cfg = tmp_path / "run.toml"
    cfg.write_text('methods = "identity"\ndegradations = "noise"\nseeds = "0,1"\n')
    code, out, err = run_cli("run", "--config", str(cfg), "--profile", "smoke", "--limit", "1",
                             "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"))
    assert code == 0 and "computed 2, cached 0, failed 0" in err, err


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_results_database(monkeypatch, capsys, tmp_path, damage, run_cli):
    results = tmp_path / "res"
    assert run_cli(*smoke_run(tmp_path))[0] == 0
    db = results / "results.sqlite"
    data = db.read_bytes()
    db.write_bytes(b"this is not a database\n" * 50 if damage == "garbage" else data[: len(data) // 2])
    for args in (["report", "--results-dir", str(results)], smoke_run(tmp_path)):
        code, _, err = run_cli(*args)
        assert code == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: results database '{db}' is damaged or not a results store ("), err
        assert "move it aside and run `bench run` again to rebuild it." in err


def test_report_filter_with_an_unknown_name(monkeypatch, capsys, tmp_path, run_cli):
    assert run_cli(*smoke_run(tmp_path))[0] == 0
    for option, value, message in (("--methods", "identty", "the store has no method 'identty'. Did you mean "
                                    "'identity'? It holds: identity."),
                                   ("--degradations", "nois", "the store has no degradation 'nois'. Did you mean "
                                    "'noise'? It holds: noise."),
                                   ("--profile", "quick", "the store has no profile 'quick'. It holds: smoke.")):
        code, out, err = run_cli("report", "--results-dir", str(tmp_path / "res"), option, value)
        assert code == 2 and err.strip() == f"error: {option} {value}: {message}", err


def test_metrics_json_of_identical_images_is_valid_json(monkeypatch, capsys, tmp_path, run_cli):
    import json

    save_png(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32), tmp_path / "a.png")
    code, out, _ = run_cli("metrics", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--json")
    values = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert code == 0 and values["psnr"] is None and values["psnr_infinite"] is True and values["ssim"] == 1.0


# --- issue 14, defect 3: images converted where the meaning is clear, an error where it is not ---------------------

ORANGE = np.zeros((32, 32, 3), np.uint8)
ORANGE[..., 0], ORANGE[..., 1], ORANGE[..., 2] = 200, 50, 10


def tiff(values):
    import tifffile

    return lambda p: tifffile.imwrite(p, values)


@pytest.mark.parametrize("name, writer, message", [
    ("cmyk.jpg", lambda p: Image.fromarray(ORANGE).convert("CMYK").save(p),
     "CMYK image, converted to RGB by Pillow (no colour profile applied)"),
    ("float.tif", tiff(ORANGE.astype(np.float32)),
     "floating-point image with values up to 200, read as 0-255 and scaled by 1/255"),
    ("int32.tif", tiff(ORANGE.astype(np.int32)), "int32 image with values in 0..200, read as 8-bit (scaled by 1/255)"),
])
def test_other_encodings_are_converted_with_a_warning(monkeypatch, capsys, caplog, tmp_path, name, writer, message, run_cli):
    folder = folder_with(tmp_path, name, writer)
    with caplog.at_level(logging.WARNING):
        code, out, err = run_on(run_cli, tmp_path, folder, "--crop", "32")
    assert code == 0 and "failed 0" in err, out
    assert f"{folder / name}: {message}" in caplog.text and "alpha" not in caplog.text


@pytest.mark.parametrize("name, writer, message", [
    ("stack.tif", tiff(np.stack([ORANGE, ORANGE])),
     "error: image '{p}' is a multi-page TIFF (2 full-size pages); which page to use is not clear. Save the page "
     "you want as its own file"),
    ("hdr.tif", tiff(ORANGE.astype(np.float32) * 3),
     "error: {p}: floating-point image with values in [30, 600]; only [0, 1] or [0, 255] have a clear meaning. "
     "Rescale it to one of those ranges or save it as 8- or 16-bit."),
    ("wide.tif", tiff(ORANGE.astype(np.int32) * 1000),
     "error: {p}: int32 image with values in [10000, 200000], outside the 8-bit (0..255) and 16-bit (0..65535) "
     "ranges; rescale it and save it as 8- or 16-bit."),
])
def test_images_without_a_clear_meaning_stop_the_run(monkeypatch, capsys, tmp_path, name, writer, message, run_cli):
    folder = folder_with(tmp_path, name, writer)
    code, _, err = run_on(run_cli, tmp_path, folder)
    assert code == 1 and err.startswith(message.format(p=folder / name)), err
