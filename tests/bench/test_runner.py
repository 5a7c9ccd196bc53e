import json
import sqlite3

import numpy as np
import pytest
import torch

from bench.compute import compute_cell
from bench.errors import BenchError, ParameterError
from bench.runner import RunConfig, parse_overrides, run_grid
from bench.store import Store


def config(tmp_path, **kw):
    base = dict(methods=["identity", "tv"], degradations=["noise", "jpeg"], dataset="builtin", limit=2,
                profile="smoke", results_dir=str(tmp_path / "res"), lpips=False, progress=False)
    base.update(kw)
    return RunConfig(**base)


def test_second_run_is_fully_cached(tmp_path):
    first = run_grid(config(tmp_path))
    assert (first.computed, first.cached, first.failed) == (8, 0, 0)
    second = run_grid(config(tmp_path))
    assert (second.computed, second.cached, second.failed) == (0, 8, 0)


def test_changing_one_method_parameter_recomputes_only_its_cells(tmp_path):
    run_grid(config(tmp_path))
    changed = run_grid(config(tmp_path, overrides={"tv": {"weight": "0.5"}}))
    assert (changed.computed, changed.cached) == (4, 4)


def test_rows_record_parameters_versions_and_metrics(tmp_path):
    run_grid(config(tmp_path, methods=["tv"], degradations=["noise"], limit=1))
    rows = Store(tmp_path / "res").rows()
    assert len(rows) == 1
    row = rows[0]
    assert json.loads(row["method_params"])["weight"] == 0.7
    assert json.loads(row["method_params"])["iterations"] == 40  # from the smoke profile
    assert json.loads(row["degradation_params"])["sigma"] == 25.0
    assert row["profile"] == "smoke" and row["torch_version"] == torch.__version__
    assert row["psnr"] > row["input_psnr"] + 2, "TV must improve PSNR over the noisy input"
    assert (tmp_path / "res" / row["output_path"]).is_file()
    assert (tmp_path / "res" / row["degraded_path"]).is_file()
    assert json.loads(row["trace"])["loss"], "TV records its loss trace"


def test_same_seed_same_numbers_and_seed_changes_noise(tmp_path):
    a = run_grid(config(tmp_path / "a", methods=["tv"], degradations=["noise"], limit=1))
    b = run_grid(config(tmp_path / "b", methods=["tv"], degradations=["noise"], limit=1))
    c = run_grid(config(tmp_path / "c", methods=["tv"], degradations=["noise"], limit=1, seeds=[1]))
    assert a.keys == b.keys and a.keys != c.keys
    pa, pb, pc = (Store(tmp_path / n / "res").rows()[0]["psnr"] for n in "abc")
    assert pa == pb and pa != pc


def test_grid_over_parameters_labels_instances(tmp_path):
    run_grid(config(tmp_path, methods=["identity"], degradations=["noise"], limit=1,
                    overrides={"noise": {"sigma": ["15", "50"]}}))
    labels = {r["degradation_label"] for r in Store(tmp_path / "res").rows()}
    assert labels == {"noise[sigma=15]", "noise[sigma=50]"}


def test_failed_cells_are_recorded_then_retried(tmp_path, monkeypatch):
    from methods.tv import TotalVariation

    def broken(self, obs, ctx):
        return torch.full((1, 3, 5, 5), float("nan"))

    monkeypatch.setattr(TotalVariation, "restore", broken)
    summary = run_grid(config(tmp_path, degradations=["noise"], limit=1))
    assert (summary.computed, summary.failed) == (1, 1)
    failed = Store(tmp_path / "res").rows(status="failed")
    assert "expected (1, 3, 64, 64)" in failed[0]["error"]
    monkeypatch.undo()
    retry = run_grid(config(tmp_path, degradations=["noise"], limit=1))
    assert (retry.computed, retry.cached, retry.failed) == (1, 1, 0)
    assert len(Store(tmp_path / "res").rows()) == 2


def test_nan_output_fails_with_reason(tmp_path, monkeypatch):
    from methods.identity import Identity

    monkeypatch.setattr(Identity, "restore", lambda self, obs, ctx: obs.y * float("nan"))
    run_grid(config(tmp_path, methods=["identity"], degradations=["noise"], limit=1))
    assert "NaN" in Store(tmp_path / "res").rows(status="failed")[0]["error"]


def test_methods_never_receive_the_clean_image(tmp_path, monkeypatch):
    """restore() gets only the observation and a context; none of them holds the clean pixels."""
    from bench.api import Observation, RestoreContext
    from methods.identity import Identity

    seen = {}

    def spy(self, obs, ctx):
        seen["args"] = (obs, ctx)
        return obs.operator.init(obs.y)

    monkeypatch.setattr(Identity, "restore", spy)
    run_grid(config(tmp_path, methods=["identity"], degradations=["noise"], limit=1))
    obs, ctx = seen["args"]
    assert isinstance(obs, Observation) and isinstance(ctx, RestoreContext)
    assert set(vars(obs)) == {"y", "operator", "description", "task"}
    assert obs.task == "noise"  # the degradation's declared task travels with the observation
    assert set(vars(ctx)) == {"generator", "seed", "profile", "device", "progress", "trace", "steps"}


