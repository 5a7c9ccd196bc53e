"""`bench figures` and the self-contained HTML report (tiny identity,tv smoke run)."""

import shutil

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import UsageError
from bench.figures import CleanImages, build_figures, comparison_grid, method_colors, parse_zoom
from bench.store import Store


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    res = tmp_path_factory.mktemp("figures") / "res"
    out = invoke("run", "--profile", "smoke", "--methods", "identity,tv", "--degradations", "noise,jpeg", "--limit", 1,
                 "--set", "tv.iterations=10", "--no-lpips", "--no-progress", "--results-dir", res)
    assert out.exit_code == 0, out.output
    return res


def frame(results):
    store = Store(results)
    df = store.dataframe()
    store.close()
    return df


def test_figures_command_writes_png_and_pdf(results, tmp_path):
    out = invoke("figures", "--out", tmp_path / "figs", "--results-dir", results, "--zoom", "8,8,16,16")
    assert out.exit_code == 0, out.output
    names = {p.name: p.stat().st_size for p in (tmp_path / "figs").iterdir()}
    for stem in ("grid_builtin_smoke_noise_astronaut", "grid_builtin_smoke_jpeg_astronaut",
                 "psnr_per_image_builtin_smoke", "convergence_builtin_smoke"):
        assert names[f"{stem}.png"] > 5000 and names[f"{stem}.pdf"] > 2000, names
        assert (tmp_path / "figs" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "figs" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_grid_has_clean_degraded_and_one_panel_per_method(results):
    figures = build_figures(frame(results), results, image="astronaut")
    grids = [f for f in figures if f.name.startswith("grid_")]
    assert len(grids) == 2
    assert grids[0].panels == ["clean", "degraded (jpeg)", "identity", "tv"] and not grids[0].notes
    assert len(grids[0].figure.axes) == 4  # insets are children of their panel, not figure axes


def test_clean_panel_skipped_with_a_note_when_not_found(results):
    df = frame(results)
    rows = df[df["degradation_label"] == "noise"].assign(dataset="folder:/nonexistent/folder")
    grid = comparison_grid(rows, results, method_colors(df["method_label"]), CleanImages())
    assert grid.panels == ["degraded (noise)", "identity", "tv"] and "not found" in grid.notes[0]


def test_missing_image_and_bad_zoom_are_usage_errors(results, tmp_path):
    with pytest.raises(UsageError, match="no results for image 'nope'"):
        build_figures(frame(results), results, image="nope")
    with pytest.raises(UsageError, match="four integers"):
        parse_zoom("1,2,3")
    with pytest.raises(UsageError, match="outside"):
        build_figures(frame(results), results, image="astronaut", zoom=(500, 500, 8, 8))


def test_colours_are_fixed_per_method_name():
    everything = method_colors(["tv", "identity", "dip", "flowprior"])
    assert method_colors(["tv", "identity", "dip", "flowprior", "tv"]) == everything
    assert len(set(everything.values())) == 4
    assert len(set(method_colors([f"m{i}" for i in range(15)]).values())) == 15  # tab20 beyond 10


def test_html_report_is_self_contained_with_figures(results, tmp_path):
    out = tmp_path / "report.html"
    assert invoke("report", "--results-dir", results, "--format", "html", "--out", out).exit_code == 0
    text = out.read_text()
    assert text.count('src="data:image/png;base64,') >= 4  # 2 grids, distributions, convergence
    assert "Per image" in text and "class=\"dataframe sortable\"" in text
    assert "http://" not in text and "https://" not in text and "src=\"http" not in text


def test_html_escapes_names(results, tmp_path):
    df = frame(results)
    # another setting (parameters) of tv stored under a hostile label: shown as its own column, escaped
    evil = df.assign(method_label=df["method_label"].str.replace("tv", "<script>alert(1)</script>"),
                     method_params='{"iterations": 11}')
    res = tmp_path / "res"
    shutil.copytree(results, res)
    store = Store(res)
    for row in evil[evil["method"] == "tv"].to_dict("records"):
        store.put_cell({**row, "key": row["key"] + "x"})
    store.close()
    text = invoke("report", "--results-dir", res, "--format", "html", "--ci").output
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
