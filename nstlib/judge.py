"""An independent judge of style transfer results: classic image statistics, no network.

The losses being optimised measure VGG features, so they cannot say whether a result
looks like its style to anyone else: with random weights, Gram matching is satisfied by
high-frequency noise. This judge scores results with statistics that share nothing with
the network (NumPy and SciPy only):

- **colour**: sliced Wasserstein distance between the RGB distributions of the two images
  (the mean 1-D Wasserstein-1 distance along fixed random directions in RGB space);
- **texture**: distances between multi-scale band statistics of the luminance, in the
  spirit of Heeger & Bergen (1995) and Portilla & Simoncelli (2000): per scale of a
  Laplacian pyramid, the log band energy, the kurtosis of the band coefficients, and the
  orientation spectrum of the gradient (magnitudes of the Fourier coefficients of the
  gradient-orientation histogram, which a rotation of the texture leaves unchanged);
- **content**: SSIM of blurred luminance between the result and the content photo, which
  asks whether the layout survives, not whether every edge does.

Texture statistics are per pixel scale: compare a result with the style image at the size
it was transferred at. All filters wrap around the image border, so a circularly shifted
copy of a texture has exactly the same statistics; a copy rotated by 90 degrees too (up to
rounding).
Every function takes (H, W, 3) or (1, H, W, 3) arrays in [0, 1] (NumPy or tensors).
Notebooks 10 and 11 use it to compare recipes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from nstlib.colors import as_rgb

#: Random unit directions in RGB space for the sliced Wasserstein distance (fixed seed, so
#: every score is comparable with every other).
N_DIRECTIONS = 64
#: Quantile levels at which the projected distributions are compared.
N_QUANTILES = 256
#: Most Laplacian-pyramid scales of the texture statistics (fewer for small images, so that
#: the coarsest blur stays under 1/16 of the shorter side) and orientation bins per scale.
N_SCALES = 4
N_ORIENTATION_BINS = 16
#: ITU-R BT.601 luminance weights.
LUMA = np.array([0.299, 0.587, 0.114])


def luminance(image) -> np.ndarray:
    """(H, W) luminance Y = 0.299 R + 0.587 G + 0.114 B of an RGB image in [0, 1]."""
    return as_rgb(image) @ LUMA


def _directions(n: int = N_DIRECTIONS) -> np.ndarray:
    """(n, 3) fixed unit vectors, the first three the R, G and B axes."""
    rng = np.random.default_rng(20161)
    random = rng.standard_normal((max(n - 3, 0), 3))
    vectors = np.concatenate([np.eye(3), random])[:n]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def color_distance(image, reference) -> float:
    """Sliced Wasserstein-1 distance between two images' RGB pixel distributions.

    Each image's pixels are projected on ``N_DIRECTIONS`` fixed unit directions; along each
    direction the 1-D Wasserstein-1 distance is the mean absolute difference of the two
    quantile functions (``N_QUANTILES`` levels); the result is the mean over directions,
    in intensity units (0 for the same multiset of pixels, whatever their arrangement).

    Args:
        image, reference: (H, W, 3) or (1, H, W, 3) in [0, 1]; sizes may differ.
    """
    levels = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
    directions = _directions()
    a = as_rgb(image).reshape(-1, 3) @ directions.T
    b = as_rgb(reference).reshape(-1, 3) @ directions.T
    qa = np.quantile(a, levels, axis=0)
    qb = np.quantile(b, levels, axis=0)
    return float(np.mean(np.abs(qa - qb)))


def _laplacian_bands(gray: np.ndarray, scales: int) -> list[np.ndarray]:
    """Band-pass images (finest first): blur differences with σ doubling, wrapping."""
    bands, current, sigma = [], gray, 1.0
    for _ in range(scales):
        blurred = ndimage.gaussian_filter(gray, sigma, mode="wrap")
        bands.append(current - blurred)
        current, sigma = blurred, 2.0 * sigma
    return bands


def _orientation_spectrum(band: np.ndarray) -> np.ndarray:
    """|DFT| of the gradient-orientation histogram (magnitude-weighted, angles mod π).

    Rotating the texture circularly shifts the histogram, which changes the phases of its
    Fourier coefficients but not their magnitudes. Coefficient 0 is dropped (it is the
    histogram's total, 1); the rest measure how oriented the texture is.
    """
    gy = (np.roll(band, -1, axis=0) - np.roll(band, 1, axis=0)) / 2.0
    gx = (np.roll(band, -1, axis=1) - np.roll(band, 1, axis=1)) / 2.0
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    hist, _ = np.histogram(angle, bins=N_ORIENTATION_BINS, range=(0.0, np.pi),
                           weights=magnitude)
    hist = hist / max(hist.sum(), 1e-12)
    return np.abs(np.fft.rfft(hist))[1:]


def default_scales(*shapes) -> int:
    """Scales for images of these (H, W, ...) shapes: blur σ = 2^(s-1) ≤ shorter side / 16."""
    shorter = min(min(shape[:2]) for shape in shapes)
    return int(np.clip(np.floor(np.log2(max(shorter, 1) / 16.0)) + 1, 1, N_SCALES))


def texture_statistics(image, scales: int | None = None) -> dict[str, np.ndarray]:
    """Multi-scale texture statistics of an image's luminance.

    Args:
        image: (H, W, 3) or (1, H, W, 3) in [0, 1].
        scales: Number of bands (default ``default_scales`` of the image).

    Returns:
        {"log_energy": (scales,) log10 of each band's mean square (plus 1e-6, an
        invisible energy, so that flat bands compare as equal),
        "kurtosis": (scales,) each band's kurtosis (3 for Gaussian coefficients),
        "orientation": (scales, N_ORIENTATION_BINS // 2) orientation spectra}.
    """
    gray = luminance(image)
    bands = _laplacian_bands(gray, default_scales(gray.shape) if scales is None else scales)
    energy = np.array([np.mean(b ** 2) for b in bands])
    kurtosis = np.array([np.mean(b ** 4) / max(np.mean(b ** 2) ** 2, 1e-16) for b in bands])
    return {"log_energy": np.log10(energy + 1e-6), "kurtosis": kurtosis,
            "orientation": np.stack([_orientation_spectrum(b) for b in bands])}


def texture_distance(image, reference, scales: int | None = None) -> float:
    """Distance between the texture statistics of two images (0 when they agree).

    The sum of three mean absolute differences over scales: log10 band energies (1 = a
    factor of 10 in a band's energy), log kurtoses (heavy-tailed strokes vs Gaussian
    noise), and orientation spectra (0 to about 1). ``scales`` defaults to what the
    smaller image allows (``default_scales``).
    """
    if scales is None:
        scales = default_scales(np.shape(as_rgb(image)), np.shape(as_rgb(reference)))
    a, b = texture_statistics(image, scales), texture_statistics(reference, scales)
    return float(np.mean(np.abs(a["log_energy"] - b["log_energy"]))
                 + np.mean(np.abs(np.log(a["kurtosis"]) - np.log(b["kurtosis"])))
                 + np.mean(np.abs(a["orientation"] - b["orientation"])))


def style_distance(image, style) -> float:
    """Colour plus texture distance of a result from its style image (0 = same statistics)."""
    return color_distance(image, style) + texture_distance(image, style)


def content_score(image, content, sigma: float | None = None) -> float:
    """SSIM of Gaussian-blurred luminance between a result and its content (1 = same layout).

    Args:
        image, content: (H, W, 3) or (1, H, W, 3) in [0, 1], the same height and width.
        sigma: Blur in pixels (default: 1/64 of the shorter side, at least 1), so that the
            score follows the layout rather than the fine texture a style adds.
    """
    a, b = luminance(image), luminance(content)
    if a.shape != b.shape:
        raise ValueError(f"content_score needs images of one size, got {a.shape} and {b.shape}")
    sigma = max(1.0, min(a.shape) / 64.0) if sigma is None else float(sigma)
    a, b = (ndimage.gaussian_filter(x, sigma, mode="reflect") for x in (a, b))
    window = min(7, min(a.shape) // 2 * 2 - 1)
    return float(structural_similarity(a, b, data_range=1.0, win_size=window))


def judge(image, content, style) -> dict[str, float]:
    """Every judge score of one result, for a results table.

    Args:
        image: The result, (H, W, 3) or (1, H, W, 3) in [0, 1].
        content: The content photo at the result's size.
        style: The style image at the size it was transferred at (``style_size``):
            texture statistics are measured per pixel scale, so a style image at another
            resolution has other band energies.

    Returns:
        {"judge_style": colour + texture distance to the style (lower is better),
        "judge_color", "judge_texture": its two parts, "judge_content": content score
        (higher is better, 1 at most)}.
    """
    color, texture = color_distance(image, style), texture_distance(image, style)
    return {"judge_style": color + texture, "judge_color": color, "judge_texture": texture,
            "judge_content": content_score(image, content)}
