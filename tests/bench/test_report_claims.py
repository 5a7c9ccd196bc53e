"""Reports that only claim what the data shows (issue 28 item 2): no bold on ties, bold with few images or --ci only
where significant, LaTeX that compiles with booktabs (one header row, no doubled rule), figures as a reader needs
them (no box from fewer than 5 points, convergence curves all normalised or none)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest

from bench.figures import method_colors
from bench.plots import MIN_BOX, convergence_figure, distribution_figure
from bench.report import per_image_html, render
from bench.tables import build_tables


def row(method, image, psnr, ssim=0.5, degradation="noise", trace=None):
    return {"method": method, "method_label": method, "degradation": degradation, "degradation_label": degradation,
            "degradation_description": "σ=25", "dataset": "d", "profile": "quick", "image": image, "seed": 0,
            "status": "ok", "psnr": psnr, "ssim": ssim, "ms_ssim": None, "lpips": None, "seconds": 1.0,
            "trace": trace}


def frame(n_images, gap, ssim_tie=True):
    """tv beats identity by ``gap`` dB on every image; SSIM tied as displayed (0.7773) when ``ssim_tie``."""
    rows = []
    for i in range(n_images):
        rows.append(row("identity", f"i{i}", 20.0 + i, ssim=0.77731))
        rows.append(row("tv", f"i{i}", 20.0 + i + gap + 0.001 * i, ssim=0.77729 if ssim_tie else 0.8))
    return pd.DataFrame(rows)


def bold(table, metric):
    return [m for m in table.values.columns if table.best.loc[("noise", metric), m]]


def test_no_bold_when_the_best_is_tied_as_displayed():
    table = build_tables(frame(8, 1.0))[0]
    assert bold(table, "PSNR ↑") == ["tv"]  # 8 images, a clear gap: bold as before
    assert bold(table, "SSIM ↑") == [] and list(table.top.loc[("noise", "SSIM ↑")]) == [True, True]
    assert "Best per row in bold (none when the best is tied as displayed)" in table.caption
    assert "| noise | SSIM ↑ | 0.7773 | 0.7773 |" in render(frame(8, 1.0), "markdown")


def test_with_fewer_than_3_images_bold_only_where_significant():
    two = build_tables(frame(2, 0.01))[0]  # 0.01 dB over two images: nothing to claim
    assert bold(two, "PSNR ↑") == []
    assert "with fewer than 3 images, bold only where the best differs from the runner-up at p < 0.05" in two.caption
    assert "Wilcoxon signed-rank test" in two.caption and "nothing is bold" in two.caption
    assert "**" not in render(frame(2, 0.01), "markdown")


def test_with_ci_bold_only_where_the_paired_test_is_significant():
    rows = frame(8, 1.0, ssim_tie=False)  # tv better on every one of 8 images: Wilcoxon p = 0.008
    noisy = rows.copy()
    noisy.loc[noisy["method"] == "tv", "psnr"] += [0.5, -0.6, 0.4, -0.5, 0.6, -0.4, 0.5, -0.45]  # mixed signs
    clear = build_tables(rows, ci=True)[0]
    assert bold(clear, "PSNR ↑") == ["tv"] and "with --ci, bold only where" in clear.caption
    unclear = build_tables(noisy.assign(psnr=noisy["psnr"] - 1.0 * (noisy["method"] == "tv")), ci=True)[0]
    assert bold(unclear, "PSNR ↑") == [] and list(unclear.top.loc[("noise", "PSNR ↑")]).count(True) == 1
    text = render(rows, "markdown", ci=True)
    assert "**" in text.split("p-values")[0] and "with --ci, bold only where" in text


LATEX = r"""% dataset d, profile quick
\begin{table}
\centering
\caption{Mean over 8 image(s) of d (seeds 0), profile quick. Degradations -- noise: $\sigma$=25. Best per row in bold (none when the best is tied as displayed); -- = missing or failed cells. Metrics: PSNR on RGB (data range 255); SSIM and MS-SSIM on the luma Y = 0.299 R + 0.587 G + 0.114 B (Gaussian window 11, $\sigma$ = 1.5); LPIPS AlexNet v0.1 (inputs in [-1, 1]); each of the restored image clipped to [0, 1] and rounded to 8 bits against the clean image, no border cropped. LPIPS --: 16 cell(s) have no LPIPS (computed with -{}-no-lpips or without its AlexNet weights); bench rescore -{}-metrics lpips fills it in.}
\begin{tabular}{llrr}
\toprule
Degradation & Metric & identity & tv \\
\midrule
\multirow[t]{4}{*}{noise} & PSNR $\uparrow$ & 23.50 & \bfseries 24.50 \\
 & SSIM $\uparrow$ & 0.7773 & 0.7773 \\
 & MS-SSIM $\uparrow$ & -- & -- \\
 & LPIPS $\downarrow$ & -- & -- \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_latex_has_one_header_row_and_no_doubled_rule():
    text = render(frame(8, 1.0), "latex")
    assert text == LATEX
    assert r"\cline" not in text and text.count(r"\toprule") == 1 and text.count(" & Metric & ") == 1


