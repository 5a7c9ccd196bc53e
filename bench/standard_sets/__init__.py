"""The standard test sets by name: a registry, where each set lives, and its checksum-verified download.

``--dataset set5|set14|bsd68|cbsd68|kodak24|mcmaster|urban100|div2k`` names one :class:`StandardSet`. Its images
are read from one folder, found in this order:

1. ``--data-root DIR`` (``data_root``): ``DIR/NAME/`` (``DIR/DIV2K_valid_HR/`` for div2k);
2. the set's own variable, ``$BENCH_KODAK24_DIR`` etc.: the folder that holds the images (div2k keeps
   ``$BENCH_DIV2K_ROOT``, the folder that holds ``DIV2K_valid_HR/``);
3. ``$BENCH_DATA_ROOT/NAME/``;
4. the cache, ``$XDG_CACHE_HOME/restoration-bench/NAME/`` (``~/.cache/restoration-bench/NAME/``).

Offline, put the images in that folder (or point a variable at a copy); without them a run stops with one line
naming the folder to fill and the download command (:class:`DataMissingError`, exit 1, before anything is stored).
``bench data download NAME`` (:func:`download`) fetches the set from its public source (mirrors in order), verifies
it before anything is moved into place (in a temporary folder beside the target, so nothing is left half-extracted)
and records in ``.restoration-bench.json`` where it came from. Checksums, per source:

- per-file sha256 for sets fetched file by file (:mod:`bench.standard_sets.sha256` says where each comes from);
- for archives, the md5 of the extracted folder in deepinv's convention (:func:`folder_md5`), the value deepinv
  publishes. No archive's own sha256 is recorded: the archives could not be downloaded where this registry was
  written, and none is invented. ``--sha256 HEX`` checks an archive's bytes as well;
- a source without any checksum is refused unless ``--sha256`` or ``--trust`` is given (none in the registry).

The cache folders are evaluation folders: the trainers' and tune scripts' guard (:mod:`bench.training.data`)
refuses their images (:func:`evaluation_folders`).

Example:
    >>> sorted(STANDARD_SETS)
    ['bsd68', 'cbsd68', 'div2k', 'kodak24', 'mcmaster', 'set14', 'set5', 'urban100']
    >>> STANDARD_SETS["kodak24"].count, STANDARD_SETS["kodak24"].env
    (24, 'BENCH_KODAK24_DIR')
    >>> set_folder("set5", data_root="/data").as_posix()
    '/data/set5'
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shlex
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO

from bench.errors import BenchError, UsageError
from bench.standard_sets import sha256 as manifests

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "BENCH_DATA_ROOT"
MARKER = ".restoration-bench.json"  # written beside the images of a download: source, checksums, date
LOCATIONS = "downloaded-sets.json"  # in the cache root: every folder a download filled (for the training guard)
USER_AGENT = "restoration-bench (https://github.com; dataset download)"
TIMEOUT_S = 60


class DataMissingError(BenchError):
    """A standard set that is not on this machine (or is incomplete): the message names the folder to fill.

    >>> DataMissingError("kodak24 is not on this machine").exit_code
    1
    """


class ChecksumError(BenchError):
    """A download whose bytes do not match the registry's checksum (it was discarded)."""


@dataclass(frozen=True)
class Source:
    """Where a set can be downloaded from, and how its content is verified.

    ``kind``: ``files`` (``url`` + each remote name of ``files``), ``zip`` or ``tar`` (an archive whose folder
    ``member`` holds the images). Checksums: ``file_sha256`` (name → sha256 of each file), ``folder_md5``
    (deepinv's convention over the extracted folder, :func:`folder_md5`), ``archive_sha256`` (the archive's bytes);
    ``checksum_from`` says where the value comes from. ``password``: of an encrypted zip (published with it).
    """

    url: str
    kind: str
    checksum_from: str
    member: str = ""
    files: Mapping[str, str] = field(default_factory=dict)  # local name -> path relative to url
    file_sha256: Mapping[str, str] = field(default_factory=dict)
    folder_md5: str | None = None
    archive_sha256: str | None = None
    password: str | None = None

    @property
    def verified(self) -> bool:
        return bool(self.file_sha256 or self.folder_md5 or self.archive_sha256)

    def describe(self) -> str:
        if self.file_sha256:
            return "sha256 of each file"
        if self.archive_sha256:
            return "sha256 of the archive"
        if self.folder_md5:
            return f"md5 of the extracted folder ({self.folder_md5}, {self.checksum_from})"
        return "no checksum recorded"


