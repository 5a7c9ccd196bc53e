"""``bench export``, ``bench import`` and ``bench provenance``: sharing results as bundles (:mod:`bench.bundle`).

Provenance of imported cells (which bundle, when it was made and by which bench, on which hardware each
cell was computed) is listed by ``bench provenance`` and summed up in a ``note:`` of ``bench report``.

Example:
    >>> import tempfile
    >>> imported_cells(tempfile.mkdtemp())
    {}
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchError, storage_writes
from bench.store import DB_NAME, Store


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def imported_cells(results_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{key: provenance}`` of a store's cells that came from bundles and were not recomputed here since: the
    bundle's name and id, when it was imported, its origin (made when, by which bench, where) and the hardware
    the cell was computed on."""
    if not (Path(results_dir) / DB_NAME).exists():
        return {}
    store = Store(results_dir, read_only=True)
    try:
        if store.execute("SELECT 1 FROM sqlite_master WHERE name = 'provenance'").fetchone() is None:
            return {}
        rows = store.execute("SELECT p.key, p.bundle, p.bundle_id, p.imported, p.origin, c.hardware, c.method_label, "
                             "c.degradation_label, c.image, c.seed FROM provenance p JOIN cells c "
                             "ON c.key = p.key AND c.created IS p.created").fetchall()
    finally:
        store.close()
    return {r["key"]: {**dict(r), "origin": json.loads(r["origin"] or "{}")} for r in rows}


def _bundle_line(name: str, cells: list[dict[str, Any]]) -> str:
    origin = cells[0]["origin"]
    exported = origin.get("exported_on") or {}
    hardware = Counter(c["hardware"] or "unknown hardware" for c in cells)
    return (f"{len(cells)} cell(s) from bundle {name} (id {cells[0]['bundle_id']}), made {origin.get('created', '?')} "
            f"by bench {origin.get('bench_version', '?')} (python {exported.get('python', '?')}, torch "
            f"{exported.get('torch', '?')}); computed on " + "; ".join(f"{h} ×{n}" for h, n in hardware.items()))


def provenance_notes(results_dir: str | os.PathLike, shown: Any, methods: list[str] | None = None,
                     degradations: list[str] | None = None) -> list[str]:
    """``note:`` lines for a report: how many of the ``shown`` rows (of these methods and degradations) were
    imported, from which bundles."""
    from bench.selection import select_rows

    info = imported_cells(results_dir)
    if not info or not len(shown) or "key" not in shown:
        return []
    cells = [info[k] for k in select_rows(shown, methods, degradations)["key"] if k in info]
    by_bundle: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_bundle.setdefault(cell["bundle"], []).append(cell)
    notes = []
    for name, group in by_bundle.items():
        hardware = "; ".join(sorted({c["hardware"] or "unknown hardware" for c in group}))
        notes.append(f"{len(group)} of the cells shown come from bundle {name} (made "
                     f"{group[0]['origin'].get('created', '?')[:10]}, computed on {hardware}); `bench provenance` "
                     "lists them.")
    return notes


def with_provenance(df: Any, results_dir: str | os.PathLike) -> Any:
    """``df`` with the columns ``bundle`` (the bundle's file name), ``bundle_made`` (its date) and ``bundle_bench``
    (the bench that made it) on the rows imported from a bundle and not recomputed since (None elsewhere): what the
    report's ‡ marks and their caption lines say (:func:`bench.annotations.provenance`)."""
    info = imported_cells(results_dir)
    if not info or "key" not in df.columns:
        return df
    cell = [info.get(k) for k in df["key"]]
    return df.assign(bundle=[c["bundle"] if c else None for c in cell],
                     bundle_made=[str(c["origin"].get("created") or "?")[:10] if c else None for c in cell],
                     bundle_bench=[c["origin"].get("bench_version") if c else None for c in cell])


SELECTION_OPTIONS = [
    click.option("--results-dir", default="results", show_default=True),
    click.option("--methods", "-m", help="Only these methods."),
    click.option("--degradations", "-d", help="Only these degradations."),
    click.option("--dataset", help="Only this dataset."),
    click.option("--profile", help="Only this profile."),
    click.option("--all-versions", is_flag=True, help="Also results of older code versions and replaced images "
                 "(by default: the cells `bench report` shows)."),
]


def _with_selection(command: Any) -> Any:
    for option in reversed(SELECTION_OPTIONS):
        command = option(command)
    return command


@click.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The bundle to write, e.g. results.zip.")
@_with_selection
def export_command(out: str, results_dir: str, methods: str | None, degradations: str | None, dataset: str | None,
                   profile: str | None, all_versions: bool) -> None:
    """Write the cells `bench report` shows (rows, images, provenance) into one bundle file (zip)."""
    from bench.bundle import export_bundle  # pandas and torch only when needed: `bench --help` stays fast

    with storage_writes(out, "--out"):  # a read-only folder, a full disk: one line; no partial bundle is left
        summary = export_bundle(results_dir, out, _csv(methods), _csv(degradations), dataset, profile, all_versions)
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(summary.line())


@click.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--results-dir", default="results", show_default=True, help="The store to merge into (made if needed).")
def import_command(bundle: str, results_dir: str) -> None:
    """Merge a bundle made by `bench export` into a store; its cells count as cached (same keys).

    The bundle is verified completely first: a damaged or edited one changes nothing."""
    from bench.bundle import import_bundle

    with storage_writes(results_dir, "--results-dir", "No cell was imported.", folder=results_dir):
        lines = import_bundle(bundle, results_dir).lines()  # images first, then all rows in one transaction
    for line in lines:
        click.echo(line, err=line.startswith(("note:", "warning:")))


@click.command("provenance")
@click.option("--results-dir", default="results", show_default=True)
@click.option("--cells", "per_cell", is_flag=True, help="One line per imported cell.")
def provenance_command(results_dir: str, per_cell: bool) -> None:
    """Where the store's cells come from: computed here, or imported from which bundle, made where."""
    if not (Path(results_dir) / DB_NAME).exists():
        raise BenchError(f"no results in '{results_dir}'; run `bench run` first or pass --results-dir.")
    store = Store(results_dir, read_only=True)
    try:
        rows = store.rows()
    finally:
        store.close()
    info = imported_cells(results_dir)
    local = Counter(r["hardware"] or "unknown hardware" for r in rows if r["key"] not in info)
    click.echo(f"{sum(local.values())} cell(s) computed here" + (": " if local else "")
               + "; ".join(f"{h} ×{n}" for h, n in local.items()))
    by_bundle: dict[str, list[dict[str, Any]]] = {}
    for cell in info.values():
        by_bundle.setdefault(cell["bundle"], []).append(cell)
    for name, cells in by_bundle.items():
        click.echo(_bundle_line(name, cells) + f"; imported {cells[0]['imported']}")
        for cell in cells if per_cell else []:
            click.echo(f"  {cell['method_label']} / {cell['degradation_label']} / {cell['image']} / seed "
                       f"{cell['seed']}: {cell['hardware'] or 'unknown hardware'}")
