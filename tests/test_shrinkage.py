"""Gram shrinkage and the Ledoit–Wolf intensity, checked against NumPy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib.features import FeatureExtractor
from nstlib.losses import StyleTransferObjective, shrink_style_targets, style_loss
from nstlib.statistics import gram_matrix, ledoit_wolf_shrinkage, shrink_gram
from nstlib.transfer import stylize


def _features(positions, channels, seed=0, batch=1):
    """Non-negative, correlated 'activations' (B, positions, 1, C): ReLU of mixed Gaussians."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((channels, channels)) / np.sqrt(channels)
    z = rng.standard_normal((batch, positions, channels)) @ mixing + 0.3
    return np.maximum(z, 0.0).reshape(batch, positions, 1, channels)


def _np_gram(f):
    flat = f.reshape(f.shape[0], -1, f.shape[-1]).astype(np.float64)
    return np.einsum("bki,bkj->bij", flat, flat) / flat.shape[1]


def _np_ledoit_wolf(x):
    """Ledoit–Wolf (2004) intensity, term by term, for one (M, C) sample of uncentred rows."""
    m, c = x.shape
    s = x.T @ x / m
    mu = np.trace(s) / c
    d2 = np.sum((s - mu * np.eye(c)) ** 2) / c  # LW's norm: ||A||^2 = tr(A A^T) / p
    b2_bar = sum(np.sum((np.outer(xk, xk) - s) ** 2) / c for xk in x) / m**2
    return min(b2_bar, d2) / d2


# ----------------------------------------------------------------------------- shrink_gram


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.8, 1.0])
def test_shrink_gram_matches_numpy_formula(lam):
    f = _features(50, 6, seed=1, batch=2)
    gram = _np_gram(f)
    channels = gram.shape[-1]
    scaled = np.trace(gram, axis1=1, axis2=2)[:, None, None] / channels * np.eye(channels)
    got = shrink_gram(tf.constant(gram, tf.float32), lam).numpy()
    np.testing.assert_allclose(got, (1 - lam) * gram + lam * scaled, rtol=1e-5, atol=1e-7)
    got_identity = shrink_gram(tf.constant(gram, tf.float32), lam, target="identity").numpy()
    np.testing.assert_allclose(got_identity, (1 - lam) * gram + lam * np.eye(channels),
                               rtol=1e-5, atol=1e-7)


def test_shrink_gram_endpoints_and_trace():
    f = _features(40, 5, seed=2)
    gram = tf.constant(_np_gram(f), tf.float32)
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


def test_shrinkage_makes_a_rank_deficient_gram_positive_definite():
    f = _features(3, 8, seed=3)  # 3 positions, 8 channels: rank <= 3
    gram = tf.constant(_np_gram(f), tf.float32)
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


# ----------------------------------------------------------------------------- Ledoit-Wolf


@pytest.mark.parametrize("positions,channels,seed", [(12, 8, 0), (40, 16, 1), (200, 10, 2)])
def test_ledoit_wolf_matches_independent_numpy(positions, channels, seed):
    f = _features(positions, channels, seed=seed)
    expected = _np_ledoit_wolf(f[0, :, 0, :].astype(np.float64))
    got = float(ledoit_wolf_shrinkage(tf.constant(f, tf.float32))[0])
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_ledoit_wolf_is_per_image_and_spatial_layout_free():
    f = _features(64, 8, seed=4, batch=2)
    lams = ledoit_wolf_shrinkage(tf.constant(f, tf.float32)).numpy()
    assert lams.shape == (2,)
    for b in range(2):
        assert lams[b] == pytest.approx(_np_ledoit_wolf(f[b, :, 0, :]), rel=1e-4)
    square = f.reshape(2, 8, 8, 8)  # same positions arranged as an 8x8 map
    np.testing.assert_allclose(ledoit_wolf_shrinkage(tf.constant(square, tf.float32)), lams,
                               rtol=1e-6)


def test_ledoit_wolf_shrinks_less_as_positions_grow():
    lams = [float(ledoit_wolf_shrinkage(tf.constant(_features(m, 16, seed=5)))[0])
            for m in (8, 64, 512, 4096, 32768)]
    assert all(0.0 <= lam <= 1.0 for lam in lams)
    assert all(a > b for a, b in zip(lams, lams[1:], strict=False)), lams
    assert lams[-1] < 0.01 < lams[0]


def test_ledoit_wolf_shrinks_isotropic_noise_almost_fully():
    # Isotropic data: the true second moment is the identity, all spread is noise, so λ
    # is near 1; correlated data with the same M and C keep more of their Gram.
    x = np.random.default_rng(6).standard_normal((1, 10, 1, 50))
    isotropic = float(ledoit_wolf_shrinkage(tf.constant(x, tf.float32))[0])
    structured = float(ledoit_wolf_shrinkage(tf.constant(_features(10, 50, seed=6)))[0])
    assert isotropic > 0.85
    assert structured < isotropic - 0.2