@dataclass(frozen=True)
class StandardSet:
    """One test set: ``count`` images in ``folder`` under a data root (or in ``$env``), from ``sources``."""

    name: str
    title: str
    reference: str
    task: str
    count: int
    licence: str
    page: str
    sources: tuple[Source, ...]
    folder: str = ""  # under a data root; default: the name
    env: str = ""  # default BENCH_<NAME>_DIR: the folder holding the images
    env_is_root: bool = False  # div2k: $BENCH_DIV2K_ROOT holds DIV2K_valid_HR/

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", self.folder or self.name)
        object.__setattr__(self, "env", self.env or f"BENCH_{self.name.upper()}_DIR")


def _files(url: str, names: Mapping[str, str], remote: Callable[[str], str] = lambda name: name, **kw: Any) -> Source:
    """A ``files`` source: every file of the manifest ``names`` from ``url`` + its remote name."""
    return Source(url=url, kind="files", files=MappingProxyType({n: remote(n) for n in names}),
                  file_sha256=MappingProxyType(dict(names)), **kw)


FFDNET = "https://raw.githubusercontent.com/cszn/FFDNet/e787f46df2f374ff3591186706229cb9a0591fea/testsets/"
DNCNN = "https://raw.githubusercontent.com/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a/testsets/"
KODAK_MIRROR = ("https://raw.githubusercontent.com/MohamedBakrAli/Kodak-Lossless-True-Color-Image-Suite/"
                "dd2e1105fe8d9afe1120cd7e4c0e5e41f509a81b/PhotoCD_PCD0992/")
HF = "https://huggingface.co/datasets/eugenesiow/{0}/resolve/main/data/{0}_HR.tar.gz"
COMPUTED = "computed from the repository's git objects at that commit"
DEEPINV = "published by deepinv, deepinv/datasets/{}.py"

SETS: dict[str, StandardSet] = {s.name: s for s in (
    StandardSet(
        "set5", "Set5", "Bevilacqua et al., Low-complexity single-image super-resolution based on nonnegative "
        "neighbor embedding, BMVC 2012", "super-resolution", 5, "no licence stated; research use",
        "https://huggingface.co/datasets/eugenesiow/Set5",
        (Source(HF.format("Set5"), "tar", DEEPINV.format("set5") + " (Set5HR)", member="Set5_HR",
                folder_md5="e128ede786dabb7ebeee99e5fa1ad985"),)),
    StandardSet(
        "set14", "Set14", "Zeyde et al., On single image scale-up using sparse-representations, Curves and "
        "Surfaces 2010", "super-resolution", 14, "no licence stated; research use",
        "https://huggingface.co/datasets/eugenesiow/Set14",
        (Source(HF.format("Set14"), "tar", DEEPINV.format("set14") + " (Set14HR)", member="Set14_HR",
                folder_md5="3fce01c3dfe9760194e8a22f6bc032c5"),)),
    StandardSet(
        "urban100", "Urban100", "Huang et al., Single image super-resolution from transformed self-exemplars, "
        "CVPR 2015", "super-resolution", 100, "no licence stated; research use",
        "https://huggingface.co/datasets/eugenesiow/Urban100",
        (Source(HF.format("Urban100"), "tar", DEEPINV.format("urban100") + " (Urban100HR)", member="Urban100_HR",
                folder_md5="6e0640850d436a359e0a9baf5eabd27b"),)),
    StandardSet(
        "bsd68", "BSD68 (grayscale)", "Roth & Black, Fields of Experts, IJCV 2009: 68 test images of the Berkeley "
        "Segmentation Dataset (Martin et al., ICCV 2001), as in DnCNN (Zhang et al., TIP 2017)",
        "grayscale denoising", 68, "Berkeley Segmentation Dataset images: research and education use",
        "https://github.com/cszn/DnCNN/tree/master/testsets/BSD68",
        (_files(FFDNET + "BSD68/", manifests.BSD68, checksum_from="cszn/FFDNet@e787f46, " + COMPUTED),
         _files(DNCNN + "BSD68/", manifests.BSD68, checksum_from="cszn/DnCNN@e93b278 (identical bytes), " + COMPUTED))),
    StandardSet(
        "cbsd68", "CBSD68 (colour BSD68)", "the 68 BSD68 images in colour (Martin et al., ICCV 2001), as in "
        "FFDNet (Zhang et al., TIP 2018) and DPIR", "colour denoising", 68,
        "Berkeley Segmentation Dataset images: research and education use",
        "https://github.com/cszn/FFDNet/tree/master/testsets/CBSD68",
        (_files(FFDNET + "CBSD68/", manifests.CBSD68, checksum_from="cszn/FFDNet@e787f46, " + COMPUTED),)),
    StandardSet(
        "kodak24", "Kodak24", "Kodak Lossless True Color Image Suite (Eastman Kodak; r0k.us), 24 images of "
        "768×512 px", "colour denoising, compression", 24, "released by Kodak for unrestricted use",
        "http://r0k.us/graphics/kodak/",
        (_files("http://r0k.us/graphics/kodak/kodak/", manifests.KODAK24,
                checksum_from="matches the published sha1 of the r0k.us files and deepinv's folder md5"),
         _files(KODAK_MIRROR, manifests.KODAK24, remote=lambda name: name[len("kodim"):],
                checksum_from="same bytes as r0k.us (deepinv's folder md5 of this mirror)"))),
    StandardSet(
        "mcmaster", "McMaster", "Zhang et al., Color demosaicking by local directional interpolation and nonlocal "
        "adaptive thresholding, J. Electronic Imaging 2011; 18 images of 500×500 px", "colour denoising, "
        "demosaicking", 18, "no licence stated; research use",
        "https://www4.comp.polyu.edu.hk/~cslzhang/CDM_Dataset.htm",
        (_files(FFDNET + "McMaster/", manifests.MCMASTER,
                checksum_from="cszn/FFDNet@e787f46, " + COMPUTED + "; the folder md5 equals deepinv's for McM.zip"),
         Source("https://www4.comp.polyu.edu.hk/~cslzhang/DATA/McM.zip", "zip", DEEPINV.format("mcmaster"),
                member="McM", folder_md5="27d5b588cb81cf7f2ddee6880a5bc2ea", password="McM_CDM"))),
    StandardSet(
        "div2k", "DIV2K validation (HR)", "Agustsson & Timofte, NTIRE 2017 challenge on single image "
        "super-resolution: dataset and study, CVPRW 2017; images 0801-0900", "super-resolution, general", 100,
        "academic research only (DIV2K page)", "https://data.vision.ee.ethz.ch/cvl/DIV2K/",
        (Source("http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip", "zip", DEEPINV.format("div2k"),
                member="DIV2K_valid_HR", folder_md5="542325e500b0a474c7ad18bae922da72"),),
        folder="DIV2K_valid_HR", env="BENCH_DIV2K_ROOT", env_is_root=True),
)}
STANDARD_SETS = MappingProxyType(SETS)  # read-only view for callers; tests may patch SETS


