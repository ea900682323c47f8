"""Second-order feature statistics: Gram matrices, normalisations and Gram shrinkage.

Everything that summarises a feature map by its per-channel or Gram statistics: Gram
matrices (notebook 03), instance/batch normalisation and AdaIN (notebook 07) and
Ledoit-Wolf shrinkage of Gram matrices (notebook 06). Full covariances, whitening and
colouring live in ``nstlib.wct``.
"""

from __future__ import annotations

import tensorflow as tf

from nstlib._checks import check_choice

GRAM_NORMALIZATIONS = ("none", "hw", "chw")


def gram_matrix(features: tf.Tensor, normalize: str = "hw") -> tf.Tensor:
    """Gram matrix of channel co-activations, G_ij = sum_k F_ik F_jk over positions k.

    Args:
        features: (B, H, W, C) float32 activations.
        normalize: "none" (divide by 1), "hw" (by the number of positions H*W, so the
            Gram is a mean over positions and independent of image size) or "chw" (by
            C*H*W).

    Returns:
        (B, C, C) float32, symmetric positive semi-definite.
    """
    check_choice(normalize, GRAM_NORMALIZATIONS, "normalize")
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(f"features must have shape (B, H, W, C), got {features.shape}")
    gram = tf.einsum("bhwi,bhwj->bij", features, features)
    if normalize == "none":
        return gram
    shape = tf.shape(features)
    positions = tf.cast(shape[1] * shape[2], gram.dtype)
    if normalize == "hw":
        return gram / positions
    return gram / (positions * tf.cast(shape[3], gram.dtype))


def guided_gram(features: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Gram of the masked features F·m, normalised by Σ m² (Gatys et al. 2017, guided Gram).

    G_ij = Σ_k m_k² F_ki F_kj / Σ_k m_k²: the Gram of the region the mask selects, a mean
    over its positions. For a binary mask Σ m² is the mask's sum (the region's size); a
    uniform mask of any strength gives ``gram_matrix(features, "hw")``.

    Args:
        features: (B, H, W, C) float32 activations.
        mask: (1 or B, H, W, 1) float32 weights in [0, 1] on the same grid.

    Returns:
        (B, C, C) float32 (zero where the mask is empty).
    """
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(f"features must have shape (B, H, W, C), got {features.shape}")
    mask = tf.convert_to_tensor(mask, features.dtype)
    if mask.shape.rank != 4 or mask.shape[1:] != (*features.shape[1:3], 1):
        raise ValueError(f"mask must have shape (1 or B, {features.shape[1]}, "
                         f"{features.shape[2]}, 1) to match the features, got {mask.shape}")
    masked = features * mask
    gram = tf.einsum("bhwi,bhwj->bij", masked, masked)
    area = tf.reduce_sum(tf.square(mask), axis=[1, 2, 3])
    return gram / (area[:, None, None] + 1e-12)


# ============================================================================================
# Normalisation (instance / batch / AdaIN)
#
# Per-channel first and second moments of feature maps and the linear maps built on them:
# instance and batch normalisation and adaptive instance normalisation (Huang & Belongie
# 2017). The whitening-colouring transform (Li et al. 2017) is in ``nstlib.wct``.
# ============================================================================================


def _check_rank4(features, name: str = "features") -> tf.Tensor:
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got {features.shape}")
    return features


def channel_mean_std(features: tf.Tensor, eps: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image, per-channel mean and standard deviation over the spatial positions.

    Args:
        features: (B, H, W, C) float activations.
        eps: Added to the variance before the square root (std = sqrt(var + eps)).

    Returns:
        mean (B, 1, 1, C) and std (B, 1, 1, C), in the dtype of ``features``; the
        variance is the population variance (divided by H*W).
    """
    features = _check_rank4(features)
    mean, variance = tf.nn.moments(features, axes=[1, 2], keepdims=True)
    return mean, tf.sqrt(variance + eps)


