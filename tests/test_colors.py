"""Tests for nstlib.colors and colour preservation in stylize, against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

import nstlib
from nstlib import colors, transfer

FAST = {"weights": "random", "content_layers": ("block2_conv1",),
        "style_layers": ("block1_conv1", "block2_conv1"), "progress": False}

#: The NTSC YIQ matrix written out independently of nstlib.colors (rows Y, I, Q).
YIQ = np.array([[0.299, 0.587, 0.114],
                [0.595716, -0.274453, -0.321263],
                [0.211456, -0.522591, 0.311135]])


def _photo(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """A colourful, in-gamut test image (ramps plus noise), float32 in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    ramp = np.stack([0.2 + 0.6 * x / width, 0.3 + 0.4 * y / height,
                     0.7 - 0.4 * x / width], axis=-1)
    return np.clip(ramp + 0.05 * rng.standard_normal(ramp.shape), 0, 1).astype(np.float32)


def _texture(color, size: int = 32, seed: int = 1, spread: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = spread * rng.standard_normal((size, size, 3))
    return np.clip(np.asarray(color) + noise, 0, 1).astype(np.float32)


def _chroma(image) -> np.ndarray:
    """(H, W, 2) I and Q of an RGB image, by the reference matrix."""
    return np.asarray(image, np.float64).reshape(-1, 3) @ YIQ[1:].T


def _mean_cov(image) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(image, np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


# ----------------------------------------------------------------------------- colour spaces


def test_yiq_matches_the_reference_and_round_trips():
    image = _photo()
    yiq = colors.rgb_to_yiq(image)
    np.testing.assert_allclose(yiq.reshape(-1, 3), image.reshape(-1, 3) @ YIQ.T, atol=1e-6)
    np.testing.assert_allclose(colors.yiq_to_rgb(yiq), image, atol=1e-6)
    np.testing.assert_allclose(colors.luminance(image[None])[0], yiq[..., 0], atol=1e-7)
    # RGB = Y + chroma term: the inverse's first column is all ones.
    np.testing.assert_allclose(colors.YIQ_TO_RGB[:, 0], 1.0, atol=1e-12)


def test_combine_luminance_keeps_the_chroma_and_takes_the_luminance():
    source = _photo()
    rng = np.random.default_rng(3)
    luma = rng.uniform(0, 1, source.shape[:2])  # any new luminance, often out of gamut
    combined = colors.combine_luminance(luma, source[None])
    assert combined.shape == (1, *source.shape) and combined.dtype == np.float32
    assert combined.min() >= 0.0 and combined.max() <= 1.0
    np.testing.assert_allclose(_chroma(combined), _chroma(source), atol=1e-6)
    # Where the requested Y is displayable with this chroma, it is taken as given.
    chroma_rgb = (source.reshape(-1, 3) @ YIQ[1:].T) @ np.linalg.inv(YIQ)[:, 1:].T
    low, high = (-chroma_rgb).max(axis=1), (1 - chroma_rgb).min(axis=1)
    inside = (luma.ravel() > low) & (luma.ravel() < high)
    assert inside.mean() > 0.3
    new_y = combined.reshape(-1, 3) @ YIQ[0]
    np.testing.assert_allclose(new_y[inside], luma.ravel()[inside], atol=1e-6)


def test_match_luminance_gives_the_contents_mean_and_std():
    style, content = _texture((0.5, 0.5, 0.5), spread=0.05), _photo()
    matched = colors.match_luminance(colors.luminance(style), colors.luminance(content))
    reference = colors.luminance(content).astype(np.float64)
    assert matched.mean() == pytest.approx(reference.mean(), abs=1e-5)
    assert matched.std() == pytest.approx(reference.std(), abs=1e-5)


@pytest.mark.parametrize("method", colors.MATCH_METHODS)
def test_match_color_statistics_gives_the_references_mean_and_covariance(method):
    style = _texture((0.8, 0.3, 0.2), spread=0.2, seed=5)
    content = _photo()
    mapped = colors.match_color_statistics(style, content, method=method, clip=False)
    assert mapped.shape == style.shape and mapped.dtype == np.float32
    mean, cov = _mean_cov(mapped)
    ref_mean, ref_cov = _mean_cov(content)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-5)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-5)
    # The map is affine per pixel: x' = A (x - mean_s) + mean_c with one A for all pixels.
    centred = style.reshape(-1, 3).astype(np.float64) - style.reshape(-1, 3).mean(axis=0)
    matrix, *_ = np.linalg.lstsq(centred, mapped.reshape(-1, 3) - ref_mean, rcond=None)
    np.testing.assert_allclose(centred @ matrix, mapped.reshape(-1, 3) - ref_mean, atol=1e-5)


