"""The ``bench`` command line: run, report, list, metrics, data, train.

Example:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(cli, ["list"])
    >>> result.exit_code, "identity" in result.output
    (0, True)
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import click

from bench.bundle_cli import export_command, import_command, provenance_command, provenance_notes, with_provenance
from bench.config import check_filters, show_warnings_as_lines
from bench.errors import BenchError, storage_writes, write_fault
from bench.metric_specs import default_tolerances
from bench.profiles import PROFILES
from bench.rescore import rescore_command
from bench.standard_sets import STANDARD_SETS
from bench.stored_images import recomputed_warnings

log = logging.getLogger("bench")
ALL_VERSIONS_HELP = ("Also results of older code versions (labelled [code=…]) and of replaced images (their own "
                     "table); by default only current ones are shown.")


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """restoration-bench: compare image restoration priors on the same images, degradations and metrics."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="torchvision")
    show_warnings_as_lines()  # `warning: MESSAGE`, never Python's file:line and source echo


@cli.command()
@click.option("--methods", "-m", help="Comma-separated methods (see `bench list`).")
@click.option("--degradations", "-d", help="Comma-separated degradations.")
@click.option("--dataset", help="builtin (default), folder:PATH or a standard set: " + "|".join(STANDARD_SETS) + ".")
@click.option("--data-root", help="Folder holding the standard sets (NAME/, div2k: DIV2K_valid_HR/; default $BENCH_DATA_ROOT or the cache).")
@click.option("--limit", type=int, help="Use the first N images (default: the profile's).")
@click.option("--crop", type=int, help="Centre crop size in px (default: the profile's).")
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Compute budget (default quick).")
@click.option("--results-dir", help="Results store (default ./results).")
@click.option("--seed", "seeds", help="Seed or comma-separated seeds (default 0).")
@click.option("--set", "sets", multiple=True, metavar="NAME.PARAM=VALUE",
              help="Override a parameter; comma-separated values make a grid. Repeatable.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file with any of these options.")
@click.option("--device", default=None, help="torch device for methods (default cpu).")
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS (recorded as missing).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on when a terminal).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default 1: in this process).")
@click.option("--executor", type=click.Choice(["local", "dask"]), help="local processes (default) or a Dask cluster.")
@click.option("--scheduler", help="Address of an existing Dask scheduler (with --executor dask).")
@click.option("--gpus-per-cell", type=float, help="Dask resource GPU per cell; workers need --resources GPU=N.")
def run(**options: Any) -> None:
    """Run the grid methods × degradations × images × seeds; cached cells are not recomputed."""
    from bench.config import parse_overrides, run_config_from_options
    from bench.keycache import run_or_recall

    # Everything is validated here, before any image is read or any cell computed (bench.config is the schema).
    run_config = run_config_from_options(options, parse_overrides(options["sets"]))
    # all cells cached and their keys remembered: no torch, no plugins, no images read (bench/keycache.py);
    # bench.run (bench/python_api.py) makes its run with the same calls (run_config_from_options, run_or_recall)
    summary = run_or_recall(run_config, table=True)  # one store connection: the cells and their table
    click.echo(summary.table)
    for error in summary.errors[:10]:
        click.echo(f"failed: {error}", err=True)
    for line in recomputed_warnings(summary.corrupt, summary.missing):  # damaged or absent stored PNGs
        click.echo(line, err=True)
    click.echo(summary.line(), err=True)  # stdout holds the table only (it can be redirected to a file)
    if summary.failed:
        sys.exit(1)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["latex", "markdown", "csv", "html"]), default="markdown")
@click.option("--per-image", is_flag=True, help="Per-image rows (csv) or table (html).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--methods", "-m", help="Only these methods.")
@click.option("--degradations", "-d", help="Only these degradations.")
@click.option("--dataset", help="Only this dataset.")
@click.option("--profile", help="Only this profile.")
@click.option("--ci", is_flag=True, help="Means with 95% bootstrap CIs over images and paired p-values vs the best.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Embed figures (html only).")
@click.option("--all-versions", is_flag=True, help=ALL_VERSIONS_HELP)
def report(fmt: str, per_image: bool, out: str | None, results_dir: str, methods: str | None,
           degradations: str | None, dataset: str | None, profile: str | None, ci: bool, figures: bool,
           all_versions: bool) -> None:
    """Table-1 report of the store: rows degradation × metric, columns methods.

    html is one self-contained page: tables, figures (base64 PNG) and sortable per-image results."""
    text = report_text(results_dir, fmt, per_image, _csv(methods), _csv(degradations), dataset, profile, ci, figures,
                       all_versions)
    if out:
        with storage_writes(out, "--out"):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


