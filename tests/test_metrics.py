"""Evaluation metrics (nstlib.metrics, evaluation section) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from nstlib import metrics, patterns
from nstlib.features import FeatureExtractor


def _pair(seed=0, shape=(24, 28, 3)):
    """An image and a noisy, slightly darkened copy (SSIM well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    smooth = rng.random((shape[0] // 4 + 1, shape[1] // 4 + 1, 3))
    image = np.kron(smooth, np.ones((4, 4, 1)))[: shape[0], : shape[1]].astype(np.float32)
    other = np.clip(0.7 * image + 0.4 * rng.random(shape), 0, 1).astype(np.float32)
    return image, other


def test_ssim_of_an_image_with_itself_is_one():
    image, _ = _pair()
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ssim(image[None], image) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_scikit_image_with_the_same_window():
    image, other = _pair(1)
    expected = structural_similarity(
        image.astype(np.float64), other.astype(np.float64), channel_axis=-1, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    got = metrics.ssim(other, image)
    assert 0.2 < expected < 0.95  # a non-trivial pair
    assert got == pytest.approx(expected, abs=1e-5)


def test_ssim_resizes_the_reference_to_the_image():
    image, other = _pair(2)
    # A 2x nearest-neighbour enlargement, area-averaged back down, is the image itself.
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    assert metrics.ssim(image, big) == pytest.approx(1.0, abs=1e-5)
    assert metrics.ssim(other, big) == pytest.approx(metrics.ssim(other, image), abs=1e-5)


def _np_gram(features):
    f = features[0].reshape(-1, features.shape[-1]).astype(np.float64)
    return f.T @ f / f.shape[0]


def test_relative_gram_distance_matches_numpy():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    style = rng.standard_normal((1, 7, 3, 4)).astype(np.float32) + 0.5
    g, a = _np_gram(features), _np_gram(style)
    expected = np.linalg.norm(g - a) / np.linalg.norm(a)
    assert metrics.relative_gram_distance(features, style) == pytest.approx(expected, rel=1e-5)
    assert metrics.relative_gram_distance(style, style) == pytest.approx(0.0, abs=1e-6)
    assert metrics.relative_gram_distance(0 * features, style) == pytest.approx(1.0)


def test_relative_feature_distance_matches_numpy():
    rng = np.random.default_rng(4)
    f, p = rng.standard_normal((2, 1, 4, 5, 3)).astype(np.float32)
    expected = np.linalg.norm(f.astype(np.float64) - p) / np.linalg.norm(p.astype(np.float64))
    assert metrics.relative_feature_distance(f, p) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.relative_feature_distance(f, p[:, :3])


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(("block2_conv1",), ("block1_conv1", "block2_conv1"),
                            weights="random", seed=0)


def test_style_and_content_distance_per_layer(extractor):
    image, other = _pair(5, (20, 24, 3))
    style = _pair(6, (16, 16, 3))[0]
    outputs = {name: extractor.layer_outputs(x[None]) for name, x in
               (("image", image), ("other", other), ("style", style))}
    styled = metrics.style_distance(extractor, other, style)
    for layer in ("block1_conv1", "block2_conv1"):
        g = _np_gram(outputs["other"][layer].numpy())
        a = _np_gram(outputs["style"][layer].numpy())
        assert styled[layer] == pytest.approx(np.linalg.norm(g - a) / np.linalg.norm(a),
                                              rel=1e-4)
    assert styled["mean"] == pytest.approx((styled["block1_conv1"] + styled["block2_conv1"]) / 2)
    kept = metrics.content_distance(extractor, other, image)
    f = outputs["other"]["block2_conv1"].numpy().astype(np.float64)
    p = outputs["image"]["block2_conv1"].numpy().astype(np.float64)
    assert kept["block2_conv1"] == pytest.approx(np.linalg.norm(f - p) / np.linalg.norm(p),
                                                 rel=1e-4)
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    assert metrics.content_distance(extractor, image, big)["mean"] == pytest.approx(0, abs=1e-5)


def test_evaluate_flattens_every_metric(extractor):
    image, other = _pair(7, (20, 24, 3))
    values = metrics.evaluate(extractor, other, image, image)
    assert set(values) == {"ssim", "content_distance", "style_distance",
                           "content_distance_block2_conv1", "style_distance_block1_conv1",
                           "style_distance_block2_conv1"}
    assert values["ssim"] == pytest.approx(metrics.ssim(other, image))
    assert metrics.evaluate(extractor, image, image, image)["style_distance"] == pytest.approx(
        0, abs=1e-5)


def test_timing_from_cumulative_seconds():
    seconds = [1.5, 1.6, 1.8, 1.9, 2.3]
    got = metrics.timing(seconds)
    assert got["seconds"] == 2.3 and got["startup_seconds"] == 1.5
    assert got["median_step_seconds"] == pytest.approx(np.median([0.1, 0.2, 0.1, 0.4]))
    assert np.isnan(metrics.timing([0.7])["median_step_seconds"])
    with pytest.raises(ValueError):
        metrics.timing([])


# --------------------------------------------------- relative Gram distance as notebook 03 uses it


def test_relative_gram_distance_as_notebook_03_uses_it():
    # Notebook 03 measures ||G(a) - G(b)|| / ||G(b)|| with metrics.relative_gram_distance(a, b).
    from nstlib import metrics

    image = np.random.default_rng(7).uniform(size=(1, 12, 16, 3)).astype(np.float32)
    # A rotation only permutes the positions, which the Gram sums over.
    assert metrics.relative_gram_distance(np.rot90(image, axes=(1, 2)), image) < 1e-6
    # G(2x) = 4 G(x): ||4G - G|| / ||G|| = 3, and ||G - 4G|| / ||4G|| = 3/4.
    assert metrics.relative_gram_distance(2 * image, image) == pytest.approx(3.0, rel=1e-5)
    assert metrics.relative_gram_distance(image, 2 * image) == pytest.approx(0.75, rel=1e-5)


# ----------------------------------------------------------------------------- periodic energy


@pytest.mark.parametrize("window", ["hann", None])
def test_periodic_energy_of_sinusoid_is_half_amplitude_squared(window):
    y, x = np.mgrid[0:64, 0:96]
    amplitude, period = 0.3, 8
    wave = 0.5 + amplitude * np.sin(2 * np.pi * x / period + 0.7)
    expected = amplitude**2 / 2
    assert metrics.periodic_energy(wave, period, window=window) == pytest.approx(expected,
                                                                               rel=1e-9)
    vertical = 0.5 + amplitude * np.cos(2 * np.pi * y / 16)
    assert metrics.periodic_energy(vertical, 16, window=window) == pytest.approx(expected,
                                                                                 rel=1e-9)
    assert metrics.periodic_energy(vertical, 8, window=window) == pytest.approx(0.0, abs=1e-20)


def test_periodic_energy_oblique_stripes_relative_and_flat():
    # patterns.stripes with softness 1 is 0.5 + 0.5 sin(...) in every channel: a = 0.5.
    stripes = patterns.stripes(128, period=8.0, angle=30.0, colors=((0, 0, 0), (1, 1, 1)),
                               softness=1.0)
    assert metrics.periodic_energy(stripes, 8.0) == pytest.approx(0.125, rel=0.01)
    assert metrics.periodic_energy(stripes[None], 8.0, relative=True) == pytest.approx(
        1.0, abs=0.01)
    y, x = np.mgrid[0:64, 0:64]
    mix = 0.2 * np.sin(2 * np.pi * x / 8) + 0.4 * np.sin(2 * np.pi * y / 32)
    assert metrics.periodic_energy(mix, 8, relative=True) == pytest.approx(
        0.2**2 / (0.2**2 + 0.4**2), rel=1e-9)
    assert metrics.periodic_energy(np.full((32, 32, 3), 0.6), 8) == pytest.approx(0.0, abs=1e-20)
    with pytest.raises(ValueError):
        metrics.periodic_energy(mix, 2.0)


def _interior(shape, margin):
    mask = np.zeros(shape, dtype=bool)
    mask[margin:-margin, margin:-margin] = True
    return mask


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_periodic_energy_map_of_sinusoid_is_flat_half_amplitude_squared(angle):
    # The analytic signal's envelope is constant: a²/2 at every interior pixel, not a²·sin².
    y, x = np.mgrid[0:96, 0:128]
    amplitude, period = 0.3, 8.0
    theta = np.deg2rad(angle)
    wave = 0.5 + amplitude * np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period)
    energy = metrics.periodic_energy_map(wave, period)
    interior = energy[_interior(energy.shape, 16)]
    assert interior.mean() == pytest.approx(amplitude**2 / 2, rel=0.02)
    assert interior.std() < 0.05 * amplitude**2 / 2
    # Another period is rejected by the ring (Gaussian gain at 1/16 with σ = 0.15/8: e^-5.6).
    assert metrics.periodic_energy_map(wave, 2 * period)[_interior(energy.shape, 32)].mean() < (
        0.01 * amplitude**2 / 2)


def test_masked_periodic_energy_sees_a_motif_only_where_it_is():
    y, x = np.mgrid[0:128, 0:128]
    wave = 0.25 * np.sin(2 * np.pi * (x * np.cos(0.5) + y * np.sin(0.5)) / 8.0)
    image = np.where(y < 64, 0.5, 0.5 + wave)          # flat top half, motif in the bottom
    top, bottom = np.zeros((128, 128), bool), np.zeros((128, 128), bool)
    top[8:48, 8:-8] = True
    bottom[80:-8, 8:-8] = True
    assert metrics.masked_periodic_energy(image, 8.0, top) < 1e-3 * 0.25**2 / 2
    assert metrics.masked_periodic_energy(image, 8.0, bottom) == pytest.approx(0.25**2 / 2,
                                                                              rel=0.05)
    assert metrics.masked_periodic_energy(np.full((32, 32, 3), 0.4), 8.0,
                                          np.ones((32, 32), bool)) == pytest.approx(0, abs=1e-20)
    with pytest.raises(ValueError, match="selects no pixels"):
        metrics.masked_periodic_energy(image, 8.0, np.zeros((128, 128), bool))
    with pytest.raises(ValueError, match="mask has shape"):
        metrics.masked_periodic_energy(image, 8.0, top[:10])
    with pytest.raises(ValueError, match="Nyquist"):
        metrics.periodic_energy_map(image, 2.0)
