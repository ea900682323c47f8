"""Measurements for evaluating results: numbers to compare methods by, not losses to optimise.

Everything here works on finished images (NumPy in, floats out) so that a notebook or a
benchmark can score a result without building a network; the feature-space distances of
the evaluation section take the network (a ``FeatureExtractor``) as an argument.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nstlib._checks import check_choice
from nstlib.images import as_hwc, resize
from nstlib.statistics import gram_matrix

# ============================================================================================
# Repetition: spectral energy at a known motif period
#
# A style whose motif repeats every P pixels, "wallpapered" over a region that should be
# flat, shows up as a ring of energy at spatial frequency 1/P in the region's spectrum.
# ============================================================================================

WINDOWS = ("hann", None)


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window of length n: 0.5 − 0.5·cos(2πi/n)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def power_spectrum(image, window: str | None = "hann") -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel power spectrum of the mean-removed image, averaged over channels.

    Normalised so that the powers sum to the mean square of the (mean-removed) image,
    i.e. to its variance in intensity² units (Parseval); with a window, the windowed
    image's power is divided by mean(w²) so that windowing does not lower a stationary
    pattern's energy.

    Args:
        image: (1, H, W, C), (H, W, C) or (H, W) array in any intensity units.
        window: "hann" (separable periodic Hann window, reduces leakage when the region
            holds a non-integer number of periods) or None.

    Returns:
        power (H, W) in intensity² (FFT order), radial frequency (H, W) in cycles/pixel.
    """
    check_choice(window, WINDOWS, "window")
    array = as_hwc(image)
    height, width = array.shape[:2]
    array = array - array.mean(axis=(0, 1), keepdims=True)
    weight = 1.0
    if window == "hann":
        taper = np.outer(_hann(height), _hann(width))
        array = array * taper[..., None]
        weight = float(np.mean(taper**2))
    spectrum = np.fft.fft2(array, axes=(0, 1))
    power = np.mean(np.abs(spectrum) ** 2, axis=2) / float(height * width) ** 2 / weight
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    return power, np.sqrt(fx**2 + fy**2)


def _check_period(period: float) -> None:
    """A one-line ValueError unless the period lies above the Nyquist limit of 2 pixels."""
    if not period > 2:
        raise ValueError(f"period must exceed 2 pixels (the Nyquist limit), got {period}")


def periodic_energy(image, period: float, bandwidth: float = 0.15,
                    window: str | None = "hann", relative: bool = False) -> float:
    """Spectral energy of an image region at the spatial period ``period``, any direction.

    Sums the power spectrum (see ``power_spectrum``) over the ring of frequencies f with
    |f − 1/P| ≤ max(bandwidth/P, 2/min(H, W)) cycles per pixel. For a sinusoid
    a·sin(2π·(x·cosθ + y·sinθ)/P) + c the result is a²/2 (exactly when the region holds
    a whole number ≥ 2 of periods along each axis, approximately otherwise); for a flat
    region it is 0.

    Args:
        image: (1, H, W, C), (H, W, C) or (H, W) array, e.g. [0, 1] RGB; C channels are
            averaged (their powers, not their values).
        period: P in pixels (> 2, below the Nyquist limit).
        bandwidth: Half-width of the ring relative to 1/P.
        window: "hann" or None, see ``power_spectrum``.
        relative: Divide by the total power (the region's variance): the fraction of
            its variation that repeats with period P, in [0, 1].

    Returns:
        Energy in intensity² units (e.g. (fraction of the [0, 1] range)²), or a fraction.
    """
    _check_period(period)
    power, frequency = power_spectrum(image, window)
    half_width = max(bandwidth / period, 2.0 / min(power.shape))
    energy = float(power[np.abs(frequency - 1.0 / period) <= half_width].sum())
    if not relative:
        return energy
    total = float(power.sum())
    return energy / total if total > 0 else 0.0


