"""Independent reference computations and inputs shared by several test modules.

NumPy/SciPy re-implementations that the library's results are checked against, and the
small random inputs the checks use (``numpy_gram`` is also the ``np_gram`` fixture of
``conftest.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import tensorflow as tf


def numpy_gram(features, normalize: str = "hw") -> np.ndarray:
    """Gram reference: (B, H, W, C) -> (B, C, C) float64, G = FᵀF / norm.

    ``normalize`` is "none" (no division), "hw" (positions, nstlib's default) or "chw".
    """
    f = np.asarray(features, np.float64)
    batch, height, width, channels = f.shape
    flat = f.reshape(batch, height * width, channels)
    divisor = {"none": 1.0, "hw": height * width, "chw": channels * height * width}[normalize]
    return np.einsum("bki,bkj->bij", flat, flat) / divisor


def scipy_pyramid(image, levels, sigma=1.0):
    """Pyramid reference: blur each (H, W, C) level with SciPy (reflect borders), keep every
    second pixel; ``image`` is (1, H, W, C), the levels are (h, w, C) float64."""
    level = np.asarray(image, np.float64)[0]
    out = [level]
    for _ in range(levels - 1):
        level = scipy.ndimage.gaussian_filter(level, sigma=(sigma, sigma, 0), mode="reflect")
        level = level[::2, ::2]
        out.append(level)
    return out


def random_image(shape, seed=0) -> np.ndarray:
    """Uniform [0, 1) float32 array of ``shape``."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def random_batch(size: int = 32, seed: int = 0, height: int | None = None) -> tf.Tensor:
    """(1, height or size, size, 3) uniform float32 tensor."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(size=(1, height or size, size, 3)), tf.float32)