def get_set(name: str) -> StandardSet:
    """The registered set ``name``; :class:`UsageError` for an unknown one."""
    try:
        return SETS[name]
    except KeyError:
        raise UsageError(f"unknown standard set '{name}'. Available: {', '.join(SETS)}.") from None


def default_root() -> Path:
    """The cache folder: ``$XDG_CACHE_HOME/restoration-bench`` (``~/.cache/restoration-bench``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "restoration-bench"


def set_folder(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder the images of ``name`` are read from and downloaded to (see the module docstring); it may not
    exist."""
    s = get_set(name)
    if data_root:
        return Path(data_root).expanduser() / s.folder
    own = os.environ.get(s.env)
    if own:
        return Path(own).expanduser() / s.folder if s.env_is_root else Path(own).expanduser()
    root = os.environ.get(DATA_ROOT_ENV)
    return (Path(root).expanduser() if root else default_root()) / s.folder


def dataset_folder(spec: str, data_root: str | os.PathLike | None = None) -> Path | None:
    """The folder a dataset spec reads its images from: ``folder:PATH``'s path, a standard set's
    :func:`set_folder`; None for ``builtin`` (and unknown names: :func:`bench.datasets.load_dataset` rejects them).
    The one place both the loader and the remembered keys (:mod:`bench.keycache`) resolve a dataset.

    >>> str(dataset_folder("folder:/data/x")), dataset_folder("builtin"), dataset_folder("kodak24", "/d").name
    ('/data/x', None, 'kodak24')
    """
    if spec.startswith("folder:"):
        return Path(spec[len("folder:"):]).expanduser()
    if spec in STANDARD_SETS:
        return set_folder(spec, data_root)
    return None


