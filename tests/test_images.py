"""Tests for nstlib.images: loading every odd image kind, resizing, atomic saving, VGG maps."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fs_helpers import as_unprivileged, open_folder
from PIL import Image

import nstlib
from nstlib import config, images
from nstlib.images import (
    ImageError,
    load_image,
    load_sample,
    resize_max_side,
    sample_names,
    save_image,
    to_uint8,
    vgg_deprocess,
    vgg_preprocess,
)

EXIF_ORIENTATION = 0x0112


def _rgb_pattern(height: int = 12, width: int = 20) -> np.ndarray:
    """(H, W, 3) uint8 with distinct rows, columns and channels (any flip or turn shows)."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    return np.stack([rows * 20 % 256 + 0 * cols, cols * 12 % 256 + 0 * rows,
                     (rows * 7 + cols * 3) % 256], axis=-1).astype(np.uint8)


def _smooth_pattern(height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 ramps (JPEG keeps them well) that still show any flip or turn."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height - 1, width - 1])[:, None, None]
    return np.round(np.stack([y, x, 1 - (x + y) / 2], axis=-1) * 255).astype(np.uint8)


def _load(path, **kwargs) -> np.ndarray:
    image = load_image(path, **kwargs)
    assert isinstance(image, tf.Tensor)
    assert image.dtype == tf.float32
    assert image.shape[0] == 1 and image.shape[-1] == 3
    array = image.numpy()[0]
    assert array.min() >= 0.0 and array.max() <= 1.0
    return array


def _one_line_image_error(call, match: str) -> str:
    with pytest.raises(ImageError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, ImageError)
    return message


# ----------------------------------------------------------------------------- file formats


def test_public_error_type_is_exported():
    assert nstlib.ImageError is ImageError
    assert issubclass(ImageError, ValueError)


def test_rgb_png_loads_exactly(tmp_path):
    pattern = _rgb_pattern()
    Image.fromarray(pattern).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_load(tmp_path / "rgb.png"), pattern / np.float32(255))


def test_path_given_as_str_and_pathlike(tmp_path):
    pattern = _rgb_pattern()
    Image.fromarray(pattern).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_load(str(tmp_path / "rgb.png")), _load(tmp_path / "rgb.png"))


def test_grey_l_becomes_three_equal_channels(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    array = _load(tmp_path / "grey.png")
    assert array.shape == (6, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], grey / np.float32(255))


