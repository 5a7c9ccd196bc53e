"""Standard test sets by name (issue 28 item 3): registry, where a set is found, the checksum-verified download
(against a loopback HTTP server serving a tiny fake archive: no network is used), the offline errors, the report
naming the set, and the training guard knowing the sets' folders."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench import standard_sets
from bench.datasets import load_dataset
from bench.errors import BenchError, UsageError
from bench.images import load_image, save_png
from bench.standard_sets import (
    MARKER,
    SETS,
    ChecksumError,
    DataMissingError,
    Source,
    download,
    locate,
    set_folder,
    verify_folder,
)

SHARED_KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "kodak24"
NAMES = ["a.png", "b.png", "c.png"]


# --------------------------------------------------------------------------- fixtures


class Server:
    """A loopback HTTP server: ``files[path] = bytes`` is served at ``url + path``; anything else is a 404."""

    def __init__(self) -> None:
        files: dict[str, bytes] = {}
        self.files, self.requests = files, []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                requests.append(self.path)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # never through a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No set is known: the cache in tmp_path, no BENCH_DATA_ROOT, no per-set variable."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(standard_sets.DATA_ROOT_ENV, raising=False)
    monkeypatch.delenv("BENCH_EVAL_DIRS", raising=False)
    for s in SETS.values():
        monkeypatch.delenv(s.env, raising=False)
    return tmp_path


def pngs() -> dict[str, bytes]:
    """Three small, distinct PNGs by name."""
    out = {}
    for seed, name in enumerate(NAMES):
        buffer = io.BytesIO()
        from PIL import Image

        Image.fromarray((np.random.default_rng(seed).random((40, 48, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
        out[name] = buffer.getvalue()
    return out


def folder_md5_of(files: dict[str, bytes]) -> str:
    """deepinv's folder md5 of files with these names and bytes (computed independently of the code under test)."""
    outer = hashlib.md5()
    for name in sorted(files):
        outer.update(hashlib.md5(files[name]).hexdigest().encode())
    return outer.hexdigest()


def tar_bytes(files: dict[str, bytes], member: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for path, data in {**{f"{member}/{n}": b for n, b in files.items()}, **(extra or {})}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes], member: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, data in {**{f"{member}/{n}": b for n, b in files.items()}, **(extra or {})}.items():
            zf.writestr(path, data)
    return buffer.getvalue()


def fake(monkeypatch, *sources: Source, name: str = "kodak24", count: int = 3) -> None:
    """Replace the registered set ``name`` by a 3-image set downloaded from ``sources``."""
    monkeypatch.setitem(SETS, name, replace(SETS[name], count=count, sources=tuple(sources)))


def archive_source(server: Server, kind: str = "tar", files: dict[str, bytes] | None = None, **kw) -> Source:
    """A ``kind`` archive of the fake PNGs (``files``: what the server holds instead) checked by its folder md5."""
    good = pngs()
    path = f"/Fake_HR.{kind}"
    make = tar_bytes if kind == "tar" else zip_bytes
    server.files[path] = make(files or good, "Fake_HR", {"README.txt": b"x", "../evil.png": b"y",
                                                         "Fake_HR/sub/d.png": b"z"})
    fields = {"folder_md5": folder_md5_of(good), "checksum_from": "the test", "member": "Fake_HR", **kw}
    return Source(server.url + path, kind, **fields)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".download-")) if root.is_dir() else []


# --------------------------------------------------------------------------- download


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archive_download_is_verified_extracted_to_the_cache_and_loaded_by_name(server, isolated, monkeypatch, kind):
    fake(monkeypatch, archive_source(server, kind))
    got = download("kodak24")
    cache = isolated / "xdg" / "restoration-bench" / "kodak24"
    assert got.fresh and got.folder == cache and got.count == 3
    assert got.verified.startswith("md5 of the extracted folder")
    assert sorted(p.name for p in cache.iterdir()) == sorted([*NAMES, MARKER])  # only the member's direct files
    assert not leftovers(cache.parent) and not (isolated / "evil.png").exists()
    marker = standard_sets.read_marker(cache)
    assert marker["source"].endswith(f"/Fake_HR.{kind}") and set(marker["files"]) == set(NAMES)
    assert marker["archive_sha256"] == hashlib.sha256(server.files[f"/Fake_HR.{kind}"]).hexdigest()
    items = load_dataset("kodak24")
    assert [i.id for i in items] == ["a", "b", "c"]
    assert np.array_equal(items[0].image, load_image(cache / "a.png"))
    again = download("kodak24")  # already there: verified, nothing fetched
    assert not again.fresh and len(server.requests) == 1
    assert again.line("kodak24").startswith(f"kodak24 already present at {cache} (3 images; verified: md5")