def instance_norm(features: tf.Tensor, eps: float = 1e-5) -> tf.Tensor:
    """Instance normalisation: remove each image's per-channel mean and std.

    IN(F)_bhwc = (F_bhwc - mu_bc) / sqrt(sigma_bc^2 + eps), with mu, sigma over (H, W).

    Args:
        features: (B, H, W, C) float activations.
        eps: Variance floor; keeps constant channels finite (they map to 0).

    Returns:
        (B, H, W, C), per image and channel mean 0 and std sqrt(var / (var + eps)) ~ 1.
    """
    mean, std = channel_mean_std(features, eps)
    return (features - mean) / std


def batch_norm(features: tf.Tensor, eps: float = 1e-5) -> tf.Tensor:
    """Batch normalisation (training-mode statistics, no learned scale or shift).

    BN(F)_bhwc = (F_bhwc - mu_c) / sqrt(sigma_c^2 + eps), with mu, sigma over (B, H, W):
    one mean and std per channel shared by the whole batch.

    Args:
        features: (B, H, W, C) float activations.
        eps: Variance floor.

    Returns:
        (B, H, W, C); over the batch each channel has mean 0 and std ~ 1, but the images
        keep their differences from each other.
    """
    features = _check_rank4(features)
    mean, variance = tf.nn.moments(features, axes=[0, 1, 2], keepdims=True)
    return (features - mean) / tf.sqrt(variance + eps)


def adain(content_features: tf.Tensor, style_features: tf.Tensor, eps: float = 1e-5,
          alpha: float = 1.0) -> tf.Tensor:
    """Adaptive instance normalisation: give the content the style's channel mean and std.

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y), blended with the content as
    alpha * AdaIN(x, y) + (1 - alpha) * x.

    Args:
        content_features: (B, H, W, C) activations x.
        style_features: (1 or B, H_s, W_s, C) activations y (any spatial size).
        eps: Added to both variances (sigma = sqrt(var + eps)).
        alpha: Style strength in [0, 1]; 0 returns the content, 1 the full transfer.

    Returns:
        (B, H, W, C); with alpha = 1 its per-channel mean is mu(y) and its std is
        sigma(y) * sqrt(var(x) / (var(x) + eps)) ~ sigma(y).
    """
    content_features = _check_rank4(content_features, "content_features")
    style_features = _check_rank4(style_features, "style_features")
    style_mean, style_std = channel_mean_std(style_features, eps)
    transferred = instance_norm(content_features, eps) * style_std + style_mean
    return alpha * transferred + (1.0 - alpha) * content_features


# ============================================================================================
# Gram shrinkage (Ledoit & Wolf 2004)
#
# A Gram matrix computed from M spatial positions is a noisy estimate of the second-moment
# matrix E[x xᵀ] of the C-channel feature vectors x; with M not much larger than C it is
# badly conditioned (rank ≤ M). Shrinking it towards a scaled identity trades a little bias
# for much less variance: G_λ = (1 − λ)·G + λ·(tr G / C)·I.
# ============================================================================================

SHRINKAGE_TARGETS = ("scaled_identity", "identity")


def shrinkage_target(gram: tf.Tensor, target: str = "scaled_identity") -> tf.Tensor:
    """The matrix a Gram is shrunk towards.

    Args:
        gram: (..., C, C) Gram matrices.
        target: "scaled_identity": T = (tr G / C)·I, which has the same trace (total
            energy) as G; "identity": T = I, whatever the scale of the features.

    Returns:
        (..., C, C), same dtype as ``gram``.
    """
    check_choice(target, SHRINKAGE_TARGETS, "target")
    gram = tf.convert_to_tensor(gram)
    eye = tf.eye(tf.shape(gram)[-1], dtype=gram.dtype)
    if target == "identity":
        return tf.broadcast_to(eye, tf.shape(gram))
    mean_eigenvalue = tf.linalg.trace(gram) / tf.cast(tf.shape(gram)[-1], gram.dtype)
    return mean_eigenvalue[..., None, None] * eye


