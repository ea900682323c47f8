"""Tests for nstlib.statistics: Gram matrices against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib import statistics
from nstlib.statistics import (
    GRAM_NORMALIZATIONS,
    gram_matrix,
    guided_gram,
    ledoit_wolf_shrinkage,
    shrink_gram,
)


@pytest.fixture
def features() -> np.ndarray:
    # Batch of 3 distinct, non-square maps (H != W != C) so a transposed axis would show.
    return np.random.default_rng(0).normal(size=(3, 5, 7, 4)).astype(np.float32)


@pytest.mark.parametrize("normalize", GRAM_NORMALIZATIONS)
def test_gram_matches_numpy_for_every_normalisation(np_gram, features, normalize):
    gram = gram_matrix(tf.constant(features), normalize).numpy()
    assert gram.shape == (3, 4, 4)
    assert gram.dtype == np.float32
    np.testing.assert_allclose(gram, np_gram(features, normalize), rtol=1e-5, atol=1e-5)


def test_gram_default_normalisation_is_hw(np_gram, features):
    np.testing.assert_allclose(gram_matrix(features).numpy(), np_gram(features, "hw"),
                               rtol=1e-5, atol=1e-6)


def test_gram_normalisations_differ_by_the_documented_factors(features):
    none = gram_matrix(features, "none").numpy()
    np.testing.assert_allclose(gram_matrix(features, "hw").numpy() * 5 * 7, none, rtol=1e-5)
    np.testing.assert_allclose(gram_matrix(features, "chw").numpy() * 4 * 5 * 7, none, rtol=1e-5)


def test_gram_batch_items_are_independent(features):
    whole = gram_matrix(features, "none").numpy()
    for b in range(features.shape[0]):
        single = gram_matrix(features[b : b + 1], "none").numpy()[0]
        np.testing.assert_allclose(whole[b], single, rtol=1e-6, atol=1e-6)
    # Different inputs give different Grams (the batch axis is not mixed or broadcast).
    assert not np.allclose(whole[0], whole[1])


def test_gram_is_symmetric_positive_semidefinite(features):
    gram = gram_matrix(features, "hw").numpy()
    np.testing.assert_allclose(gram, np.transpose(gram, (0, 2, 1)), rtol=1e-6, atol=1e-6)
    eigenvalues = np.linalg.eigvalsh(gram.astype(np.float64))
    assert eigenvalues.min() > -1e-5
    # The diagonal is the mean squared activation of each channel.
    np.testing.assert_allclose(np.diagonal(gram, axis1=1, axis2=2),
                               (features.astype(np.float64) ** 2).mean(axis=(1, 2)), rtol=1e-5)


def test_gram_hw_is_independent_of_image_size():
    # Tiling a map 2x2 repeats every position 4 times: the "hw" Gram is unchanged, the
    # unnormalised one grows 4-fold.
    base = np.random.default_rng(1).normal(size=(1, 3, 3, 2)).astype(np.float32)
    tiled = np.tile(base, (1, 2, 2, 1))
    np.testing.assert_allclose(gram_matrix(tiled, "hw").numpy(), gram_matrix(base, "hw").numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(gram_matrix(tiled, "none").numpy(),
                               4 * gram_matrix(base, "none").numpy(), rtol=1e-5)


def test_gram_works_on_dynamic_shapes_inside_tf_function(np_gram, features):
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)])
    def chw(x):
        return gram_matrix(x, "chw")

    np.testing.assert_allclose(chw(features).numpy(), np_gram(features, "chw"), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 7, 4), (1, 2, 5, 7, 4), (35,)])
def test_gram_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        gram_matrix(np.zeros(shape, np.float32))


@pytest.mark.parametrize("normalize", ["HW", "c", None, "mean"])
def test_gram_rejects_unknown_normalisation(features, normalize):
    with pytest.raises(ValueError, match="normalize must be one of") as info:
        gram_matrix(features, normalize)
    assert repr(normalize) in str(info.value)


# --------------------------------------------------------- instance and batch normalisation, AdaIN


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


# ------------------------------------------------------------------ Gram shrinkage and Ledoit-Wolf


def _features_shrinkage(positions, channels, seed=0, batch=1):
    """Non-negative, correlated 'activations' (B, positions, 1, C): ReLU of mixed Gaussians."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((channels, channels)) / np.sqrt(channels)
    z = rng.standard_normal((batch, positions, channels)) @ mixing + 0.3
    return np.maximum(z, 0.0).reshape(batch, positions, 1, channels)