def test_files_download_checks_each_sha256_and_falls_back_to_a_mirror(server, isolated, monkeypatch):
    good = pngs()
    for name, data in good.items():
        server.files[f"/mirror/x{name}"] = data  # the mirror names its files differently (as Kodak's does)
    manifest = {n: hashlib.sha256(b).hexdigest() for n, b in good.items()}
    dead = standard_sets._files(server.url + "/gone/", manifest, checksum_from="the test")
    mirror = standard_sets._files(server.url + "/mirror/", manifest, remote=lambda n: "x" + n, checksum_from="test")
    fake(monkeypatch, dead, mirror)
    got = download("kodak24", data_root=isolated / "root")
    assert got.folder == isolated / "root" / "kodak24" and got.verified == "sha256 of each file"
    assert "/gone/a.png" in server.requests[0] and sorted(p.name for p in got.folder.glob("*.png")) == NAMES
    assert [i.id for i in load_dataset("kodak24", data_root=str(isolated / "root"))] == ["a", "b", "c"]


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs the zip command to make an encrypted zip")
def test_password_protected_zip_as_mcmaster_official_archive(server, isolated, monkeypatch):
    src = isolated / "src" / "McM"
    src.mkdir(parents=True)
    for name, data in pngs().items():
        (src / name).write_bytes(data)
    subprocess.run(["zip", "-q", "-r", "-P", "McM_CDM", "../McM.zip", "McM"], cwd=src.parent.parent / "src",
                   check=True)
    server.files["/McM.zip"] = (isolated / "McM.zip").read_bytes()
    fake(monkeypatch, Source(server.url + "/McM.zip", "zip", "test", member="McM", folder_md5=folder_md5_of(pngs()),
                             password="McM_CDM"), name="mcmaster")
    assert download("mcmaster", data_root=isolated / "root").count == 3


def test_corrupted_archive_is_refused_with_one_error_line_and_nothing_left(server, isolated, monkeypatch, run_cli):
    bad = pngs()
    bad["b.png"] = bad["b.png"][:-1] + b"\x00"  # one byte differs
    source = archive_source(server, "tar", files=bad)
    fake(monkeypatch, source)
    root = isolated / "root"
    code, out, err = run_cli("data", "download", "kodak24", "--data-root", root)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error: checksum mismatch for kodak24 from {source.url}: folder md5 {folder_md5_of(bad)} of 3 file(s), "
        f"expected {source.folder_md5}. The download was discarded; nothing was written to '{root / 'kodak24'}'. "
        "Try again; if it persists, the source changed: put the images there yourself."]
    assert not (root / "kodak24").exists() and not leftovers(root)


def test_corrupted_file_of_a_files_download_is_named(server, isolated, monkeypatch):
    good = pngs()
    server.files.update({f"/k/{n}": b for n, b in good.items()})
    manifest = {n: hashlib.sha256(b).hexdigest() for n, b in good.items()}
    server.files["/k/c.png"] = b"truncated"
    fake(monkeypatch, standard_sets._files(server.url + "/k/", manifest, checksum_from="the test"))
    with pytest.raises(ChecksumError) as info:
        download("kodak24", data_root=isolated / "root")
    assert str(info.value).startswith(f"checksum mismatch for kodak24 from {server.url}/k/: c.png has sha256 "
                                      f"{hashlib.sha256(b'truncated').hexdigest()}, expected {manifest['c.png']}.")
    assert not (isolated / "root" / "kodak24").exists() and not leftovers(isolated / "root")


def test_archive_sha256_option_and_a_source_without_checksum(server, isolated, monkeypatch, run_cli):
    unverified = archive_source(server, "zip", folder_md5=None, checksum_from="nobody")
    fake(monkeypatch, unverified)
    root = isolated / "root"
    code, _, err = run_cli("data", "download", "kodak24", "--data-root", root)
    assert code == 1 and err.splitlines() == [
        f"error: kodak24: no checksum is recorded for {unverified.url}, so its download cannot be verified; pass "
        "--sha256 HEX (the archive's sha256, from a source you trust) or --trust to accept it unverified (its sha256 "
        f"is then printed and recorded in {MARKER})."]
    assert server.requests == []  # refused before anything was fetched
    code, _, err = run_cli("data", "download", "kodak24", "--data-root", root, "--sha256", "0" * 64)
    actual = hashlib.sha256(server.files["/Fake_HR.zip"]).hexdigest()
    assert code == 1 and err.startswith(f"error: checksum mismatch for kodak24 from {unverified.url}: archive sha256 "
                                        f"{actual}, expected {'0' * 64} (--sha256).")
    assert not (root / "kodak24").exists()
    code, out, _ = run_cli("data", "download", "kodak24", "--data-root", root, "--sha256", actual)
    assert code == 0 and out.strip().endswith("(3 images; verified: sha256 of the archive (--sha256))")
    shutil.rmtree(root / "kodak24")
    code, out, _ = run_cli("data", "download", "kodak24", "--data-root", root, "--trust")
    assert code == 0 and f"verified: not verified (--trust; archive sha256 {actual})" in out
    assert download("kodak24", data_root=root).verified.startswith("unchanged since its download (not verified")
    with pytest.raises(UsageError, match="64 hex digits"):
        download("kodak24", data_root=root, sha256="abc")


