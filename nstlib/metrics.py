"""Measurements for evaluating results: numbers to compare methods by, not losses to optimise.

Everything here works on finished images (NumPy in, floats out) so that a notebook or a
benchmark can score a result without building a network.
"""

from __future__ import annotations

import numpy as np

# ============================================================================================
# Repetition: spectral energy at a known motif period
#
# A style whose motif repeats every P pixels, "wallpapered" over a region that should be
# flat, shows up as a ring of energy at spatial frequency 1/P in the region's spectrum.
# ============================================================================================

WINDOWS = ("hann", None)


def _as_hwc(image) -> np.ndarray:
    """(1, H, W, C), (H, W, C) or (H, W) array-like -> (H, W, C) float64."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of shape {array.shape}")
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W[, C]), got {array.shape}")
    return array


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
    if window not in WINDOWS:
        raise ValueError(f"window must be 'hann' or None, got {window!r}")
    array = _as_hwc(image)
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
    if not period > 2:
        raise ValueError(f"period must exceed 2 pixels (the Nyquist limit), got {period}")
    power, frequency = power_spectrum(image, window)
    half_width = max(bandwidth / period, 2.0 / min(power.shape))
    energy = float(power[np.abs(frequency - 1.0 / period) <= half_width].sum())
    if not relative:
        return energy
    total = float(power.sum())
    return energy / total if total > 0 else 0.0
