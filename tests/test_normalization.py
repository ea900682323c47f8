"""Tests for the normalisation helpers of nstlib.statistics, checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib import statistics


def _features(shape, seed=0):
    """Positive, ReLU-like activations with channel-dependent scale and offset."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 5.0, size=shape[-1])
    offset = rng.uniform(-1.0, 3.0, size=shape[-1])
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32)


def _np_instance_norm(x, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def test_channel_mean_std_matches_numpy():
    x = _features((2, 5, 7, 4))
    mean, std = statistics.channel_mean_std(x, eps=0.0)
    assert mean.shape == (2, 1, 1, 4) and std.shape == (2, 1, 1, 4)
    np.testing.assert_allclose(mean.numpy()[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy()[:, 0, 0], x.std(axis=(1, 2)), rtol=1e-5)
    _, std_eps = statistics.channel_mean_std(x, eps=0.5)
    np.testing.assert_allclose(std_eps.numpy()[:, 0, 0], np.sqrt(x.var(axis=(1, 2)) + 0.5),
                               rtol=1e-5)


def test_instance_norm_matches_numpy_and_standardises_each_image():
    x = _features((3, 6, 5, 8), seed=1)
    out = statistics.instance_norm(x, eps=1e-5).numpy()
    np.testing.assert_allclose(out, _np_instance_norm(x, 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-4)


def test_instance_norm_invariant_to_per_channel_affine_changes():
    rng = np.random.default_rng(2)
    x = _features((2, 8, 8, 6), seed=2)
    a = rng.uniform(0.3, 3.0, size=(2, 1, 1, 6)).astype(np.float32)  # a > 0
    b = rng.uniform(-4.0, 4.0, size=(2, 1, 1, 6)).astype(np.float32)
    y = a * x + b
    raw_change = np.linalg.norm(y - x) / np.linalg.norm(x)
    normed_x = statistics.instance_norm(x, eps=1e-8).numpy()
    normed_y = statistics.instance_norm(y, eps=1e-8).numpy()
    assert raw_change > 0.3
    np.testing.assert_allclose(normed_y, normed_x, atol=2e-5)
    # a < 0 flips the sign: invariance needs a positive scale.
    flipped = statistics.instance_norm(-x, eps=1e-8).numpy()
    np.testing.assert_allclose(flipped, -normed_x, atol=2e-5)


def test_instance_norm_keeps_constant_channels_finite():
    x = _features((1, 4, 4, 3))
    x[..., 1] = 7.0
    out = statistics.instance_norm(x, eps=1e-5).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[..., 1], 0.0, atol=1e-6)


def test_batch_norm_matches_numpy_with_statistics_over_batch_and_positions():
    x = _features((4, 5, 6, 3), seed=3)
    x[1] += 5.0  # the images of the batch differ in their channel means
    out = statistics.batch_norm(x, eps=1e-5).numpy()
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 1, 2), keepdims=True)
    var = x64.var(axis=(0, 1, 2), keepdims=True)
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    # Unlike instance norm, each image keeps its own offset from the batch mean.
    per_image_means = out.mean(axis=(1, 2))
    assert np.abs(per_image_means).max() > 0.5
    assert per_image_means[1].min() > 0.5


def test_adain_output_has_the_style_channel_mean_and_std():
    content = _features((2, 9, 7, 5), seed=4)
    style = _features((1, 4, 11, 5), seed=5)  # another spatial size, batch broadcast
    out = statistics.adain(content, style, eps=1e-8).numpy()
    assert out.shape == content.shape
    style_mean, style_std = style.mean(axis=(1, 2)), style.std(axis=(1, 2))
    for b in range(2):
        np.testing.assert_allclose(out[b].mean(axis=(0, 1)), style_mean[0], rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(out[b].std(axis=(0, 1)), style_std[0], rtol=1e-4)
    # The spatial pattern is the content's: AdaIN is a per-channel affine map of it.
    np.testing.assert_allclose(statistics.instance_norm(out, 1e-8).numpy(),
                               _np_instance_norm(content, 1e-8), atol=1e-4)


def test_adain_alpha_blends_linearly_and_zero_returns_the_content():
    content = _features((1, 6, 6, 4), seed=6)
    style = _features((1, 6, 6, 4), seed=7)
    full = statistics.adain(content, style, alpha=1.0).numpy()
    np.testing.assert_array_equal(statistics.adain(content, style, alpha=0.0).numpy(), content)
    np.testing.assert_allclose(statistics.adain(content, style, alpha=0.25).numpy(),
                               0.25 * full + 0.75 * content, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn", [statistics.instance_norm, statistics.batch_norm,
                                statistics.channel_mean_std])
def test_normalisations_reject_non_image_shapes(fn):
    with pytest.raises(ValueError, match="B, H, W, C"):
        fn(tf.zeros((3, 4, 5)))