def test_existing_folder_that_does_not_match_is_never_touched(server, isolated, monkeypatch):
    fake(monkeypatch, archive_source(server))
    folder = isolated / "root" / "kodak24"
    folder.mkdir(parents=True)
    (folder / "mine.png").write_bytes(b"precious")
    with pytest.raises(BenchError, match=r"already holds 1 file\(s\) that do not match kodak24's checksums; nothing "
                                         "was changed"):
        download("kodak24", data_root=folder.parent)
    assert (folder / "mine.png").read_bytes() == b"precious" and server.requests == []


def test_offline_download_is_a_clear_error(isolated, monkeypatch):
    fake(monkeypatch, Source("http://127.0.0.1:9/Fake_HR.tar", "tar", "test", member="Fake_HR", folder_md5="0" * 32))
    with pytest.raises(BenchError) as info:
        download("kodak24")
    cache = isolated / "xdg" / "restoration-bench" / "kodak24"
    assert str(info.value).startswith("could not download kodak24: http://127.0.0.1:9/Fake_HR.tar (URLError: ")
    assert str(info.value).endswith(f"Offline? Copy its 3 images into '{cache}' (or set $BENCH_KODAK24_DIR to a "
                                    "folder holding them), e.g. from a machine where `bench data download kodak24` "
                                    "works.")
    assert not cache.exists() and not leftovers(cache.parent)


# --------------------------------------------------------------------------- offline use and errors


def test_run_offline_without_the_data_is_one_error_line_and_stores_nothing(isolated, run_cli, monkeypatch):
    monkeypatch.chdir(isolated)
    cache = isolated / "xdg" / "restoration-bench" / "kodak24"
    code, out, err = run_cli("run", "-m", "identity", "-d", "noise", "--dataset", "kodak24", "--no-progress")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"error: kodak24 is not on this machine: '{cache}' (from the cache) does not exist. Put its 24 images there "
        "(or set $BENCH_KODAK24_DIR to a folder that holds them, or pass --data-root DIR with kodak24/ in it), or "
        "download it: `bench data download kodak24`."]
    root = isolated / "my data"
    code, _, err = run_cli("run", "-m", "identity", "-d", "noise", "--dataset", "kodak24", "--data-root", root)
    assert code == 1 and err.splitlines() == [
        f"error: kodak24 is not on this machine: '{root / 'kodak24'}' (from --data-root {root}) does not exist. Put "
        f"its 24 images there, or download it: `bench data download kodak24 --data-root '{root}'`."]
    assert not (isolated / "results").exists()  # nothing stored


def test_incomplete_or_empty_folder_is_refused(isolated, monkeypatch):
    fake(monkeypatch, Source("http://127.0.0.1:9/x.tar", "tar", "test", member="x", folder_md5="0" * 32))
    folder = isolated / "root" / "kodak24"
    folder.mkdir(parents=True)
    with pytest.raises(DataMissingError, match=r"kodak24 is not on this machine: '.*' \(from --data-root .*\) is "
                                               "empty"):
        locate("kodak24", isolated / "root")
    for seed in range(2):
        save_png(np.random.default_rng(seed).random((20, 20, 3)), folder / f"{seed}.png")
    with pytest.raises(DataMissingError, match=r"holds 2 image\(s\) but the set has 3; move it aside and run "
                                               "`bench data download kodak24 --data-root .*`, or run on these images "
                                               "under their own name with --dataset folder:"):
        load_dataset("kodak24", data_root=str(isolated / "root"))


def test_where_a_set_is_found(isolated, monkeypatch):
    cache = isolated / "xdg" / "restoration-bench"
    assert set_folder("set5") == cache / "set5" and set_folder("div2k") == cache / "DIV2K_valid_HR"
    monkeypatch.setenv("BENCH_DATA_ROOT", "/data")
    assert set_folder("set5") == Path("/data/set5")
    monkeypatch.setenv("BENCH_SET5_DIR", "/mine/Set5")  # the set's own variable: the folder of its images
    monkeypatch.setenv("BENCH_DIV2K_ROOT", "/div")  # div2k's, as before: the folder holding DIV2K_valid_HR/
    assert set_folder("set5") == Path("/mine/Set5") and set_folder("div2k") == Path("/div/DIV2K_valid_HR")
    assert set_folder("set5", "/cli") == Path("/cli/set5")  # --data-root first
    with pytest.raises(UsageError, match="unknown dataset 'set6'. Use builtin, folder:PATH or one of set5, set14"):
        load_dataset("set6")