def ledoit_wolf_shrinkage(features: tf.Tensor) -> tf.Tensor:
    """Ledoit–Wolf (2004) shrinkage intensity of the uncentred Gram towards (tr G / C)·I.

    With the M = H·W feature vectors x_k ∈ R^C (rows of F, not centred) and
    G = FᵀF / M (``gram_matrix(features, "hw")``), μ = tr G / C:

        d² = ‖G − μI‖²_F                      (how far G is from the target)
        b̄² = (1/M²) Σ_k ‖x_k x_kᵀ − G‖²_F      (estimated variance of G)
           = (Σ_k ‖x_k‖⁴ / M − ‖G‖²_F) / M
        λ* = min(b̄², d²) / d²                 (0 when d² = 0)

    This is the estimator of Ledoit & Wolf (2004, "A well-conditioned estimator for
    large-dimensional covariance matrices", J. Multivariate Anal. 88) with the sample
    covariance replaced by the uncentred second-moment matrix; their 1/C factor in the
    norm cancels in the ratio. It treats the positions as independent samples, which
    neighbouring feature vectors are not. Computed in float64.

    Args:
        features: (B, H, W, C) float activations.

    Returns:
        (B,) float32 intensities in [0, 1].
    """
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(f"features must have shape (B, H, W, C), got {features.shape}")
    flat = tf.cast(tf.reshape(features, (tf.shape(features)[0], -1, tf.shape(features)[-1])),
                   tf.float64)
    positions = tf.cast(tf.shape(flat)[1], tf.float64)
    gram = tf.einsum("bki,bkj->bij", flat, flat) / positions
    target = shrinkage_target(gram, "scaled_identity")
    distance = tf.reduce_sum(tf.square(gram - target), axis=[1, 2])
    fourth = tf.reduce_sum(tf.square(tf.reduce_sum(tf.square(flat), axis=2)), axis=1)
    spread = (fourth / positions - tf.reduce_sum(tf.square(gram), axis=[1, 2])) / positions
    spread = tf.maximum(spread, 0.0)  # exact arithmetic gives >= 0; guard round-off
    intensity = tf.math.divide_no_nan(tf.minimum(spread, distance), distance)
    return tf.cast(intensity, tf.float32)


def shrink_gram(gram: tf.Tensor, lam, features: tf.Tensor | None = None,
                target: str = "scaled_identity") -> tf.Tensor:
    """Shrink Gram matrices towards a target: G_λ = (1 − λ)·G + λ·T.

    Args:
        gram: (B, C, C) Gram matrices (``gram_matrix(features, "hw")``).
        lam: Intensity λ in [0, 1] (a number), or "ledoit-wolf" to estimate one λ per
            image from ``features`` with ``ledoit_wolf_shrinkage``.
        features: (B, H, W, C) activations the Grams were computed from; needed only
            for "ledoit-wolf".
        target: "scaled_identity" (T = (tr G / C)·I, trace preserved) or "identity"
            (T = I); see ``shrinkage_target``.

    Returns:
        (B, C, C), same dtype as ``gram``; symmetric positive semi-definite when G is,
        positive definite for λ > 0 and tr G > 0.
    """
    gram = tf.convert_to_tensor(gram)
    if isinstance(lam, str):
        if lam != "ledoit-wolf":
            raise ValueError(f"lam must be a number in [0, 1] or 'ledoit-wolf', got {lam!r}")
        if features is None:
            raise ValueError("lam='ledoit-wolf' needs the features the Gram was computed from")
        lam = tf.cast(ledoit_wolf_shrinkage(features), gram.dtype)[:, None, None]
    else:
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        lam = tf.constant(float(lam), gram.dtype)
    return (1.0 - lam) * gram + lam * shrinkage_target(gram, target)
