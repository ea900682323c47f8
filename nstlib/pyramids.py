"""Gaussian pyramids: the blur kernel, mirrored-border blurring and halving.

This module owns the Gaussian image pyramid behind coarse-to-fine (multi-scale) style
transfer and the pyramid style loss: a normalised 1-D Gaussian kernel that reproduces
SciPy's default filter, a separable differentiable blur with mirrored borders, one
blur-and-halve step and the whole pyramid. Notebook 05 (``05_multiscale_pyramids.ipynb``)
teaches it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def gaussian_kernel(sigma: float = 1.0, size: int | None = None,
                    truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian kernel, w_i ∝ exp(−i² / (2σ²)) for i = −r … r.

    With ``size=None`` the radius is r = int(truncate·σ + 0.5), exactly as in
    ``scipy.ndimage.gaussian_filter``, so blurring with this kernel and reflected
    borders reproduces SciPy's default ("reflect") filter.

    Args:
        sigma: Standard deviation in pixels (> 0).
        size: Odd kernel length 2r + 1; None derives it from ``truncate``.
        truncate: Radius in standard deviations when ``size`` is None.

    Returns:
        (size,) float32 array, symmetric, summing to 1.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if size is None:
        radius = int(truncate * float(sigma) + 0.5)
    else:
        if int(size) != size or size < 1 or size % 2 == 0:
            raise ValueError(f"kernel size must be a positive odd integer, got {size}")
        radius = int(size) // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def _reflect_indices(length: int, radius: int) -> np.ndarray:
    """Indices of a 1-D signal padded by ``radius`` on each side, mirrored at the edges.

    The mirror includes the edge sample (d c b a | a b c d | d c b a), which is SciPy's
    "reflect" mode and TensorFlow's "SYMMETRIC" padding, and keeps reflecting when the
    padding is longer than the signal.
    """
    positions = np.arange(-radius, length + radius) % (2 * length)
    return np.where(positions < length, positions, 2 * length - 1 - positions)


def gaussian_blur(image: tf.Tensor, sigma: float = 1.0, size: int | None = None) -> tf.Tensor:
    """Separable Gaussian blur of every channel, with mirrored borders (differentiable).

    Args:
        image: (B, H, W, C) float32.
        sigma, size: Kernel, see ``gaussian_kernel``.

    Returns:
        (B, H, W, C) float32. A constant image is returned unchanged (the kernel sums to 1).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    kernel = gaussian_kernel(sigma, size)
    radius = len(kernel) // 2
    channels = int(image.shape[-1])
    height, width = int(image.shape[1]), int(image.shape[2])
    padded = tf.gather(image, _reflect_indices(height, radius), axis=1)
    padded = tf.gather(padded, _reflect_indices(width, radius), axis=2)
    taps = tf.constant(kernel)
    vertical = tf.tile(tf.reshape(taps, (-1, 1, 1, 1)), (1, 1, channels, 1))
    horizontal = tf.tile(tf.reshape(taps, (1, -1, 1, 1)), (1, 1, channels, 1))
    out = tf.nn.depthwise_conv2d(padded, vertical, (1, 1, 1, 1), "VALID")
    return tf.nn.depthwise_conv2d(out, horizontal, (1, 1, 1, 1), "VALID")


def pyramid_down(image: tf.Tensor, sigma: float = 1.0) -> tf.Tensor:
    """One pyramid step: Gaussian blur, then keep every second row and column.

    The blur removes most of the detail finer than the new sampling grid can hold
    (σ = 1 px attenuates the new Nyquist frequency, 1/4 cycle per pixel, to 29 %).

    Args:
        image: (B, H, W, C) float32.
        sigma: Blur standard deviation in pixels of ``image``.

    Returns:
        (B, ceil(H/2), ceil(W/2), C) float32: rows and columns 0, 2, 4, … of the blur.
    """
    return gaussian_blur(image, sigma)[:, ::2, ::2, :]


def image_pyramid(image: tf.Tensor, levels: int, sigma: float = 1.0) -> list[tf.Tensor]:
    """Gaussian pyramid: the image, then repeatedly blurred and halved.

    Args:
        image: (B, H, W, C) float32.
        levels: Number of levels L >= 1 (1 gives just ``[image]``).
        sigma: Blur standard deviation of every step, in pixels of the finer level.

    Returns:
        L tensors; level k has shape (B, H_k, W_k, C) with H_k = ceil(H_{k−1}/2)
        (= H/2^k when H is divisible by 2^k), likewise W_k.
    """
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels}")
    image = tf.convert_to_tensor(image, tf.float32)
    pyramid = [image]
    for _ in range(int(levels) - 1):
        if min(int(pyramid[-1].shape[1]), int(pyramid[-1].shape[2])) < 2:
            raise ValueError(f"image of shape {tuple(image.shape)} is too small for "
                             f"{levels} pyramid levels")
        pyramid.append(pyramid_down(pyramid[-1], sigma))
    return pyramid