def _np_ledoit_wolf(x):
    """Ledoit–Wolf (2004) intensity, term by term, for one (M, C) sample of uncentred rows."""
    m, c = x.shape
    s = x.T @ x / m
    mu = np.trace(s) / c
    d2 = np.sum((s - mu * np.eye(c)) ** 2) / c  # LW's norm: ||A||^2 = tr(A A^T) / p
    b2_bar = sum(np.sum((np.outer(xk, xk) - s) ** 2) / c for xk in x) / m**2
    return min(b2_bar, d2) / d2


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.8, 1.0])
def test_shrink_gram_matches_numpy_formula(np_gram, lam):
    f = _features_shrinkage(50, 6, seed=1, batch=2)
    gram = np_gram(f)
    channels = gram.shape[-1]
    scaled = np.trace(gram, axis1=1, axis2=2)[:, None, None] / channels * np.eye(channels)
    got = shrink_gram(tf.constant(gram, tf.float32), lam).numpy()
    np.testing.assert_allclose(got, (1 - lam) * gram + lam * scaled, rtol=1e-5, atol=1e-7)
    got_identity = shrink_gram(tf.constant(gram, tf.float32), lam, target="identity").numpy()
    np.testing.assert_allclose(got_identity, (1 - lam) * gram + lam * np.eye(channels),
                               rtol=1e-5, atol=1e-7)


def test_shrink_gram_endpoints_and_trace(np_gram):
    f = _features_shrinkage(40, 5, seed=2)
    gram = tf.constant(np_gram(f), tf.float32)
    np.testing.assert_array_equal(shrink_gram(gram, 0.0).numpy(), gram.numpy())
    trace = float(tf.linalg.trace(gram)[0])
    np.testing.assert_allclose(shrink_gram(gram, 1.0).numpy()[0], trace / 5 * np.eye(5),
                               rtol=1e-6)
    np.testing.assert_array_equal(shrink_gram(gram, 1.0, target="identity").numpy()[0],
                                  np.eye(5))
    for lam in (0.1, 0.5, 0.9):
        shrunk = shrink_gram(gram, lam)
        assert float(tf.linalg.trace(shrunk)[0]) == pytest.approx(trace, rel=1e-6)
        # The plain identity does not preserve the energy: the trace moves towards C.
        to_identity = shrink_gram(gram, lam, target="identity")
        assert float(tf.linalg.trace(to_identity)[0]) == pytest.approx(
            (1 - lam) * trace + lam * 5, rel=1e-6)


def test_shrinkage_makes_a_rank_deficient_gram_positive_definite(np_gram):
    f = _features_shrinkage(3, 8, seed=3)  # 3 positions, 8 channels: rank <= 3
    gram = tf.constant(np_gram(f), tf.float32)
    assert np.linalg.eigvalsh(gram.numpy()[0]).min() < 1e-5
    shrunk = shrink_gram(gram, 0.2).numpy()[0]
    expected_floor = 0.2 * np.trace(gram.numpy()[0]) / 8  # eig(G) >= 0, so eig >= λ·μ
    assert np.linalg.eigvalsh(shrunk).min() >= expected_floor * (1 - 1e-5)


def test_shrink_gram_argument_errors():
    gram = tf.eye(3)[None]
    with pytest.raises(ValueError):
        shrink_gram(gram, 1.5)
    with pytest.raises(ValueError):
        shrink_gram(gram, -0.1)
    with pytest.raises(ValueError, match="needs the features"):
        shrink_gram(gram, "ledoit-wolf")
    with pytest.raises(ValueError):
        shrink_gram(gram, "oas")
    with pytest.raises(ValueError):
        shrink_gram(gram, 0.5, target="diagonal")


@pytest.mark.parametrize("positions,channels,seed", [(12, 8, 0), (40, 16, 1), (200, 10, 2)])
def test_ledoit_wolf_matches_independent_numpy(positions, channels, seed):
    f = _features_shrinkage(positions, channels, seed=seed)
    expected = _np_ledoit_wolf(f[0, :, 0, :].astype(np.float64))
    got = float(ledoit_wolf_shrinkage(tf.constant(f, tf.float32))[0])
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_ledoit_wolf_is_per_image_and_spatial_layout_free():
    f = _features_shrinkage(64, 8, seed=4, batch=2)
    lams = ledoit_wolf_shrinkage(tf.constant(f, tf.float32)).numpy()
    assert lams.shape == (2,)
    for b in range(2):
        assert lams[b] == pytest.approx(_np_ledoit_wolf(f[b, :, 0, :]), rel=1e-4)
    square = f.reshape(2, 8, 8, 8)  # same positions arranged as an 8x8 map
    np.testing.assert_allclose(ledoit_wolf_shrinkage(tf.constant(square, tf.float32)), lams,
                               rtol=1e-6)


