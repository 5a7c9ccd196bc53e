import numpy as np
import pytest
from PIL import Image

from bench.datasets import load_dataset
from bench.errors import ImageError, UsageError
from bench.images import center_crop, load_image, safe_id, save_png


def test_roundtrip(tmp_path):
    img = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    save_png(img, tmp_path / "a.png")
    back = load_image(tmp_path / "a.png")
    assert back.shape == (20, 24, 3) and np.abs(back - img).max() <= 0.5 / 255 + 1e-6


def test_conversions(tmp_path):
    Image.fromarray(np.full((20, 20), 128, np.uint8), "L").save(tmp_path / "gray.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "gray.png").shape == (20, 20, 3)
    assert np.allclose(load_image(tmp_path / "rgba.png")[0, 0], [1, 0, 0])
    assert np.allclose(load_image(tmp_path / "deep.png"), 1.0)


def test_bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="is empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageError, match="corrupt or not an image"):
        load_image(tmp_path / "corrupt.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="1×1 px; images must be at least 16×16"):
        load_image(tmp_path / "tiny.png")


def test_folder_dataset_skips_non_images_and_crops(tmp_path):
    save_png(np.zeros((40, 50, 3), np.float32), tmp_path / "b.png")
    save_png(np.ones((40, 50, 3), np.float32), tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    items = load_dataset(f"folder:{tmp_path}", crop=32)
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].image.shape == (32, 32, 3)
    assert items[0].digest != items[1].digest


def test_missing_folder_and_unknown_dataset(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset(f"folder:{tmp_path}/nope")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("imagenet")


def test_div2k_requires_root(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DIV2K_ROOT", raising=False)
    with pytest.raises(UsageError, match="--data-root"):
        load_dataset("div2k")
    with pytest.raises(UsageError, match="bench data download div2k"):
        load_dataset("div2k", data_root=str(tmp_path))


def test_builtin_dataset_offline():
    items = load_dataset("builtin", limit=3, crop=48)
    assert len(items) == 3 and all(i.image.shape == (48, 48, 3) for i in items)
    assert all(i.image.dtype == np.float32 and 0 <= i.image.min() and i.image.max() <= 1 for i in items)


def test_safe_ids_cannot_escape():
    assert safe_id("../../etc/passwd") == "etc_passwd"
    assert "/" not in safe_id("a/b\\c") and not safe_id("..").startswith(".")
    assert center_crop(np.zeros((10, 8, 3)), 16).shape == (10, 8, 3)


def test_div2k_download_offline_is_a_clear_error(tmp_path):
    from bench.datasets import download_div2k
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="could not download .*Offline\\?"):
        download_div2k(tmp_path, url="http://127.0.0.1:9/DIV2K_valid_HR.zip")


def test_folder_md5_convention(tmp_path):
    import hashlib

    from bench.datasets import folder_md5

    (tmp_path / "b").write_bytes(b"2")
    (tmp_path / "a").write_bytes(b"1")
    inner = [hashlib.md5(x).hexdigest() for x in (b"1", b"2")]
    assert folder_md5(tmp_path) == hashlib.md5("".join(inner).encode()).hexdigest()
