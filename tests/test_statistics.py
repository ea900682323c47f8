"""Tests for nstlib.statistics: Gram matrices against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib.statistics import GRAM_NORMALIZATIONS, gram_matrix


def _numpy_gram(features: np.ndarray, normalize: str) -> np.ndarray:
    """Reference: flatten each image to (M, C) with M = H*W positions, G = F^T F / norm."""
    batch, height, width, channels = features.shape
    out = np.empty((batch, channels, channels), np.float64)
    for b in range(batch):
        flat = features[b].reshape(height * width, channels).astype(np.float64)
        out[b] = flat.T @ flat
    divisor = {"none": 1.0, "hw": height * width, "chw": channels * height * width}[normalize]
    return out / divisor


@pytest.fixture
def features() -> np.ndarray:
    # Batch of 3 distinct, non-square maps (H != W != C) so a transposed axis would show.
    return np.random.default_rng(0).normal(size=(3, 5, 7, 4)).astype(np.float32)


@pytest.mark.parametrize("normalize", GRAM_NORMALIZATIONS)
def test_gram_matches_numpy_for_every_normalisation(features, normalize):
    gram = gram_matrix(tf.constant(features), normalize).numpy()
    assert gram.shape == (3, 4, 4)
    assert gram.dtype == np.float32
    np.testing.assert_allclose(gram, _numpy_gram(features, normalize), rtol=1e-5, atol=1e-5)


def test_gram_default_normalisation_is_hw(features):
    np.testing.assert_allclose(gram_matrix(features).numpy(), _numpy_gram(features, "hw"),
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


def test_gram_works_on_dynamic_shapes_inside_tf_function(features):
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)])
    def chw(x):
        return gram_matrix(x, "chw")

    np.testing.assert_allclose(chw(features).numpy(), _numpy_gram(features, "chw"), rtol=1e-5,
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
