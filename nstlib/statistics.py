"""Second-order feature statistics: Gram matrices and their normalisations.

Later additions (shrinkage, covariance, whitening/colouring, instance normalisation)
belong here too: everything that summarises a feature map by its statistics.
"""

from __future__ import annotations

import tensorflow as tf

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
    if normalize not in GRAM_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {GRAM_NORMALIZATIONS}, got {normalize!r}")
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