def periodic_energy_map(image, period: float, bandwidth: float = 0.15) -> np.ndarray:
    """Local energy at the spatial period ``period`` (any direction), per pixel.

    ``periodic_energy`` needs a rectangle; a sky under a wavy horizon is not one. Here the
    mean-removed image (mirrored at its borders by 2P pixels) is filtered in the frequency
    domain with a Gaussian ring centred on f = 1/P (standard deviation bandwidth/P cycles
    per pixel, gain 1 at 1/P) kept on one half-plane and doubled: the analytic signal z of
    the band. |z|²/2 is the local energy: a·sin(2π·(x·cosθ + y·sinθ)/P) + c gives a²/2 at
    every pixel (not a²·sin², so a mask of any shape can be averaged), a flat image 0.
    Structure within about P pixels of an edge (a horizon, the image border) leaks into
    the band; keep a margin of about P from edges when averaging.

    Args:
        image: (1, H, W, C), (H, W, C) or (H, W) array; the C channels' energies are
            averaged.
        period: P in pixels (> 2, below the Nyquist limit).
        bandwidth: Ring's standard deviation relative to 1/P.

    Returns:
        (H, W) float64 energy map in intensity² units.
    """
    _check_period(period)
    array = as_hwc(image)
    height, width = array.shape[:2]
    pad = int(np.ceil(2 * period))
    padded = np.pad(array - array.mean(axis=(0, 1), keepdims=True),
                    ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.fftfreq(padded.shape[1])[None, :]
    sigma = bandwidth / period
    ring = np.exp(-((np.sqrt(fx**2 + fy**2) - 1.0 / period) ** 2) / (2 * sigma**2))
    half_plane = (fx > 0) | ((fx == 0) & (fy > 0))
    analytic = np.fft.ifft2(np.fft.fft2(padded, axes=(0, 1)) * (2.0 * ring * half_plane)[..., None],
                            axes=(0, 1))
    energy = np.mean(np.abs(analytic) ** 2, axis=2) / 2.0
    return energy[pad:pad + height, pad:pad + width]


def masked_periodic_energy(image, period: float, mask, bandwidth: float = 0.15) -> float:
    """Mean of ``periodic_energy_map`` over the pixels where ``mask`` is true.

    Args:
        image: (1, H, W, C), (H, W, C) or (H, W) array.
        period: P in pixels (> 2).
        mask: (H, W) boolean array, the region measured (e.g. a sky); not empty.
        bandwidth: See ``periodic_energy_map``.

    Returns:
        Energy in intensity² units (a²/2 for a sinusoid of amplitude a at period P).
    """
    mask = np.asarray(mask, dtype=bool)
    energy = periodic_energy_map(image, period, bandwidth)
    if mask.shape != energy.shape:
        raise ValueError(f"mask has shape {mask.shape}, the image is {energy.shape}")
    if not mask.any():
        raise ValueError("mask selects no pixels")
    return float(energy[mask].mean())


# ============================================================================================
# Evaluation of stylised images: SSIM to the content, feature-space distances, time
#
# Numbers for comparing the runs of an ablation (``nstlib.ablation``) whatever objective each
# run optimised: one definition and one evaluation network (an extractor passed in) for
# every run. Images are (1, H, W, 3) or (H, W, 3) float RGB in [0, 1].
# ============================================================================================

#: SSIM settings of Wang et al. (2004), as used by ``tf.image.ssim``: an 11x11 Gaussian
#: window with σ = 1.5 px, K1 = 0.01, K2 = 0.03.
SSIM_SETTINGS = {"filter_size": 11, "filter_sigma": 1.5, "k1": 0.01, "k2": 0.03}


def _as_batch(image) -> tf.Tensor:
    """(H, W, 3) or (1, H, W, 3) array-like -> (1, H, W, 3) float32 tensor."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank == 3:
        image = image[None]
    if image.shape.rank != 4 or image.shape[0] != 1 or image.shape[-1] != 3:
        raise ValueError(f"expected one RGB image (1, H, W, 3) or (H, W, 3), got {image.shape}")
    return image


def _same_size(reference: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """``reference`` resized (``images.resize``) to the height and width of ``image``."""
    size_hw = (int(image.shape[1]), int(image.shape[2]))
    if tuple(reference.shape[1:3]) == size_hw:
        return reference
    return resize(reference, size_hw)


def ssim(image, reference, max_val: float = 1.0) -> float:
    """Structural similarity of ``image`` to ``reference`` (``tf.image.ssim``).

    The reference is resized to the image's height and width first (area averaging when
    shrinking, Lanczos when enlarging). SSIM is computed per channel with the settings of
    ``SSIM_SETTINGS`` on the positions where the window fits ("valid"), then averaged over
    positions and channels.

    Args:
        image: (1, H, W, 3) or (H, W, 3) in [0, max_val]; H, W >= 11.
        reference: Same forms, any size (e.g. the content image).
        max_val: Dynamic range of the values (1 for [0, 1] images).

    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    image = _as_batch(image)
    reference = _same_size(_as_batch(reference), image)
    return float(tf.image.ssim(image, reference, max_val=max_val, **SSIM_SETTINGS)[0])


