"""The tuning split (bench/training/splits.py): trainers leave it out, tune scripts accept nothing else.

A fake split of tiny temporary images replaces the real one (monkeypatched),
so these tests do not need ../shared; the test of the real split's files skips
when ../shared is absent.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.datasets import load_dataset
from bench.errors import BenchError
from bench.images import save_png, to_uint8
from bench.registry import available, get_method_class
from bench.training import data, splits
from bench.training.data import exclude_tuning_split, load_training_images, load_tuning_images, pixel_digest

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[3]


def load_script(relative: str):
    """A benchmarks/ script as a module (they are not a package)."""
    path = ROOT / relative
    name = f"_script_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def rgb(seed: int, size: int = 72) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


@pytest.fixture
def fake_split(tmp_path, monkeypatch):
    """A training root with ``set/a.png`` and ``set/b.png`` in the split and ``set/c.png`` outside it."""
    monkeypatch.delenv(data.EVAL_DIRS_ENV, raising=False)
    monkeypatch.delenv("BENCH_DIV2K_ROOT", raising=False)
    root = tmp_path / "train"
    for seed, name in enumerate("abc"):
        save_png(rgb(seed), root / "set" / f"{name}.png")
    digest = {n: pixel_digest(to_uint8(rgb(i))) for i, n in enumerate("abc")}
    monkeypatch.setattr(splits, "TUNING_SPLIT", {"set/a.png": digest["a"], "set/b.png": digest["b"]})
    monkeypatch.setattr(splits, "SHIPPED_WEIGHTS_TRAINED_ON", {"seen_a.pt": ("set/a.png",)})
    monkeypatch.setenv(splits.TRAIN_ROOT_ENV, str(root))
    return root


# --------------------------------------------------------------------------- the split itself


def test_the_split_is_the_union_of_the_shipped_holdouts_and_records_every_shipped_weights_file():
    assert set(splits.TUNING_SPLIT) == set(splits.HOLDOUT_8) | set(splits.HOLDOUT_14)
    assert not set(splits.HOLDOUT_8) & set(splits.HOLDOUT_14)  # no image was held out by every trainer
    shipped = {p.name for p in (ROOT / "methods" / "weights").glob("*.pt")}
    assert shipped == set(splits.SHIPPED_WEIGHTS_TRAINED_ON), "record which split images new shipped weights saw"
    for weights, names in splits.SHIPPED_WEIGHTS_TRAINED_ON.items():
        assert set(names) <= set(splits.TUNING_SPLIT)
        assert splits.tuning_names(unseen_by=weights), f"{weights} saw the whole split"
    assert len(set(splits.TUNING_SPLIT.values())) == len(splits.TUNING_SPLIT)


def test_the_real_split_files_match_their_digests_and_are_no_evaluation_images(shared, monkeypatch):
    monkeypatch.setenv(splits.TRAIN_ROOT_ENV, str(shared("data", "train")))
    names = [name for name, _ in load_tuning_images()]  # digests and the evaluation guard are checked inside
    assert names == list(splits.TUNING_SPLIT)


def test_unseen_by_leaves_out_what_the_shipped_weights_saw(fake_split):
    assert [n for n, _ in load_tuning_images(unseen_by="methods/weights/seen_a.pt")] == ["set/b.png"]
    assert [n for n, _ in load_tuning_images(unseen_by="my_new.pt")] == ["set/a.png", "set/b.png"]


# --------------------------------------------------------------------------- the guard for tune scripts


def test_guard_refuses_an_evaluation_image(tmp_path, fake_split):
    chelsea = next(item for item in load_dataset("builtin", limit=2) if item.id == "chelsea")
    save_png(chelsea.image, tmp_path / "copy" / "cat.png")
    with pytest.raises(BenchError, match=r"refusing to tune on '.*cat\.png'.*'chelsea' of the builtin dataset") as err:
        load_tuning_images([tmp_path / "copy" / "cat.png"])
    assert "\n" not in str(err.value)
    save_png(rgb(0), tmp_path / "eval" / "kodak" / "a.png")  # a split image's pixels, but in an evaluation folder
    with pytest.raises(BenchError, match="evaluation folder"):
        load_tuning_images([tmp_path / "eval" / "kodak" / "a.png"])


def test_guard_refuses_a_training_image_outside_the_split_and_a_changed_split_file(fake_split):
    with pytest.raises(BenchError, match=r"refusing to tune on '.*c\.png': it is not in the tuning split"):
        load_tuning_images([fake_split / "set" / "c.png"])
    assert [n for n, _ in load_tuning_images([fake_split / "set" / "b.png"])] == ["set/b.png"]  # a path is fine
    save_png(rgb(9), fake_split / "set" / "a.png")
    with pytest.raises(BenchError, match=r"named like the tuning-split image 'set/a.png' but its pixels differ"):
        load_tuning_images(["set/a.png"])


# the tune scripts and the arguments that give them one image; each must refuse a non-split image
TUNE_SCRIPTS = {
    "benchmarks/tune_constants.py": lambda image: ["tv-weight", "--images", image, "--no-log", "--crop", "32"],
    "benchmarks/tune_pnp.py": lambda image: ["--images", image],
    "benchmarks/tune_patchnr.py": lambda image: ["--images", image],
    "benchmarks/flow_levers.py": lambda image: ["--images", image],
    "benchmarks/jpeg_subsampling_sigma.py": lambda image: ["--images", image],
}


@pytest.mark.parametrize("script", sorted(TUNE_SCRIPTS))
def test_tune_scripts_refuse_a_training_image_outside_the_split(script, fake_split, capsys):
    image = str(fake_split / "set" / "c.png")
    code = load_script(script).main(TUNE_SCRIPTS[script](image))
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: refusing to tune on") and "c.png" in err and "tuning split" in err, err
    assert "\n" not in err, err


def test_tune_constants_runs_on_the_split_and_writes_its_log(fake_split, tmp_path, capsys):
    script = load_script("benchmarks/tune_constants.py")
    out = tmp_path / "logs"
    args = ["tv-weight", "--crop", "32", "--profile", "smoke", "--tasks", "noise", "--grid", "weight=0.5"]
    assert script.main([*args, "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    old = get_method_class("tv").Params().weight
    assert f"tv-weight: old weight={old:g} → new weight=" in printed
    log = (out / "tv-weight.md").read_text()
    assert "set/a.png, set/b.png" in log and f"| weight={old:g} (old)" in log
    assert (out / "tv-weight.json").is_file()


# --------------------------------------------------------------------------- trainers leave the split out


def test_load_training_images_leaves_out_split_images_with_a_log_line(fake_split, caplog):
    with caplog.at_level(logging.WARNING):
        items = load_training_images([fake_split / "set"], 16)
    assert [Path(p).name for p, _ in items] == ["c.png"]
    assert "excluding 2 tuning-split image(s) from training" in caplog.text and "set/a.png" in caplog.text


def test_split_images_are_recognised_by_pixels_whatever_their_name(fake_split):
    renamed = [("elsewhere/x.png", to_uint8(rgb(1))), ("elsewhere/y.png", to_uint8(rgb(5)))]
    assert [p for p, _ in exclude_tuning_split(renamed)] == ["elsewhere/y.png"]


def test_trainers_given_images_leave_out_the_split(fake_split):
    from bench.training.data import training_images

    folders = [str(fake_split / "set")]
    given = [(f"set/{n}.png", to_uint8(rgb(i))) for i, n in enumerate("abc")]
    assert [p for p, _ in training_images(folders, given, min_size=16)] == ["set/c.png"]
    assert [p for p, _ in training_images(folders, None, min_size=16)] == ["set/c.png"]


@pytest.mark.parametrize("name", sorted(available("trainer")))
def test_every_trainer_skips_split_images(name, fake_split, tmp_path, caplog):
    """A folder of split images only leaves every trainer with nothing to train on: it stops before training."""
    options = load_script("tests/bench/training/test_guard.py").MINIMAL_OPTIONS
    if name not in options:
        pytest.fail(f"trainer '{name}' has no minimal options in test_guard.MINIMAL_OPTIONS")
    only_split = tmp_path / "only_split"
    for i, n in enumerate("ab"):
        save_png(rgb(i), only_split / f"{n}.png")
    folders = (
        ["--clean", str(only_split), "--degraded", str(only_split)] if name == "deflow" else ["--data", str(only_split)]
    )
    out = tmp_path / "out" / "model.pt"
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(cli, ["train", name, *folders, "--out", str(out), *options[name]])
    assert result.exit_code != 0, result.output
    message = result.output if isinstance(result.exception, SystemExit) else str(result.exception)
    assert "no training images" in message, message
    assert "excluding 2 tuning-split image(s) from training" in caplog.text
    assert not out.exists()