def test_ledoit_wolf_lowers_the_error_against_the_true_second_moment():
    # Population: x = relu(z A + 0.3), z ~ N(0, I), A fixed; its second moment is
    # estimated from 400 000 samples, the Grams from 12 positions (fewer than 16 channels).
    channels, positions = 16, 12
    mixing = np.random.default_rng(7).standard_normal((channels, channels)) / 4.0

    def sample(n, seed):
        z = np.random.default_rng(seed).standard_normal((n, channels))
        return np.maximum(z @ mixing + 0.3, 0.0).reshape(1, n, 1, channels)

    truth = _np_gram(sample(400_000, 0))[0]
    raw_err, lw_err = [], []
    for seed in range(100, 140):
        f = tf.constant(sample(positions, seed), tf.float32)
        gram = gram_matrix(f)
        raw_err.append(np.sum((gram.numpy()[0] - truth) ** 2))
        lw_err.append(np.sum((shrink_gram(gram, "ledoit-wolf", f).numpy()[0] - truth) ** 2))
    assert np.mean(lw_err) < 0.8 * np.mean(raw_err)


# ----------------------------------------------------------------------------- in the losses


def test_style_loss_shrinks_the_targets():
    rng = np.random.default_rng(8)
    generated = [tf.constant(rng.random((1, 6, 6, 4)), tf.float32)]
    style = tf.constant(rng.random((1, 3, 3, 4)), tf.float32)
    target = [gram_matrix(style)]
    manual = style_loss(generated, [shrink_gram(target[0], 0.4)], form="normalized")
    assert float(style_loss(generated, target, form="normalized", gram_shrinkage=0.4)) == \
        pytest.approx(float(manual), rel=1e-6)
    manual_lw = style_loss(generated, [shrink_gram(target[0], "ledoit-wolf", style)])
    assert float(style_loss(generated, target, gram_shrinkage="ledoit-wolf",
                            target_features=[style])) == pytest.approx(float(manual_lw))
    assert float(style_loss(generated, target, gram_shrinkage=0.0)) == pytest.approx(
        float(style_loss(generated, target)))
    with pytest.raises(ValueError):
        shrink_style_targets(target, "ledoit-wolf")


def test_objective_applies_shrinkage_to_style_targets_only():
    extractor = FeatureExtractor(("block1_conv2",), ("block1_conv1", "block2_conv1"),
                                 weights="random")
    rng = np.random.default_rng(9)
    content = rng.random((1, 24, 24, 3)).astype(np.float32)
    style = rng.random((1, 16, 16, 3)).astype(np.float32)
    plain = StyleTransferObjective(extractor, content, style)
    shrunk = StyleTransferObjective(extractor, content, style, gram_shrinkage=0.3)
    lw = StyleTransferObjective(extractor, content, style, gram_shrinkage="ledoit-wolf")
    features = extractor(style).style
    for a, b, c, f in zip(plain.style_targets, shrunk.style_targets, lw.style_targets,
                          features, strict=True):
        np.testing.assert_allclose(b.numpy(), shrink_gram(a, 0.3).numpy(), rtol=1e-6)
        lam = float(ledoit_wolf_shrinkage(f)[0])
        np.testing.assert_allclose(c.numpy(), shrink_gram(a, lam).numpy(), rtol=1e-5,
                                   atol=1e-6 * float(tf.reduce_max(a)))
    np.testing.assert_array_equal(plain.content_targets[0].numpy(),
                                  shrunk.content_targets[0].numpy())


def test_stylize_records_shrinkage():
    rng = np.random.default_rng(10)
    result = stylize(rng.random((24, 24, 3)), rng.random((16, 16, 3)), size=24, steps=1,
                     weights="random", progress=False, content_layers=("block1_conv2",),
                     style_layers=("block1_conv1",), gram_shrinkage="ledoit-wolf")
    assert result.config["gram_shrinkage"] == "ledoit-wolf"
    assert np.isfinite(result.losses["style"])


def test_scaled_identity_shrinkage_is_invariant_to_the_feature_scale():
    # Features c*F: the Ledoit-Wolf intensity is unchanged and the shrunk Gram is c^2 times
    # the original; the plain identity target does not have this property.
    f = _features(20, 12, seed=11)
    scaled = 37.0 * f
    lam, lam_scaled = (float(ledoit_wolf_shrinkage(tf.constant(x))[0]) for x in (f, scaled))
    assert lam_scaled == pytest.approx(lam, rel=1e-5)
    gram, gram_scaled = (tf.constant(_np_gram(x), tf.float32) for x in (f, scaled))
    np.testing.assert_allclose(shrink_gram(gram_scaled, 0.4).numpy(),
                               37.0**2 * shrink_gram(gram, 0.4).numpy(), rtol=1e-5)
    assert not np.allclose(shrink_gram(gram_scaled, 0.4, target="identity").numpy(),
                           37.0**2 * shrink_gram(gram, 0.4, target="identity").numpy(),
                           rtol=1e-3)
