"""Remembered cell keys (bench/keycache.py): a cached re-run needs no torch, and nothing stale is ever served."""

import logging
import subprocess
import sys

import numpy as np

from bench.config import RunConfig
from bench.images import save_png
from bench.keycache import FOLDER, Watch, remember, remembered_keys, snapshot, watching
from bench.store import Store


def folder(tmp_path, count=2):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        save_png(rng.random((32, 32, 3)).astype(np.float32), images / f"img{i}.png")
    return images


def args(images, results):
    return ["run", "--methods", "identity", "--degradations", "noise", "--dataset", f"folder:{images}",
            "--profile", "smoke", "--limit", "10", "--results-dir", results, "--no-lpips", "--no-progress"]


def test_a_cached_rerun_imports_neither_torch_nor_pandas_and_prints_the_same(tmp_path, run_cli):
    images, results = folder(tmp_path), tmp_path / "res"
    code, first, first_err = run_cli(*args(images, results))
    assert code == 0 and "computed 2, cached 0" in first_err and list((results / FOLDER).glob("*.json"))
    script = ("import sys\nfrom bench.cli import main\nsys.argv = ['bench', *sys.argv[1:]]\ntry:\n    main()\n"
              "except SystemExit:\n    pass\nheavy = ('torch', 'pandas', 'PIL', 'lpips', 'pytorch_msssim', 'kornia')\n"
              "print('imported:', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", script, *map(str, args(images, results))], capture_output=True,
                         text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "imported: []", out.stderr
    assert out.stdout == first and "computed 0, cached 2" in out.stderr


def test_changed_images_and_added_images_are_never_served_from_memory(tmp_path, run_cli):
    images, results = folder(tmp_path), tmp_path / "res"
    assert "computed 2, cached 0" in run_cli(*args(images, results))[2]
    assert "computed 0, cached 2" in run_cli(*args(images, results))[2]
    save_png(np.zeros((32, 32, 3), np.float32), images / "img1.png")  # new pixels: a new key
    assert "computed 1, cached 1" in run_cli(*args(images, results))[2]
    save_png(np.ones((32, 32, 3), np.float32), images / "img2.png")  # a new image
    assert "computed 1, cached 2" in run_cli(*args(images, results))[2]


def test_the_remembered_table_follows_the_stored_rows(tmp_path, run_cli):
    images, results = folder(tmp_path, 1), tmp_path / "res"
    run_cli(*args(images, results))
    store = Store(results)
    row = store.rows()[0]
    assert store.update_metrics(row["key"], row["output_path"], {"psnr": 12.345}, {"psnr": "test"})
    store.close()
    code, out, err = run_cli(*args(images, results))
    assert code == 0 and "12.35" in out and "computed 0, cached 1" in err


def test_a_run_that_warned_about_its_input_is_not_remembered(tmp_path, run_cli, caplog):
    images, results = folder(tmp_path), tmp_path / "res"
    (images / "notes.txt").write_text("not an image")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert run_cli(*args(images, results))[0] == 0
        assert "skipped 1 non-image file(s): notes.txt" in caplog.text  # on every run, cached or not
    assert not list((results / FOLDER).glob("*.json"))


def test_any_watched_file_change_forgets_the_keys(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    config = RunConfig(methods=["identity"], degradations=["noise"], results_dir=str(tmp_path / "res"))
    remember(config, ["k"], Watch(), parameter_files=[str(checkpoint)])
    assert remembered_keys(config).keys == ["k"]
    checkpoint.write_bytes(b"retrained")  # the same path, new content: keys must be computed again
    assert remembered_keys(config) is None
    remember(config, ["k"], Watch(), parameter_files=[str(checkpoint)])
    other = RunConfig(methods=["identity"], degradations=["noise"], seeds=[1], results_dir=str(tmp_path / "res"))
    assert remembered_keys(other) is None  # another request
    entry = next((tmp_path / "res" / FOLDER).glob("*.json"))
    entry.write_text("{truncated")
    assert remembered_keys(config) is None


def test_keys_computed_from_a_file_that_changed_during_the_run_are_not_remembered(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    config = RunConfig(methods=["identity"], degradations=["noise"], results_dir=str(tmp_path / "res"))
    before = snapshot(config, parameter_files=[str(checkpoint)])
    checkpoint.write_bytes(b"edited while the grid ran")
    remember(config, ["k"], Watch(), parameter_files=[str(checkpoint)], before=before)
    assert remembered_keys(config) is None


def test_notes_are_kept_and_input_warnings_counted(tmp_path):
    config = RunConfig(methods=["identity"], degradations=["noise"], results_dir=str(tmp_path))
    notes = ["note: 2 of 4 cell(s) run below their method's reference budget"]
    with watching() as watch:
        print("note: printed, not scraped", file=sys.stderr)  # notes are data the run returns, stderr is not read
    assert not watch.warned
    remember(config, ["k"], watch, notes=notes)
    assert remembered_keys(config).notes == notes
    with watching() as watch:
        logging.getLogger("bench.images").warning("16-bit image")
    assert watch.warned
    remember(config, ["k2"], watch, notes=notes)  # a run that warned about its input is not remembered
    assert remembered_keys(config).keys == ["k"]


def test_a_run_opens_the_store_once_computed_or_recalled(tmp_path, monkeypatch):
    from bench.keycache import CachedSummary, run_or_recall

    opened = []
    original = Store.__init__

    def counting(self, *args, **kwargs):
        opened.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "__init__", counting)
    config = RunConfig(methods=["identity"], degradations=["noise"], limit=1, profile="smoke", lpips=False,
                       progress=False, results_dir=str(tmp_path / "res"))
    first = run_or_recall(config, table=True)
    assert not isinstance(first, CachedSummary) and "| noise |" in first.table and len(opened) == 1
    again = run_or_recall(config, table=True)
    assert isinstance(again, CachedSummary) and again.table == first.table and len(opened) == 2