def report_text(results_dir: str, fmt: str = "markdown", per_image: bool = False, methods: list[str] | None = None,
                degradations: list[str] | None = None, dataset: str | None = None, profile: str | None = None,
                ci: bool = False, figures: bool = True, all_versions: bool = False) -> str:
    """The report ``bench report`` prints and ``bench.report`` (the Python API) returns; notes go to stderr."""
    from bench.report import render, stored_image_notes

    df = _results_frame(results_dir)
    methods_wanted, degradations_wanted = check_filters(df, list(methods or []), list(degradations or []), dataset,
                                                        profile)
    colors = None
    if fmt == "html" and figures:
        from bench.figures import store_colors

        colors = store_colors(df, all_versions)  # from the whole store: the same colours as `bench figures`
    df = _shown(_filter(df, dataset, profile), all_versions)
    for note in provenance_notes(results_dir, df, methods_wanted, degradations_wanted):  # imported cells
        click.echo(f"note: {note}", err=True)
    df = with_provenance(df, results_dir)  # the tables mark imported cells (‡) and name their bundle
    image_notes = stored_image_notes(df, results_dir, methods_wanted, degradations_wanted)  # missing, truncated
    for note in dict.fromkeys(image_notes.values()):
        click.echo(note, err=True)
    return render(df, fmt, per_image=per_image or fmt == "html", methods=methods_wanted,
                  degradations=degradations_wanted, ci=ci, figures_root=results_dir if colors else None,
                  colors=colors, image_notes=image_notes)


@cli.command(name="list")
def list_cmd() -> None:
    """Methods, degradations, datasets and profiles with their parameters and defaults."""
    from bench.datasets import DATASET_HELP
    from bench.registry import available, describe_parameters

    for kind, title in (("method", "Methods"), ("degradation", "Degradations")):
        click.echo(f"{title}:")
        for name, cls in available(kind).items():
            click.echo(f"  {name:<12} {cls.summary()}")
            for line in describe_parameters(cls.Params):
                click.echo(f"      {line}")
            for profile, values in (cls.profiles if kind == "method" else {}).items():
                click.echo(f"      profile {profile}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    click.echo("Datasets:")
    for name, text in DATASET_HELP.items():
        click.echo(f"  {name:<12} {text}")
    click.echo("Profiles:")
    for profile in PROFILES.values():
        click.echo(f"  {profile.name:<12} {profile.description}")


@cli.command()
@click.argument("ref", type=click.Path(exists=True, dir_okay=False))
@click.argument("dist", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="Print strict JSON: null for a missing or infinite value, psnr_infinite: true for identical images.")
def metrics(ref: str, dist: str, as_json: bool) -> None:
    """PSNR, SSIM, MS-SSIM and LPIPS of one image pair (REF is the reference)."""
    from bench.compute import to_tensor
    from bench.images import load_image, to_uint8
    from bench.metrics import MetricSuite

    a, b = load_image(ref), load_image(dist)
    if a.shape != b.shape:
        raise BenchError(f"images differ in size: {ref} is {a.shape[1]}×{a.shape[0]}, {dist} is {b.shape[1]}×{b.shape[0]}.")
    to8 = lambda x: to_tensor(to_uint8(x).astype("float32") / 255.0)  # noqa: E731
    values = MetricSuite()(to8(a), to8(b))
    if as_json:  # strict JSON: a missing (NaN) or infinite value is null; identical images flag psnr_infinite
        out: dict[str, Any] = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        out["psnr_infinite"] = values["psnr"] == math.inf
        click.echo(json.dumps(out, allow_nan=False))
    else:
        for name, value in values.items():
            click.echo(f"{name:<8} {value:.4f}" if value == value else f"{name:<8} missing")


@cli.group()
def data() -> None:
    """Dataset helpers."""


@data.command("download")
@click.argument("name", type=click.Choice(list(STANDARD_SETS)))
@click.option("--data-root", help="Where to put NAME/ (div2k: DIV2K_valid_HR/; default $BENCH_DATA_ROOT or ~/.cache/restoration-bench).")
@click.option("--sha256", help="The archive's sha256, checked too (required for a source without a checksum).")
@click.option("--trust", is_flag=True, help="Accept a source that has no recorded checksum, unverified.")
def data_download(name: str, data_root: str | None, sha256: str | None, trust: bool) -> None:
    """Download a standard test set from its public source and verify its checksum before it is kept."""
    from bench.standard_sets import download

    click.echo(download(name, data_root, sha256=sha256, trust=trust).line(name))


class TrainGroup(click.Group):
    """``bench train NAME``: subcommands are the trainers plugins register.

    >>> isinstance(cli.commands["train"], TrainGroup)
    True
    """

    def _trainers(self) -> dict[str, click.Command]:
        from bench.registry import available

        return available("trainer")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._trainers())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._trainers().get(name)


