"""Tests for nstlib.patterns and the bundled sample images in data/."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from nstlib import patterns

GENERATORS = {
    "stripes": lambda size, seed: patterns.stripes(size),
    "checkerboard": lambda size, seed: patterns.checkerboard(size),
    "mosaic": lambda size, seed: patterns.mosaic(size, seed=seed),
    "brush_strokes": lambda size, seed: patterns.brush_strokes(size, seed=seed),
}


@functools.cache
def _sample(name: str) -> np.ndarray:
    return patterns.sample_pattern(name)


def _dominant_frequency(image: np.ndarray) -> tuple[float, float]:
    """Period (pixels) and direction (degrees in [0, 180), counter-clockwise as displayed,
    i.e. with the row axis flipped) of the strongest Fourier component of the grey image."""
    grey = image.mean(axis=-1)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    row, col = np.unravel_index(np.argmax(power), power.shape)
    fy = np.fft.fftfreq(grey.shape[0])[row]
    fx = np.fft.fftfreq(grey.shape[1])[col]
    period = 1.0 / np.hypot(fx, fy)
    angle = np.degrees(np.arctan2(-fy, fx)) % 180.0
    return period, angle


def _angle_error(a: float, b: float) -> float:
    """Distance between two orientations in degrees, modulo 180."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


# ----------------------------------------------------------------------------- common contract


@pytest.mark.parametrize("name", GENERATORS)
def test_shape_dtype_and_range(name):
    image = GENERATORS[name](64, 0)
    assert image.shape == (64, 64, 3)
    assert image.dtype == np.float32
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("name", GENERATORS)
def test_rectangular_size(name):
    assert GENERATORS[name]((48, 80), 0).shape == (48, 80, 3)