def test_eigen_map_is_the_symmetric_square_root_form():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 3))
    source, target = a @ a.T + 0.1 * np.eye(3), b @ b.T + 0.1 * np.eye(3)

    def sqrtm(m):  # independent: by SVD (m is symmetric positive definite)
        u, s, _ = np.linalg.svd(m)
        return (u * np.sqrt(s)) @ u.T

    expected = sqrtm(target) @ np.linalg.inv(sqrtm(source))
    np.testing.assert_allclose(colors.color_transfer_matrix(source, target), expected,
                               atol=1e-8)


def test_flat_style_maps_to_the_contents_mean():
    flat = np.full((8, 8, 3), 0.3, np.float32)
    mapped = colors.match_color_statistics(flat, _photo())
    np.testing.assert_allclose(mapped.reshape(-1, 3).mean(axis=0),
                               _photo().reshape(-1, 3).mean(axis=0), atol=1e-6)


def test_bad_shapes_and_methods_are_one_line():
    with pytest.raises(ValueError, match=r"image must have shape \(H, W, 3\)"):
        colors.rgb_to_yiq(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="method must be one of eigen, cholesky"):
        colors.match_color_statistics(_photo(), _photo(), method="svd")


# ----------------------------------------------------------------------------- in stylize


def test_luminance_result_has_the_contents_chroma():
    content = _photo(24, 32)
    style = _texture((0.9, 0.2, 0.1), seed=2)  # a red style: its colour must not come through
    seen = []
    result = nstlib.stylize(content, style, size=32, steps=15, preserve_colors="luminance",
                            callbacks=[lambda step, image, losses: seen.append(image)], **FAST)
    image = result.image.numpy()
    assert image.shape == (1, 24, 32, 3) and result.record["preserve_colors"] == "luminance"
    assert np.abs(_chroma(image) - _chroma(content)).max() < 1e-5
    # The luminance did change (the transfer happened), and callbacks saw colour images.
    assert np.abs(colors.luminance(image)[0] - colors.luminance(content)).mean() > 1e-3
    assert np.abs(_chroma(np.asarray(seen[-1])) - _chroma(content)).max() < 1e-5
    plain = nstlib.stylize(content, style, size=32, steps=15, **FAST).image.numpy()
    assert np.abs(_chroma(plain) - _chroma(content)).max() > 0.05  # without it, red comes in


def test_histogram_recolours_the_style_to_the_contents_statistics():
    content = 0.25 + 0.5 * _photo()  # well inside the RGB cube, so the map needs no clipping
    style = _texture((0.55, 0.45, 0.5), spread=0.1, seed=4)
    _, (recoloured,) = transfer.color_inputs("histogram", content[None], [style[None]])
    assert 0 < recoloured.numpy().min() and recoloured.numpy().max() < 1
    mean, cov = _mean_cov(recoloured.numpy())
    ref_mean, ref_cov = _mean_cov(content)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-5)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-5)
    result = nstlib.stylize(content, style, size=32, steps=2, preserve_colors="histogram",
                            **FAST)
    assert result.record["preserve_colors"] == "histogram"


def test_luminance_inputs_are_grey_with_the_contents_tones():
    content, style = _photo(), _texture((0.2, 0.7, 0.3), seed=6)
    grey_content, (grey_style,) = transfer.color_inputs("luminance", content[None],
                                                        [style[None]])
    for image in (grey_content.numpy(), grey_style.numpy()):
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert grey_style.numpy().mean() == pytest.approx(float(colors.luminance(content).mean()),
                                                      abs=1e-3)


def test_unknown_preserve_colors_is_one_line():
    with pytest.raises(nstlib.ConfigError, match="preserve_colors must be one of none, "
                                                 "luminance, histogram, got 'yes'"):
        nstlib.stylize(_photo(), _photo(), preserve_colors="yes", **FAST)