def test_latex_separates_degradations_with_midrule_not_before_bottomrule():
    rows = pd.concat([frame(3, 1.0), frame(3, 1.0).assign(degradation_label="jpeg", degradation="jpeg")],
                     ignore_index=True)
    text = render(rows, "latex")
    body = text.split(r"\midrule", 1)[1]
    assert body.count(r"\midrule") == 1 and r"\midrule" + "\n" + r"\bottomrule" not in text
    assert text.splitlines()[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]


def have_latex() -> bool:
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None:
        return False
    found = subprocess.run(["kpsewhich", "booktabs.sty", "multirow.sty"], capture_output=True, text=True)
    return len(found.stdout.split()) == 2


@pytest.mark.skipif(not have_latex(), reason="pdflatex with booktabs and multirow is not installed")
def test_latex_compiles_with_booktabs(tmp_path):
    rows = pd.concat([frame(3, 1.0), frame(3, 1.0).assign(degradation_label="jp_eg&", method_label="t_v")],
                     ignore_index=True)
    body = render(rows, "latex") + "\n" + render(rows, "latex", ci=True)
    doc = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
           "\\usepackage{booktabs}\n\\usepackage{multirow}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
    log = (tmp_path / "t.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_no_box_plot_below_5_points():
    colors = method_colors(["identity", "tv"])
    few = distribution_figure(frame(MIN_BOX - 1, 1.0), colors)
    assert not few.figure.axes[0].patches  # points only
    many = distribution_figure(frame(MIN_BOX, 1.0), colors)
    assert len(many.figure.axes[0].patches) == 2  # one box per method
    assert "boxes (quartiles, whiskers 1.5 IQR) only where a method has at least 5 points" in \
        few.figure.get_supxlabel()


def test_convergence_curves_are_all_normalised_or_none():
    rows = pd.DataFrame([row("tv", "a", 20.0, trace=json.dumps({"loss": [5.0, 2.0, 1.0]})),
                         row("flowprior", "a", 21.0, trace=json.dumps({"loss": [3.0, -1.0, -2.0]}))])
    fig = convergence_figure(rows, method_colors(["tv", "flowprior"]))
    panels = [ax for ax in fig.figure.axes if ax.get_visible()]
    assert len(panels) == 2 and {ax.get_yscale() for ax in panels} == {"linear"}
    assert all("0 = min, 1 = max" in ax.get_ylabel() for ax in panels)  # tv too, though its loss stays positive
    positive = convergence_figure(rows.iloc[:1], method_colors(["tv"]))
    assert [ax.get_yscale() for ax in positive.figure.axes if ax.get_visible()] == ["log"]


def test_the_per_image_parameter_column_wraps():
    params = json.dumps({"iterations": 300, "weight": 0.08, "step": 0.25, "schedule": "cosine", "restarts": 2})
    text = per_image_html(pd.DataFrame({"method": ["tv"], "method_params": [params]}))
    assert "<span class='long'>" in text and "&quot;schedule&quot;" in text
