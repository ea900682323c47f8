"""Image pyramids, the pyramid style loss, coarse-to-fine ``stylize`` and ``periodic_energy``.

References are independent: SciPy's ``gaussian_filter`` (mode "reflect") plus slicing for
the pyramid, NumPy Grams for the losses, closed forms for the kernel and the spectrum.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from nstlib import images, metrics, patterns, pyramids
from nstlib.features import FeatureExtractor
from nstlib.losses import (
    StyleTransferObjective,
    pyramid_style_loss,
    pyramid_style_targets,
    style_loss,
)
from nstlib.optimize import minimize
from nstlib.transfer import stylize

SHALLOW = dict(content_layers=("block1_conv2",), style_layers=("block1_conv1", "block2_conv1"))


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(SHALLOW["content_layers"], SHALLOW["style_layers"],
                            weights="random", seed=0)


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _scipy_pyramid(image, levels, sigma=1.0):
    """Reference: blur each (H, W, C) level with SciPy (reflect borders), keep every 2nd pixel."""
    level = np.asarray(image, np.float64)[0]
    out = [level]
    for _ in range(levels - 1):
        level = scipy.ndimage.gaussian_filter(level, sigma=(sigma, sigma, 0), mode="reflect")
        level = level[::2, ::2]
        out.append(level)
    return out


def _np_gram(features):
    f = np.asarray(features, np.float64)[0]
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat / flat.shape[0]


def _np_normalized_style(generated, targets, weights=None):
    weights = [1.0 / len(generated)] * len(generated) if weights is None else weights
    total = 0.0
    for w, f, a in zip(weights, generated, targets, strict=True):
        g = _np_gram(f)
        a = np.asarray(a, np.float64)[0]
        total += w * np.sum((g - a) ** 2) / np.sum(a**2)
    return total


# ----------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7, 3.0])
def test_gaussian_kernel_sums_to_one_is_symmetric_and_matches_formula(sigma):
    kernel = pyramids.gaussian_kernel(sigma)
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage's default truncate=4
    assert kernel.shape == (2 * radius + 1,)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(kernel, kernel[::-1])
    offsets = np.arange(-radius, radius + 1)
    expected = np.exp(-(offsets**2) / (2 * sigma**2))
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-6)
    assert np.argmax(kernel) == radius


def test_gaussian_kernel_explicit_size_and_errors():
    kernel = pyramids.gaussian_kernel(1.0, size=5)
    assert kernel.shape == (5,)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    for bad in (4, 0, -3, 2.5):
        with pytest.raises(ValueError):
            pyramids.gaussian_kernel(1.0, size=bad)
    with pytest.raises(ValueError):
        pyramids.gaussian_kernel(0.0)


# ----------------------------------------------------------------------------- blur


def test_blur_of_constant_image_is_constant():
    image = np.full((1, 13, 9, 3), 0.37, np.float32)
    image[..., 1] = 0.8
    blurred = pyramids.gaussian_blur(image, sigma=2.0).numpy()
    np.testing.assert_allclose(blurred, image, atol=1e-6)


@pytest.mark.parametrize("shape,sigma", [((1, 20, 31, 3), 1.0), ((1, 17, 12, 2), 1.6),
                                         ((1, 3, 5, 1), 2.0)])
def test_blur_matches_scipy_reflect(shape, sigma):
    # The last case pads by more than the image size: reflection must keep going.
    image = _random_image(shape, seed=1)
    expected = scipy.ndimage.gaussian_filter(image[0].astype(np.float64),
                                             sigma=(sigma, sigma, 0), mode="reflect")
    got = pyramids.gaussian_blur(image, sigma).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ----------------------------------------------------------------------------- pyramid


def test_pyramid_shapes():
    image = _random_image((1, 64, 48, 3))
    pyramid = pyramids.image_pyramid(image, 4)
    assert [tuple(level.shape) for level in pyramid] == [
        (1, 64 // 2**k, 48 // 2**k, 3) for k in range(4)]
    odd = pyramids.image_pyramid(_random_image((1, 37, 50, 3)), 3)
    assert [tuple(level.shape) for level in odd] == [(1, 37, 50, 3), (1, 19, 25, 3),
                                                     (1, 10, 13, 3)]
    single = pyramids.image_pyramid(image, 1)
    assert len(single) == 1
    np.testing.assert_array_equal(single[0].numpy(), image)


def test_pyramid_levels_match_scipy_reference():
    image = _random_image((1, 45, 64, 3), seed=2)
    got = pyramids.image_pyramid(image, 4)
    expected = _scipy_pyramid(image, 4)
    for k, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.shape[1:3] == b.shape[:2], k
        np.testing.assert_allclose(a.numpy()[0], b, atol=1e-6, err_msg=f"level {k}")


def test_pyramid_with_other_sigma_matches_scipy():
    image = _random_image((1, 32, 32, 3), seed=3)
    got = pyramids.image_pyramid(image, 3, sigma=0.8)[2].numpy()[0]
    np.testing.assert_allclose(got, _scipy_pyramid(image, 3, sigma=0.8)[2], atol=1e-6)


def test_pyramid_is_differentiable_with_unit_gain():
    # Each output pixel is a weighted average (weights sum to 1) of input pixels, so
    # d(sum of level k)/d(input) summed over the input equals the number of outputs.
    image = tf.constant(_random_image((1, 24, 20, 3), seed=4))
    with tf.GradientTape() as tape:
        tape.watch(image)
        coarse = pyramids.image_pyramid(image, 3)[2]
        total = tf.reduce_sum(coarse)
    grad = tape.gradient(total, image).numpy()
    assert np.all(np.isfinite(grad))
    assert grad.sum() == pytest.approx(float(np.prod(coarse.shape)), rel=1e-5)


def test_pyramid_rejects_bad_levels():
    with pytest.raises(ValueError):
        pyramids.image_pyramid(_random_image((1, 8, 8, 3)), 0)
    with pytest.raises(ValueError):
        pyramids.image_pyramid(_random_image((1, 2, 2, 3)), 4)


# ----------------------------------------------------------------------------- losses


def test_pyramid_style_loss_one_level_equals_style_loss():
    rng = np.random.default_rng(5)
    features = [tf.constant(rng.random((1, 8, 8, 4)), tf.float32),
                tf.constant(rng.random((1, 4, 4, 6)), tf.float32)]
    targets = [tf.constant(_np_gram(rng.random((1, 9, 9, c)))[None], tf.float32)
               for c in (4, 6)]
    for form in ("gatys", "normalized", "mse"):
        plain = style_loss(features, targets, [0.3, 0.7], form).numpy()
        pyramid = pyramid_style_loss([features], [targets], None, [0.3, 0.7], form).numpy()
        assert pyramid == pytest.approx(plain, rel=1e-6)


def test_pyramid_style_loss_is_weighted_sum_over_levels():
    rng = np.random.default_rng(6)
    levels = [[tf.constant(rng.random((1, s, s, 3)), tf.float32)] for s in (8, 4, 2)]
    targets = [[tf.constant(_np_gram(rng.random((1, 5, 5, 3)))[None], tf.float32)]
               for _ in range(3)]
    expected_terms = [_np_normalized_style(f, t) for f, t in zip(levels, targets, strict=True)]
    got = pyramid_style_loss(levels, targets, form="normalized").numpy()
    assert got == pytest.approx(np.mean(expected_terms), rel=1e-5)
    weighted = pyramid_style_loss(levels, targets, [1.0, 0.5, 0.25], form="normalized").numpy()
    assert weighted == pytest.approx(np.dot([1.0, 0.5, 0.25], expected_terms), rel=1e-5)
    with pytest.raises(ValueError):
        pyramid_style_loss(levels, targets[:2])
    with pytest.raises(ValueError):
        pyramid_style_loss(levels, targets, [1.0, 1.0])


def test_pyramid_style_targets_are_grams_of_scipy_pyramid_levels(extractor):
    style = _random_image((1, 40, 36, 3), seed=7)
    targets = pyramid_style_targets(extractor, style, levels=3)
    for level, grams in zip(_scipy_pyramid(style, 3), targets, strict=True):
        features = extractor(level[None].astype(np.float32)).style
        for f, gram in zip(features, grams, strict=True):
            expected = _np_gram(f)
            np.testing.assert_allclose(gram.numpy()[0], expected, rtol=1e-4,
                                       atol=1e-5 * np.abs(expected).max())


def test_objective_with_one_level_matches_plain_and_two_levels_matches_reference(extractor):
    content = _random_image((1, 32, 32, 3), seed=8)
    style = _random_image((1, 36, 36, 3), seed=9)
    image = _random_image((1, 32, 32, 3), seed=10)
    plain = StyleTransferObjective(extractor, content, style)
    one = StyleTransferObjective(extractor, content, style, pyramid_levels=1)
    two = StyleTransferObjective(extractor, content, style, pyramid_levels=2)
    assert float(one(image)["style"]) == pytest.approx(float(plain(image)["style"]), rel=1e-6)
    # Independent reference for two levels: SciPy pyramids, NumPy Grams, mean over levels.
    expected = []
    for gen_level, sty_level in zip(_scipy_pyramid(image, 2), _scipy_pyramid(style, 2),
                                    strict=True):
        gen = extractor(gen_level[None].astype(np.float32)).style
        sty = extractor(sty_level[None].astype(np.float32)).style
        expected.append(_np_normalized_style(gen, [_np_gram(f)[None] for f in sty]))
    assert float(two(image)["style"]) == pytest.approx(np.mean(expected), rel=1e-4)
    # Content and TV do not depend on the pyramid.
    assert float(two(image)["content"]) == pytest.approx(float(plain(image)["content"]))


def test_objective_refuses_pyramid_too_deep_for_layers():
    deep = FeatureExtractor(("block1_conv1",), ("block3_conv1",), weights="random")
    small = _random_image((1, 24, 24, 3))
    with pytest.raises(ValueError, match="block3_conv1 needs at least 4 px"):
        StyleTransferObjective(deep, small, _random_image((1, 64, 64, 3)), pyramid_levels=4)


# ----------------------------------------------------------------------------- coarse-to-fine


def _tiny_stylize(**kwargs):
    return stylize(_random_image((1, 40, 32, 3), 11), _random_image((1, 48, 48, 3), 12),
                   weights="random", progress=False, **SHALLOW, **kwargs)


def test_single_scale_history_and_config_unchanged():
    result = _tiny_stylize(size=24, steps=3)
    assert tuple(result.image.shape) == (1, 24, 19, 3)
    assert "scale" not in result.history.rows[0]
    assert result.config["scales"] is None and result.config["steps"] == 3
    assert result.config["pyramid_levels"] == 1 and result.config["gram_shrinkage"] is None


def test_coarse_to_fine_returns_top_scale_and_concatenated_history():
    seen = []
    result = _tiny_stylize(scales=(20, 40), steps=(2, 3),
                           callbacks=[lambda step, image, losses: seen.append(image)])
    assert tuple(result.image.shape) == (1, 40, 32, 3)
    history = result.history
    assert len(history) == (2 + 1) + (3 + 1)
    np.testing.assert_array_equal(history["scale"], [20] * 3 + [40] * 4)
    np.testing.assert_array_equal(history["step"], np.arange(7))
    assert np.all(np.diff(history["seconds"]) >= 0)
    assert result.config["scales"] == [20, 40] and result.config["steps"] == [2, 3]
    assert result.config["size"] == 40 and result.config["content_shape"] == [1, 40, 32, 3]
    # The style is resized with the schedule; style_size defaults to the last scale (40 px).
    assert result.config["style_shape"] == [1, 40, 40, 3]
    # Row 0 of the second scale is the first scale's result, upsampled.
    coarse_final, fine_start = seen[2], seen[3]
    np.testing.assert_allclose(fine_start.numpy(),
                               images.resize(coarse_final, (40, 32)).numpy(), atol=1e-6)


def test_coarse_to_fine_restarts_the_optimizer_at_each_scale():
    content, style = _random_image((1, 40, 32, 3), 11), _random_image((1, 48, 48, 3), 12)
    two = _tiny_stylize(scales=(20, 40), steps=(3, 2))
    coarse = _tiny_stylize(size=20, steps=3, style_size=20)
    extractor = FeatureExtractor(SHALLOW["content_layers"], SHALLOW["style_layers"],
                                 weights="random")
    content40 = images.resize_max_side(tf.constant(content), 40)
    objective = StyleTransferObjective(extractor, content40,
                                       images.resize_max_side(tf.constant(style), 40))
    fresh = minimize(objective, images.resize(coarse.image, (40, 32)), steps=2,
                     progress=False)
    np.testing.assert_allclose(two.image.numpy(), fresh.image.numpy(), atol=1e-5)


def test_scale_and_step_arguments_are_checked():
    with pytest.raises(ValueError):
        _tiny_stylize(scales=(20, 40), steps=(2, 3, 4))
    with pytest.raises(ValueError):
        _tiny_stylize(scales=(), steps=2)
    with pytest.raises(ValueError):
        _tiny_stylize(scales=(0, 20), steps=2)


# ----------------------------------------------------------------------------- repetition metric


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
