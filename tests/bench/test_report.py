"""Report rendering (synthetic rows, no runs): n/a vs missing, † below budget, displayed ties, headings, HTML."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from bench.report import per_image_frame, render
from bench.tables import build_tables

NA_REASON = "bm3d does not apply to the task 'sr': BM3D has no super-resolution scheme here"


def row(method, degradation, image="x", profile="quick", status="ok", psnr=25.0, ssim=0.8, fraction=None,
        reference=3000, error=None):
    budget = json.dumps({"used": round(fraction * reference), "reference": reference, "unit": "iterations",
                         "source": "Ulyanov et al. 2018"}) if fraction is not None else None
    ok = status == "ok"
    return {"method": method, "method_label": method, "degradation": degradation, "degradation_label": degradation,
            "degradation_description": f"{degradation} definition", "dataset": "builtin", "profile": profile,
            "image": image, "image_digest": image, "seed": 0, "status": status, "error": error,
            "psnr": psnr if ok else None, "ssim": ssim if ok else None, "ms_ssim": None, "lpips": None,
            "seconds": 1.0, "budget_fraction": fraction, "budget": budget, "created": "t"}


@pytest.fixture
def frame():
    return pd.DataFrame([
        row("identity", "noise", psnr=20.0, ssim=0.77731),
        row("bm3d", "noise", psnr=28.0, ssim=0.77729),  # a displayed tie with identity: 0.7773 both
        row("dip", "noise", psnr=22.0, ssim=0.5, fraction=0.1),
        row("identity", "sr", psnr=23.0, ssim=0.7),
        row("bm3d", "sr", status="n/a", error=NA_REASON),
        row("dip", "sr", status="failed", error="RuntimeError: boom"),
        row("identity", "noise", profile="smoke", psnr=19.0),
        row("dip", "noise", profile="smoke", psnr=18.0, fraction=0.01),
    ])


def table_rows(markdown: str, heading: str) -> dict[tuple[str, str], list[str]]:
    lines = markdown.splitlines()
    start = lines.index(f"### {heading}")
    out = {}
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[(cells[0], cells[1])] = cells[2:]
    return out


def test_markdown_marks_na_missing_budget_and_ties(frame):
    text = render(frame, "markdown")
    quick = table_rows(text, "builtin · profile quick")  # columns: identity, bm3d, dip
    # one image: no difference can be significant, so nothing is bold (tests/bench/test_report_claims.py)
    assert quick[("noise", "PSNR ↑")] == ["20.00", "28.00", "22.00†"]
    assert quick[("noise", "SSIM ↑")] == ["0.7773", "0.7773", "0.5000†"]  # a displayed tie: no bold either
    assert quick[("sr", "PSNR ↑")] == ["23.00", "n/a", "–"]  # n/a (by design) is not – (failed); a lone value: no bold
    assert f"n/a: {NA_REASON}." in text.split("\n\n")
    assert "† dip: 10 % of the reference 3000 iterations (profile quick; reference: Ulyanov et al. 2018)." in text
    smoke = table_rows(text, "builtin · profile smoke")
    assert smoke[("noise", "PSNR ↑")] == ["19.00", "18.00†"]
    assert "† dip: 1 % of the reference 3000 iterations (profile smoke; reference: Ulyanov et al. 2018)." in text
    assert text.count(NA_REASON) == 1  # the reason once, not per metric row


def test_full_budget_and_old_rows_are_unmarked(frame):
    full = frame.assign(budget_fraction=frame["budget_fraction"].map(lambda f: 1.0 if f == f and f else f))
    assert "†" not in render(full, "markdown")
    old = frame.drop(columns=["budget_fraction", "budget"])  # a store made before the budget columns
    assert "†" not in render(old, "markdown") and "n/a" in render(old, "markdown")


def test_latex_marks(frame):
    text = render(frame, "latex")
    assert "% dataset builtin, profile quick" in text and "% dataset builtin, profile smoke" in text
    assert "22.00$^\\dagger$" in text and "& n/a &" in text and "$^\\dagger$ dip: 10 \\%" in text
    assert "†" not in text and "–" not in text


def test_csv_keeps_numbers_and_says_na(frame):
    out = pd.read_csv(io.StringIO(render(frame, "csv")), keep_default_na=False)
    quick_sr = out[(out["profile"] == "quick") & (out["degradation"] == "sr") & (out["metric"] == "PSNR ↑")].iloc[0]
    assert quick_sr["bm3d"] == "n/a" and quick_sr["dip"] == "" and float(quick_sr["identity"]) == 23.0
    assert quick_sr["notes"] == f"n/a bm3d: {NA_REASON}"
    quick_noise = out[(out["profile"] == "quick") & (out["degradation"] == "noise")].iloc[0]
    assert float(quick_noise["dip"]) == 22.0 and quick_noise["notes"].startswith("† dip: 10 % of the reference 3000")


def test_html_uses_the_width_has_headings_and_no_none(frame):
    text = render(frame, "html", per_image=True)
    assert "max-width:1400px" in text and "overflow-x:auto" in text and "name='viewport'" in text
    assert "<h2>builtin · profile quick</h2>" in text and "<h2>builtin · profile smoke</h2>" in text
    assert ">n/a</td>" in text and "22.00†" in text
    per_image = text[text.index("<h2>Per image</h2>"):]
    assert "None" not in per_image and "nan" not in per_image and "<td>–</td>" in per_image


def test_per_image_rows_carry_status_reason_and_budget(frame):
    rows = per_image_frame(frame)
    na = rows[rows["status"] == "n/a"].iloc[0]
    assert na["method"] == "bm3d" and na["error"] == NA_REASON
    assert sorted(rows.loc[rows["method"] == "dip", "budget_fraction"].dropna()) == [0.01, 0.1]


def test_ci_tables_carry_the_marks(frame):
    text = render(frame, "markdown", ci=True)
    assert "### builtin · profile quick: means and confidence intervals" in text
    assert "22.00†" in text and "| n/a |" in text and f"n/a: {NA_REASON}." in text


def test_tables_record_na_and_below(frame):
    quick = next(t for t in build_tables(frame) if t.profile == "quick")
    assert quick.mark("sr", "bm3d") == "n/a" and quick.mark("noise", "dip") == "†" and quick.mark("sr", "dip") == ""
    assert quick.heading == "builtin · profile quick"


def test_the_caption_counts_each_degradations_images_when_a_store_is_partial():
    """An interrupted grid: noise has 3 images, jpeg 1; each row's mean covers its own images, and says so."""
    rows = [row(m, "noise", image=i, psnr=p) for i in "abc" for m, p in (("identity", 20.0), ("tv", 27.0))]
    rows += [row("identity", "jpeg", image="a", psnr=26.0), row("tv", "jpeg", image="a", psnr=26.5)]
    partial = build_tables(pd.DataFrame(rows))[0]
    assert "Mean over the images each degradation has (noise: 3, jpeg: 1) of builtin" in partial.caption
    assert partial.values.loc[("jpeg", "PSNR ↑"), "tv"] == 26.5
    whole = build_tables(pd.DataFrame([r for r in rows if r["degradation"] == "noise"]))[0]
    assert "Mean over 3 image(s) of builtin" in whole.caption


def test_a_weights_note_becomes_one_caption_line_per_method_in_every_format():
    rows = [row("identity", "noise", psnr=20.0), row("flowprior", "noise", psnr=24.0)]
    rows[1]["budget"] = json.dumps({"used": 60, "reference": 200, "unit": "iterations", "source": "S"})
    rows[1]["weights"] = "trained here on one CPU core"
    rows[1]["budget_fraction"] = 0.3
    frame = pd.DataFrame(rows + [dict(rows[1], image="y"), dict(rows[0], image="y")])
    for fmt in ("markdown", "latex", "html"):
        text = render(frame, fmt)
        assert text.count("Weights of flowprior: trained here on one CPU core.") == 1, fmt
