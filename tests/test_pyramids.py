"""Tests for nstlib.pyramids: Gaussian kernels, blur and image pyramids against SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf
from references import random_image, scipy_pyramid

from nstlib import pyramids


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


def test_blur_of_constant_image_is_constant():
    image = np.full((1, 13, 9, 3), 0.37, np.float32)
    image[..., 1] = 0.8
    blurred = pyramids.gaussian_blur(image, sigma=2.0).numpy()
    np.testing.assert_allclose(blurred, image, atol=1e-6)


@pytest.mark.parametrize("shape,sigma", [((1, 20, 31, 3), 1.0), ((1, 17, 12, 2), 1.6),
                                         ((1, 3, 5, 1), 2.0)])
def test_blur_matches_scipy_reflect(shape, sigma):
    # The last case pads by more than the image size: reflection must keep going.
    image = random_image(shape, seed=1)
    expected = scipy.ndimage.gaussian_filter(image[0].astype(np.float64),
                                             sigma=(sigma, sigma, 0), mode="reflect")
    got = pyramids.gaussian_blur(image, sigma).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_pyramid_shapes():
    image = random_image((1, 64, 48, 3))
    pyramid = pyramids.image_pyramid(image, 4)
    assert [tuple(level.shape) for level in pyramid] == [
        (1, 64 // 2**k, 48 // 2**k, 3) for k in range(4)]
    odd = pyramids.image_pyramid(random_image((1, 37, 50, 3)), 3)
    assert [tuple(level.shape) for level in odd] == [(1, 37, 50, 3), (1, 19, 25, 3),
                                                     (1, 10, 13, 3)]
    single = pyramids.image_pyramid(image, 1)
    assert len(single) == 1
    np.testing.assert_array_equal(single[0].numpy(), image)


def test_pyramid_levels_match_scipy_reference():
    image = random_image((1, 45, 64, 3), seed=2)
    got = pyramids.image_pyramid(image, 4)
    expected = scipy_pyramid(image, 4)
    for k, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.shape[1:3] == b.shape[:2], k
        np.testing.assert_allclose(a.numpy()[0], b, atol=1e-6, err_msg=f"level {k}")


def test_pyramid_with_other_sigma_matches_scipy():
    image = random_image((1, 32, 32, 3), seed=3)
    got = pyramids.image_pyramid(image, 3, sigma=0.8)[2].numpy()[0]
    np.testing.assert_allclose(got, scipy_pyramid(image, 3, sigma=0.8)[2], atol=1e-6)


def test_pyramid_is_differentiable_with_unit_gain():
    # Each output pixel is a weighted average (weights sum to 1) of input pixels, so
    # d(sum of level k)/d(input) summed over the input equals the number of outputs.
    image = tf.constant(random_image((1, 24, 20, 3), seed=4))
    with tf.GradientTape() as tape:
        tape.watch(image)
        coarse = pyramids.image_pyramid(image, 3)[2]
        total = tf.reduce_sum(coarse)
    grad = tape.gradient(total, image).numpy()
    assert np.all(np.isfinite(grad))
    assert grad.sum() == pytest.approx(float(np.prod(coarse.shape)), rel=1e-5)


def test_pyramid_rejects_bad_levels():
    with pytest.raises(ValueError):
        pyramids.image_pyramid(random_image((1, 8, 8, 3)), 0)
    with pytest.raises(ValueError):
        pyramids.image_pyramid(random_image((1, 2, 2, 3)), 4)
