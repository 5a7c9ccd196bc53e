"""Bad input that used to give a silent wrong result (issue 25): duplicate images, 16-bit colour PNGs, animated
images, EXIF orientation and non-PyTorch checkpoints. Each test checks the exact message of its README row."""

import logging
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from bench.checkpoints import load_checkpoint, save_checkpoint
from bench.datasets import load_dataset
from bench.errors import CheckpointError, ImageError
from bench.images import ORIENTATIONS, apply_orientation, load_image, save_png

SIXTEEN_BIT = "16-bit image, scaled to [0, 1] by 1/65535"


def run_on(run_cli, tmp_path, folder, *extra, methods="identity"):
    return run_cli("run", "--dataset", f"folder:{folder}", "--methods", methods, "--degradations", "noise",
                   "--profile", "smoke", "--no-lpips", "--no-progress", "--results-dir", str(tmp_path / "res"), *extra)


def noise_image(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


# --- duplicate pixels ---------------------------------------------------------------------------------------------


def test_two_files_with_identical_pixels_are_refused_before_anything_is_computed(tmp_path, run_cli):
    folder = tmp_path / "data"
    save_png(noise_image(0), folder / "a.png")
    save_png(noise_image(0), folder / "b.png")  # same pixels, another name: used to be one row named 'b'
    save_png(noise_image(1), folder / "c.png")
    code, _, err = run_on(run_cli, tmp_path, folder)
    assert code == 1
    assert err.strip() == (
        f"error: images '{folder / 'a.png'}' and '{folder / 'b.png'}' have identical pixels; a dataset must not hold "
        "an image twice (the store keys images by content). Remove one of them."
    )
    assert not (tmp_path / "res").exists()  # refused at load time: no store, no cell


def test_images_whose_centre_crops_are_identical_are_refused_naming_the_crop(tmp_path):
    folder = tmp_path / "data"
    inner = noise_image(0, 32)
    for name, border in (("framed.png", 0.0), ("plain.png", 1.0)):
        image = np.full((48, 48, 3), border, np.float32)
        image[8:40, 8:40] = inner
        save_png(image, folder / name)
    assert len(load_dataset(f"folder:{folder}")) == 2  # whole images differ
    with pytest.raises(ImageError) as info:
        load_dataset(f"folder:{folder}", crop=32)
    assert str(info.value) == (
        f"images '{folder / 'framed.png'}' and '{folder / 'plain.png'}' have identical pixels in their centre 32×32 "
        "crop; a dataset must not hold an image twice (the store keys images by content). Remove one of them or "
        "choose another --crop."
    )


# --- 16-bit colour PNGs -------------------------------------------------------------------------------------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png16(path, samples: np.ndarray, interlace: bool = False) -> None:
    """A 16-bit PNG of ``samples`` (H, W, C), written by hand: Pillow cannot write 16-bit colour. Rows use the Sub
    filter (non-interlaced) so the reader must undo filtering across both bytes of each sample."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = []
    passes = [samples[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [samples]
    for image in passes:
        for row in image:
            data = np.frombuffer(row.astype(">u2").tobytes(), np.uint8)
            if interlace:
                rows.append(b"\0" + data.tobytes())
            else:  # Sub: each byte minus the same byte of the pixel to its left
                left = np.concatenate([np.zeros(2 * channels, np.uint8), data[: -2 * channels]])
                rows.append(b"\1" + (data - left).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlace))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))


def low_bytes_matter(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values 257·k + r: the low byte carries information the high byte does not (truncation loses r)."""
    rng = np.random.default_rng(seed)
    return (257 * rng.integers(0, 255, shape) + rng.integers(1, 200, shape)).astype(np.uint16)


@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_rgb_png_is_read_at_full_depth_with_the_warning(tmp_path, caplog, interlace):
    samples = low_bytes_matter((21, 27, 3))
    path = tmp_path / "deep_rgb.png"
    write_png16(path, samples, interlace)
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        image = load_image(path)
    assert image.dtype == np.float32 and image.shape == (21, 27, 3)
    assert np.abs(image - samples / 65535.0).max() < 1e-7
    assert f"{path}: {SIXTEEN_BIT}" in caplog.text


def test_16bit_rgba_and_gray_alpha_pngs_keep_their_low_bytes(tmp_path, caplog):
    rgba = low_bytes_matter((20, 20, 4), seed=1)
    gray_alpha = low_bytes_matter((20, 20, 2), seed=2)
    write_png16(tmp_path / "rgba.png", rgba)
    write_png16(tmp_path / "la.png", gray_alpha)
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        assert np.abs(load_image(tmp_path / "rgba.png") - rgba[..., :3] / 65535.0).max() < 1e-7
        gray = load_image(tmp_path / "la.png")
    assert np.abs(gray - gray_alpha[..., :1] / 65535.0).max() < 1e-7
    assert "alpha channel dropped (it was not fully opaque)" in caplog.text


def test_16bit_rgb_png_in_a_run_is_converted_with_the_warning(tmp_path, caplog, run_cli):
    folder = tmp_path / "data"
    folder.mkdir()
    write_png16(folder / "deep_rgb.png", low_bytes_matter((32, 32, 3)))
    with caplog.at_level(logging.WARNING):
        code, out, err = run_on(run_cli, tmp_path, folder)
    assert code == 0, err
    assert f"{folder / 'deep_rgb.png'}: {SIXTEEN_BIT}" in caplog.text
    assert "computed 1" in err


# --- animated images ----------------------------------------------------------------------------------------------


def frames(count: int = 3) -> list[Image.Image]:
    return [Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)) for i in range(count)]