def test_unknown_override_target_and_bad_set_syntax(tmp_path):
    with pytest.raises(ParameterError, match="not among --methods"):
        run_grid(config(tmp_path, overrides={"dip": {"iterations": "5"}}))
    with pytest.raises(ParameterError, match="NAME.PARAM=VALUE"):
        parse_overrides(["tvweight=3"])


def test_sr_shape_error_before_running(tmp_path):
    with pytest.raises(BenchError, match="does not divide"):
        run_grid(config(tmp_path, degradations=["sr"], crop=50))


def test_unwritable_results_dir(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        if (target / "x").exists() or _can_write(target):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(BenchError, match="not writable"):
            Store(target)
    finally:
        target.chmod(0o700)


def test_results_dir_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="is not writable .*--results-dir"):
        Store(blocker / "res")


def _can_write(path):
    try:
        (path / ".probe").write_text("x")
        (path / ".probe").unlink()
        return True
    except OSError:
        return False


def test_compute_cell_output_matches_stored_png(tmp_path):
    run_grid(config(tmp_path, methods=["tv"], degradations=["jpeg"], limit=1))
    row = Store(tmp_path / "res").rows()[0]
    from bench.compute import to_tensor
    from bench.datasets import load_dataset
    from bench.images import read_png
    from bench.metrics import psnr

    clean = load_dataset("builtin", limit=1, crop=64)[0].image
    restored = read_png(tmp_path / "res" / row["output_path"])
    assert psnr(to_tensor(clean), to_tensor(restored)) == pytest.approx(row["psnr"], abs=1e-9)
    db = sqlite3.connect(tmp_path / "res" / "results.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert compute_cell  # public entry point for executors
    assert np.isfinite(row["seconds"])


def test_checkpoint_parameters_are_keyed_by_content_not_path(tmp_path):
    from bench.cells import instantiate

    path = tmp_path / "prior.pt"

    def key(content: bytes) -> dict:
        path.write_bytes(content)
        return instantiate("method", "flowprior", {"checkpoint": str(path)}, "smoke")[0].key_data()

    first, retrained, same_again = key(b"weights A"), key(b"weights B"), key(b"weights A")
    assert first["params"] == retrained["params"]  # same path ...
    assert first["files"] != retrained["files"]  # ... different content: different cells
    assert first == same_again
    # no file parameter set: the key has no "files" entry (keys of earlier runs stay valid)
    assert "files" not in instantiate("method", "flowprior", {}, "smoke")[0].key_data()


def test_not_applicable_cells_are_counted_stored_and_cached(tmp_path, run_cli):
    """bm3d on sr is n/a by design: stored with its reason, counted apart, exit 0, not recomputed next time."""
    args = ["run", "--methods", "identity,bm3d", "--degradations", "sr", "--limit", "1", "--profile", "smoke",
            "--no-lpips", "--no-progress", "--results-dir", tmp_path / "res"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert err.strip().splitlines()[-1] == "computed 1, cached 0, failed 0, 1 n/a"
    assert "| sr | PSNR ↑ |" in out and "| n/a |" in out and "failed:" not in err
    rows = {r["method"]: r for r in Store(tmp_path / "res").rows()}
    assert rows["bm3d"]["status"] == "n/a" and "super-resolution" in rows["bm3d"]["error"]
    code, out, err = run_cli(*args)
    assert code == 0 and err.strip().splitlines()[-1] == "computed 0, cached 2, failed 0"


def test_one_notice_for_a_grid_below_the_reference_budget(tmp_path, monkeypatch, capsys):
    from bench.api import Budget
    from methods.tv import TotalVariation

    monkeypatch.setattr(TotalVariation, "reference_budget", Budget("iterations", 1000, source="test"))
    grid = config(tmp_path, methods=["identity", "tv"], degradations=["noise", "jpeg"], limit=1)
    summary = run_grid(grid)
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "reference budget" in line]
    assert notes == ["note: 2 of 4 cell(s) run below their method's reference budget (tv: 4 % of the reference "
                     "1000 iterations (profile smoke)); reports mark them with †."]
    assert summary.notes == notes  # the run returns its notes as data: a remembered re-run repeats them
    from bench.keycache import CachedSummary, run_or_recall

    assert not isinstance(run_or_recall(grid), CachedSummary)  # computes the keys, remembers them and the note
    capsys.readouterr()
    assert isinstance(run_or_recall(grid), CachedSummary)
    assert [line for line in capsys.readouterr().err.splitlines() if "reference budget" in line] == notes
    rows = Store(tmp_path / "res").rows()
    assert {r["method"]: r["budget_fraction"] for r in rows} == {"identity": None, "tv": 0.04}
    run_grid(config(tmp_path, methods=["identity"], degradations=["noise"], limit=1))
    assert "reference budget" not in capsys.readouterr().err  # nothing below budget: no line