@pytest.mark.parametrize("name", ["mosaic", "brush_strokes"])
def test_deterministic_per_seed_and_different_across_seeds(name):
    first, again, other = (GENERATORS[name](96, seed) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.05


def test_invalid_arguments():
    with pytest.raises(ValueError):
        patterns.stripes(32, period=0)
    with pytest.raises(ValueError):
        patterns.stripes((32, 0))
    with pytest.raises(ValueError):
        patterns.checkerboard(32, period=7)
    with pytest.raises(ValueError):
        patterns.checkerboard(32, colors=((0, 0, 0), (2, 0, 0)))
    with pytest.raises(ValueError):
        patterns.mosaic(32, cell_size=2)


# ----------------------------------------------------------------------------- stripes


@pytest.mark.parametrize("angle", [0.0, 90.0])
def test_stripes_fft_peak_at_requested_period_and_axis(angle):
    period, direction = _dominant_frequency(patterns.stripes(256, period=16.0, angle=angle))
    assert period == pytest.approx(16.0)
    assert _angle_error(direction, angle) < 1e-6


@pytest.mark.parametrize("angle", [30.0, 135.0])
def test_stripes_fft_peak_for_oblique_angles(angle):
    # 512 px: the peak falls within half a frequency bin of the true one.
    period, direction = _dominant_frequency(patterns.stripes(512, period=16.0, angle=angle))
    assert period == pytest.approx(16.0, abs=0.5)
    assert _angle_error(direction, angle) < 2.0


def test_vertical_stripes_are_constant_down_columns_and_repeat_every_period():
    image = patterns.stripes((40, 96), period=12.0, angle=0.0)
    np.testing.assert_allclose(image, np.broadcast_to(image[:1], image.shape), atol=1e-6)
    np.testing.assert_allclose(image[:, 12:], image[:, :-12], atol=1e-5)


def test_stripes_use_the_given_colours():
    colors = ((0.2, 0.3, 0.4), (0.9, 0.8, 0.1))
    image = patterns.stripes(64, period=16.0, colors=colors, softness=0.0)
    found = {tuple(np.round(c, 5)) for c in image.reshape(-1, 3)}
    assert found <= {tuple(np.round(np.float32(c), 5)) for c in colors} | {
        tuple(np.round(np.float32(0.5 * (np.add(*colors))), 5))  # sin == 0 exactly
    }


# ----------------------------------------------------------------------------- checkerboard


def test_checkerboard_repeats_every_period_and_inverts_at_half_period():
    period = 8
    image = patterns.checkerboard(256, period=period)
    for axis in (0, 1):
        np.testing.assert_array_equal(np.roll(image, period, axis=axis), image)
        np.testing.assert_array_equal(np.roll(image, period // 2, axis=axis), 1.0 - image)


def test_checkerboard_half_shift_swaps_custom_colours():
    colors = ((0.8, 0.1, 0.1), (0.1, 0.2, 0.9))
    image = patterns.checkerboard(64, period=16, colors=colors)
    swapped = patterns.checkerboard(64, period=16, colors=colors[::-1])
    np.testing.assert_array_equal(np.roll(image, 8, axis=1), swapped)
    np.testing.assert_array_equal(image[0, 0], np.float32(colors[0]))
    np.testing.assert_array_equal(image[0, 8], np.float32(colors[1]))
    np.testing.assert_array_equal(image[8, 8], np.float32(colors[0]))


# ----------------------------------------------------------------------------- mosaic


def test_mosaic_tiles_are_about_cell_size():
    cell = 24
    image = patterns.mosaic(256, cell_size=cell, seed=1, grout=0.25)
    # The grout is the single most frequent colour; everything else belongs to tiles.
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    grout_colour = colours[np.argmax(counts)]
    assert grout_colour.max() < 0.2
    grout = np.all(image == grout_colour, axis=-1)
    _, n_tiles = ndimage.label(~grout)
    expected = (256 / cell) ** 2
    assert 0.7 * expected < n_tiles < 1.5 * expected


def test_mosaic_grout_lines_are_dark_and_scale_with_grout():
    def dark_fraction(grout):
        image = patterns.mosaic(128, cell_size=16, seed=0, grout=grout)
        return np.mean(image.mean(axis=-1) < 0.14)

    assert dark_fraction(0.0) < 0.01
    assert 0.05 < dark_fraction(0.15) < dark_fraction(0.3) < 0.6


# ----------------------------------------------------------------------------- brush strokes


def test_brush_strokes_is_fast():
    best = min(_timed(lambda: patterns.brush_strokes(256, seed=0)) for _ in range(3))
    assert best < 1.0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_brush_strokes_are_colourful_on_paper():
    image = patterns.brush_strokes(256, seed=0)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    blue = (b > r + 0.15) & (b > g)
    yellow = (r > b + 0.3) & (g > b + 0.2)
    assert blue.mean() > 0.1 and yellow.mean() > 0.03
    assert len(np.unique(np.round(image.reshape(-1, 3) * 255), axis=0)) > 1000
    # No strokes: only the paper, an almost uniform warm off-white.
    paper = patterns.brush_strokes(128, seed=0, n_strokes=0)
    assert paper.std(axis=(0, 1)).max() < 0.03
    assert paper.mean() > 0.8 and paper[..., 0].mean() > paper[..., 2].mean()


def test_brush_strokes_are_elongated_along_a_smooth_flow():
    # Painted strokes make neighbouring pixels alike: the image is far smoother than noise
    # of the same colours (a shuffled copy) but still has structure at the stroke width.
    image = patterns.brush_strokes(128, seed=2)
    shuffled = np.random.default_rng(0).permutation(image.reshape(-1, 3)).reshape(image.shape)

    def roughness(a):
        return np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()

    assert roughness(image) < 0.4 * roughness(shuffled)
    assert roughness(image) > 0.01


# ----------------------------------------------------------------------------- samples


@pytest.mark.parametrize("name", ["brushstrokes", "mosaic", "checkerboard", "stripes"])
def test_sample_pattern_is_512_square(name):
    image = _sample(name)
    assert image.shape == (512, 512, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_sample_stripes_and_checkerboard_parameters():
    period, direction = _dominant_frequency(_sample("stripes"))
    assert period == pytest.approx(16.0, abs=0.5)
    assert _angle_error(direction, 30.0) < 2.0
    board = _sample("checkerboard")
    np.testing.assert_array_equal(np.roll(board, 16, axis=0), board)
    np.testing.assert_array_equal(np.roll(board, 8, axis=1), 1.0 - board)


def test_sample_pattern_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        patterns.sample_pattern("starry_night")
    message = str(info.value)
    assert "starry_night" in message
    for name in ("brushstrokes", "mosaic", "checkerboard", "stripes"):
        assert name in message


# ----------------------------------------------------------------------------- data/


@pytest.fixture(scope="module")
def images_module():
    from nstlib import images

    return images


def test_data_file_exists_for_every_sample(images_module):
    for name in images_module.sample_names():
        path = images_module.sample_path(name)
        assert path.is_file(), f"missing {path}; run python data/make_samples.py"
        assert path.stat().st_size < 500 * 1024


def test_load_sample_returns_batched_rgb_in_unit_range(images_module):
    for name in images_module.sample_names():
        image = images_module.load_sample(name).numpy()
        assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3, name
        assert image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("name", ["brushstrokes", "mosaic", "checkerboard", "stripes"])
def test_bundled_style_png_matches_generator(images_module, name):
    with Image.open(images_module.sample_path(name)) as pil:
        stored = np.asarray(pil.convert("RGB"), dtype=np.int16)
    fresh = np.round(_sample(name) * 255.0).astype(np.int16)
    assert np.abs(stored - fresh).max() <= 1, "data/ is stale: run python data/make_samples.py"


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_bundled_photo_matches_scikit_image(images_module, name):
    import skimage.data

    original = getattr(skimage.data, name)().astype(np.float32) / 255.0
    with Image.open(images_module.sample_path(name)) as pil:
        assert pil.format == "JPEG"
        stored = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    assert stored.shape == original.shape
    assert np.abs(stored - original).mean() < 0.02