@pytest.mark.parametrize("name", ["anim.png", "anim.gif", "anim.webp"])
def test_animated_images_are_refused(tmp_path, name):
    first, *rest = frames()
    first.save(tmp_path / name, save_all=True, append_images=rest)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / name)
    assert str(info.value) == (
        f"image '{tmp_path / name}' is animated (3 frames); which frame to use is not clear. Save the frame you want "
        "as its own file."
    )


def test_animated_png_in_a_folder_dataset_stops_the_run(tmp_path, run_cli):
    folder = tmp_path / "data"
    save_png(noise_image(0), folder / "good.png")
    first, *rest = frames(2)
    first.save(folder / "anim.png", save_all=True, append_images=rest)
    code, _, err = run_on(run_cli, tmp_path, folder)
    assert code == 1
    assert f"error: image '{folder / 'anim.png'}' is animated (2 frames); which frame to use is not clear." in err


def test_single_frame_apng_and_multi_picture_jpeg_are_read(tmp_path):
    """Not animations: a one-frame APNG, and an MPO (a camera JPEG with a preview), whose first image is primary."""
    first, second = frames(2)
    first.save(tmp_path / "one.png", save_all=True, append_images=[])
    first.save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[second])
    assert Image.open(tmp_path / "camera.jpg").format == "MPO"
    assert load_image(tmp_path / "one.png").shape == (24, 24, 3)
    assert np.abs(load_image(tmp_path / "camera.jpg")).max() < 2 / 255  # the first (black) image


# --- EXIF orientation ---------------------------------------------------------------------------------------------


