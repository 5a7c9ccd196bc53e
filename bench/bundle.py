"""Result bundles: ``bench export`` writes selected cells into one file, ``bench import`` merges one into a store.

A bundle is a zip archive (``unzip -l B.zip``; ``unzip -p B.zip manifest.json``): ``manifest.json`` (format
and version; when, by which bench, python and torch, on which machine it was made; what it holds: methods,
profiles, seeds, code versions, the hardware each cell was computed on; the sha256 and size of every other
member), ``cells.jsonl`` (the rows exactly as stored, one JSON object a line) and ``images/ab/<sha>.png``.
Nothing in it is unpickled or executed. Import verifies everything before writing anything (members, sizes,
sha256; each PNG decodes to the pixels its name hashes; rows are well-formed and their images present), then
writes the images (temporary file, rename) and, in one transaction, the rows and their provenance: a bad
bundle leaves the store as it was. Imported cells keep their cache keys, so ``bench run`` serves those of
the current code like local ones; a key already holding an ok result keeps it. The sha256 sums detect
damage and edits, not forgery (anyone can rebuild a manifest).

Example:
    >>> import tempfile
    >>> from bench.runner import RunConfig, run_grid
    >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = run_grid(RunConfig(methods=["identity"], degradations=["noise"], limit=1, profile="smoke",
    ...     results_dir=src, lpips=False, progress=False))
    >>> export_bundle(src, dst + "/b.zip").cells
    1
    >>> first, again = import_bundle(dst + "/b.zip", dst + "/store"), import_bundle(dst + "/b.zip", dst + "/store")
    >>> (first.imported, first.images), (again.imported, again.present)
    ((1, 1), (0, 1))
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.config import check_filters
from bench.errors import BenchError
from bench.selection import current_versions, select, select_rows
from bench.store import CELL_COLUMNS, DB_NAME, Store, image_path_for

FORMAT, FORMAT_VERSION = "restoration-bench-bundle", 1
MANIFEST, CELLS = "manifest.json", "cells.jsonl"
IMAGE_MEMBER = re.compile(r"images/[0-9a-f]{2}/[0-9a-f]{64}\.png")
MAX_MANIFEST_BYTES = 64 * 2**20
TIME = "%Y-%m-%dT%H:%M:%S%z"  # as the store's `created`
# origin: the manifest's created, bench_version and exported_on; created: the row's (a recomputed row has another)
PROVENANCE_TABLE = ("CREATE TABLE IF NOT EXISTS provenance (key TEXT PRIMARY KEY, bundle TEXT, bundle_id TEXT, "
                    "imported TEXT, origin TEXT, created TEXT)")


class BundleError(BenchError):
    """A bundle that cannot be imported (damaged, edited, another format); nothing was written.

    >>> BundleError("x").exit_code
    1
    """


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# export --------------------------------------------------------------------------------------------------------
@dataclass
class ExportSummary:
    """What ``bench export`` wrote.

    >>> ExportSummary(Path("b.zip"), 3, 4, 1000).line()
    'wrote b.zip: 3 cell(s), 4 image(s), 1.0 kB'
    """

    path: Path
    cells: int
    images: int
    size: int
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"wrote {self.path}: {self.cells} cell(s), {self.images} image(s), {self.size / 1000:.1f} kB"


def export_bundle(results_dir: str | os.PathLike, out: str | os.PathLike, methods: Collection[str] = (),
                  degradations: Collection[str] = (), dataset: str | None = None, profile: str | None = None,
                  all_versions: bool = False) -> ExportSummary:
    """Write the cells ``bench report`` shows for these filters (ok and failed) into the bundle ``out``."""
    import torch

    from bench.compute import hardware

    if not (Path(results_dir) / DB_NAME).exists():
        raise BenchError(f"no results in '{results_dir}'; run `bench run` first or pass --results-dir.")
    out, tmp = Path(out), None
    store = Store(results_dir, read_only=True)
    try:
        df = store.dataframe()
        check_filters(df, list(methods), list(degradations), dataset, profile)
        keys = set(select_rows(select(select_rows(df, dataset=dataset, profile=profile), all_versions).rows,
                               list(methods), list(degradations))["key"])
        rows, left_out, images = [], [], {}
        for row in (r for r in store.rows() if r["key"] in keys):  # as stored (the frame has relabelled them)
            state = {c: store.image_state(row[c]) for c in ("output_path", "degraded_path") if row.get(c)}
            if row["status"] == "ok" and state.get("output_path") != "ok":
                left_out.append(f"{row['method_label']}/{row['degradation_label']}/{row['image']}")
                continue
            if state.get("degraded_path", "ok") != "ok":
                row["degraded_path"] = None  # only a figure panel: the cell goes without it
            images.update({row[c]: None for c in state if row[c]})
            rows.append(row)
        if not rows:
            raise BenchError("no results match the filters; nothing exported.")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".zip")  # renamed when complete
        files = {}
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as zf:
            members = [(CELLS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())]
            for name, data in (*members, *((rel, store.image_file(rel).read_bytes()) for rel in sorted(images))):
                files[name] = {"sha256": _sha256(data), "size": len(data)}  # one image in memory at a time
                zf.writestr(name, data, zipfile.ZIP_DEFLATED if name == CELLS else zipfile.ZIP_STORED)
            manifest = _manifest(rows, files, hardware("cpu"), torch.__version__)
            manifest["selection"] = {"methods": sorted(methods), "degradations": sorted(degradations),
                                     "dataset": dataset, "profile": profile, "all_versions": all_versions}
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True), zipfile.ZIP_DEFLATED)
        os.replace(tmp, out)
    except BaseException:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        store.close()
    notes = [f"left out {len(left_out)} cell(s) whose restored image is missing or corrupt "
             f"({', '.join(left_out[:3])}); run `bench run` again to recompute them."] if left_out else []
    return ExportSummary(out, len(rows), len(images), out.stat().st_size, notes)


def _manifest(rows: list[dict[str, Any]], files: dict[str, Any], hardware: str, torch_version: str) -> dict[str, Any]:
    """What a bundle holds and where it comes from (no host name, no user paths beyond the rows' datasets)."""
    versions: dict[str, set[str]] = {}
    for row, kind in ((r, k) for r in rows for k in ("method", "degradation")):
        versions.setdefault(f"{kind} {row[kind]}", set()).add(str(row[f"{kind}_version"]))
    values = {c: sorted({str(r.get(c)) for r in rows}) for c in ("method", "degradation", "dataset", "profile",
                                                                  "bench_version", "torch_version")}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created": time.strftime(TIME),
        "bench_version": __version__,
        "exported_on": {"python": platform.python_version(), "torch": torch_version, "hardware": hardware,
                        "platform": f"{platform.system()} {platform.machine()}"},
        "contents": {"cells": len(rows), "failed": sum(r["status"] == "failed" for r in rows),
                     "not_applicable": sum(r["status"] == "n/a" for r in rows),
                     **{f"{c}s": v for c, v in values.items()}, "seeds": sorted({r["seed"] for r in rows}),
                     "hardware": sorted({r.get("hardware") or "unknown" for r in rows}),
                     "code_versions": {k: sorted(v) for k, v in sorted(versions.items())}},
        "files": files,
    }


