import json

import pytest
from click.testing import CliRunner

from bench.cli import cli, main


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "res"
    result = invoke("run", "--profile", "smoke", "--results-dir", str(path), "--methods", "identity,tv",
                    "--degradations", "noise,multi", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "computed 8, cached 0, failed 0" in result.output
    assert "| noise | PSNR ↑ |" in result.output
    return path


def test_rerun_computes_nothing(results):
    result = invoke("run", "--profile", "smoke", "--results-dir", str(results), "--methods", "identity,tv",
                    "--degradations", "noise,multi", "--no-progress")
    assert "computed 0, cached 8, failed 0" in result.output


def test_report_formats(results, tmp_path):
    latex = invoke("report", "--results-dir", str(results), "--format", "latex").output
    assert r"\toprule" in latex and r"PSNR $\uparrow$" in latex and r"\cline" not in latex
    # 2 images: no difference can be significant, so nothing is bold, and the caption says so
    assert r"\bfseries" not in latex and "with fewer than 3 images, bold only where" in latex
    csv = invoke("report", "--results-dir", str(results), "--format", "csv", "--per-image").output
    assert csv.splitlines()[0].startswith("method,degradation,image,seed,psnr,ssim,ms_ssim,lpips,psnr_y,seconds")
    out = tmp_path / "r.html"
    invoke("report", "--results-dir", str(results), "--format", "html", "--per-image", "--out", str(out))
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" in text and "http" not in text.split("<body>")[1][:2000]


def test_config_file_grid(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'methods = ["identity"]\ndegradations = ["noise"]\nprofile = "smoke"\nlimit = 1\nno_lpips = true\n'
        f'results_dir = "{tmp_path / "res"}"\n[params.noise]\nsigma = [15, 50]\n'
    )
    result = invoke("run", "--config", str(cfg), "--no-progress")
    assert "computed 2, cached 0, failed 0" in result.output
    assert "noise[sigma=15]" in result.output and "noise[sigma=50]" in result.output


def test_list_shows_parameters_and_profiles():
    out = invoke("list").output
    for text in ("identity", "tv", "weight (float) = 0.7", "quality (int) = 10", "folder:PATH", "smoke", "paper"):
        assert text in out


def test_metrics_command_json(shared):
    root = shared("calibration")
    out = invoke("metrics", str(root / "ref_dir" / "I03.bmp"), str(root / "dist_dir" / "I03.bmp"), "--json").output
    values = json.loads(out)
    assert abs(values["psnr"] - 21.11) < 0.01 and abs(values["lpips"] - 0.7237) < 0.01


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "--methods", "idenity"], 2, "unknown method 'idenity'. Did you mean 'identity'?"),
        (["run", "--degradations", "jpeg", "--set", "jpeg.quality=0"], 2, "quality=0 is outside 1..100"),
        (["run", "--degradations", "noise", "--set", "noise.sigma=-5"], 2, "sigma=-5.0 must be >= 0"),
        (["run", "--methods", "tv", "--set", "tv.wieght=1"], 2, "unknown parameter 'tv.wieght'. Did you mean 'weight'?"),
        (["report", "--results-dir", "/nonexistent/x"], 1, "no results in"),
    ],
)
def test_user_errors_are_one_line_with_exit_code(args, code, message, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("args, code, first_line", [
    (["run", "--limit", "x"], 2, "error: Invalid value for '--limit': 'x' is not a valid integer. (see `bench run --help`)"),
    (["run", "--limt", "3"], 2, "error: No such option"),  # click's wording varies by version
    (["reprot"], 2, "error: No such command 'reprot'."),
])
def test_click_usage_errors_are_one_error_line(args, code, first_line, capsys):
    """click's own parse errors read like ours: one `error:` line (not click's Usage block), exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == code and err.strip().splitlines() == [err.strip()], err
    assert err.startswith(first_line), err


def test_help_still_exits_zero(run_cli):
    code, out, err = run_cli("run", "--help")
    assert code == 0 and "--seed" in out and not err


def test_run_prints_only_the_table_on_stdout_and_warnings_as_single_lines(tmp_path, monkeypatch, run_cli):
    import bench.metrics

    monkeypatch.setenv("BENCH_LPIPS_ALEXNET", str(tmp_path / "absent.pth"))
    monkeypatch.setattr(bench.metrics, "_warned", set())
    code, out, err = run_cli("run", "--profile", "smoke", "--methods", "identity", "--degradations", "noise",
                             "--limit", "1", "--results-dir", tmp_path / "res", "--no-progress")
    assert code == 0, err
    assert "| noise | PSNR ↑ |" in out and err.rstrip().endswith("computed 1, cached 0, failed 0")
    for line in out.splitlines():  # the table, its heading, caption and notes: nothing else
        assert not line.lower().startswith(("warning", "note:", "downloading", "info", "traceback")), line
    assert "scikit-image's astronaut" in out  # the embedded image is named
    warnings_shown = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any("LPIPS is missing" in w and "BENCH_LPIPS_ALEXNET" in w for w in warnings_shown), err
    assert any("MS-SSIM is missing" in w for w in warnings_shown), err
    assert "Warning" not in err and ".py:" not in err and "Downloading" not in out + err, err


def test_list_explains_automatic_defaults_and_choices():
    out = invoke("list").output
    assert "iterations (int) = auto: the task's official count × iteration_scale  [0 means auto]" in out
    assert "sigma_dae (float) = auto: the checkpoint's σ  [0 means auto]" in out
    assert "operator (identity | differentiable) = 'identity'" in out
