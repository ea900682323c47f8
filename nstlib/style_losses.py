"""Style losses beyond the Gram matrix: each matches another statistic of the style features.

Every loss here compares the features F of the image being optimised, (B, h, w, C) at one
layer, with a *target* computed once from the style image's features S, (1, h_s, w_s, C)
(the two grids may differ in size). Write the n = h·w positions of F as feature vectors
f_k ∈ R^C and the m = h_s·w_s positions of S as s_j. One record per loss in
``nstlib.style_loss_specs`` names a target function and a layer-loss function below:

* "gram" (``gram_target``, ``gram_layer_loss``): the second moments (1/n)·Σ_k f_k f_kᵀ;
  ``nstlib.losses.layer_style_loss`` itself.
* "mean_std": each channel's mean μ_c and standard deviation σ_c over the positions:
  L = (‖μ(F) − μ(S)‖² + ‖σ(F) − σ(S)‖²) / (‖μ(S)‖² + ‖σ(S)‖²). Gram matching is a maximum
  mean discrepancy with a second-order polynomial kernel; the mean term here is one with a
  linear kernel, the standard-deviation term is not an MMD (Li et al. 2017).
* "sliced_wasserstein": P random unit directions v_p ∈ R^C; the n values v_pᵀf_k, sorted,
  against the sorted v_pᵀs_j (Heitz et al. 2021). The squared 1-D Wasserstein-2 distance
  of two sorted samples of equal size is the mean squared difference of their sorted
  values; of unequal size the target's quantile function is read at the generated
  values' quantile levels (k + ½)/n by linear interpolation. Averaged over the P
  directions (drawn anew at each evaluation, from a stateless generator keyed on the
  run's seed and a counter) and divided by the target's mean squared projection.
* "histogram": every channel's values remapped to the target's distribution (exact
  histogram matching: the value of rank k becomes the target's quantile at (k + ½)/n);
  the remapped features R(F) are a stop-gradient target and L = mean_k ‖f_k − R(F)_k‖² /
  mean_j ‖s_j‖² (Risser et al. 2017). This is the sliced-Wasserstein loss with the C
  channel axes as its fixed directions: same value and gradient, 2(f − R(f)).
* "mrf": every 3x3 patch of F (a 9C vector) is pulled towards the style patch with the
  highest normalised cross-correlation (cosine of the patch vectors), L = mean of the
  squared differences / mean of the style patches' squares (Li & Wand 2016). Its
  record restricts it to the deepest two style layers (Li & Wand used relu3_1 and
  relu4_1; the trained VGG16 recipe's deepest two are block3_conv1 and block4_conv1).

Each value is relative (about 1 when the generated features are zero; for "mrf" it is
the nearest style patch's mean square over the style patches' mean square), like the Gram
loss's default "normalized" form, and summed over the batch. With a mask, (1 or B, h, w,
1) weights m_k in [0, 1] over the generated grid, the statistics are weighted means over
the positions (mean/std: weights m_k; sliced Wasserstein and histogram: the generated
sample's quantile levels are its cumulative weights); MRF refuses masks.
"""

from __future__ import annotations

import math

import tensorflow as tf

from nstlib.losses import layer_style_loss
from nstlib.statistics import gram_matrix, shrink_gram

#: Variance floor of the mean/std loss (σ = √(var + ε)), so that its gradient stays finite
#: for a constant channel.
STD_EPSILON = 1e-8
#: MRF patches are PATCH x PATCH positions of the feature map.
MRF_PATCH = 3
#: Most style patches an MRF target keeps: with more, the style patches are taken with a
#: stride (the smallest that keeps at most this many).
MRF_MAX_TARGET_PATCHES = 4096
#: Most (generated patch, style patch) pairs an MRF layer compares per image: the
#: cross-correlation matrix is this many float32 values (256 MiB).
MRF_MAX_PAIRS = 2**26


def _check_features(features, name: str = "features") -> tf.Tensor:
    features = tf.convert_to_tensor(features, tf.float32)
    if features.shape.rank != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got {features.shape}")
    return features


def _position_weights(features: tf.Tensor, mask) -> tf.Tensor | None:
    """A (1 or B, h, w, 1) mask as (1 or B, n) weights (None stays None)."""
    if mask is None:
        return None
    mask = tf.convert_to_tensor(mask, tf.float32)
    if mask.shape.rank != 4 or mask.shape[1:] != (*features.shape[1:3], 1):
        raise ValueError(f"mask must have shape (1 or B, {features.shape[1]}, "
                         f"{features.shape[2]}, 1) to match the features, got {mask.shape}")
    return tf.reshape(mask, (mask.shape[0], -1))


