"""Colour spaces and colour statistics for colour preservation (Gatys et al. 2017).

Two ways to keep a photograph's colours through style transfer (``preserve_colors``):

* **luminance**: transfer on luminance only and put the content's chroma back. In YIQ
  (NTSC) the luminance is Y = 0.299 R + 0.587 G + 0.114 B and the two chroma channels I, Q
  have coefficients summing to zero, so R, G and B are each Y plus a chroma term:
  replacing Y keeps I and Q exactly (``combine_luminance``). The style's luminance is first
  matched to the content's mean and standard deviation (``match_luminance``), as in the
  paper, so the content's tones are kept too.
* **histogram**: before the transfer, give the style image the content's RGB mean and
  covariance with an affine map x' = A (x − μ_s) + μ_c, A C_s Aᵀ = C_c
  (``match_color_statistics``).

Everything here is NumPy on images of shape (H, W, 3) or (1, H, W, 3) with values in
[0, 1]; statistics are computed in float64 and results returned as float32 in the input's
shape.
"""

from __future__ import annotations

import numpy as np

from nstlib._checks import check_choice

#: RGB -> YIQ (NTSC 1953; rows Y, I, Q). The I and Q rows sum to zero, the Y row to one.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
#: YIQ -> RGB, the exact inverse (its first column is all ones: RGB = Y + chroma term).
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
#: Methods of ``match_color_statistics``: symmetric square roots or Cholesky factors.
MATCH_METHODS = ("eigen", "cholesky")
#: Smallest eigenvalue of a colour covariance before inversion (a flat image has none).
_EIGEN_FLOOR = 1e-10