@pytest.mark.skipif(not SHARED_KODAK.is_dir(), reason=f"the shared Kodak24 copy ({SHARED_KODAK}) is absent")
def test_kodak24_offline_folder_matches_the_registry(isolated, monkeypatch):
    monkeypatch.setenv("BENCH_KODAK24_DIR", str(SHARED_KODAK))
    assert locate("kodak24") == SHARED_KODAK
    assert verify_folder(SETS["kodak24"], SHARED_KODAK) == "sha256 of each file"  # the registry's digests
    assert standard_sets.folder_md5(SHARED_KODAK) == "5b16b585b8f20e8ea62af85837d40e40"  # deepinv's published md5
    sha1 = hashlib.sha1()  # facebookresearch/NeuralCompression's published sha1 of the 24 r0k.us files
    for index in range(1, 25):
        sha1.update((SHARED_KODAK / f"kodim{index:02}.png").read_bytes())
    assert sha1.hexdigest() == "076e2a5fd4515b5fda677f15fe63dd112d266bc5"
    items = load_dataset("kodak24", limit=2, crop=32)
    assert [i.id for i in items] == ["kodim01", "kodim02"] and items[0].image.shape == (32, 32, 3)
    assert not download("kodak24").fresh  # present and verified: nothing fetched, nothing written


def test_report_names_the_set(server, isolated, monkeypatch, run_cli):
    fake(monkeypatch, archive_source(server))
    monkeypatch.chdir(isolated)
    root = isolated / "root"
    code, out, _ = run_cli("data", "download", "kodak24", "--data-root", root)
    assert code == 0 and out.startswith(f"kodak24 ready at {root / 'kodak24'} (3 images; verified: md5 of the")
    code, _, err = run_cli("run", "-m", "identity", "-d", "noise", "--dataset", "kodak24", "--data-root", root,
                           "--profile", "smoke", "--limit", "3", "--no-lpips", "--no-progress")
    assert code == 0, err
    code, out, _ = run_cli("report")
    assert code == 0 and "### kodak24 · profile smoke" in out and "Mean over 3 image(s) of kodak24 (seeds 0)" in out


# --------------------------------------------------------------------------- the evaluation-image guard


def test_trainers_refuse_the_standard_sets_images(server, isolated, monkeypatch):
    from bench.training import data

    fake(monkeypatch, archive_source(server))
    folder = download("kodak24", data_root=isolated / "anywhere").folder  # no variable names this folder
    assert folder in data.evaluation_folders()  # the download recorded it
    training = isolated / "train"
    training.mkdir()
    shutil.copy(folder / "b.png", training / "renamed.png")
    with pytest.raises(BenchError, match=rf"refusing to train: training image '.*renamed.png' has the same pixels "
                                         rf"as the evaluation image '{folder / 'b.png'}'"):
        data.load_training_images([training], 16)
    with pytest.raises(BenchError, match=r"refusing to train on '.*kodak24': it is an evaluation folder \(a standard "
                                         "test set's folder"):
        data.load_training_images([folder], 16)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(isolated / "elsewhere"))  # a root named by the variable counts too
    (isolated / "elsewhere" / "set14").mkdir(parents=True)
    assert isolated / "elsewhere" / "set14" in data.evaluation_folders()


# --------------------------------------------------------------------------- the registry


def test_registry_names_every_set_with_a_source_and_an_honest_checksum(run_cli):
    assert list(SETS) == ["set5", "set14", "urban100", "bsd68", "cbsd68", "kodak24", "mcmaster", "div2k"]
    for s in SETS.values():
        assert s.count > 0 and s.title and s.reference and s.licence and s.page.startswith("http") and s.sources
        for src in s.sources:
            assert src.verified and src.checksum_from, (s.name, src.url)  # every registered source has a checksum
            assert src.url.startswith(("https://", "http://r0k.us/", "http://data.vision.ee.ethz.ch/"))
            assert src.archive_sha256 is None  # none could be downloaded here: none is claimed
            if src.kind == "files":
                assert len(src.files) == len(src.file_sha256) == s.count
                assert all(len(h) == 64 and int(h, 16) >= 0 for h in src.file_sha256.values())
            else:
                assert src.kind in ("zip", "tar") and src.member and len(src.folder_md5) == 32
    code, out, _ = run_cli("data", "download", "--help")
    assert code == 0 and "set5|set14|urban100|bsd68|cbsd68|kodak24|mcmaster|div2k" in "".join(out.split())
    code, out, _ = run_cli("list")
    assert all(f"`bench data download {name}`" in out for name in SETS)
