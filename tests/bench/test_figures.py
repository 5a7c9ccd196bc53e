"""`bench figures` and the self-contained HTML report (tiny identity,tv smoke run)."""

import json
import shutil

import pandas as pd
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
    # identity's output is the degraded image: one panel, labelled as both (issue 28)
    assert grids[0].panels == ["clean", "degraded (jpeg) = identity", "tv"] and not grids[0].notes
    assert len(grids[0].figure.axes) == 3  # insets are children of their panel, not figure axes
    assert [t.get_text() for t in grids[0].figure.legends[0].get_texts()] == ["tv"]  # what the coloured frame means


def test_clean_panel_skipped_with_a_note_when_not_found(results):
    df = frame(results)
    rows = df[df["degradation_label"] == "noise"].assign(dataset="folder:/nonexistent/folder")
    grid = comparison_grid(rows, results, method_colors(df["method_label"]), CleanImages())
    assert grid.panels == ["degraded (noise) = identity", "tv"] and "not found" in grid.notes[0]


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


def _texts(figure):
    return [t.get_text() for ax in figure.axes for t in ax.texts]


def test_na_methods_are_labelled_in_grids_and_distributions(results):
    from bench.plots import distribution_figure

    df = frame(results)
    noise = df[df["degradation_label"] == "noise"]
    na = noise[noise["method"] == "tv"].assign(method="bm3d", method_label="bm3d", status="n/a", output_path=None,
                                               error="bm3d does not apply to the task 'noise': test reason",
                                               psnr=None, key="na")
    grid = comparison_grid(pd.concat([noise, na]), results, method_colors(["identity", "tv", "bm3d"]), CleanImages())
    assert grid.panels == ["clean", "degraded (noise) = identity", "bm3d", "tv"]
    assert "n/a\ntest reason" in _texts(grid.figure)
    dist = distribution_figure(pd.concat([df, na]), method_colors(["identity", "tv", "bm3d"]))
    assert "n/a" in _texts(dist.figure)


def test_below_budget_share_is_shown_on_the_panel(results):
    df = frame(results)
    noise = df[df["degradation_label"] == "noise"].copy()
    noise.loc[noise["method"] == "tv", "budget_fraction"] = 0.01
    grid = comparison_grid(noise, results, method_colors(["identity", "tv"]), CleanImages())
    assert any(t.endswith("1 % of budget") for t in _texts(grid.figure))


def test_negative_losses_are_normalised_not_symlog(results):
    from bench.plots import convergence_figure

    df = frame(results)
    nll = df.assign(trace=json.dumps({"loss": [3.0, -1.0, -2.0, -2.5]}))
    fig = convergence_figure(nll, method_colors(df["method_label"]))
    panels = [ax for ax in fig.figure.axes if ax.get_visible()]
    assert {ax.get_yscale() for ax in panels} == {"linear"}
    assert all("0 = min, 1 = max" in ax.get_ylabel() for ax in panels)
    positive = convergence_figure(df, method_colors(df["method_label"]))
    assert "log" in {ax.get_yscale() for ax in positive.figure.axes}
    legend = fig.figure.legends[0]  # below the panels, clear of the title
    fig.figure.draw_without_rendering()
    assert legend.get_window_extent().y1 < fig.figure.axes[0].get_window_extent().y0
