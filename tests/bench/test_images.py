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
    from bench.errors import BenchError

    monkeypatch.delenv("BENCH_DIV2K_ROOT", raising=False)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "cache"))  # a missing set: one line, exit 1
    with pytest.raises(BenchError, match="--data-root"):
        load_dataset("div2k")
    with pytest.raises(BenchError, match="bench data download div2k"):
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


# --- issue 14, defect 3: images whose encoding is not plain 8/16-bit RGB(A) or gray ------------------------------

RGB = np.zeros((32, 32, 3), np.uint8)
RGB[..., 0], RGB[..., 1], RGB[..., 2] = 200, 50, 10  # an orange: channel order and inversion both show


def test_cmyk_jpeg_is_converted_not_inverted(tmp_path, caplog):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)  # Pillow writes Adobe CMYK
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    with caplog.at_level("WARNING"):
        image = load_image(tmp_path / "cmyk.jpg")
    assert np.abs(image[16, 16] * 255 - RGB[16, 16]).max() < 4, image[16, 16] * 255
    assert "CMYK image, converted to RGB" in caplog.text and "alpha" not in caplog.text


def test_cmyk_tiff_is_converted(tmp_path):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "cmyk.tif")
    assert np.abs(load_image(tmp_path / "cmyk.tif")[0, 0] * 255 - RGB[0, 0]).max() < 1


@pytest.mark.parametrize("scale, warning", [(1 / 255, None), (1.0, "read as 0-255 and scaled by 1/255")])
def test_float_tiff_in_unit_or_byte_range(tmp_path, caplog, scale, warning):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "f.tif", RGB.astype(np.float32) * scale)
    with caplog.at_level("WARNING"):
        image = load_image(tmp_path / "f.tif")
    assert np.allclose(image, RGB / 255.0, atol=1e-6)  # not clipped to white
    assert (warning in caplog.text) if warning else "floating-point" not in caplog.text


@pytest.mark.parametrize("values, message", [
    (RGB.astype(np.float32) * 3, r"floating-point image with values in \[30, 600\]; only \[0, 1\] or \[0, 255\]"),
    (RGB.astype(np.float32) - 100, r"floating-point image with values in \[-90, 100\]"),
    (np.full((32, 32), np.nan, np.float32), "NaN or infinite"),
    (RGB.astype(np.int32) * 1000, r"int32 image with values in \[10000, 200000\], outside the 8-bit"),
    (RGB.astype(np.int32) - 100, r"int32 image with values in \[-90, 100\]"),
])
def test_tiff_without_a_clear_range_is_an_error(tmp_path, values, message):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "x.tif", values)
    with pytest.raises(ImageError, match=message):
        load_image(tmp_path / "x.tif")


@pytest.mark.parametrize("scale, divisor, warning", [
    (1, 255.0, "int32 image with values in 0..200, read as 8-bit (scaled by 1/255)"),
    (100, 65535.0, "int32 image with values in 0..20000, read as 16-bit (scaled by 1/65535)"),
])
def test_int32_tiff_by_its_actual_range(tmp_path, caplog, scale, divisor, warning):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "i.tif", RGB.astype(np.int32) * scale)
    with caplog.at_level("WARNING"):
        image = load_image(tmp_path / "i.tif")
    assert np.allclose(image, RGB.astype(np.float64) * scale / divisor, atol=1e-6)  # not black
    assert warning in caplog.text


def test_multipage_tiff_is_an_error(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([RGB, RGB]))  # one series of 2 pages
    tifffile.imwrite(tmp_path / "scan.tif", RGB)
    tifffile.imwrite(tmp_path / "scan.tif", RGB, append=True)  # 2 series of 1 page
    for name in ("stack.tif", "scan.tif"):
        with pytest.raises(ImageError, match=rf"'{tmp_path / name}' is a multi-page TIFF \(2 full-size pages\)"):
            load_image(tmp_path / name)


def test_tiff_layouts_that_are_clear(tmp_path):
    """Planar RGB, a reduced-resolution thumbnail page, LZW compression and a palette all read as the RGB image."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB, 2, 0), planarconfig="separate", photometric="rgb")
    tifffile.imwrite(tmp_path / "thumb.tif", RGB)
    tifffile.imwrite(tmp_path / "thumb.tif", RGB[:16, :16], append=True, subfiletype=1)
    Image.fromarray(RGB).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    Image.fromarray(RGB).quantize(4).save(tmp_path / "palette.tif")
    for name in ("planar.tif", "thumb.tif", "lzw.tif", "palette.tif"):
        assert np.abs(load_image(tmp_path / name) * 255 - RGB).max() < 1, name


def test_plain_files_read_as_before(tmp_path):
    """8-bit RGB PNG, JPEG and TIFF give the pixels imageio gave before: cache keys of existing datasets stay."""
    import imageio.v3 as iio

    pixels = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    for name in ("a.png", "a.jpg", "a.tif", "a.bmp"):
        Image.fromarray(pixels).save(tmp_path / name)
        expected = iio.imread(tmp_path / name, index=0) if name.endswith(".tif") else iio.imread(tmp_path / name)
        assert np.array_equal(load_image(tmp_path / name), expected.astype(np.float32) / 255.0), name


def test_corrupt_stored_png_is_an_image_error(tmp_path):
    from bench.images import read_png

    save_png(np.full((20, 20, 3), 0.5, np.float32), tmp_path / "s.png")
    data = (tmp_path / "s.png").read_bytes()
    (tmp_path / "s.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"stored image '.*s\.png' is missing or corrupt"):
        read_png(tmp_path / "s.png")