@cli.group(cls=TrainGroup)
def train() -> None:
    """Train a prior (flow prior, denoising auto-encoder, ...) on clean images."""


def _results_frame(results_dir: str) -> Any:
    """All cells of a results store as a DataFrame; a clear error when there is no store. Read-only: reports,
    checks and figures never write to the store, so a read-only one (a shared folder, an archive) works."""
    from bench.store import DB_NAME, Store

    if not (Path(results_dir) / DB_NAME).exists():
        raise BenchError(f"no results in '{results_dir}'; run `bench run` first or pass --results-dir.")
    store = Store(results_dir, read_only=True)
    try:
        return store.dataframe()
    finally:
        store.close()


def _shown(df: Any, all_versions: bool) -> Any:
    """The rows reports show (:func:`bench.selection.select`); what that leaves out is said on stderr."""
    from bench.selection import select

    shown = select(df, all_versions)
    for note in shown.notes():
        click.echo(f"note: {note}", err=True)
    return shown.rows


def _filter(df: Any, dataset: str | None, profile: str | None) -> Any:
    """Rows of one dataset and/or profile; a clear error when nothing is left."""
    from bench.selection import select_rows

    df = select_rows(df, dataset=dataset, profile=profile)
    if df.empty:
        raise BenchError("no results match the filters.")
    return df


@cli.group()
def baseline() -> None:
    """Metric baselines for regression checks (compare with `bench check`)."""


@baseline.command("save")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Baseline JSON, e.g. results/baselines/NAME.json.")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--methods", "-m", help="Only these methods.")
@click.option("--degradations", "-d", help="Only these degradations.")
@click.option("--dataset", help="Only this dataset (required when the store holds several).")
@click.option("--profile", help="Only this profile (required when the store holds several).")
@click.option("--all-versions", is_flag=True, help=ALL_VERSIONS_HELP)
def baseline_save(out: str, results_dir: str, methods: str | None, degradations: str | None,
                  dataset: str | None, profile: str | None, all_versions: bool) -> None:
    """Save mean metrics per (method, degradation) of one dataset and profile (the rows `bench report` shows)."""
    from bench.baseline import make_baseline, save_baseline

    df = _results_frame(results_dir)
    base = make_baseline(df, *check_filters(df, _csv(methods), _csv(degradations), dataset, profile), dataset, profile,
                         all_versions=all_versions)
    save_baseline(base, out)
    n = sum(len(d) for d in base.cells.values())
    click.echo(f"wrote {out}: {len(base.cells)} method(s), {n} cell(s), {len(base.metadata['images'])} image(s) "
               f"of {base.metadata['dataset']} / {base.metadata['profile']}")


@cli.command()
@click.option("--baseline", "baseline_path", required=True, type=click.Path(dir_okay=False), help="Baseline JSON.")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--tolerance", help="Allowed change per metric, e.g. "
              + ",".join(f"{k}={v:g}" for k, v in default_tolerances().items()) + " (these are the defaults).")