# import --------------------------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A verified bundle: its manifest, rows (columns this bench knows) and the sha256 of every member."""

    path: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]
    files: dict[str, str]
    dropped_columns: list[str]
    id: str  # 16 hex digits naming the content: the manifest's sha256 (it holds every member's)


def _member(zf: zipfile.ZipFile, path: Path, name: str, size: int) -> bytes:
    if zf.getinfo(name).file_size != size:
        raise BundleError(f"bundle '{path}': {name} does not match its size in the manifest; it was modified after "
                          "export. Copy or export it again.")
    try:
        return zf.read(name)
    except Exception as err:  # zipfile, zlib and EOF errors of a damaged member
        raise BundleError(f"bundle '{path}': {name} is damaged ({type(err).__name__}: {err}); the file is truncated "
                          "or corrupt. Copy or export it again.") from None


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Open and verify a bundle completely (:class:`BundleError` naming the first problem); writes nothing."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle '{path}' not found; give the file `bench export` wrote.")
    hint = "Copy or export it again with `bench export`."
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise BundleError(f"'{path}' is not a result bundle, or is truncated ({err}). {hint}") from None
    with zf:
        names = zf.namelist()
        if MANIFEST not in names:
            raise BundleError(f"'{path}' has no {MANIFEST}: it is not a result bundle made by `bench export`.")
        try:
            size = zf.getinfo(MANIFEST).file_size
            manifest = json.loads(_member(zf, path, MANIFEST, size) if size <= MAX_MANIFEST_BYTES else b"too large")
        except ValueError as err:
            raise BundleError(f"bundle '{path}': {MANIFEST} is not valid JSON ({err}). {hint}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise BundleError(f"'{path}' is not a result bundle (format {found!r}, expected {FORMAT!r}).")
        version = manifest.get("format_version")
        if type(version) is not int or version < 1:
            raise BundleError(f"bundle '{path}': format_version {version!r} is not a version number. {hint}")
        if version > FORMAT_VERSION:
            raise BundleError(f"bundle '{path}' has format version {version}, made by bench "
                              f"{manifest.get('bench_version', '?')}; this bench ({__version__}) reads version "
                              f"{FORMAT_VERSION}. Upgrade restoration-bench to import it.")
        listed = manifest.get("files")
        if not isinstance(listed, dict) or CELLS not in listed or not all(
                isinstance(m, dict) and isinstance(m.get("sha256"), str) and isinstance(m.get("size"), int)
                for m in listed.values()):
            raise BundleError(f"bundle '{path}': its manifest has no valid list of files. {hint}")
        extra = sorted(set(names) - set(listed) - {MANIFEST})
        missing = sorted(set(listed) - set(names))
        odd = sorted(n for n in listed if n != CELLS and not IMAGE_MEMBER.fullmatch(n))
        if len(names) != len(set(names)) or extra or odd:
            raise BundleError(f"bundle '{path}' holds unexpected or duplicated members "
                              f"({', '.join((extra + odd)[:3]) or 'duplicates'}); it was modified after export.")
        if missing:
            raise BundleError(f"bundle '{path}' lacks {len(missing)} member(s) its manifest lists ({missing[0]}); "
                              f"it is incomplete. {hint}")
        files, cells = {}, b""
        for name, meta in listed.items():
            data = _member(zf, path, name, meta["size"])
            if _sha256(data) != meta["sha256"]:
                raise BundleError(f"bundle '{path}': {name} does not match its sha256 in the manifest; the bundle "
                                  f"was damaged or modified after export. {hint}")
            if name != CELLS:
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
                except Exception as err:  # Pillow raises many types for damaged files
                    raise BundleError(f"bundle '{path}': {name} is not a readable PNG ({err}). {hint}") from None
                if image_path_for(pixels) != name:
                    raise BundleError(f"bundle '{path}': the pixels of {name} do not match the content hash in "
                                      f"its name; the image was modified. {hint}")
            else:
                cells = data
            files[name] = meta["sha256"]
    rows, dropped = _parse_rows(path, cells, set(files))
    return Bundle(path, manifest, rows, files, dropped, _sha256(json.dumps(manifest, sort_keys=True).encode())[:16])


def _parse_rows(path: Path, data: bytes, images: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of cells.jsonl, checked; columns this bench does not know (a newer bench's) are dropped."""
    rows, keys, dropped = [], set(), set()
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        where = f"bundle '{path}': {CELLS} line {number}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise BundleError(f"{where} is not JSON ({err}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("key"), str) or not row["key"]:
            raise BundleError(f"{where} is not a cell row (no key).")
        if not isinstance(row.get("status"), str) or row["key"] in keys or any(
                isinstance(v, (dict, list)) for v in row.values()):
            raise BundleError(f"{where}: a repeated key, status {row.get('status')!r} or nested values; not a stored "
                              "cell row.")
        for column in ("output_path", "degraded_path"):
            if row.get(column) is not None and row[column] not in images:
                raise BundleError(f"{where}: {column} {row[column]!r} is not in the bundle; it is incomplete.")
        if row["status"] == "ok" and not row.get("output_path"):
            raise BundleError(f"{where}: an ok cell without its restored image.")
        dropped.update(set(row) - set(CELL_COLUMNS))
        keys.add(row["key"])
        rows.append({k: v for k, v in row.items() if k in CELL_COLUMNS})
    return rows, sorted(dropped)


@dataclass
class ImportSummary:
    """What ``bench import`` did.

    >>> ImportSummary("b.zip", imported=2, present=1, images=3).lines()[0]
    'imported 2 cell(s) from b.zip (3 image file(s) written); 1 already present (same key), kept as they were'
    """

    bundle: str
    imported: int = 0  # new keys
    filled: int = 0  # keys whose local result had failed
    present: int = 0  # keys already holding an ok result (or both failed): left alone
    failed: int = 0  # written cells that had failed where they were computed
    images: int = 0
    differing: list[str] = field(default_factory=list)  # present keys whose local result is another image
    other_code: list[str] = field(default_factory=list)  # written cells' plugins whose code here differs
    dropped_columns: list[str] = field(default_factory=list)
    made_by: str = ""

    def lines(self) -> list[str]:
        written = self.imported + self.filled
        out = [f"imported {written} cell(s) from {self.bundle} ({self.images} image file(s) written)"
               + (f", {self.filled} of them replacing failed local cells" if self.filled else "")
               + f"; {self.present} already present (same key), kept as they were"
               + ("; the store is unchanged" if not written and not self.images else "")]
        if self.failed:
            out.append(f"note: {self.failed} imported cell(s) had failed where they were computed; "
                       "`bench run` retries them.")
        if self.other_code:
            names = ", ".join(f"{n} ×{c}" for n, c in Counter(self.other_code).items())
            out.append(f"note: {len(self.other_code)} imported cell(s) were made by other code versions than "
                       f"this checkout's ({names}): `bench run` does not count them as cached, and reports show them "
                       "only where the current code has no results, or with --all-versions.")
        if self.differing:
            out.append(f"warning: {len(self.differing)} cell(s) already here hold another result for the same key "
                       f"({', '.join(self.differing[:3])}); the local result was kept.")
        if self.dropped_columns:
            out.append(f"note: ignored column(s) this bench does not know ({', '.join(self.dropped_columns)}); the "
                       f"bundle was made by {self.made_by}.")
        return out


def _write_png(root: Path, rel: str, data: bytes) -> None:
    """Write verified PNG bytes atomically (temporary file in the same folder, then rename), as the store does."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def import_bundle(path: str | os.PathLike, results_dir: str | os.PathLike) -> ImportSummary:
    """Verify the bundle ``path`` completely, then merge it into the store ``results_dir`` (created if needed)."""
    import pandas as pd

    bundle = read_bundle(path)  # nothing is written before this has checked everything
    summary = ImportSummary(bundle.path.name, dropped_columns=bundle.dropped_columns,
                            made_by=f"bench {bundle.manifest.get('bench_version', '?')}")
    store = Store(results_dir)
    try:
        local = {r["key"]: r for r in store.rows()}
        write, images = [], set()
        for row in bundle.rows:
            mine = local.get(row["key"])
            paths = {row.get(c) for c in ("output_path", "degraded_path")} - {None}
            if mine is None or (mine["status"] != "ok" and row["status"] == "ok"):
                summary.filled += mine is not None
                summary.imported += mine is None
                write.append(row)
                images |= paths
                continue
            summary.present += 1
            if mine["status"] == row["status"] == "ok" and mine["output_path"] != row["output_path"]:
                summary.differing.append(f"{row.get('method_label')}/{row.get('degradation_label')}/"
                                         f"{row.get('image')}/seed {row.get('seed')}")
            images |= paths & {mine.get("output_path"), mine.get("degraded_path")}  # repairs damaged local files
        summary.failed = sum(r["status"] == "failed" for r in write)
        here = current_versions(pd.DataFrame(write)) if write else {}  # plugins' code versions in this checkout
        for row in write:  # cells whose method's or degradation's code here differs (or is not installed here)
            other = [str(row.get(k)) for k in ("method", "degradation")
                     if here.get((k, str(row.get(k)))) != row.get(f"{k}_version")]
            summary.other_code += other[:1]
        with zipfile.ZipFile(bundle.path) as zf:  # images first, then the rows that name them
            for rel in sorted(images):
                if store.image_state(rel) == "ok":
                    continue
                data = _member(zf, bundle.path, rel, bundle.manifest["files"][rel]["size"])
                if _sha256(data) != bundle.files[rel]:  # the file changed since it was verified
                    raise BundleError(f"bundle '{bundle.path}' changed while it was imported; import it again.")
                _write_png(store.root, rel, data)
                summary.images += 1
        origin = json.dumps({k: bundle.manifest.get(k) for k in ("created", "bench_version", "exported_on")})
        if not write:  # nothing new: the store stays as it was
            return summary
        with store.transaction():
            store.execute(PROVENANCE_TABLE)
            for row in write:
                names = list(row)
                updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "key")
                cursor = store.execute(f"INSERT INTO cells ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                                       f"ON CONFLICT(key) DO UPDATE SET {updates} WHERE cells.status != 'ok'",
                                       [row[n] for n in names])
                if cursor.rowcount:  # not when another process stored an ok result meanwhile
                    store.execute("INSERT OR REPLACE INTO provenance VALUES (?, ?, ?, ?, ?, ?)", (row["key"],
                                  bundle.path.name, bundle.id, time.strftime(TIME), origin, row.get("created")))
    finally:
        store.close()
    return summary

