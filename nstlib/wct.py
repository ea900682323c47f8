"""Whitening-colouring: covariance spectra, whitening, colouring, WCT stylisation.

This module owns the whitening-colouring transform (Li et al. 2017) and everything built on
it: per-image channel covariances and their eigendecomposition, the energy kept by a
rank-k truncation, ``whiten``/``color``/``wct`` on feature maps, and the optimisation-based
"decoder" (feature inversion at one layer) that ``wct_stylize`` chains from deep to shallow
layers. Notebook 08 (``08_whitening_coloring.ipynb``) teaches it; per-channel moments
(IN/BN/AdaIN) and Gram shrinkage stay in ``nstlib.statistics``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from nstlib import images
from nstlib.features import FeatureExtractor
from nstlib.losses import content_loss, total_variation_loss
from nstlib.optimize import History, OptimizationResult, minimize
from nstlib.reproducibility import environment_record, set_seed
from nstlib.statistics import _check_rank4
from nstlib.transfer import StylizeResult, _describe_source, cached_extractor

# ============================================================================================
# Covariance, whitening and colouring (WCT)
#
# The whitening-colouring transform of Li et al. (2017) on feature maps. Matrix square roots
# are computed in float64 from a symmetric eigendecomposition and returned in the input's
# dtype.
# ============================================================================================


def _positions(features: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) -> (B, H*W, C) float64."""
    shape = tf.shape(features)
    return tf.reshape(tf.cast(features, tf.float64), [shape[0], -1, shape[3]])


def feature_covariance(features: tf.Tensor) -> tf.Tensor:
    """Per-image channel covariance, C = (F - mu)^T (F - mu) / (H*W).

    Args:
        features: (B, H, W, C) float activations.

    Returns:
        (B, C, C) symmetric positive semi-definite, in the dtype of ``features``
        (accumulated in float64). It is the "hw" Gram matrix of the centred features.
    """
    features = _check_rank4(features)
    return tf.cast(_covariance64(_positions(features)), features.dtype)


def _covariance64(flat: tf.Tensor) -> tf.Tensor:
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    count = tf.cast(tf.shape(flat)[1], tf.float64)
    return tf.einsum("bni,bnj->bij", centred, centred) / count