def asymmetric(height: int = 16, width: int = 24) -> np.ndarray:
    """8-bit RGB in which every flip and rotation gives another array."""
    return (np.arange(height * width * 3).reshape(height, width, 3) % 251).astype(np.uint8)


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_is_applied_with_a_warning(tmp_path, caplog):
    path = tmp_path / "x.jpg"
    Image.fromarray(asymmetric()).save(path, exif=exif_with_orientation(6), quality=100)
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        image = load_image(path)
    assert image.shape == (24, 16, 3)  # rotated: a 16×24 (H×W) photo shown upright is 24×16
    assert f"{path}: EXIF orientation 6 applied (image rotated/flipped as viewers show it)" in caplog.text
    with Image.open(path) as img:
        shown = np.asarray(ImageOps.exif_transpose(img)).astype(np.float32) / 255.0
    assert np.array_equal(image, shown)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_every_orientation_matches_what_pillows_exif_transpose_shows(tmp_path, caplog, orientation, suffix):
    """PNG (eXIf chunk, through Pillow) and TIFF (tag 274, through tifffile), lossless, against Pillow's reference."""
    path = tmp_path / f"o{orientation}{suffix}"
    if suffix == ".png":
        Image.fromarray(asymmetric()).save(path, exif=exif_with_orientation(orientation))
    else:
        Image.fromarray(asymmetric()).save(path, tiffinfo={0x0112: orientation})
    with caplog.at_level(logging.WARNING, logger="bench.images"):
        image = load_image(path)
    with Image.open(path) as img:
        shown = np.asarray(ImageOps.exif_transpose(img).convert("RGB")).astype(np.float32) / 255.0
    assert np.array_equal(image, shown)
    assert ("EXIF orientation" in caplog.text) == (orientation != 1)


def test_orientation_table_covers_the_exif_values():
    assert sorted(ORIENTATIONS) == list(range(2, 9))
    image = asymmetric()
    assert apply_orientation(image, 1) is image and apply_orientation(image, 0) is image  # as stored


# --- checkpoints that are not PyTorch files ----------------------------------------------------------------------


def test_text_file_as_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes\n")  # used to be KeyError: 544502645 (or IndexError) from the unpickler
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint '{path}' is not a PyTorch checkpoint (it starts with b'these are my not', not the zip archive "
        "or pickle that torch.save writes); pass a file saved by torch.save."
    )


def test_an_image_as_checkpoint_is_refused_too(tmp_path):
    path = tmp_path / "photo.png"
    save_png(noise_image(0), path)
    with pytest.raises(CheckpointError, match=r"is not a PyTorch checkpoint \(it starts with b'\\x89PNG"):
        load_checkpoint(path)


def test_both_torch_save_formats_still_load(tmp_path):
    payload = {"state_dict": {"w": torch.arange(4.0)}, "config": {"k": 2}}
    save_checkpoint(payload, tmp_path / "zip.pt")
    torch.save(payload, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("zip.pt", "legacy.pt"):
        loaded = load_checkpoint(tmp_path / name)
        assert loaded["config"] == {"k": 2} and torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))


def test_damaged_legacy_pickle_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:2] + b"these are not pickle opcodes")  # a pickle's start, then garbage
    with pytest.raises(CheckpointError) as info:  # used to be a bare IndexError from the unpickler's stack
        load_checkpoint(path)
    # the parenthesis holds torch's own first line ("pop from empty list" with torch 2.x)
    assert re.fullmatch(rf"checkpoint '{re.escape(str(path))}' is truncated or corrupt \(.+\); re-download or "
                        r"re-train it\.", str(info.value))


@pytest.mark.parametrize("method, name, kind", [("flowprior", "notes.txt", "flow "), ("pnp", "notes.pt", "DRUNet "),
                                               ("epll", "notes.pt", "")])
def test_text_checkpoint_in_a_run_fails_its_cell_with_one_line(tmp_path, run_cli, method, name, kind):
    folder = tmp_path / "data"
    save_png(noise_image(0, 64), folder / "pic.png")
    notes = tmp_path / name
    notes.write_text("these are my notes\n")
    code, _, err = run_on(run_cli, tmp_path, folder, "--set", f"{method}.checkpoint={notes}", methods=method)
    assert code == 1
    line = next(line for line in err.splitlines() if line.startswith("failed: "))
    assert line.startswith(
        f"failed: {method} on noise/pic: CheckpointError: {kind}checkpoint '{notes}' is not a PyTorch checkpoint (it "
        "starts with b'these are my not', not the zip archive or pickle that torch.save writes); pass a file saved "
        "by torch.save."
    )
    assert "Traceback" not in err and "KeyError" not in err and "IndexError" not in err
    assert "computed 0, cached 0, failed 1" in err
