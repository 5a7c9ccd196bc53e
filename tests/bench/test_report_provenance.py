"""Provenance in the report itself (issue 28 item 1): cells imported from a bundle (‡), made by another code version
(§) or on other hardware (¶) carry a mark and a caption line in Markdown, LaTeX, HTML and CSV (a column)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from bench.bundle import export_bundle, import_bundle
from bench.cli import report_text
from bench.report import render
from bench.runner import RunConfig, run_grid

REPO = Path(__file__).resolve().parents[2]
PAPER_BUNDLE = REPO / "results" / "reference" / "paper_cpu.zip"
BUNDLE_DATASET = "folder:../shared/data/eval/div2k_valid_crops256"  # the images paper_cpu.zip was computed on


def grid(results, methods, profile="smoke", dataset="builtin", limit=1, **kw):
    return run_grid(RunConfig(methods=methods, degradations=["noise"], limit=limit, profile=profile,
                              dataset=dataset, results_dir=str(results), lpips=False, progress=False, **kw))


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """identity imported from a bundle (computed elsewhere), tv computed here, on the same image."""
    tmp = tmp_path_factory.mktemp("prov")
    grid(tmp / "src", ["identity"])
    export_bundle(tmp / "src", tmp / "ref.zip")
    import_bundle(tmp / "ref.zip", tmp / "store")
    grid(tmp / "store", ["tv"])
    return tmp / "store"


def test_markdown_marks_the_imported_cells_and_names_the_bundle(mixed_store):
    text = report_text(str(mixed_store), "markdown")
    rows = [line for line in text.splitlines() if line.startswith("| noise | PSNR")]
    identity, tv = [c.strip() for c in rows[0].strip("|").split("|")][2:]
    assert identity.endswith("‡") and "‡" not in tv
    assert "Provenance: ‡ = imported from a result bundle, not computed here" in text
    line = next(t for t in text.split("\n\n") if t.startswith("‡ identity (noise"))
    assert "imported from the reference bundle ref.zip" in line and "identity code version" in line
    assert "profile smoke" in line


def test_latex_html_and_csv_carry_the_same_provenance(mixed_store):
    latex = report_text(str(mixed_store), "latex")
    assert r"$^\ddagger$ identity (noise): imported from the reference bundle ref.zip" in latex
    psnr_row = next(line for line in latex.splitlines() if "PSNR" in line and "multirow" in line)
    assert "‡" not in latex and psnr_row.split(" & ")[2].endswith(r"$^\ddagger$")  # identity's cell
    html = report_text(str(mixed_store), "html")
    assert "‡ identity (noise): imported from the reference bundle ref.zip" in html
    csv = pd.read_csv(io.StringIO(report_text(str(mixed_store), "csv")), keep_default_na=False)
    assert "provenance" in csv.columns and csv["provenance"].str.startswith("‡ identity (noise)").all()


def test_a_table_of_imported_cells_only_is_titled_as_the_reference_bundle(tmp_path):
    grid(tmp_path / "src", ["identity"], profile="quick")
    export_bundle(tmp_path / "src", tmp_path / "ref.zip")
    import_bundle(tmp_path / "ref.zip", tmp_path / "store")
    grid(tmp_path / "store", ["tv"])  # computed here, at another profile, on the same image
    text = report_text(str(tmp_path / "store"), "markdown")
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings[0] == "### builtin · profile smoke"  # computed here first, the reference bundle next to it
    assert headings[1].startswith("### builtin · profile quick — identity at its published budget (reference bundle, "
                                  "identity version of 20")
    assert "Computed here on the same images (builtin): profile smoke, the table(s) before this one." in text
    assert "reference bundle, identity version of" in report_text(str(tmp_path / "store"), "latex")


def frame(**extra):
    rows = []
    for method, hardware, version in (("identity", "CPU A", "v1"), ("tv", "GPU B", "v1")):
        for image in "abc":
            rows.append({"method": method, "method_label": method, "degradation": "noise",
                         "degradation_label": "noise", "dataset": "d", "profile": "quick", "image": image,
                         "seed": 0, "status": "ok", "psnr": 20.0 + (method == "tv") + 0.1 * "abc".index(image),
                         "ssim": 0.5, "ms_ssim": None, "lpips": None, "hardware": hardware,
                         "method_version": version, "created": "2026-12-01T00:00:00+0000", **extra})
    return pd.DataFrame(rows)


def test_other_hardware_and_other_code_are_marked():
    rows = frame()
    rows.loc[rows["method"] == "identity", "hardware"] = "CPU A"
    rows = pd.concat([rows, rows[rows["method"] == "identity"].assign(image=lambda f: f["image"] + "2")],
                     ignore_index=True)
    text = render(rows, "markdown")  # identity: 6 cells on CPU A, tv: 3 on GPU B
    assert "¶ tv (noise): computed on GPU B, the table's other cells on CPU A." in text
    assert "§ identity (noise): computed 2026-12-01 by identity code version v1, not the installed" in text
    assert "§ tv (noise)" in text  # v1 is not tv's installed code version either


@pytest.mark.skipif(not PAPER_BUNDLE.exists() or not (REPO / BUNDLE_DATASET.split(":", 1)[1]).is_dir(),
                    reason="needs results/reference/paper_cpu.zip and the DIV2K crops it was computed on")
def test_acceptance_paper_bundle_next_to_cells_computed_here(tmp_path, monkeypatch):
    """bench import results/reference/paper_cpu.zip, then identity computed here on the same images."""
    monkeypatch.chdir(REPO)
    store = tmp_path / "store"
    import_bundle(PAPER_BUNDLE, store)
    run_grid(RunConfig(methods=["identity"], degradations=["jpeg"], limit=2, crop=256, profile="quick",
                       dataset=BUNDLE_DATASET, results_dir=str(store), lpips=False, progress=False,
                       overrides={"jpeg": {"quality": 10}}))
    for fmt in ("markdown", "latex"):
        text = report_text(str(store), fmt)
        assert "dip at its published budget (reference bundle, dip version of 2026-11-30)" in text, fmt
        assert "imported from the reference bundle paper\\_cpu.zip" in text if fmt == "latex" else \
            "imported from the reference bundle paper_cpu.zip" in text
        assert "dip code version 4a8aa9b2" in text, fmt
        assert "Computed here on the same images" in text, fmt