def download_command(name: str, data_root: str | os.PathLike | None = None) -> str:
    """``bench data download NAME [--data-root DIR]``, quoted for a shell."""
    return f"bench data download {name}" + (f" --data-root {shlex.quote(str(data_root))}" if data_root else "")


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (the suffixes :mod:`bench.images` reads; hidden files left out)."""
    from bench.images import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def locate(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding all the images of ``name``; :class:`DataMissingError` (one line: the folder to fill and
    the download command) when it is absent, empty or incomplete."""
    s = get_set(name)
    folder = set_folder(name, data_root)
    command = download_command(name, data_root)
    own = f"${s.env} to the folder that holds {s.folder}/" if s.env_is_root else f"${s.env} to a folder that holds them"
    if data_root:
        where, elsewhere = f"--data-root {data_root}", ""
    elif os.environ.get(s.env):
        where, elsewhere = f"${s.env}", f" (or set {own})"
    else:
        where = f"${DATA_ROOT_ENV}" if os.environ.get(DATA_ROOT_ENV) else "the cache"
        elsewhere = f" (or set {own}, or pass --data-root DIR with {s.folder}/ in it)"
    found = image_files(folder) if folder.is_dir() else []
    if not found:
        state = "does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir() else "is empty"
        raise DataMissingError(
            f"{name} is not on this machine: '{folder}' (from {where}) {state}. Put its {s.count} images "
            f"there{elsewhere}, or download it: `{command}`.")
    if len(found) != s.count:
        raise DataMissingError(
            f"{name}: '{folder}' (from {where}) holds {len(found)} image(s) but the set has {s.count}; "
            f"move it aside and run `{command}`, or run on these images under their own name with "
            f"--dataset folder:{folder}.")
    return folder


# --------------------------------------------------------------------------- checksums


def _file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_md5(folder: Path) -> str:
    """md5 over the sorted per-file md5 hex digests (deepinv's folder convention, the value it publishes).

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.png").write_bytes(b"a")
    >>> folder_md5(folder) == hashlib.md5(hashlib.md5(b"a").hexdigest().encode()).hexdigest()
    True
    """
    outer = hashlib.md5()
    for name in sorted(os.listdir(folder)):
        if name != MARKER:  # this project's record of a download, not part of the set
            outer.update(_file_hash(Path(folder) / name, "md5").encode())
    return outer.hexdigest()


def _content(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER}


def check_content(s: StandardSet, source: Source, folder: Path, url: str) -> str:
    """Verify ``folder`` (freshly downloaded from ``source``) against the source's checksum; :class:`ChecksumError`
    naming the first difference, else a description of what was verified."""
    files = _content(folder)
    if source.file_sha256:
        for name, expected in source.file_sha256.items():
            actual = _file_hash(files[name], "sha256") if name in files else "absent"
            if actual != expected:
                raise ChecksumError(f"checksum mismatch for {s.name} from {url}: {name} has sha256 {actual}, "
                                    f"expected {expected}")
        return source.describe()
    if source.folder_md5:
        actual = folder_md5(folder)
        if actual != source.folder_md5:
            raise ChecksumError(f"checksum mismatch for {s.name} from {url}: folder md5 {actual} of "
                                f"{len(files)} file(s), expected {source.folder_md5}")
    return source.describe()


def verify_folder(s: StandardSet, folder: Path) -> str | None:
    """What an existing ``folder`` matches (a source's checksum, or the record of a ``--trust`` download whose
    files are unchanged), or None."""
    files = _content(folder)
    for source in s.sources:
        if source.file_sha256 and set(files) == set(source.file_sha256):
            if all(_file_hash(files[n], "sha256") == h for n, h in source.file_sha256.items()):
                return source.describe()
        elif source.folder_md5 and not source.file_sha256 and folder_md5(folder) == source.folder_md5:
            return source.describe()
    marker = read_marker(folder)
    recorded = marker.get("files") if marker else None
    if isinstance(recorded, dict) and recorded and set(recorded) == set(files) and all(
            _file_hash(files[n], "sha256") == h for n, h in recorded.items()):
        return f"unchanged since its download ({marker.get('verified', 'recorded sha256')})"
    return None


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- download


class _Unreachable(Exception):
    """A source that could not be fetched (network, HTTP status, truncated transfer): try the next one."""


@dataclass
class Downloaded:
    """What :func:`download` did: ``folder`` holds ``count`` images, ``verified`` says how."""

    folder: Path
    count: int
    verified: str
    fresh: bool = True
    archive_sha256: str | None = None

    def line(self, name: str) -> str:
        state = "ready at" if self.fresh else "already present at"
        return f"{name} {state} {self.folder} ({self.count} images; verified: {self.verified})"