def as_rgb(image, name: str = "image") -> np.ndarray:
    """``image`` as float64 (H, W, 3) (a (1, H, W, 3) batch of one is accepted)."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3) or (1, H, W, 3), "
                         f"got {np.shape(image)}")
    return array


def _like(result: np.ndarray, image) -> np.ndarray:
    """(H, W, C) ``result`` as float32, with the batch axis back if ``image`` had one."""
    result = result.astype(np.float32)
    return result[None] if np.ndim(image) == 4 else result


def rgb_to_yiq(image) -> np.ndarray:
    """RGB -> YIQ.

    Args:
        image: (H, W, 3) or (1, H, W, 3) RGB in [0, 1].

    Returns:
        Same shape, float32: Y in [0, 1], I in about [-0.6, 0.6], Q in about [-0.52, 0.52].
    """
    return _like(as_rgb(image) @ RGB_TO_YIQ.T, image)


def yiq_to_rgb(yiq) -> np.ndarray:
    """YIQ -> RGB (inverse of ``rgb_to_yiq``; not clipped, so it round-trips exactly).

    Args:
        yiq: (H, W, 3) or (1, H, W, 3) Y, I, Q.

    Returns:
        Same shape, float32 RGB (outside [0, 1] where the colour is not displayable).
    """
    return _like(as_rgb(yiq, "yiq") @ YIQ_TO_RGB.T, yiq)


def luminance(image) -> np.ndarray:
    """The Y channel, Y = 0.299 R + 0.587 G + 0.114 B.

    Args:
        image: (H, W, 3) or (1, H, W, 3) RGB in [0, 1].

    Returns:
        (H, W) or (1, H, W) float32 in [0, 1].
    """
    return _like(as_rgb(image) @ RGB_TO_YIQ[0], image)


def grey(luma) -> np.ndarray:
    """A luminance map as a grey RGB image (Y in all three channels), what VGG sees.

    Args:
        luma: (H, W) or (1, H, W) in [0, 1].

    Returns:
        (H, W, 3) or (1, H, W, 3) float32.
    """
    return np.repeat(np.asarray(luma, np.float32)[..., None], 3, axis=-1)


def match_luminance(style_luma, content_luma) -> np.ndarray:
    """Give the style's luminance the content's mean and standard deviation.

    Y_s' = (Y_s − μ_s) σ_c / σ_s + μ_c (Gatys et al. 2017, section 5.1), clipped to [0, 1]
    (a flat style keeps its flat value, moved to μ_c).

    Args:
        style_luma: (H_s, W_s) or (1, H_s, W_s) luminance of the style.
        content_luma: (H, W) or (1, H, W) luminance of the content.

    Returns:
        The style luminance, float32 in ``style_luma``'s shape.
    """
    style = np.asarray(style_luma, np.float64)
    content = np.asarray(content_luma, np.float64)
    spread = style.std()
    scale = content.std() / spread if spread > 0 else 0.0
    return np.clip((style - style.mean()) * scale + content.mean(), 0.0, 1.0).astype(np.float32)


def combine_luminance(luma, chroma_source) -> np.ndarray:
    """RGB with the luminance ``luma`` and the chroma (I, Q) of ``chroma_source``.

    Each of R, G, B is Y plus a chroma term d, so the colour is displayable only for Y in
    [max(−d), min(1 − d)]. Y is clipped into that range per pixel (never empty: the
    source's own Y lies in it) instead of clipping R, G, B, which would change the chroma;
    the result's chroma equals the source's to float precision.

    Args:
        luma: (H, W) or (1, H, W) new luminance (e.g. of a stylised grey image).
        chroma_source: (H, W, 3) or (1, H, W, 3) RGB whose chroma is kept (the content).

    Returns:
        (H, W, 3) or (1, H, W, 3) float32 RGB in [0, 1], shaped like ``chroma_source``.
    """
    source = as_rgb(chroma_source, "chroma_source")
    y = np.asarray(luma, np.float64).reshape(source.shape[:2])
    chroma = (source @ RGB_TO_YIQ[1:].T) @ YIQ_TO_RGB[:, 1:].T  # (H, W, 3): d per channel
    low, high = (-chroma).max(axis=-1), (1.0 - chroma).min(axis=-1)
    y = np.clip(y, low, np.maximum(low, high))
    rgb = np.clip(y[..., None] + chroma, 0.0, 1.0)  # only float rounding is clipped here
    return _like(rgb, chroma_source)


def color_statistics(image) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour and colour covariance over the pixels.

    Args:
        image: (H, W, 3) or (1, H, W, 3) RGB.

    Returns:
        mean (3,) and covariance (3, 3) float64 (population covariance, divided by H·W).
    """
    pixels = as_rgb(image).reshape(-1, 3)
    mean = pixels.mean(axis=0)
    centred = pixels - mean
    return mean, centred.T @ centred / len(pixels)


def _sym_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """M^power of a symmetric PSD 3x3 matrix by eigendecomposition (eigenvalues floored)."""
    values, vectors = np.linalg.eigh(matrix)
    values = np.maximum(values, _EIGEN_FLOOR)
    return (vectors * values**power) @ vectors.T


def color_transfer_matrix(source_cov, target_cov, method: str = "eigen") -> np.ndarray:
    """A (3, 3) matrix A with A C_source Aᵀ = C_target.

    Args:
        source_cov: (3, 3) covariance C_s of the image to transform.
        target_cov: (3, 3) covariance C_c to reach.
        method: "eigen": A = C_c^½ C_s^-½ with symmetric square roots (independent of
            the order of the colour channels); "cholesky": A = L_c L_s⁻¹ with C = L Lᵀ
            (also exact, but it depends on the channel order). Gatys et al. 2017
            discuss both.

    Returns:
        (3, 3) float64.
    """
    check_choice(method, MATCH_METHODS, "method")
    source_cov, target_cov = np.asarray(source_cov, np.float64), np.asarray(target_cov,
                                                                              np.float64)
    if method == "eigen":
        return _sym_power(target_cov, 0.5) @ _sym_power(source_cov, -0.5)
    eye = np.eye(3) * _EIGEN_FLOOR  # keeps Cholesky defined for flat images
    source_l = np.linalg.cholesky(source_cov + eye)
    target_l = np.linalg.cholesky(target_cov + eye)
    return target_l @ np.linalg.inv(source_l)


def match_color_statistics(image, reference, method: str = "eigen",
                           clip: bool = True) -> np.ndarray:
    """Give ``image`` the RGB mean and covariance of ``reference`` (an affine colour map).

    x' = A (x − μ_image) + μ_reference per pixel, with A from ``color_transfer_matrix``.
    Unclipped, x' has exactly the reference's mean and covariance (up to float32 rounding);
    clipping to [0, 1], needed to use it as an image, changes them where colours leave the
    cube.

    Args:
        image: (H, W, 3) or (1, H, W, 3) RGB to transform (the style image).
        reference: (H_r, W_r, 3) or (1, H_r, W_r, 3) RGB whose statistics to copy (the
            content image).
        method: "eigen" or "cholesky" (see ``color_transfer_matrix``).
        clip: Clip the result to [0, 1].

    Returns:
        float32 in ``image``'s shape.
    """
    mean_i, cov_i = color_statistics(image)
    mean_r, cov_r = color_statistics(reference)
    matrix = color_transfer_matrix(cov_i, cov_r, method)
    mapped = (as_rgb(image) - mean_i) @ matrix.T + mean_r
    return _like(np.clip(mapped, 0.0, 1.0) if clip else mapped, image)