def test_ledoit_wolf_shrinks_less_as_positions_grow():
    lams = [float(ledoit_wolf_shrinkage(tf.constant(_features_shrinkage(m, 16, seed=5)))[0])
            for m in (8, 64, 512, 4096, 32768)]
    assert all(0.0 <= lam <= 1.0 for lam in lams)
    assert all(a > b for a, b in zip(lams, lams[1:], strict=False)), lams
    assert lams[-1] < 0.01 < lams[0]


def test_ledoit_wolf_shrinks_isotropic_noise_almost_fully():
    # Isotropic data: the true second moment is the identity, all spread is noise, so λ
    # is near 1; correlated data with the same M and C keep more of their Gram.
    x = np.random.default_rng(6).standard_normal((1, 10, 1, 50))
    isotropic = float(ledoit_wolf_shrinkage(tf.constant(x, tf.float32))[0])
    structured = float(ledoit_wolf_shrinkage(tf.constant(_features_shrinkage(10, 50, seed=6)))[0])
    assert isotropic > 0.85
    assert structured < isotropic - 0.2


def test_ledoit_wolf_lowers_the_error_against_the_true_second_moment(np_gram):
    # Population: x = relu(z A + 0.3), z ~ N(0, I), A fixed; its second moment is
    # estimated from 400 000 samples, the Grams from 12 positions (fewer than 16 channels).
    channels, positions = 16, 12
    mixing = np.random.default_rng(7).standard_normal((channels, channels)) / 4.0

    def sample(n, seed):
        z = np.random.default_rng(seed).standard_normal((n, channels))
        return np.maximum(z @ mixing + 0.3, 0.0).reshape(1, n, 1, channels)

    truth = np_gram(sample(400_000, 0))[0]
    raw_err, lw_err = [], []
    for seed in range(100, 140):
        f = tf.constant(sample(positions, seed), tf.float32)
        gram = gram_matrix(f)
        raw_err.append(np.sum((gram.numpy()[0] - truth) ** 2))
        lw_err.append(np.sum((shrink_gram(gram, "ledoit-wolf", f).numpy()[0] - truth) ** 2))
    assert np.mean(lw_err) < 0.8 * np.mean(raw_err)


def test_scaled_identity_shrinkage_is_invariant_to_the_feature_scale(np_gram):
    # Features c*F: the Ledoit-Wolf intensity is unchanged and the shrunk Gram is c^2 times
    # the original; the plain identity target does not have this property.
    f = _features_shrinkage(20, 12, seed=11)
    scaled = 37.0 * f
    lam, lam_scaled = (float(ledoit_wolf_shrinkage(tf.constant(x))[0]) for x in (f, scaled))
    assert lam_scaled == pytest.approx(lam, rel=1e-5)
    gram, gram_scaled = (tf.constant(np_gram(x), tf.float32) for x in (f, scaled))
    np.testing.assert_allclose(shrink_gram(gram_scaled, 0.4).numpy(),
                               37.0**2 * shrink_gram(gram, 0.4).numpy(), rtol=1e-5)
    assert not np.allclose(shrink_gram(gram_scaled, 0.4, target="identity").numpy(),
                           37.0**2 * shrink_gram(gram, 0.4, target="identity").numpy(),
                           rtol=1e-3)


# ----------------------------------------------------------------------------- guided Grams (masks)


def test_guided_gram_is_the_gram_of_the_masked_region():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((1, 6, 8, 5)).astype(np.float32)
    mask = np.zeros((1, 6, 8, 1), np.float32)
    mask[:, 1:4, 2:7] = 1.0
    region = features[0, 1:4, 2:7].reshape(-1, 5).astype(np.float64)
    np.testing.assert_allclose(guided_gram(features, mask)[0], region.T @ region / len(region),
                               rtol=1e-5, atol=1e-6)
    # Soft masks: Σ m² F Fᵀ / Σ m²; a uniform mask of any strength gives the plain Gram.
    soft = rng.uniform(0, 1, (1, 6, 8, 1)).astype(np.float32)
    flat = features[0].reshape(-1, 5).astype(np.float64)
    m2 = soft[0].reshape(-1).astype(np.float64) ** 2
    np.testing.assert_allclose(guided_gram(features, soft)[0],
                               (flat * m2[:, None]).T @ flat / m2.sum(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(guided_gram(features, np.full((1, 6, 8, 1), 0.3, np.float32)),
                               gram_matrix(features), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"mask must have shape \(1 or B, 6, 8, 1\)"):
        guided_gram(features, np.ones((1, 3, 4, 1), np.float32))