def _fetch(url: str, out: BinaryIO, label: str) -> str:
    """Stream ``url`` into ``out``; the sha256 of its bytes. :class:`_Unreachable` on any transfer failure."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=label, disable=None, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (OSError, HTTPException, ValueError) as err:  # URLError/HTTPError/timeouts are OSErrors
        raise _Unreachable(f"{url} ({type(err).__name__}: {err})") from None
    return digest.hexdigest()


def _extract(archive: Path, source: Source, out: Path, url: str, name: str) -> None:
    """The regular files directly inside ``source.member`` of ``archive`` into ``out`` (nothing else: no other
    folder, no link, no path outside ``out``)."""
    member = PurePosixPath(source.member)

    def wanted(path: str) -> str | None:
        parts = PurePosixPath(path)
        return parts.name if parts.parent == member and parts.name not in ("", ".", "..") else None

    try:
        if source.kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    target = wanted(info.filename)
                    if target and not info.is_dir():
                        pwd = source.password.encode() if source.password else None
                        with zf.open(info, pwd=pwd) as src, open(out / target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for info in tf:
                    target = wanted(info.name)
                    if target and info.isfile():
                        src = tf.extractfile(info)
                        assert src is not None  # a regular file
                        with src, open(out / target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, tarfile.TarError, RuntimeError, NotImplementedError, EOFError, ValueError) as err:
        raise ChecksumError(f"{name} from {url} is not a readable {source.kind} archive ({type(err).__name__}: "
                            f"{err})") from None
    if not any(out.iterdir()):
        raise ChecksumError(f"{name} from {url}: the archive has no files in '{source.member}/'")


def _fetch_source(s: StandardSet, source: Source, tmp: Path, sha256: str | None) -> tuple[Path, str, str | None]:
    """Download ``source`` into ``tmp`` and verify it: ``(folder of images, what was verified, archive sha256)``."""
    folder = tmp / s.folder
    folder.mkdir()
    if source.kind == "files":
        for local, remote in source.files.items():
            with open(folder / local, "wb") as out:
                _fetch(source.url + remote, out, f"{s.name} {local}")
        return folder, check_content(s, source, folder, source.url), None
    archive = tmp / f"archive.{source.kind}"
    with open(archive, "wb") as out:
        observed = _fetch(source.url, out, s.name)
    for expected, what in ((source.archive_sha256, "the registry"), (sha256, "--sha256")):
        if expected and observed != expected.lower():
            raise ChecksumError(f"checksum mismatch for {s.name} from {source.url}: archive sha256 {observed}, "
                                f"expected {expected} ({what})")
    _extract(archive, source, folder, source.url, s.name)
    archive.unlink()
    verified = check_content(s, source, folder, source.url) if source.verified else ""
    if sha256:
        verified = ", ".join(filter(None, [verified, "sha256 of the archive (--sha256)"]))
    return folder, verified or f"not verified (--trust; archive sha256 {observed})", observed


def _marker(s: StandardSet, source: Source, folder: Path, verified: str, archive_sha256: str | None) -> dict:
    return {"set": s.name, "title": s.title, "source": source.url, "verified": verified,
            "archive_sha256": archive_sha256,
            "files": {n: _file_hash(p, "sha256") for n, p in _content(folder).items()},
            "downloaded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def download(name: str, data_root: str | os.PathLike | None = None, sha256: str | None = None, trust: bool = False,
             sources: tuple[Source, ...] | None = None) -> Downloaded:
    """Download ``name`` into :func:`set_folder` (mirrors in order), verified before it is moved into place.

    A folder that already holds the set (verified) is left as it is; one that holds anything else is never
    touched (:class:`BenchError`). A source that cannot be reached is skipped for the next; a checksum mismatch
    stops at once (:class:`ChecksumError`, the download discarded). ``sha256``: the archive's expected sha256 (also
    checked); ``trust``: accept a source that has no checksum. ``sources`` replaces the registry's (tests, mirrors).
    """
    s = get_set(name)
    sources = sources if sources is not None else s.sources
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise UsageError(f"--sha256 '{sha256}': expected 64 hex digits (the archive's sha256).")
    if sha256 and all(src.kind == "files" for src in sources):
        raise UsageError(f"--sha256 checks an archive, but {name} is downloaded file by file, each file checked "
                         "against the registry's sha256.")
    target = set_folder(name, data_root)
    if target.exists() and not target.is_dir():
        raise BenchError(f"'{target}' is a file, not a folder; move it aside or pass another --data-root.")
    entries = [p for p in target.iterdir() if p.name != MARKER] if target.is_dir() else []
    if entries:
        how = verify_folder(s, target)
        if how:
            return Downloaded(target, len(image_files(target)), how, fresh=False)
        raise BenchError(
            f"'{target}' already holds {len(entries)} file(s) that do not match {name}'s checksums; nothing "
            f"was changed. Move it aside and run `{download_command(name, data_root)}` again.")
    usable = [src for src in sources if src.verified or sha256 or trust]
    if not usable:
        raise BenchError(
            f"{name}: no checksum is recorded for {sources[0].url}, so its download cannot be verified; pass "
            "--sha256 HEX (the archive's sha256, from a source you trust) or --trust to accept it unverified (its "
            f"sha256 is then printed and recorded in {MARKER}).")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"cannot create '{parent}' ({err.strerror}); pass --data-root DIR to download elsewhere.") \
            from None
    failures = []
    for source in usable:
        with tempfile.TemporaryDirectory(prefix=f".download-{name}-", dir=parent) as tmp:
            try:
                folder, verified, observed = _fetch_source(s, source, Path(tmp), sha256)
            except _Unreachable as err:
                failures.append(str(err))
                continue
            except ChecksumError as err:
                raise ChecksumError(f"{err}. The download was discarded; nothing was written to '{target}'. Try "
                                    "again; if it persists, the source changed: put the images there yourself.") \
                    from None
            count = len(image_files(folder))
            if count != s.count:
                raise ChecksumError(f"{name} from {source.url} has {count} image(s), expected {s.count}; the download "
                                    f"was discarded, nothing was written to '{target}'.")
            (folder / MARKER).write_text(json.dumps(_marker(s, source, folder, verified, observed), indent=1) + "\n",
                                         encoding="utf-8")
            if target.is_dir():  # empty but for a stale record (checked above)
                (target / MARKER).unlink(missing_ok=True)
                target.rmdir()
            os.replace(folder, target)
        remember_location(name, target)
        return Downloaded(target, count, verified, archive_sha256=observed)
    own = f"${s.env} to the folder that holds {s.folder}/" if s.env_is_root else f"${s.env} to a folder holding them"
    raise BenchError(
        f"could not download {name}: {'; '.join(failures)}. Offline? Copy its {s.count} images into '{target}' "
        f"(or set {own}), e.g. from a machine where `{download_command(name)}` works.")


def remember_location(name: str, folder: Path) -> None:
    """Record ``folder`` in the cache's list of downloaded sets, so the training guard knows it (best effort)."""
    path = default_root() / LOCATIONS
    known = _locations()
    entries = known.setdefault(name, [])
    if str(folder.resolve()) in entries:
        return
    entries.append(str(folder.resolve()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not record %s in %s (%s); add it to $BENCH_EVAL_DIRS so trainers refuse its images",
                    folder, path, err.strerror)


def _locations() -> dict[str, list[str]]:
    try:
        value = json.loads((default_root() / LOCATIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: [str(p) for p in v] for k, v in value.items() if isinstance(v, list)}


def evaluation_folders() -> list[Path]:
    """Every existing folder of a standard set this machine knows: ``$BENCH_<NAME>_DIR``, under
    ``$BENCH_DATA_ROOT`` and the cache, and every folder a download filled. (A folder named only by ``--data-root``
    at run time is not known: list it in ``$BENCH_EVAL_DIRS``.)"""
    roots = [Path(r).expanduser() for r in (os.environ.get(DATA_ROOT_ENV),) if r] + [default_root()]
    recorded = _locations()
    folders: list[Path] = []
    for s in SETS.values():
        own = os.environ.get(s.env)
        if own:
            folders.append(Path(own).expanduser() / s.folder if s.env_is_root else Path(own).expanduser())
        folders += [root / s.folder for root in roots]
        folders += [Path(p) for p in recorded.get(s.name, [])]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def describe_sources(s: StandardSet) -> str:
    """One line: the sources and how each is verified (``bench list``, messages)."""
    return "; ".join(f"{src.url} ({src.describe()})" for src in s.sources)


__all__ = ["DATA_ROOT_ENV", "MARKER", "STANDARD_SETS", "SETS", "ChecksumError", "DataMissingError", "Downloaded",
           "Source", "StandardSet", "default_root", "download", "download_command", "evaluation_folders",
           "folder_md5", "get_set", "image_files", "locate", "set_folder", "verify_folder"]
