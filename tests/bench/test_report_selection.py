"""Issue 14, defect 1: reports show what is in the store once a cell has more than one row.

Three ways a store gets several rows for one (method, degradation, image, seed), each with tiny real
runs (smoke profile, one image, no LPIPS): a second degradation setting under the same label
(`--set noise.sigma=50`), a method whose source was edited (a temporary plugin package), and an image
replaced in a folder dataset. Before the fix the affected cells showed "–", the caption described only
the first setting, `baseline save` silently took the newest rows and `--per-image` had duplicates.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import sys
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import cli
from bench.registry import unregister

RUN = ["run", "--profile", "smoke", "--limit", "1", "--no-lpips", "--no-progress", "-d", "noise"]
FILLED = ("PSNR ↑", "SSIM ↑")  # 64-px smoke crops have no MS-SSIM, --no-lpips no LPIPS


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def run(res, *args):
    result = invoke(*RUN, "--results-dir", res, *args)
    assert result.exit_code == 0, result.output
    return result


def blocks(markdown: str) -> list[tuple[dict[tuple[str, str], dict[str, str]], str]]:
    """Each table of a markdown report: ({(degradation, metric): {method: text}}, caption)."""
    out = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| Degradation |"):
            continue
        methods = [c.strip() for c in line.strip("|").split("|")][2:]
        values = {}
        j = i + 2
        while j < len(lines) and lines[j].startswith("|"):
            cells = [c.strip().strip("*") for c in lines[j].strip("|").split("|")]
            values[(cells[0], cells[1])] = dict(zip(methods, cells[2:]))
            j += 1
        out.append((values, lines[j + 1] if j + 1 < len(lines) else ""))
    return out


def only_block(markdown: str):
    found = blocks(markdown)
    assert len(found) == 1, markdown
    return found[0]


def assert_filled(values, degradations, methods):
    for degradation in degradations:
        for metric in FILLED:
            for method in methods:
                assert values[(degradation, metric)][method] not in ("–", None), (degradation, metric, method)


def per_image(res, *args):
    import io

    import pandas as pd

    result = invoke("report", "--results-dir", res, "--format", "csv", "--per-image", *args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout))


def test_two_noise_settings_are_distinct_labelled_rows(tmp_path):
    res = tmp_path / "res"
    run(res, "-m", "identity,tv")
    second = run(res, "-m", "identity,tv", "--set", "noise.sigma=50")
    sigma50, _ = only_block(second.stdout)  # the second run's own table: sigma 50 alone, labelled "noise"

    report = invoke("report", "--results-dir", res)
    values, caption = only_block(report.stdout)
    assert {d for d, _ in values} == {"noise[sigma=25]", "noise[sigma=50]"}
    assert_filled(values, ["noise[sigma=25]", "noise[sigma=50]"], ["identity", "tv"])
    for method in ("identity", "tv"):
        assert values[("noise[sigma=50]", "PSNR ↑")][method] == sigma50[("noise", "PSNR ↑")][method]
    assert "noise[sigma=25]: Gaussian noise σ=25/255" in caption and "noise[sigma=50]: Gaussian noise σ=50/255" in caption
    assert report.stderr == ""  # nothing hidden: both settings are current

    rows = per_image(res)
    assert len(rows) == 4 and not rows.duplicated(["method", "degradation", "image", "seed"]).any()
    assert {"degradation_params", "method_version", "image_digest", "key"} <= set(rows.columns)
    assert sorted(set(rows["degradation"])) == ["noise[sigma=25]", "noise[sigma=50]"]

    saved = invoke("baseline", "save", "--out", tmp_path / "b.json", "--results-dir", res)
    assert saved.exit_code == 0, saved.output
    cells = json.loads((tmp_path / "b.json").read_text())["cells"]
    assert sorted(cells["tv"]) == ["noise[sigma=25]", "noise[sigma=50]"]
    check = invoke("check", "--baseline", tmp_path / "b.json", "--results-dir", res)
    assert check.exit_code == 0 and "check passed" in check.stdout and "MISSING" not in check.stdout


PLUGIN = '''\
from dataclasses import dataclass

import torch

from bench.api import Method
from bench.registry import register_method

GAIN = {gain}


@register_method("{name}")
class Gain(Method):
    """Scales the observation (a test plugin whose source the test edits)."""

    @dataclass
    class Params:
        pass

    def restore(self, obs, ctx):
        return (obs.y * GAIN).clamp(0, 1)
'''


@pytest.fixture
def edited_plugin(tmp_path, monkeypatch):
    """``(name, edit(gain))``: a method in a temporary package; ``edit`` rewrites its source and reloads it."""
    pkg = f"selplug_{uuid.uuid4().hex[:10]}"
    name = pkg.replace("_", "-")
    root = tmp_path / pkg
    root.mkdir()
    (root / "__init__.py").write_text("")
    source = root / "plugin.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    module = f"{pkg}.plugin"

    def edit(gain: float) -> None:
        before = source.stat() if source.exists() else None
        source.write_text(PLUGIN.format(gain=gain, name=name))
        if before is not None:  # a new mtime as well as new bytes: the code version's memo key
            os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()
        importlib.import_module(module)

    edit(1.0)
    yield name, edit
    unregister("method", name)
    for mod in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[mod]


def test_edited_method_shows_the_current_code(tmp_path, edited_plugin):
    name, edit = edited_plugin
    res = tmp_path / "res"
    old, _ = only_block(run(res, "-m", name).stdout)
    edit(0.8)

    # not re-run yet: the older results are still shown, and the user is told
    stale = invoke("report", "--results-dir", res)
    values, _ = only_block(stale.stdout)
    assert values[("noise", "PSNR ↑")][name] == old[("noise", "PSNR ↑")][name] + "§"  # § = older code, labelled
    assert f"{name}: no results of the current code yet" in stale.stderr

    new, _ = only_block(run(res, "-m", name).stdout)
    assert new[("noise", "PSNR ↑")][name] != old[("noise", "PSNR ↑")][name]
    report = invoke("report", "--results-dir", res)
    values, _ = only_block(report.stdout)
    assert list(values[("noise", "PSNR ↑")]) == [name]
    assert_filled(values, ["noise"], [name])
    assert values[("noise", "PSNR ↑")][name] == new[("noise", "PSNR ↑")][name]
    assert f"not shown: 1 result(s) of older code versions ({name})" in report.stderr

    both, _ = only_block(invoke("report", "--results-dir", res, "--all-versions").stdout)
    older = [c for c in both[("noise", "PSNR ↑")] if c != name]
    assert len(both[("noise", "PSNR ↑")]) == 2 and len(older) == 1 and older[0].startswith(f"{name}[code=")
    assert both[("noise", "PSNR ↑")][older[0]] == old[("noise", "PSNR ↑")][name] + "§"
    assert both[("noise", "PSNR ↑")][name] == new[("noise", "PSNR ↑")][name]
    assert len(per_image(res)) == 1 and len(per_image(res, "--all-versions")) == 2

    saved = invoke("baseline", "save", "--out", tmp_path / "b.json", "--results-dir", res)
    assert saved.exit_code == 0, saved.output
    psnr = json.loads((tmp_path / "b.json").read_text())["cells"][name]["noise"]["psnr"]
    assert psnr["count"] == 1 and f"{psnr['mean']:.2f}" == new[("noise", "PSNR ↑")][name]


def write_image(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(0, 256, (10, 10, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(path)


def test_replaced_image_shows_the_new_content(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "pic.png", 0)
    res = tmp_path / "res"
    args = ("-m", "identity", "--dataset", f"folder:{folder}")
    old, _ = only_block(run(res, *args).stdout)
    write_image(folder / "pic.png", 1)
    new, _ = only_block(run(res, *args).stdout)

    report = invoke("report", "--results-dir", res)
    values, caption = only_block(report.stdout)
    assert_filled(values, ["noise"], ["identity"])
    assert values == new and "Mean over 1 image(s)" in caption
    assert "not shown: 1 result(s) of replaced images (pic)" in report.stderr
    rows = per_image(res)
    assert len(rows) == 1

    both = blocks(invoke("report", "--results-dir", res, "--all-versions").stdout)
    assert [values for values, _ in both] == [new, old]
    assert "[replaced images]" in both[1][1] and "[replaced images]" not in both[0][1]
    every = per_image(res, "--all-versions")
    assert len(every) == 2 and every["image_digest"].nunique() == 2

    assert invoke("baseline", "save", "--out", tmp_path / "b.json", "--results-dir", res).exit_code == 0
    meta = json.loads((tmp_path / "b.json").read_text())["metadata"]
    assert list(meta["images"]) == ["pic"] and meta["images"]["pic"] == rows["image_digest"][0]


def test_baseline_save_refuses_a_cell_it_cannot_choose(tmp_path):
    """Two results of one setting, code version and image (e.g. a checkpoint re-trained in place): the report
    shows the newest and says so; `baseline save` fails with one clear line instead of picking silently."""
    res = tmp_path / "res"
    run(res, "-m", "identity")
    with sqlite3.connect(res / "results.sqlite") as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(cells)")]
        select = ", ".join("'k2'" if c == "key" else "psnr + 1" if c == "psnr" else
                           "'9999-01-01T00:00:00'" if c == "created" else c for c in columns)
        conn.execute(f"INSERT INTO cells ({', '.join(columns)}) SELECT {select} FROM cells")
    report = invoke("report", "--results-dir", res)
    assert "1 cell(s) hold several results" in report.stderr and "identity/noise/astronaut/seed 0" in report.stderr
    rows = per_image(res)
    assert list(rows["key"]) == ["k2"]

    saved = CliRunner().invoke(cli, ["baseline", "save", "--out", str(tmp_path / "b.json"), "--results-dir",
                                     str(res)])
    assert saved.exit_code == 1 and not (tmp_path / "b.json").exists()
    assert "a baseline cannot choose between them" in str(saved.exception)