def relative_feature_distance(features, target) -> float:
    """||F − P||_F / ||P||_F: distance of activations F to target activations P.

    Args:
        features: (1, h, w, c) activations of the evaluated image.
        target: (1, h, w, c) activations of the reference (same shape).

    Returns:
        0 when F = P, 1 when F = 0.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    target = tf.convert_to_tensor(target, tf.float32)
    if features.shape != target.shape:
        raise ValueError(f"feature shapes differ: {features.shape} vs {target.shape}")
    return float(tf.norm(features - target) / (tf.norm(target) + 1e-12))


def relative_gram_distance(features, target_features) -> float:
    """||G(F) − G(S)||_F / ||G(S)||_F with Grams averaged over positions ("hw").

    Args:
        features: (1, h, w, c) activations of the evaluated image.
        target_features: (1, h', w', c) activations of the style image (any h', w').

    Returns:
        0 when the Gram matrices are equal, 1 when G(F) = 0.
    """
    gram = gram_matrix(tf.convert_to_tensor(features, tf.float32), "hw")
    target = gram_matrix(tf.convert_to_tensor(target_features, tf.float32), "hw")
    return float(tf.norm(gram - target) / (tf.norm(target) + 1e-12))


def _with_mean(per_layer: dict) -> dict:
    return {**per_layer, "mean": float(np.mean(list(per_layer.values())))}


def style_distance(extractor, image, style) -> dict:
    """Relative Gram distance of ``image`` to ``style`` at each style layer of ``extractor``.

    Args:
        extractor: A ``nstlib.features.FeatureExtractor`` (its ``style_layers``).
        image: (1, H, W, 3) in [0, 1].
        style: (1, H_s, W_s, 3) in [0, 1], any size (Grams are averaged over positions).

    Returns:
        {layer: distance, ..., "mean": mean over layers} (see ``relative_gram_distance``).
    """
    generated = extractor(_as_batch(image)).style
    target = extractor(_as_batch(style)).style
    return _with_mean({layer: relative_gram_distance(g, t) for layer, g, t in
                       zip(extractor.style_layers, generated, target, strict=True)})


def content_distance(extractor, image, content) -> dict:
    """Relative feature distance of ``image`` to ``content`` at each content layer.

    Args:
        extractor: A ``nstlib.features.FeatureExtractor`` (its ``content_layers``).
        image: (1, H, W, 3) in [0, 1].
        content: (1, H_c, W_c, 3) in [0, 1]; resized to the image's size first.

    Returns:
        {layer: distance, ..., "mean": mean over layers} (see
        ``relative_feature_distance``).
    """
    image = _as_batch(image)
    generated = extractor(image).content
    target = extractor(_same_size(_as_batch(content), image)).content
    return _with_mean({layer: relative_feature_distance(g, t) for layer, g, t in
                       zip(extractor.content_layers, generated, target, strict=True)})


def timing(seconds) -> dict:
    """Time figures of a run from its history's cumulative seconds.

    Args:
        seconds: Elapsed seconds at each history row, as recorded by
            ``nstlib.optimize.minimize``: row 0 comes after the first call of the step
            function, so it includes tracing (compiling) it.

    Returns:
        {"seconds": the last entry (the optimisation's wall time), "startup_seconds":
        the first entry (tracing and the first evaluation), "median_step_seconds": the
        median time between consecutive rows, the steady-state cost of one step (NaN for
        a single row)}.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.size == 0:
        raise ValueError("timing needs at least one history row")
    steps = np.diff(seconds)
    return {"seconds": float(seconds[-1]), "startup_seconds": float(seconds[0]),
            "median_step_seconds": float(np.median(steps)) if steps.size else float("nan")}


def evaluate(extractor, image, content, style) -> dict:
    """Every image metric of one result, flattened for a results table.

    Args:
        extractor: Evaluation network (the same one for every run that is compared).
        image: (1, H, W, 3) result in [0, 1].
        content: Content image (resized to the result for SSIM and content distance).
        style: Style image.

    Returns:
        {"ssim", "content_distance", "style_distance"} (means over layers) plus
        "content_distance_<layer>" and "style_distance_<layer>" for each layer.
    """
    styled = style_distance(extractor, image, style)
    kept = content_distance(extractor, image, content)
    out = {"ssim": ssim(image, content), "content_distance": kept.pop("mean"),
           "style_distance": styled.pop("mean")}
    out.update({f"content_distance_{layer}": value for layer, value in kept.items()})
    out.update({f"style_distance_{layer}": value for layer, value in styled.items()})
    return out


# ============================================================================================
# Plain comparisons of two arrays (notebook checks: derived value vs library value)
# ============================================================================================


def relative_error(estimate, reference) -> float:
    """||estimate − reference||_F / ||reference||_F, in float64.

    Taught in notebook 07 (how much instance normalisation changes features); notebook 02
    scores reconstructions with it and notebook 08 compares covariances with their targets.

    Args:
        estimate: Array-like or tensor, any shape.
        reference: The same shape; not all zeros.

    Returns:
        0 when equal; 1 when ``estimate`` is 0.

    Raises:
        ValueError: different shapes, or a zero reference.
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape:
        raise ValueError(f"relative_error: shapes differ: {estimate.shape} vs {reference.shape}")
    norm = np.linalg.norm(reference.ravel())
    if norm == 0.0:
        raise ValueError("relative_error: the reference is all zeros")
    return float(np.linalg.norm((estimate - reference).ravel()) / norm)


def psnr(image, reference, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10·log10(max_val² / MSE) of ``image`` against ``reference``.

    Taught in notebook 02: derived inline, checked against ``tf.image.psnr``, then used
    to score reconstructions from single VGG19 layers.

    Args:
        image: (1, H, W, C), (H, W, C) or (H, W) array-like in [0, max_val].
        reference: The same shape.
        max_val: Dynamic range of the values (1 for [0, 1] images).

    Returns:
        PSNR in dB (float64 arithmetic); ``inf`` for identical images.

    Raises:
        ValueError: different shapes.
    """
    image = np.asarray(image, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"psnr: shapes differ: {image.shape} vs {reference.shape}")
    mse = float(np.mean(np.square(image - reference)))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(max_val**2 / mse))
