"""Bootstrap confidence intervals, paired tests and `bench report --ci` (synthetic results, no runs)."""

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.report import render
from bench.stats import bootstrap_ci, build_stats, paired_bootstrap_p, paired_p_value, render_stats
from bench.store import Store


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 40, 160):
        values = rng.normal(27.0, 1.0, n)
        mean, low, high = bootstrap_ci(values)
        assert mean == pytest.approx(values.mean()) and low < mean < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] == pytest.approx(2 * 1.96 / math.sqrt(160), rel=0.3)  # ≈ the normal-theory width


def test_bootstrap_is_seeded_and_handles_small_n():
    values = [1.0, 3.0, 2.0, 5.0]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    mean, low, high = bootstrap_ci([4.0])
    assert mean == 4.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_paired_tests_detect_a_clearly_better_method():
    rng = np.random.default_rng(0)
    base = rng.normal(25.0, 2.0, 20)  # image difficulty varies a lot, the improvement is consistent
    better = base + 0.5 + rng.normal(0, 0.2, 20)
    assert paired_p_value(better, base) < 0.05
    assert paired_bootstrap_p(better, base) < 0.05
    assert paired_p_value(base, base.copy()) == 1.0 and paired_bootstrap_p(base, base.copy()) == 1.0
    noise = base + rng.normal(0, 0.2, 20)
    assert paired_p_value(noise, base) > 0.05
    assert math.isnan(paired_p_value([1.0], [2.0]))


def _frame(n_images=20, methods=("identity", "good", "<script>x</script>")):
    rng = np.random.default_rng(0)
    difficulty = rng.normal(24.0, 2.0, n_images)
    shift = {"identity": 0.0, "good": 2.0}
    rows = []
    for m in methods:
        for i in range(n_images):
            psnr = difficulty[i] + shift.get(m, 1.0) + rng.normal(0, 0.1)
            rows.append({"method": m, "method_label": m, "degradation": "noise", "degradation_label": "no_ise&",
                         "degradation_description": "σ=25", "dataset": "d", "profile": "smoke", "image": f"im{i}",
                         "image_digest": f"h{i}", "seed": 0, "status": "ok", "psnr": psnr, "ssim": 0.5 + psnr / 100,
                         "ms_ssim": math.nan, "lpips": 0.5 - psnr / 100, "seconds": 0.1, "error": None})
    return pd.DataFrame(rows)


def test_build_stats_compares_with_the_best_of_each_row():
    (s,) = build_stats(_frame())
    key = ("no_ise&", "PSNR ↑")
    assert s.table.best.loc[key, "good"]
    assert math.isnan(s.p.loc[key, "good"]) and s.p.loc[key, "identity"] < 0.05
    assert s.low.loc[key, "good"] < s.table.values.loc[key, "good"] < s.high.loc[key, "good"]
    assert s.n.loc[key, "good"] == 20
    assert s.p.loc[("no_ise&", "LPIPS ↓"), "identity"] < 0.05  # lower is better: 'good' is best there too
    assert math.isnan(s.low.loc[("no_ise&", "MS-SSIM ↑"), "good"])


def test_render_ci_formats_and_escaping():
    df = _frame()
    md = render(df, "markdown", ci=True)
    assert "| no_ise& | PSNR ↑ |" in md and "best" in md and "bootstrap" in md
    assert any(cell.strip().startswith("**2") and "[" in cell for cell in md.split("|"))
    csv = render(df, "csv", ci=True)
    assert csv.splitlines()[0] == "dataset,profile,degradation,metric,method,mean,ci_low,ci_high,n_images,best,p_vs_best,note"
    latex = render(df, "latex", ci=True)
    assert r"\multirow[t]{4}{*}{no\_ise\&}" in latex and "no_ise&" not in latex and r"\bfseries" in latex
    html = render(df, "html", ci=True)
    assert "&lt;script&gt;" in html and "<script>x" not in html
    plain = render(df, "html")
    assert "&lt;script&gt;" in plain and "<script>x" not in plain and "no_ise&amp;" in plain


def test_fewer_than_two_images_show_no_interval():
    text = render_stats(build_stats(_frame(n_images=1)), "markdown")
    assert "[" not in text.split("\n\n")[0] and "| – |" in text


def test_report_ci_command(tmp_path):
    store = Store(tmp_path / "res")
    for i, row in _frame(n_images=5, methods=("identity", "tv")).iterrows():
        store.put_cell({**row.to_dict(), "key": f"k{i}", "method_params": "{}", "degradation_params": "{}"})
    store.close()
    out = CliRunner().invoke(cli, ["report", "--results-dir", str(tmp_path / "res"), "--ci"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "Wilcoxon" in out.output and "best" in out.output and "[" in out.output