def test_palette_image_uses_its_palette_colours(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette = [255, 0, 0, 0, 128, 0, 10, 20, 250] + [0] * (256 * 3 - 9)
    pil = Image.fromarray(indices, mode="P")
    pil.putpalette(palette)
    pil.save(tmp_path / "palette.png")
    colours = np.array(palette[:9], np.float32).reshape(3, 3) / 255
    np.testing.assert_allclose(_load(tmp_path / "palette.png"), colours[indices], atol=1e-7)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    indices = np.array([[0, 1], [1, 0]], np.uint8)
    pil = Image.fromarray(indices, mode="P")
    pil.putpalette([0, 0, 255, 0, 0, 0] + [0] * (256 * 3 - 6))  # 0: blue, 1: black
    pil.info["transparency"] = 1  # palette entry 1 fully transparent
    pil.save(tmp_path / "transparent.png", transparency=1)
    array = _load(tmp_path / "transparent.png")
    np.testing.assert_allclose(array[0, 0], [0, 0, 1])
    # The transparent black pixels come out white (background), not black.
    np.testing.assert_allclose(array[0, 1], [1, 1, 1])
    np.testing.assert_allclose(array[1, 0], [1, 1, 1])


def test_rgba_half_transparent_red_blends_with_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black ...
    rgba[0, 0] = (255, 0, 0, 128)  # ... except a half-transparent red pixel
    rgba[0, 1] = (0, 255, 0, 0)  # and a fully transparent green one
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    array = _load(tmp_path / "rgba.png")
    alpha = 128 / 255
    # out = colour * alpha + white * (1 - alpha)
    np.testing.assert_allclose(array[0, 0], [1.0, 1 - alpha, 1 - alpha], atol=1e-6)
    np.testing.assert_allclose(array[0, 0], [1.0, 127 / 255, 127 / 255], atol=1e-6)
    np.testing.assert_allclose(array[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(array[1], 0.0, atol=1e-6)


def test_la_grey_with_alpha_is_composited_on_white(tmp_path):
    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 0] = 100
    la[..., 1] = [[0, 255], [51, 204]]  # alpha: transparent, opaque, 20 %, 80 %
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    array = _load(tmp_path / "la.png")
    alpha = la[..., 1] / 255.0
    expected = 100 / 255.0 * alpha + (1 - alpha)
    for channel in range(3):
        np.testing.assert_allclose(array[..., channel], expected, atol=1e-6)


def test_cmyk_is_converted_to_rgb(tmp_path):
    cmyk = np.zeros((1, 4, 4), np.uint8)
    cmyk[0, 0] = (255, 0, 0, 0)  # cyan
    cmyk[0, 1] = (0, 255, 255, 0)  # magenta + yellow = red
    cmyk[0, 2] = (0, 0, 0, 0)  # no ink: white
    cmyk[0, 3] = (0, 0, 0, 255)  # key: black
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    array = _load(tmp_path / "cmyk.tif")
    np.testing.assert_allclose(array[0], [[0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 0]])


def test_16_bit_grey_png_keeps_full_precision(tmp_path):
    values = np.array([[0, 1000, 1001], [32768, 65534, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    array = _load(tmp_path / "grey16.png")
    np.testing.assert_allclose(array[..., 0], values / np.float32(65535), rtol=1e-6, atol=1e-9)
    assert array[0, 1, 0] == pytest.approx(1000 / 65535, rel=1e-6)
    # 1000 and 1001 are distinct: no rounding through 8 bits on the way.
    assert array[0, 1, 0] != array[0, 2, 0]
    np.testing.assert_array_equal(array[..., 0], array[..., 2])


def test_dark_16_bit_grey_png_is_not_mistaken_for_8_bit(tmp_path):
    # Every value <= 255: still a 16-bit file, so 200 means 200/65535, not 200/255.
    values = np.array([[0, 100], [200, 255]], np.uint16)
    Image.fromarray(values).save(tmp_path / "dark16.png")
    array = _load(tmp_path / "dark16.png")
    np.testing.assert_allclose(array[..., 1], values / 65535.0, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, suffix, orientation, turns):
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to display
    # (np.rot90 k=-1); 8: counter-clockwise (k=1); 3: half a turn.
    pattern = _rgb_pattern(16, 24) if suffix == ".png" else _smooth_pattern(16, 24)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"oriented{suffix}"
    Image.fromarray(pattern).save(path, exif=exif, **({"quality": 95, "subsampling": 0}
                                                       if suffix == ".jpg" else {}))
    assert Image.open(path).getexif().get(EXIF_ORIENTATION) == orientation
    expected = np.rot90(pattern, k=turns) / 255.0
    array = _load(path)
    assert array.shape == expected.shape
    if suffix == ".png":
        np.testing.assert_array_equal(array, expected.astype(np.float32))
    else:  # lossy: close to the turned pattern, and far from any other orientation
        error = np.abs(array - expected).mean()
        assert error < 0.03
        for other in {-1, 1, 2} - {turns}:
            candidate = np.rot90(pattern, k=other) / 255.0
            if candidate.shape == array.shape:
                assert np.abs(array - candidate).mean() > 5 * error


def test_exif_orientation_of_a_pil_image_is_applied(tmp_path):
    pattern = _rgb_pattern(8, 14)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(pattern).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as pil:
        array = load_image(pil).numpy()[0]
    np.testing.assert_array_equal(array, np.rot90(pattern, k=-1) / np.float32(255))


def test_jpeg_loads_close_to_the_original(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.stack([x * 5, y * 7, 255 - x * 5], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "smooth.jpg", quality=95)
    array = _load(tmp_path / "smooth.jpg")
    assert array.shape == (32, 48, 3)
    assert np.abs(array - smooth / 255.0).mean() < 0.01


# ----------------------------------------------------------------------------- arrays


def test_arrays_of_every_accepted_shape():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(size=(5, 7, 3)).astype(np.float32)
    grey = rng.uniform(size=(5, 7)).astype(np.float32)
    np.testing.assert_array_equal(_load(rgb), rgb)
    np.testing.assert_array_equal(_load(rgb[None]), rgb)
    np.testing.assert_array_equal(_load(grey), np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(_load(grey[..., None]), np.repeat(grey[..., None], 3, -1))
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 0.25, np.float32)], axis=-1)
    np.testing.assert_allclose(_load(rgba), rgb * 0.25 + 0.75, atol=1e-6)


def test_tensor_input_is_accepted():
    rgb = np.random.default_rng(1).uniform(size=(1, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(_load(tf.constant(rgb)), rgb[0])


def test_integer_arrays_are_scaled_by_their_dtype_maximum():
    u8 = np.array([[0, 51, 255]], np.uint8)
    u16 = np.array([[0, 1000, 65535]], np.uint16)
    np.testing.assert_allclose(_load(u8)[..., 0], u8 / 255.0, rtol=1e-6)
    np.testing.assert_allclose(_load(u16)[..., 0], u16 / 65535.0, rtol=1e-6)
    assert _load(u16)[0, 1, 0] == pytest.approx(1000 / 65535, rel=1e-6)
    np.testing.assert_allclose(_load(np.array([[0.0, 0.5, 1.0]]))[..., 0], [[0, 0.5, 1]])


@pytest.mark.parametrize("bad", [np.full((4, 4, 3), 1.5), np.full((4, 4), -0.2),
                                 np.full((4, 4, 3), 255.0)])
def test_float_array_out_of_unit_range_is_refused(bad):
    message = _one_line_image_error(lambda: load_image(bad), "must lie in \\[0, 1\\]")
    assert "float" in message


def test_array_with_nan_or_bad_shape_is_refused():
    nan = np.full((3, 3, 3), 0.5, np.float32)
    nan[1, 1, 1] = np.nan
    _one_line_image_error(lambda: load_image(nan), "NaN")
    _one_line_image_error(lambda: load_image(np.zeros((4, 4, 2), np.float32)),
                          "cannot interpret an array of shape")
    _one_line_image_error(lambda: load_image(np.zeros((2, 4, 4, 3), np.float32)),
                          "expected a single image")


# ----------------------------------------------------------------------------- max_size


def test_max_size_shrinks_keeping_the_aspect_ratio(tmp_path):
    Image.fromarray(_rgb_pattern(30, 60)).save(tmp_path / "wide.png")
    Image.fromarray(_rgb_pattern(60, 30)).save(tmp_path / "tall.png")
    assert _load(tmp_path / "wide.png", max_size=20).shape == (10, 20, 3)
    assert _load(tmp_path / "tall.png", max_size=20).shape == (20, 10, 3)
    # 30x45 -> longer side 16: 30 * 16 / 45 = 10.67 rounds to 11.
    assert _load(np.zeros((30, 45, 3), np.uint8), max_size=16).shape == (11, 16, 3)


def test_max_size_never_enlarges(tmp_path):
    pattern = _rgb_pattern(12, 20)
    Image.fromarray(pattern).save(tmp_path / "small.png")
    for max_size in (20, 21, 500):
        np.testing.assert_array_equal(_load(tmp_path / "small.png", max_size=max_size),
                                      pattern / np.float32(255))


def test_shrinking_averages_areas():
    # A 2x2 checker of 0/1 pixels shrunk by 2 is uniform grey 0.5 (no aliasing).
    checker = (np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32)
    np.testing.assert_allclose(_load(checker, max_size=4), 0.5, atol=1e-6)


def test_resize_max_side_can_upscale_and_rejects_bad_sizes():
    image = tf.zeros((1, 6, 9, 3))
    assert resize_max_side(image, 18).shape == (1, 12, 18, 3)
    assert resize_max_side(image, 18, upscale=False).shape == (1, 6, 9, 3)
    with pytest.raises(ValueError, match="positive"):
        resize_max_side(image, 0)


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    message = _one_line_image_error(lambda: load_image(tmp_path / "nope.png"), "not found")
    assert "nope.png" in message


def test_directory(tmp_path):
    _one_line_image_error(lambda: load_image(tmp_path), "directory")


def test_corrupt_file_with_png_suffix(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    message = _one_line_image_error(lambda: load_image(path), "not an image|corrupt")
    assert "corrupt.png" in message


def test_truncated_png(tmp_path):
    Image.fromarray(_rgb_pattern(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _one_line_image_error(lambda: load_image(tmp_path / "cut.png"), "corrupt or truncated")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a picture\n")
    message = _one_line_image_error(lambda: load_image(path), "not an image")
    assert "notes.txt" in message


def test_image_over_max_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(_rgb_pattern(40, 50)).save(tmp_path / "big.png")

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded before the size check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    message = _one_line_image_error(lambda: load_image(tmp_path / "big.png", max_pixels=1999),
                                    "too large")
    assert "50x40" in message and "2,000" in message and "1,999" in message


def test_max_pixels_checked_from_the_header_of_a_pixel_less_file(tmp_path):
    # A PNG header that claims 100000 x 100000 pixels, with no pixel data behind it.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IEND", b""))
    _one_line_image_error(lambda: load_image(tmp_path / "bomb.png"), "too large")


def test_image_at_max_pixels_is_accepted(tmp_path):
    Image.fromarray(_rgb_pattern(40, 50)).save(tmp_path / "ok.png")
    assert _load(tmp_path / "ok.png", max_pixels=2000).shape == (40, 50, 3)


# ----------------------------------------------------------------------------- saving


def test_png_round_trip_equals_to_uint8(tmp_path):
    image = tf.constant(np.random.default_rng(5).uniform(size=(1, 9, 13, 3)), tf.float32)
    out = save_image(image, tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    with Image.open(out) as pil:
        assert pil.mode == "RGB"
        stored = np.asarray(pil)
    expected = np.round(image.numpy()[0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(stored, to_uint8(image))
    # And load_image reads back exactly what was stored.
    np.testing.assert_array_equal(_load(out), stored / np.float32(255))


def test_to_uint8_rounds_and_clips():
    values = np.array([[[-0.5, 0.0, 0.4 / 255], [0.2, 100.4 / 255, 100.6 / 255],
                        [0.6, 1.0, 2.0]]], np.float32)
    expected = np.array([[[0, 0, 0], [51, 100, 101], [153, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(to_uint8(values[None]), expected)
    np.testing.assert_array_equal(to_uint8(values), expected)
    assert to_uint8(values).dtype == np.uint8


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".PNG"])
def test_save_other_formats(tmp_path, suffix):
    image = np.full((1, 8, 8, 3), 0.5, np.float32)
    out = save_image(image, tmp_path / f"out{suffix}")
    np.testing.assert_allclose(_load(out), 0.5, atol=2 / 255)


def test_save_creates_parent_folders_and_leaves_no_temporary_files(tmp_path):
    out = save_image(np.zeros((4, 4, 3), np.float32), tmp_path / "a" / "b" / "out.png")
    assert out.is_file()
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out.png"]


def test_save_replaces_an_existing_file_only_after_success(tmp_path, monkeypatch):
    destination = tmp_path / "result.png"
    save_image(np.zeros((4, 4, 3), np.float32), destination)
    old_bytes = destination.read_bytes()

    def failing_save(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        save_image(np.ones((4, 4, 3), np.float32), destination)
    assert destination.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]

    monkeypatch.undo()
    save_image(np.ones((4, 4, 3), np.float32), destination)
    assert destination.read_bytes() != old_bytes
    np.testing.assert_array_equal(_load(destination), 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_save_is_a_rename_of_a_complete_file(tmp_path, monkeypatch):
    # The destination name only ever appears through os.replace of a finished temp file.
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        with Image.open(src) as pil:  # the temporary file is a complete, readable image
            pil.load()
        replaced.append((os.path.dirname(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr(images.os, "replace", spy)
    destination = tmp_path / "atomic.png"
    save_image(np.zeros((4, 4, 3), np.float32), destination)
    assert replaced == [(str(tmp_path), destination)]


def test_save_refuses_to_overwrite_an_input(tmp_path):
    source = tmp_path / "content.png"
    Image.fromarray(_rgb_pattern()).save(source)
    before = source.read_bytes()
    new = np.zeros((1, 12, 20, 3), np.float32)
    message = _one_line_image_error(lambda: save_image(new, source, inputs=[source]),
                                    "refusing to overwrite the input")
    assert "content.png" in message
    # Different spellings of the same file are caught too.
    _one_line_image_error(lambda: save_image(new, tmp_path / "." / "content.png",
                                             inputs=[str(source)]), "refusing")
    link = tmp_path / "link.png"
    link.symlink_to(source)
    _one_line_image_error(lambda: save_image(new, link, inputs=[source]), "refusing")
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "link.png"]
    # Non-path inputs (arrays, sample names) are not files and do not block anything.
    save_image(new, tmp_path / "out.png", inputs=[np.zeros(3), "astronaut"])


def test_save_unknown_suffix(tmp_path):
    message = _one_line_image_error(lambda: save_image(np.zeros((2, 2, 3)), tmp_path / "x.gif2"),
                                    "unknown image suffix")
    assert ".gif2" in message
    _one_line_image_error(lambda: save_image(np.zeros((2, 2, 3)), tmp_path / "noext"),
                          "unknown image suffix")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- VGG


def test_vgg_preprocess_is_bgr_times_255_minus_the_imagenet_mean():
    rgb = np.random.default_rng(2).uniform(size=(2, 3, 4, 3)).astype(np.float32)
    expected = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(vgg_preprocess(tf.constant(rgb)).numpy(), expected, rtol=1e-5,
                               atol=1e-4)
    # A pure red pixel: R lands in the last (BGR) channel.
    red = vgg_preprocess(tf.constant([[[[1.0, 0.0, 0.0]]]])).numpy()[0, 0, 0]
    np.testing.assert_allclose(red, [-103.939, -116.779, 255 - 123.68], rtol=1e-6)


def test_vgg_preprocess_agrees_with_keras_caffe_mode():
    from keras.applications import vgg19

    rgb = np.random.default_rng(3).uniform(size=(1, 5, 5, 3)).astype(np.float32)
    reference = vgg19.preprocess_input(rgb * 255.0)
    np.testing.assert_allclose(vgg_preprocess(tf.constant(rgb)).numpy(), reference, rtol=1e-5,
                               atol=1e-3)


def test_vgg_deprocess_inverts_preprocess_and_clips():
    rgb = np.random.default_rng(4).uniform(size=(1, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(vgg_deprocess(vgg_preprocess(tf.constant(rgb))).numpy(), rgb,
                               atol=1e-5)
    far = tf.constant([[[[500.0, -500.0, 0.0]]]])
    np.testing.assert_allclose(vgg_deprocess(far).numpy()[0, 0, 0],
                               [np.clip(123.68 / 255, 0, 1), 0.0, 1.0], atol=1e-6)


# ----------------------------------------------------------------------------- samples


@pytest.mark.parametrize("name", sample_names())
def test_load_sample_every_name(name):
    image = load_sample(name)
    assert image.dtype == tf.float32 and image.shape[0] == 1 and image.shape[-1] == 3
    array = image.numpy()
    assert 0.0 <= array.min() < array.max() <= 1.0
    assert array.std() > 0.05  # a real picture, not a flat fill
    small = load_sample(name, max_size=32)
    assert max(small.shape[1:3]) == 32
    ratio = image.shape[1] / image.shape[2]
    assert small.shape[1] / small.shape[2] == pytest.approx(ratio, rel=0.05)
    # A sample name works wherever an image path does.
    np.testing.assert_array_equal(load_image(name, max_size=32).numpy(), small.numpy())


def test_sample_names_are_content_then_style():
    assert sample_names() == images.CONTENT_SAMPLES + images.STYLE_SAMPLES
    assert {"astronaut", "chelsea", "coffee"} <= set(sample_names())


@pytest.mark.parametrize("name", ["chelsea", "stripes", "checkerboard"])
def test_load_sample_regenerates_when_data_is_missing(tmp_path, monkeypatch, name):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    assert not images.sample_path(name).exists()
    regenerated = load_sample(name).numpy()[0]
    source = images.make_sample(name)
    if source.dtype == np.uint8:
        source = source / np.float32(255)
    np.testing.assert_allclose(regenerated, source, atol=1e-6)


def test_unknown_sample_lists_valid_names():
    message = _one_line_image_error(lambda: load_sample("mona_lisa"), "unknown sample")
    for name in sample_names():
        assert name in message


def test_as_hwc_shapes_values_and_errors():
    from nstlib.images import as_hwc

    grey = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = as_hwc(grey)
    assert out.shape == (2, 3, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[..., 0], grey)
    rgb = np.random.default_rng(0).random((1, 4, 5, 3))
    np.testing.assert_array_equal(as_hwc(rgb), rgb[0])  # values untouched, batch axis dropped
    with pytest.raises(ValueError, match="expected a single content, got a batch of shape"):
        as_hwc(np.zeros((2, 4, 4, 3)), "content")
    with pytest.raises(ValueError, match=r"image must have shape \(H, W\), \(H, W, C\)"):
        as_hwc(np.zeros(5))


# ----------------------------------------------------------------------------- issue 15


def _png_16_bit(path, values: np.ndarray) -> None:
    """Write (H, W, 3|4) uint16 as a 16-bit PNG by hand (Pillow cannot write 48/64-bit).

    Scanlines use filters 0-4 in turn, so Pillow's unfiltering is exercised with the
    6 (or 8) bytes per pixel of 16-bit RGB (RGBA).
    """
    height, width, channels = values.shape
    raw = values.astype(">u2").tobytes()
    stride, bpp = width * channels * 2, channels * 2
    rows = [np.frombuffer(raw[y * stride:(y + 1) * stride], np.uint8).astype(np.int32)
            for y in range(height)]
    lines = []
    for y, row in enumerate(rows):
        kind = y % 5
        up = rows[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        if kind == 0:
            predicted = np.zeros_like(row)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = up
        elif kind == 3:
            predicted = (left + up) // 2
        else:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        lines.append(bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 6 if channels == 4 else 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(b"".join(lines)))
                           + chunk(b"IEND", b""))


def _gradient_16_bit(height: int, width: int, channels: int) -> np.ndarray:
    """(H, W, C) uint16 ramps whose values are (almost all) not multiples of 257."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 4099 + y * 131 + 7) % 65536, (y * 3001 + x * 17 + 1000) % 65536,
              (x * y * 97 + 12345) % 65536, (x * 5003 + y * 7) % 65536][:channels]
    return np.stack(planes, axis=-1).astype(np.uint16)


def test_16_bit_rgb_png_is_read_at_16_bits(tmp_path):
    values = _gradient_16_bit(10, 13, 3)
    assert np.mean(values % 257 != 0) > 0.9
    _png_16_bit(tmp_path / "rgb16.png", values)
    assert Image.open(tmp_path / "rgb16.png").mode == "RGB"  # Pillow alone: 8 bits
    array = _load(tmp_path / "rgb16.png")
    np.testing.assert_allclose(array, values / 65535.0, rtol=0, atol=1e-6)
    assert len(np.unique(array)) > len(np.unique(np.round(array * 255)))  # not 8-bit steps


def test_16_bit_rgba_png_is_read_at_16_bits_and_composited_on_white(tmp_path):
    values = _gradient_16_bit(6, 9, 4)
    _png_16_bit(tmp_path / "rgba16.png", values)
    rgba = values / 65535.0
    expected = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    np.testing.assert_allclose(_load(tmp_path / "rgba16.png"), expected, rtol=0, atol=1e-6)


def test_pillows_own_pixel_limit_does_not_override_max_pixels(tmp_path, monkeypatch):
    Image.fromarray(_rgb_pattern(20, 20)).save(tmp_path / "p.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's limit below ours
    assert _load(tmp_path / "p.png", max_pixels=400).shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored after the call
    message = _one_line_image_error(lambda: load_image(tmp_path / "p.png", max_pixels=399),
                                    "too large")
    assert "20x20" in message and "399" in message


def test_max_pixels_above_pillows_89_megapixel_limit_is_honoured(tmp_path):
    # 95 M pixels in the header and no pixel data: accepted sizes fail only when decoding.
    header = struct.pack(">IIBBBBB", 10_000, 9_500, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + crc
                     + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))
    _one_line_image_error(lambda: load_image(path, max_pixels=100_000_000),
                          "corrupt or truncated image")
    message = _one_line_image_error(lambda: load_image(path), "too large")
    assert "10000x9500" in message and "95,000,000" in message


@pytest.fixture
def open_dir():
    with open_folder() as path:
        yield path


def test_unreadable_file_is_permission_denied_not_corrupt(open_dir):
    Image.fromarray(_rgb_pattern()).save(open_dir / "secret.png")
    (open_dir / "secret.png").chmod(0o000)
    closed = open_dir / "closed"
    closed.mkdir()
    Image.fromarray(_rgb_pattern()).save(closed / "inside.png")
    _load(closed / "inside.png")  # Pillow's plugins are loaded before permissions tighten
    closed.chmod(0o600)  # readable listing, but not searchable: files inside cannot be opened
    with as_unprivileged():
        for path in (open_dir / "secret.png", closed / "inside.png"):
            message = _one_line_image_error(lambda p=path: load_image(p), "permission denied")
            assert message == f"permission denied: {path}"


def test_sample_names_resolve_to_their_files_and_are_protected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    monkeypatch.chdir(tmp_path / "..")
    sample = tmp_path / "chelsea.jpg"
    sample.write_bytes(b"photo")
    assert images.input_path("chelsea") == sample
    assert images.input_path("no_such_sample.png") == Path("no_such_sample.png")
    with pytest.raises(ImageError, match=r"refusing to overwrite the input image chelsea \("):
        save_image(np.zeros((2, 2, 3)), sample, inputs=["chelsea"])
    hard_link = tmp_path / "copy.jpg"
    os.link(sample, hard_link)
    message = _one_line_image_error(
        lambda: images.check_not_an_input(hard_link, ["chelsea"]), "refusing")
    assert message == (f"refusing to overwrite the input image chelsea ({sample}): "
                       f"{hard_link} is that file")
    assert sample.read_bytes() == b"photo"
    images.check_not_an_input(tmp_path / "other.jpg", ["chelsea", np.zeros(3)])  # fine


def test_at_size_resamples_only_when_the_size_differs():
    rng = np.random.default_rng(3)
    image = tf.constant(rng.uniform(0, 1, (1, 20, 30, 3)), tf.float32)
    assert images.at_size(image, (20, 30)) is image  # no resampling, no round-off
    smaller = images.at_size(image, [10, 15])
    assert smaller.shape == (1, 10, 15, 3)
    # area resampling by 2: the mean of each 2x2 block (NumPy reference)
    blocks = image.numpy().reshape(1, 10, 2, 15, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(smaller.numpy(), blocks, atol=1e-6)
    np.testing.assert_array_equal(smaller.numpy(), images.resize(image, (10, 15)).numpy())