def _flat(features: tf.Tensor) -> tf.Tensor:
    """(B, h, w, C) -> (B, n, C)."""
    return tf.reshape(features, (features.shape[0], -1, features.shape[-1]))


# ----------------------------------------------------------------------------------- Gram


def gram_target(features: tf.Tensor, *, gram_shrinkage=None, **_) -> tf.Tensor:
    """The Gram loss's target: the "hw" Gram (1, C, C), shrunk as ``gram_shrinkage`` says
    (``statistics.shrink_gram``)."""
    features = _check_features(features)
    gram = gram_matrix(features)
    return gram if gram_shrinkage is None else shrink_gram(gram, gram_shrinkage, features)


def gram_layer_loss(generated: tf.Tensor, target: tf.Tensor, mask=None, *,
                    style_form: str = "normalized", **_) -> tf.Tensor:
    """``losses.layer_style_loss`` (guided Grams under a mask) in this module's signature."""
    return layer_style_loss(generated, target, style_form, mask)


# ------------------------------------------------------------------------------- mean/std


def weighted_mean_std(features: tf.Tensor, mask=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image, per-channel mean and standard deviation over (weighted) positions.

    μ_c = Σ_k m_k f_kc / Σ_k m_k, σ_c = √(Σ_k m_k (f_kc − μ_c)² / Σ_k m_k + ε), ε =
    ``STD_EPSILON``; without a mask m_k = 1 (population variance).

    Args:
        features: (B, h, w, C) float32.
        mask: None, or (1 or B, h, w, 1) weights in [0, 1].

    Returns:
        mean (B, C) and std (B, C).
    """
    features = _check_features(features)
    flat = _flat(features)
    weights = _position_weights(features, mask)
    if weights is None:
        mean, variance = tf.nn.moments(flat, axes=[1])
    else:
        w = weights[..., None]
        total = tf.reduce_sum(w, axis=1) + 1e-12
        mean = tf.reduce_sum(w * flat, axis=1) / total
        variance = tf.reduce_sum(w * tf.square(flat - mean[:, None]), axis=1) / total
    return mean, tf.sqrt(variance + STD_EPSILON)


def mean_std_target(features: tf.Tensor, **_) -> tuple[tf.Tensor, tf.Tensor]:
    """The mean/std loss's target: the style's channel means and stds, (1, C) each."""
    return weighted_mean_std(features)


def mean_std_layer_loss(generated: tf.Tensor, target, mask=None, **_) -> tf.Tensor:
    """(‖μ(F) − μ(S)‖² + ‖σ(F) − σ(S)‖²) / (‖μ(S)‖² + ‖σ(S)‖²), summed over the batch.

    Args:
        generated: (B, h, w, C) features F.
        target: (mean, std) of the style features, (1, C) each (``mean_std_target``).
        mask: None, or (1 or B, h, w, 1) weights: F's statistics over the masked positions.

    Returns:
        Scalar float32.
    """
    mean, std = weighted_mean_std(generated, mask)
    target_mean, target_std = target
    squared = (tf.reduce_sum(tf.square(mean - target_mean), axis=-1)
               + tf.reduce_sum(tf.square(std - target_std), axis=-1))
    scale = tf.reduce_sum(tf.square(target_mean)) + tf.reduce_sum(tf.square(target_std))
    return tf.reduce_sum(squared) / (scale + 1e-12)


# ------------------------------------------------------------- sorting: 1-D optimal transport


def _ranked_quantiles(values: tf.Tensor, target_sorted: tf.Tensor, weights=None):
    """The work of ``quantile_match`` in rank order.

    Returns:
        (order (B, K, n): the argsort of each column of ``values``; the target's quantiles
        at the levels of ranks 0..n−1, (B, K, n) float32; the weights in rank order,
        (B, K, n) float32, or None without weights).
    """
    values = tf.convert_to_tensor(values, tf.float32)
    batch, n, k = values.shape
    m = int(target_sorted.shape[-1])
    columns = tf.transpose(values, [0, 2, 1])  # (B, K, n)
    order = tf.argsort(columns, axis=-1, stable=True)
    ranked = None
    if weights is None:
        rank = tf.range(n, dtype=tf.float64)
        position = (rank + 0.5) * (m / n) - 0.5  # float64: exactly r when n == m
        position = tf.broadcast_to(position, (batch, k, n))
    else:
        w = tf.cast(tf.broadcast_to(tf.convert_to_tensor(weights, tf.float32)[:, None, :],
                                    (batch, k, n)), tf.float64)
        ranked = tf.gather(w, order, batch_dims=2)
        cumulative = tf.cumsum(ranked, axis=-1)
        level = (cumulative - ranked / 2) / (cumulative[..., -1:] + 1e-300)
        position = level * m - 0.5
        ranked = tf.cast(ranked, tf.float32)
    low = tf.clip_by_value(tf.floor(position), 0.0, m - 1.0)
    fraction = tf.cast(tf.clip_by_value(position - low, 0.0, 1.0), tf.float32)
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, m - 1)
    table = tf.broadcast_to(tf.convert_to_tensor(target_sorted, tf.float32), (batch, k, m))
    quantiles = (tf.gather(table, low, batch_dims=2) * (1.0 - fraction)
                 + tf.gather(table, high, batch_dims=2) * fraction)
    return order, tf.stop_gradient(quantiles), ranked


def quantile_match(values: tf.Tensor, target_sorted: tf.Tensor,
                   weights: tf.Tensor | None = None) -> tf.Tensor:
    """Each value replaced by the target's quantile at the value's own quantile level.

    For each image b and column k, the n values x_1..n (weights w, default 1) are ranked;
    the value of rank r gets the level t_r = (Σ_{r' ≤ r} w_(r') − w_(r)/2) / Σ w, which is
    (r + ½)/n without weights, and the target's quantile function at t_r: the m sorted
    target values y_j sit at levels (j + ½)/m, linearly interpolated in between and
    clamped at the ends. With n = m and no weights the value of rank r becomes y_r
    exactly: the optimal 1-D transport map, so Σ(x − map(x))² is n times the squared
    Wasserstein-2 distance of the two samples.

    Args:
        values: (B, n, K) float32.
        target_sorted: (K, m) float32, each row sorted ascending.
        weights: None, or (1 or B, n) non-negative position weights.

    Returns:
        (B, n, K) float32 in the order of ``values``, a constant (no gradient).
    """
    order, quantiles, _ = _ranked_quantiles(values, target_sorted, weights)
    unsorted = tf.gather(quantiles, tf.argsort(order, axis=-1), batch_dims=2)
    return tf.stop_gradient(tf.transpose(unsorted, [0, 2, 1]))


def _weighted_mean_over_positions(squared: tf.Tensor, weights) -> tf.Tensor:
    """(B, n, K) -> (B, K): mean over positions, weighted by (1 or B, n) weights if given."""
    if weights is None:
        return tf.reduce_mean(squared, axis=1)
    w = weights[..., None]
    return tf.reduce_sum(w * squared, axis=1) / (tf.reduce_sum(w, axis=1) + 1e-12)


# ----------------------------------------------------------------------- sliced Wasserstein


def sliced_wasserstein_target(features: tf.Tensor, **_) -> tf.Tensor:
    """The sliced-Wasserstein loss's target: the style's m feature vectors, (m, C)."""
    features = _check_features(features)
    return tf.reshape(features, (-1, features.shape[-1]))


def random_directions(channels: int, count: int, seed) -> tf.Tensor:
    """``count`` unit vectors in R^channels, uniform on the sphere, as (channels, count).

    Args:
        seed: A stateless seed, shape (2,) integers (``tf.random.stateless_normal``).
    """
    normal = tf.random.stateless_normal((channels, count), seed=seed)
    return normal / tf.norm(normal, axis=0, keepdims=True)


def sliced_wasserstein_distance(generated: tf.Tensor, target: tf.Tensor,
                                directions: tf.Tensor, mask=None) -> tf.Tensor:
    """Squared Wasserstein-2 distance between projected feature distributions, averaged
    over the directions: (1/P) Σ_p W2²(v_pᵀF, v_pᵀS).

    Each W2² is Σ_k m_k (x_(k) − q(t_k))² / Σ_k m_k over the generated values x sorted,
    with q the target's quantile function at their levels t_k (``quantile_match``; with
    equal sample sizes and no mask, mean_k (x_(k) − y_(k))²).

    Args:
        generated: (B, h, w, C) features F.
        target: (m, C) style feature vectors (``sliced_wasserstein_target``).
        directions: (C, P) directions v_p.
        mask: None, or (1 or B, h, w, 1) weights.

    Returns:
        (B,) float32.
    """
    generated = _check_features(generated, "generated")
    weights = _position_weights(generated, mask)
    projected = tf.matmul(_flat(generated), directions)  # (B, n, P)
    target_sorted = tf.sort(tf.transpose(tf.matmul(target, directions)), axis=-1)  # (P, m)
    # in rank order (sorted values against the quantiles; no unsorting needed)
    order, quantiles, ranked_weights = _ranked_quantiles(projected, target_sorted, weights)
    ranked = tf.gather(tf.transpose(projected, [0, 2, 1]), order, batch_dims=2)  # (B, P, n)
    squared = tf.square(ranked - quantiles)
    if ranked_weights is None:
        per_direction = tf.reduce_mean(squared, axis=-1)
    else:
        per_direction = (tf.reduce_sum(ranked_weights * squared, axis=-1)
                         / (tf.reduce_sum(ranked_weights, axis=-1) + 1e-12))
    return tf.reduce_mean(per_direction, axis=-1)


def sliced_wasserstein_layer_loss(generated: tf.Tensor, target: tf.Tensor, mask=None, *,
                                  sw_projections: int | None = None, seed=(0, 0),
                                  **_) -> tf.Tensor:
    """Sliced-Wasserstein loss of one layer, relative to the target's projected energy.

    L = Σ_b (1/P) Σ_p W2²(v_pᵀF_b, v_pᵀS) / ((1/P) Σ_p mean_j (v_pᵀs_j)²), with P =
    ``sw_projections`` (default C) random unit directions drawn from ``seed``.

    Args:
        generated: (B, h, w, C) features F.
        target: (m, C) style feature vectors.
        mask: None, or (1 or B, h, w, 1) weights.
        sw_projections: P, the number of directions.
        seed: Stateless seed of the directions, shape (2,) integers.

    Returns:
        Scalar float32.
    """
    channels = int(target.shape[-1])
    directions = random_directions(channels, int(sw_projections or channels), seed)
    distance = sliced_wasserstein_distance(generated, target, directions, mask)
    scale = tf.reduce_mean(tf.square(tf.matmul(target, directions)))
    return tf.reduce_sum(distance) / (scale + 1e-12)


# ------------------------------------------------------------------------------- histogram


def histogram_target(features: tf.Tensor, **_) -> tuple[tf.Tensor, tf.Tensor]:
    """The histogram loss's target: each channel's style values sorted, (C, m), and the
    mean squared norm of the style feature vectors (the loss's scale)."""
    vectors = sliced_wasserstein_target(features)
    scale = tf.reduce_mean(tf.reduce_sum(tf.square(vectors), axis=-1))
    return tf.sort(tf.transpose(vectors), axis=-1), scale


def histogram_match(generated: tf.Tensor, target_sorted: tf.Tensor, mask=None) -> tf.Tensor:
    """Exact per-channel histogram matching: each channel's values remapped to the
    target's quantiles at their own levels (``quantile_match``).

    Args:
        generated: (B, h, w, C) features F.
        target_sorted: (C, m) each channel's style values, sorted.
        mask: None, or (1 or B, h, w, 1) weights (the levels of F's weighted sample).

    Returns:
        (B, h, w, C) R(F), a constant (no gradient).
    """
    generated = _check_features(generated, "generated")
    matched = quantile_match(_flat(generated), target_sorted,
                             _position_weights(generated, mask))
    return tf.reshape(matched, tf.shape(generated))


def histogram_layer_loss(generated: tf.Tensor, target, mask=None, **_) -> tf.Tensor:
    """Σ_b mean_k ‖f_k − R(F)_k‖² / mean_j ‖s_j‖², R(F) the matched features (constant).

    Args:
        generated: (B, h, w, C) features F.
        target: (sorted (C, m), scale) from ``histogram_target``.
        mask: None, or (1 or B, h, w, 1) weights (weighted mean over positions too).

    Returns:
        Scalar float32.
    """
    target_sorted, scale = target
    generated = _check_features(generated, "generated")
    weights = _position_weights(generated, mask)
    flat = _flat(generated)
    matched = quantile_match(flat, target_sorted, weights)
    per_channel = _weighted_mean_over_positions(tf.square(flat - matched), weights)
    return tf.reduce_sum(per_channel) / (scale + 1e-12)


# ------------------------------------------------------------------------------------- MRF


def feature_patches(features: tf.Tensor, stride: int = 1) -> tf.Tensor:
    """Every PATCH x PATCH patch of a feature map that lies inside it, as vectors.

    Args:
        features: (B, h, w, C).
        stride: Step between patches' top-left corners.

    Returns:
        (B, p, 9C) with p = ⌈(h − 2)/stride⌉·⌈(w − 2)/stride⌉, patches in row-major order of
        their top-left corners, each flattened as (row, column, channel).

    Raises:
        ValueError: a map smaller than a patch.
    """
    features = _check_features(features)
    if features.shape[1] < MRF_PATCH or features.shape[2] < MRF_PATCH:
        raise ValueError(f"MRF needs feature maps of at least {MRF_PATCH}x{MRF_PATCH} "
                         f"positions, got {features.shape[1]}x{features.shape[2]}; use a "
                         f"larger image or shallower style layers")
    patches = tf.image.extract_patches(features, sizes=[1, MRF_PATCH, MRF_PATCH, 1],
                                       strides=[1, stride, stride, 1], rates=[1, 1, 1, 1],
                                       padding="VALID")
    return tf.reshape(patches, (features.shape[0], -1, patches.shape[-1]))


def mrf_stride(height: int, width: int, max_patches: int = MRF_MAX_TARGET_PATCHES) -> int:
    """Smallest stride that leaves at most ``max_patches`` patches in an h x w map."""
    stride = 1
    while (math.ceil((height - MRF_PATCH + 1) / stride)
           * math.ceil((width - MRF_PATCH + 1) / stride)) > max_patches:
        stride += 1
    return stride


def mrf_target(features: tf.Tensor, **_) -> tuple[tf.Tensor, tf.Tensor]:
    """The MRF loss's target: the style patches (N_t, 9C) and the same normalised to unit
    length, taken with ``mrf_stride`` so that N_t ≤ ``MRF_MAX_TARGET_PATCHES``."""
    features = _check_features(features)
    stride = mrf_stride(int(features.shape[1]), int(features.shape[2]))
    patches = feature_patches(features, stride)[0]
    return patches, patches / (tf.norm(patches, axis=-1, keepdims=True) + 1e-12)


def check_mrf_pairs(generated: int, target: int) -> None:
    """ValueError unless ``generated`` x ``target`` patch pairs fit ``MRF_MAX_PAIRS``."""
    if generated * target > MRF_MAX_PAIRS:
        raise ValueError(f"MRF would compare {generated} generated with {target} style "
                         f"patches ({generated * target} pairs, limit {MRF_MAX_PAIRS}); use "
                         f"a smaller image or deeper style layers")


def mrf_nearest(generated_patches: tf.Tensor, normalized_target: tf.Tensor) -> tf.Tensor:
    """Index of each generated patch's nearest style patch by normalised cross-correlation.

    NCC(a, b) = aᵀb / (‖a‖‖b‖); ‖a‖ does not change which b wins, so this is the argmax of
    aᵀb̂ over the unit style patches b̂ (a matrix product: the "convolution with normalised
    style patches" of Li & Wand).

    Args:
        generated_patches: (B, p, D).
        normalized_target: (N_t, D) unit vectors.

    Returns:
        (B, p) int indices into the style patches.
    """
    check_mrf_pairs(int(generated_patches.shape[1]), int(normalized_target.shape[0]))
    correlation = tf.matmul(tf.stop_gradient(generated_patches), normalized_target,
                            transpose_b=True)
    return tf.argmax(correlation, axis=-1, output_type=tf.int32)


def mrf_layer_loss(generated: tf.Tensor, target, mask=None, **_) -> tf.Tensor:
    """Σ_b mean((Ψ(F) − Ψ_NN)²) / mean(Ψ(S)²): each 3x3 patch of F against its nearest
    style patch (``mrf_nearest``, a constant), Li & Wand's E_s with means instead of sums.

    Args:
        generated: (B, h, w, C) features F.
        target: (patches (N_t, 9C), unit patches (N_t, 9C)) from ``mrf_target``.
        mask: must be None (refused: ``style_loss_specs``).

    Returns:
        Scalar float32.
    """
    if mask is not None:
        raise ValueError("style_loss 'mrf' does not work with style masks")
    patches, normalized = target
    generated_patches = feature_patches(generated)
    nearest = tf.gather(patches, mrf_nearest(generated_patches, normalized))
    per_image = tf.reduce_mean(tf.square(generated_patches - nearest), axis=[1, 2])
    return tf.reduce_sum(per_image) / (tf.reduce_mean(tf.square(patches)) + 1e-12)