@click.option("--strict", is_flag=True, help="Also fail on improvements beyond tolerance (refresh the baseline).")
@click.option("--only-changes", is_flag=True, help="Hide unchanged rows.")
def check(baseline_path: str, results_dir: str, tolerance: str | None, strict: bool, only_changes: bool) -> None:
    """Compare the store with a baseline; exit 1 on regressions or missing cells."""
    from bench.baseline import compare, format_check, load_baseline, parse_tolerances

    tolerances = parse_tolerances(tolerance)
    base = load_baseline(baseline_path)
    result = compare(base, _results_frame(results_dir), tolerances, strict=strict)
    click.echo(f"baseline {baseline_path}: {base.metadata['dataset']} / {base.metadata['profile']}, "
               f"{len(base.metadata.get('images', {}))} image(s), created {base.metadata.get('created', '?')}")
    click.echo(format_check(result, only_changes=only_changes))
    if result.failed:
        sys.exit(1)


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--methods", "-m", help="Only these methods.")
@click.option("--degradations", "-d", help="Only these degradations.")
@click.option("--dataset", help="Only this dataset.")
@click.option("--profile", help="Only this profile.")
@click.option("--image", help="Comparison grids of this image id only.")
@click.option("--zoom", help="Zoomed inset x,y,w,h in pixels of the clean image.")
@click.option("--data-root", help="DIV2K location, to reload clean images of the div2k dataset.")
@click.option("--format", "formats", default="png,pdf", show_default=True, help="Comma-separated file formats.")
@click.option("--all-versions", is_flag=True, help=ALL_VERSIONS_HELP)
def figures(out: str, results_dir: str, methods: str | None, degradations: str | None, dataset: str | None,
            profile: str | None, image: str | None, zoom: str | None, data_root: str | None, formats: str,
            all_versions: bool) -> None:
    """Comparison grids, per-image PSNR distributions and convergence curves (PNG and PDF)."""
    from bench.figures import build_figures, parse_zoom, save_figure, store_colors
    from bench.selection import select_rows

    df = _results_frame(results_dir)
    methods_wanted, degradations_wanted = check_filters(df, _csv(methods), _csv(degradations), dataset, profile)
    colors = store_colors(df, all_versions)  # before filtering: a method keeps its colour everywhere
    df = _shown(_filter(df, dataset, profile), all_versions)
    df = _filter(select_rows(df, methods_wanted, degradations_wanted), None, None)
    kinds = tuple(_csv(formats))
    if not kinds or set(kinds) - {"png", "pdf", "svg"}:
        raise BenchError(f"--format '{formats}': use png, pdf and/or svg, comma-separated.")
    written = 0
    for fig in build_figures(df, results_dir, colors, image=image, zoom=parse_zoom(zoom), data_root=data_root):
        paths = save_figure(fig, out, kinds)
        written += len(paths)
        for note in fig.notes:
            click.echo(f"note: {fig.name}: {note}", err=True)
        fig.figure.clear()
    click.echo(f"wrote {written} file(s) to {out}")


cli.add_command(rescore_command)  # `bench rescore`, defined beside its implementation
for _command in (export_command, import_command, provenance_command):  # result bundles (bench/bundle_cli.py)
    cli.add_command(_command)


class _Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C (every ``finally`` runs: completed cells stay, workers are stopped)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise _Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``argv``: the arguments, default ``sys.argv[1:]``): user errors become one line
    ``error: ...`` and an exit code, no traceback. SIGTERM (timeout, SLURM, Kubernetes) stops like Ctrl-C."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main_thread else None
    try:
        cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except _Terminated:
        click.echo("terminated (SIGTERM); completed cells are saved and will not be recomputed", err=True)
        sys.exit(143)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:  # click's own usage errors, in the same one-line form as ours
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"error: {' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(err.exit_code)
    except BenchError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except OSError as err:  # no space, or a read-only file system, where no caller said which option to change
        fault = write_fault(err)
        if fault is None:
            raise
        click.echo(f"error: {fault}", err=True)
        sys.exit(fault.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; completed cells are saved and will not be recomputed", err=True)
        sys.exit(130)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    main()