def covariance_spectrum(features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Eigenvalues and eigenvectors of ``feature_covariance``, largest eigenvalue first.

    Args:
        features: (B, H, W, C) float activations.

    Returns:
        eigenvalues (B, C) float64, descending (tiny negative round-off values possible);
        eigenvectors (B, C, C) float64 with eigenvector k in column k.
    """
    features = _check_rank4(features)
    return _eigh_descending(_covariance64(_positions(features)))


def _eigh_descending(covariance: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    values, vectors = tf.linalg.eigh(covariance)
    return tf.reverse(values, axis=[-1]), tf.reverse(vectors, axis=[-1])


def energy_kept(eigenvalues, rank: int | None) -> np.ndarray:
    """Fraction of the total variance kept by the ``rank`` largest eigenvalues.

    Args:
        eigenvalues: (..., C) eigenvalues, descending (as from ``covariance_spectrum``).
        rank: Number of eigenvalues kept; None keeps all (fraction 1).

    Returns:
        (...,) float64 in [0, 1]: sum of the top ``rank`` (negatives clipped to 0) over the
        sum of all.
    """
    values = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    kept = values if rank is None else values[..., : int(rank)]
    return kept.sum(axis=-1) / values.sum(axis=-1)


def _matrix_power(values: tf.Tensor, vectors: tf.Tensor, power: float, eps: float,
                  rank: int | None) -> tf.Tensor:
    """E_k diag((lambda_k + eps)^power) E_k^T over the top-``rank`` eigenpairs, float64.

    Negative round-off eigenvalues are clipped to 0 first, so with eps = 0 a singular
    covariance and a negative power give an infinite (non-finite) matrix.
    """
    if rank is not None:
        values, vectors = values[:, : int(rank)], vectors[:, :, : int(rank)]
    scaled = tf.pow(tf.maximum(values, 0.0) + eps, power)
    return tf.einsum("bik,bk,bjk->bij", vectors, scaled, vectors)


def _check_rank_and_eps(eps: float, rank: int | None) -> None:
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if rank is not None and int(rank) < 1:
        raise ValueError(f"rank must be a positive number of eigenvectors, got {rank}")


def whiten(features: tf.Tensor, eps: float = 1e-5, rank: int | None = None) -> tf.Tensor:
    """Whitening: centre each image's features and decorrelate them to unit variance.

    W = (F - mu) C^(-1/2), C^(-1/2) = E diag((lambda + eps)^(-1/2)) E^T from the
    eigendecomposition of the image's own covariance C = E diag(lambda) E^T.

    Args:
        features: (B, H, W, C) float activations (the content).
        eps: Regulariser added to every eigenvalue; eps = 0 with a singular covariance
            divides by zero (the result is not finite).
        rank: Keep only the ``rank`` largest eigenvectors (the whitened features then
            live in that subspace); None keeps all.

    Returns:
        (B, H, W, C) in the dtype of ``features``, with covariance
        E_k diag(lambda_k / (lambda_k + eps)) E_k^T ~ I (identity on the kept subspace).
    """
    features = _check_rank4(features)
    _check_rank_and_eps(eps, rank)
    flat = _positions(features)
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    values, vectors = _eigh_descending(_covariance64(flat))
    whitened = tf.matmul(centred, _matrix_power(values, vectors, -0.5, eps, rank))
    return tf.cast(tf.reshape(whitened, tf.shape(features)), features.dtype)


def color(whitened: tf.Tensor, style_features: tf.Tensor, eps: float = 0.0,
          rank: int | None = None) -> tf.Tensor:
    """Colouring: give whitened features the style's covariance and mean.

    F = W C_s^(1/2) + mu_s, C_s^(1/2) = E_s diag((lambda_s + eps)^(1/2)) E_s^T.

    Args:
        whitened: (B, H, W, C) features with (about) identity covariance.
        style_features: (1 or B, H_s, W_s, C) style activations (any spatial size).
        eps: Added to the style eigenvalues (0: the coloured covariance equals C_s).
        rank: Keep only the style's ``rank`` largest eigenvectors; None keeps all.

    Returns:
        (B, H, W, C) in the dtype of ``whitened``; if ``whitened`` has identity
        covariance its covariance is C_s (or its rank-k truncation) and its mean mu_s.
    """
    whitened = _check_rank4(whitened, "whitened")
    style_features = _check_rank4(style_features, "style_features")
    _check_rank_and_eps(eps, rank)
    style = _positions(style_features)
    values, vectors = _eigh_descending(_covariance64(style))
    root = _matrix_power(values, vectors, 0.5, eps, rank)
    coloured = tf.matmul(_positions(whitened), root) + tf.reduce_mean(style, axis=1,
                                                                      keepdims=True)
    return tf.cast(tf.reshape(coloured, tf.shape(whitened)), whitened.dtype)


def wct(content_features: tf.Tensor, style_features: tf.Tensor, alpha: float = 1.0,
        eps: float = 1e-5, rank: int | None = None) -> tf.Tensor:
    """Whitening-colouring transform (Li et al. 2017), blended with the content.

    alpha * color(whiten(F_c)) + (1 - alpha) * F_c: the content's spatial arrangement
    with the style's channel mean and full covariance.

    Args:
        content_features: (B, H, W, C) activations (an image (1, H, W, 3) works too:
            then it is a colour transfer in pixel space).
        style_features: (1 or B, H_s, W_s, C) activations.
        alpha: Style strength in [0, 1]; 0 returns the content unchanged.
        eps: Whitening regulariser (see ``whiten``); the colouring uses none.
        rank: Keep the ``rank`` largest eigenvectors of both covariances; None keeps all.

    Returns:
        (B, H, W, C) in the dtype of ``content_features``.
    """
    content_features = _check_rank4(content_features, "content_features")
    transferred = color(whiten(content_features, eps, rank), style_features, 0.0, rank)
    return alpha * transferred + (1.0 - alpha) * content_features


# ============================================================================================
# Feature inversion and whitening-colouring stylisation
#
# An image is recovered from target activations at one layer by optimisation (the decoder
# of Li et al. 2017 replaced by ``minimize``); ``wct_stylize`` chains WCT + inversion from a
# deep layer to shallow ones, each level starting from the previous level's image.
# ============================================================================================

#: WCT levels of ``wct_stylize``, deep to shallow (Li et al. 2017 use relu5_1 ... relu1_1).
DEFAULT_WCT_LAYERS = ("block4_conv1", "block3_conv1", "block2_conv1", "block1_conv1")
#: Weight of the mean-absolute TV term next to the relative feature error in inversions.
DEFAULT_INVERSION_TV_WEIGHT = 0.1


@dataclass
class WCTStylizeResult(StylizeResult):
    """``StylizeResult`` of ``wct_stylize`` plus the image after each level.

    Attributes:
        level_images: One (1, H, W, 3) float32 image per level, in level order (the last
            one is ``image``). The history has a "level" column.
    """

    level_images: list = field(default_factory=list)


def layer_extractor(layer: str, weights="auto", pooling: str = "max",
                    seed: int = 0, network: str | None = None) -> FeatureExtractor:
    """A (cached) extractor with ``layer`` as its only content layer, truncated there.

    ``network``: "vgg19", "vgg16" or None (the weights' own, see ``FeatureExtractor``).
    """
    return cached_extractor((layer,), (), weights, pooling, int(seed), network=network)


def feature_inversion_loss(extractor: FeatureExtractor, target: tf.Tensor,
                           tv_weight: float = DEFAULT_INVERSION_TV_WEIGHT):
    """Loss of an image whose activations at one layer should equal ``target``.

    total = sum (F - T)^2 / sum T^2 + tv_weight * mean |grad x| (see ``content_loss``
    "normalized" and ``total_variation_loss`` "l1"/"mean").

    Args:
        extractor: Extractor with exactly one content layer (e.g. ``layer_extractor``).
        target: (1, h, w, c) float32 target activations T at that layer.
        tv_weight: Weight of the total-variation term.

    Returns:
        A function (1, H, W, 3) image -> {"total", "content", "tv"} scalar tensors.
    """
    if len(extractor.content_layers) != 1:
        raise ValueError(f"feature inversion needs exactly one content layer, got "
                         f"{extractor.content_layers}")
    target = tf.constant(tf.cast(target, tf.float32))

    def loss_fn(image: tf.Tensor) -> dict:
        generated = extractor(image).content[0]
        feature = content_loss(generated, target, "normalized")
        tv = total_variation_loss(image, "l1", "mean")
        return {"total": feature + tv_weight * tv, "content": feature, "tv": tv}

    return loss_fn


def invert_features(extractor: FeatureExtractor, target: tf.Tensor, init: tf.Tensor, *,
                    steps: int = 200, tv_weight: float = DEFAULT_INVERSION_TV_WEIGHT,
                    optimizer: str = "adam", learning_rate: float | None = None,
                    callbacks: Sequence = (), progress: bool = True) -> OptimizationResult:
    """An image whose activations at the extractor's content layer match ``target``.

    Args:
        extractor: Extractor with exactly one content layer.
        target: (1, h, w, c) target activations; h, w must be those of ``init``'s.
        init: (1, H, W, 3) starting image in [0, 1].
        steps, optimizer, learning_rate, callbacks, progress: As in ``minimize``.
        tv_weight: See ``feature_inversion_loss``.

    Returns:
        ``OptimizationResult`` (image (1, H, W, 3) in [0, 1], history with "content",
        the relative feature error, and "tv").
    """
    loss_fn = feature_inversion_loss(extractor, target, tv_weight)
    return minimize(loss_fn, init, steps=steps, optimizer=optimizer,
                    learning_rate=learning_rate, callbacks=callbacks, progress=progress,
                    description=f"invert {extractor.content_layers[0]}")


def wct_level(image: tf.Tensor, style_image: tf.Tensor, extractor: FeatureExtractor, *,
              alpha: float = 1.0, eps: float = 1e-5, rank: int | None = None,
              steps: int = 100, tv_weight: float = DEFAULT_INVERSION_TV_WEIGHT,
              optimizer: str = "adam", learning_rate: float | None = None,
              progress: bool = True) -> OptimizationResult:
    """One WCT level: transform ``image``'s features towards the style's, then invert.

    Args:
        image: (1, H, W, 3) in [0, 1]: the content (first level) or the previous level's
            result; it is also the starting point of the inversion.
        style_image: (1, H_s, W_s, 3) in [0, 1].
        extractor: Extractor with exactly one content layer (the level's layer).
        alpha, eps, rank: See ``wct``.
        steps, tv_weight, optimizer, learning_rate, progress: See ``invert_features``.

    Returns:
        ``OptimizationResult`` of the inversion.
    """
    target = wct(extractor(image).content[0], extractor(style_image).content[0], alpha, eps,
                 rank)
    return invert_features(extractor, target, image, steps=steps, tv_weight=tv_weight,
                           optimizer=optimizer, learning_rate=learning_rate,
                           progress=progress)


def wct_stylize(content, style, *, layers: Sequence[str] = DEFAULT_WCT_LAYERS,
                alpha: float = 1.0, eps: float = 1e-5, rank: int | None = None,
                size: int = 256, style_size: int | None = None, steps: int = 100,
                tv_weight: float = DEFAULT_INVERSION_TV_WEIGHT, optimizer: str = "adam",
                learning_rate: float | None = None, weights="auto", pooling: str = "max",
                seed: int = 0, deterministic: bool = True,
                progress: bool = True, network: str | None = None) -> WCTStylizeResult:
    """Multi-level whitening-colouring style transfer with optimisation as the decoder.

    For each layer in ``layers`` (deep to shallow): WCT of the current image's features
    with the style's at that layer, then ``steps`` inversion steps starting from the
    current image. The first level starts from the content image.

    Args:
        content, style: Images in any form ``images.load_image`` accepts.
        layers: Layer names of the network used, one level each, applied in the given
            order (the default levels exist in VGG19 and VGG16).
        alpha, eps, rank: See ``wct``.
        size, style_size: Longer sides in pixels (``style_size`` defaults to ``size``).
        steps: Inversion steps per level.
        tv_weight, optimizer, learning_rate: See ``invert_features``.
        weights, pooling, seed, deterministic, progress: As in ``stylize``.
        network: "vgg19", "vgg16" or None (the weights' own; ``stylize``'s
            ``architecture``).

    Returns:
        ``WCTStylizeResult``: final (1, H, W, 3) image, one image per level, the history
        of all levels (steps numbered consecutively, with a "level" column) and the config.
    """
    if not layers:
        raise ValueError("wct_stylize needs at least one layer")
    set_seed(seed, deterministic)
    started = time.perf_counter()
    content_image = images.resize_max_side(images.load_image(content), int(size))
    style_image = images.resize_max_side(images.load_image(style), int(style_size or size))
    # Every level's extractor first: a layer the network lacks (VGG16 has no block3_conv4)
    # fails here, before any level has spent its steps.
    extractors = [layer_extractor(layer, weights, pooling, seed, network) for layer in layers]
    parts, level_images, image, offset = [], [], content_image, 0.0
    for level, extractor in enumerate(extractors):
        outcome = wct_level(image, style_image, extractor, alpha=alpha, eps=eps, rank=rank,
                            steps=steps, tv_weight=tv_weight, optimizer=optimizer,
                            learning_rate=learning_rate, progress=progress)
        parts.append((level, outcome.history, offset))  # seconds run on across levels
        offset += outcome.history.rows[-1]["seconds"] if outcome.history.rows else 0.0
        image = outcome.image
        level_images.append(image)
    config = {
        "method": "wct", "content": _describe_source(content), "style": _describe_source(style),
        "size": int(size), "style_size": int(style_size or size),
        "content_shape": list(content_image.shape), "style_shape": list(style_image.shape),
        "layers": list(layers), "alpha": alpha, "eps": eps, "rank": rank,
        "steps_per_level": int(steps), "optimizer": optimizer,
        "learning_rate": outcome.learning_rate, "tv_weight": tv_weight, "pooling": pooling,
        "seed": int(seed), "deterministic": deterministic, "weights": str(weights),
        "weights_source": extractor.weights_source, "architecture": extractor.network,
        "weights_reason": extractor.weights_reason,
        "weights_path": None if extractor.weights_path is None else str(extractor.weights_path),
        "status": outcome.status, "wall_seconds": time.perf_counter() - started,
        "environment": environment_record(),
    }
    return WCTStylizeResult(image, History.joined(parts, "level"), config, level_images)
