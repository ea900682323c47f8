"""Content, style and total-variation losses, and the weighted objective built from them.

Two families of definitions live side by side:

* the classic ones (Gatys et al. 2016): ½·Σ(F − P)² for content, and per layer
  E_l = Σ(G − A)² / (4 N_l² M_l²) for style, whose magnitudes differ by orders of
  magnitude between layers and between weight sets;
* normalised ones (relative squared errors, mean TV) whose values are comparable across
  layers, image sizes and weight sets (ImageNet or random). ``stylize`` uses these by
  default so that one set of default weights works everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from nstlib import _checks
from nstlib._options import ConfigError
from nstlib.features import (
    FeatureExtractor,
    deepest_layer,
)
from nstlib.plan import FoundWeights, resolve_loss
from nstlib.pyramids import image_pyramid
from nstlib.settings import (
    CONTENT_REDUCTIONS,
    STYLE_FORMS,
    TV_KINDS,
    TV_REDUCTIONS,
    LossConfig,
    check_style_counts,
)
from nstlib.sizes import pyramid_hws
from nstlib.statistics import gram_matrix, guided_gram, shrink_gram
from nstlib.style_loss_specs import style_loss_spec
from nstlib.vgg_layers import min_input_side, network_spec


def _check(value, allowed, what):
    _checks.check_choice(value, allowed, what)


def content_loss(generated: tf.Tensor, target: tf.Tensor, reduction: str = "sum") -> tf.Tensor:
    """Squared feature distance between a generated and a target activation map.

    Args:
        generated: (B, h, w, c) float32 activations F of the image being optimised.
        target: (B or 1, h, w, c) float32 activations P of the content image.
        reduction: "sum" gives the classic ½·Σ(F − P)² (gradient F − P); "mean" gives
            mean((F − P)²); "normalized" gives Σ(F − P)² / Σ P², a relative error that
            does not depend on the feature scale.

    Returns:
        Scalar float32.
    """
    _check(reduction, CONTENT_REDUCTIONS, "reduction")
    squared = tf.square(generated - target)
    if reduction == "sum":
        return 0.5 * tf.reduce_sum(squared)
    if reduction == "mean":
        return tf.reduce_mean(squared)
    # Sum of P^2 over the target broadcast to the batch: a (1, ...) target counts once
    # per generated image, a (B, ...) target once in total.
    denominator = tf.reduce_sum(tf.square(tf.broadcast_to(target, tf.shape(squared))))
    return tf.reduce_sum(squared) / (denominator + 1e-12)


def layer_style_loss(generated: tf.Tensor, target_gram: tf.Tensor,
                     form: str = "gatys", mask: tf.Tensor | None = None) -> tf.Tensor:
    """Style loss of one layer.

    Args:
        generated: (B, h, w, N) activations of the image being optimised.
        target_gram: (1 or B, N, N) Gram of the style activations, normalised by the
            number of positions ("hw", the default of ``gram_matrix``).
        form: "gatys": E = Σ(G − A)² / (4 N² M²) with unnormalised Grams, computed as
            Σ(Ĝ − Â)² / (4 N²) from the "hw" Grams (identical value); "normalized":
            Σ(Ĝ − Â)² / Σ Â² (relative error, 1 when the generated Gram is zero);
            "mse": mean((Ĝ − Â)²) (the TensorFlow tutorial's choice).
        mask: None, or (1 or B, h, w, 1) weights in [0, 1]: compare the guided Gram of
            the masked region instead (``statistics.guided_gram``; Gatys et al. 2017).

    Returns:
        Scalar float32 (summed over the batch).
    """
    _check(form, STYLE_FORMS, "style form")
    gram = gram_matrix(generated, "hw") if mask is None else guided_gram(generated, mask)
    squared = tf.reduce_sum(tf.square(gram - target_gram), axis=[1, 2])
    channels = tf.cast(tf.shape(gram)[-1], tf.float32)
    if form == "gatys":
        per_image = squared / (4.0 * channels**2)
    elif form == "mse":
        per_image = squared / channels**2
    else:
        per_image = squared / (tf.reduce_sum(tf.square(target_gram), axis=[1, 2]) + 1e-12)
    return tf.reduce_sum(per_image)


def style_loss(generated_features: Sequence[tf.Tensor], target_grams: Sequence[tf.Tensor],
               layer_weights: Sequence[float] | None = None, form: str = "gatys",
               gram_shrinkage=None,
               target_features: Sequence[tf.Tensor] | None = None,
               masks: Sequence[tf.Tensor] | None = None) -> tf.Tensor:
    """Weighted sum of per-layer style losses, Σ_l w_l E_l.

    Args:
        generated_features: One (B, h_l, w_l, N_l) tensor per style layer.
        target_grams: One (1 or B, N_l, N_l) "hw"-normalised Gram per style layer.
        layer_weights: w_l per layer; default 1/L each (Gatys et al. used equal weights).
        form: Per-layer definition, see ``layer_style_loss``.
        gram_shrinkage: None, a λ in [0, 1] or "ledoit-wolf": shrink the TARGET Grams
            towards (tr A / N)·I first (see ``shrink_style_targets``).
        target_features: The (1, h_l, w_l, N_l) style activations the target Grams came
            from; needed only for "ledoit-wolf".
        masks: None, or one (1, h_l, w_l, 1) mask per layer: guided Grams of the masked
            region (see ``layer_style_loss``).

    Returns:
        Scalar float32.
    """
    if len(generated_features) != len(target_grams):
        raise ValueError(f"{len(generated_features)} feature maps but {len(target_grams)} "
                         f"target Grams")
    target_grams = shrink_style_targets(target_grams, gram_shrinkage, target_features)
    n_layers = len(generated_features)
    weights = [1.0 / n_layers] * n_layers if layer_weights is None else list(layer_weights)
    if len(weights) != n_layers:
        raise ValueError(f"{len(weights)} layer weights for {n_layers} style layers")
    masks = [None] * n_layers if masks is None else list(masks)
    total = tf.constant(0.0)
    for weight, features, gram, mask in zip(weights, generated_features, target_grams, masks,
                                            strict=True):
        total += weight * layer_style_loss(features, gram, form, mask)
    return total


def shrink_style_targets(target_grams: Sequence[tf.Tensor], gram_shrinkage=None,
                         target_features: Sequence[tf.Tensor] | None = None) -> list:
    """Apply Gram shrinkage to per-layer style targets (``statistics.shrink_gram``).

    Args:
        target_grams: One (1, N_l, N_l) "hw"-normalised Gram per style layer.
        gram_shrinkage: None (targets unchanged), a λ in [0, 1], or "ledoit-wolf" (one λ
            per layer estimated from ``target_features``); the target is (tr A / N)·I.
        target_features: One (1, h_l, w_l, N_l) activation map per layer, or None.

    Returns:
        List of (1, N_l, N_l) Grams.
    """
    if gram_shrinkage is None:
        return list(target_grams)
    if gram_shrinkage == "ledoit-wolf":
        if target_features is None or len(target_features) != len(target_grams):
            raise ValueError("gram_shrinkage='ledoit-wolf' needs the style features of "
                             "every style layer")
        return [shrink_gram(gram, "ledoit-wolf", features)
                for gram, features in zip(target_grams, target_features, strict=True)]
    return [shrink_gram(gram, gram_shrinkage) for gram in target_grams]


def pyramid_style_targets(extractor: FeatureExtractor, style_image: tf.Tensor,
                          levels: int = 1, sigma: float = 1.0,
                          gram_shrinkage=None) -> list[list[tf.Tensor]]:
    """Style Grams of every level of the style image's Gaussian pyramid.

    Args:
        extractor: Feature extractor with the style layers.
        style_image: (1, H_s, W_s, 3) in [0, 1].
        levels: Pyramid levels (1: the image only); see ``pyramids.image_pyramid``.
        sigma: Blur of each pyramid step, in pixels.
        gram_shrinkage: Applied to every Gram, see ``shrink_style_targets``.

    Returns:
        ``levels`` lists (finest first) of one (1, N_l, N_l) Gram per style layer.
    """
    check_pyramid_size(extractor, style_image.shape, levels, "style image")
    targets = []
    for level in image_pyramid(style_image, levels, sigma):
        features = extractor(level).style
        grams = [gram_matrix(f) for f in features]
        targets.append(shrink_style_targets(grams, gram_shrinkage, features))
    return targets


def check_pyramid_size(extractor: FeatureExtractor, shape, levels: int,
                       what: str = "image") -> None:
    """Refuse pyramids whose coarsest level is smaller than the deepest style layer's stride.

    Raises:
        ValueError: naming the level size and the minimum, e.g. 16 px for block5_conv1.
    """
    if not extractor.style_layers:
        return
    layer = deepest_layer(extractor.style_layers, extractor.network)
    stride = min_input_side(layer, extractor.network)
    side = min(pyramid_hws((int(shape[1]), int(shape[2])), levels)[-1])
    if side < stride:
        raise ValueError(f"{what}: pyramid level {int(levels) - 1} has a shorter side of "
                         f"{side} px, but {layer} needs at least {stride} px; use fewer "
                         f"pyramid levels or a larger image")


def pyramid_style_loss(generated_features: Sequence[Sequence[tf.Tensor]],
                       target_grams: Sequence[Sequence[tf.Tensor]],
                       level_weights: Sequence[float] | None = None,
                       layer_weights: Sequence[float] | None = None,
                       form: str = "gatys",
                       masks: Sequence[Sequence[tf.Tensor]] | None = None) -> tf.Tensor:
    """Style loss summed over pyramid levels, Σ_k v_k Σ_l w_l E_{k,l}.

    Level k compares the features of the generated image's level-k pyramid image with
    the Grams of the style image's level-k pyramid image, so a motif is matched at its
    own size and at 1/2, 1/4, … of it.

    Args:
        generated_features: Per level, one (B, h_kl, w_kl, N_l) tensor per style layer.
        target_grams: Per level, one (1 or B, N_l, N_l) Gram per style layer.
        level_weights: v_k per level; default 1/K each (so that K levels weigh as much in
            total as one, and ``style_weight`` needs no retuning). With one level and
            the default this is exactly ``style_loss``.
        layer_weights, form: As in ``style_loss``.
        masks: None, or per level one (1, h_kl, w_kl, 1) mask per style layer.

    Returns:
        Scalar float32.
    """
    n_levels = len(generated_features)
    if n_levels != len(target_grams):
        raise ValueError(f"{n_levels} generated pyramid levels but {len(target_grams)} "
                         f"target levels")
    weights = [1.0 / n_levels] * n_levels if level_weights is None else list(level_weights)
    if len(weights) != n_levels:
        raise ValueError(f"{len(weights)} level weights for {n_levels} pyramid levels")
    masks = [None] * n_levels if masks is None else list(masks)
    total = tf.constant(0.0)
    for weight, features, grams, level_masks in zip(weights, generated_features, target_grams,
                                                    masks, strict=True):
        total += weight * style_loss(features, grams, layer_weights, form, masks=level_masks)
    return total


def total_variation_loss(image: tf.Tensor, kind: str = "l1", reduction: str = "sum") -> tf.Tensor:
    """Total variation of an image: how much neighbouring pixels differ.

    With Δx = x[:, :, 1:] − x[:, :, :-1] and Δy = x[:, 1:] − x[:, :-1]:
    "l1" (anisotropic) Σ|Δx| + Σ|Δy|; "isotropic" Σ √(Δx² + Δy² + ε) over the
    (H−1)×(W−1) pixels that have both neighbours (ε = 1e-12 keeps the gradient finite
    in flat regions); "squared" ΣΔx² + ΣΔy².

    Args:
        image: (B, H, W, C) float32.
        kind: "l1", "isotropic" or "squared".
        reduction: "sum", or "mean" (divided by B·H·W·C so that the value does not
            grow with the image size).

    Returns:
        Scalar float32.
    """
    _check(kind, TV_KINDS, "TV kind")
    _check(reduction, TV_REDUCTIONS, "TV reduction")
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    if kind == "l1":
        total = tf.reduce_sum(tf.abs(dx)) + tf.reduce_sum(tf.abs(dy))
    elif kind == "squared":
        total = tf.reduce_sum(tf.square(dx)) + tf.reduce_sum(tf.square(dy))
    else:
        total = tf.reduce_sum(tf.sqrt(tf.square(dx[:, :-1]) + tf.square(dy[:, :, :-1]) + 1e-12))
    if reduction == "mean":
        total /= tf.cast(tf.size(image), tf.float32)
    return total


def blend_weights(style_blend: Sequence[float] | None, n_styles: int) -> list[float]:
    """The weight of each style image, normalised to sum to 1 (as neural-style does).

    Args:
        style_blend: Non-negative weights, one per style image, or None (equal weights).
        n_styles: Number of style images.

    Returns:
        ``n_styles`` floats summing to 1 (zero weights stay exactly 0).

    Raises:
        ConfigError: no style image, or a count that does not match
            (``settings.check_style_counts``).
    """
    check_style_counts(n_styles, style_blend)
    if style_blend is None:
        return [1.0 / n_styles] * n_styles
    total = float(sum(style_blend))
    return [float(w) / total for w in style_blend]


def blend_targets(targets: Sequence[Sequence[Sequence[tf.Tensor]]],
                  weights: Sequence[float]) -> list[list[tf.Tensor]]:
    """Blended Gram targets Σ_i w_i A_i^(k,l): the Grams of the styles' mixture.

    Args:
        targets: Per style image, per pyramid level, one (1, N_l, N_l) Gram per layer.
        weights: One weight per style image (normalised, ``blend_weights``).

    Returns:
        Per level, one (1, N_l, N_l) Gram per layer.
    """
    levels = zip(*targets, strict=True)
    return [[tf.add_n([w * gram for w, gram in zip(weights, grams, strict=True)])
             for grams in zip(*level, strict=True)] for level in levels]


def _styles_and_blend(style_image, style_masks, style_blend) -> tuple[list, list[float]]:
    """The style images as a list and their blend weights; one mask per style or none.

    Raises:
        ConfigError: a mask count that differs from the style count.
    """
    styles = list(style_image) if isinstance(style_image, list | tuple) else [style_image]
    weights = blend_weights(style_blend, len(styles))  # checks the style and blend counts
    check_style_counts(len(styles), n_masks=None if style_masks is None else len(style_masks))
    return styles, weights


class StyleTransferObjective:
    """α·L_content + β·L_style + γ·L_tv, with the targets computed once.

    Args:
        extractor: Feature extractor; its content and style layers are the loss's layers.
        content_image: (1, H, W, 3) in [0, 1]; its content-layer features are the target.
        style_image: (1, H_s, W_s, 3) in [0, 1]; its style-layer Grams are the target. Or a
            list of such images, weighted by ``config.style_blend`` (``blend_weights``).
        config: The loss settings (default ``LossConfig()``). Its layers must be the
            extractor's; when ``config`` is None they are taken from the extractor.
        style_masks: None, or one (1, H_m, W_m, 1) mask in [0, 1] per style image, over
            the generated image (resized here to each style layer's grid).
        seed: Seed of a random style loss's draws ("sliced_wasserstein"; ``stylize``
            passes the run's seed).
        **overrides: ``LossConfig`` fields over ``config``, e.g. ``style_weight=100``.

    With ``pyramid_levels`` K > 1 the style term is ``pyramid_style_loss`` over K
    Gaussian-pyramid levels of the generated and the style image (the targets of every
    level computed once here). ``gram_shrinkage`` shrinks the target Grams at every level
    (``shrink_style_targets``).

    Several styles without masks blend their Gram targets, Σ_i w_i A_i, one target per
    layer (what jcjohnson/neural-style does): the Gram of the styles' mixed feature
    distribution, so that the weights mean the same in every ``style_form``. Weighting
    per-style losses instead agrees with that for "gatys" and "mse" (the sum of squared
    distances to each A_i is minimised at their weighted mean) but not for "normalized",
    where each term is divided by its own ‖A_i‖² and the style with the smaller Gram
    pulls harder than its weight says. With masks the regions have their own targets, so
    the style term is Σ_i ω_i L_i over guided Grams (Gatys et al. 2017), ω_i = w_i /
    mean(w): equal weights style every region as strongly as one style over the whole
    image. Styles of weight 0 are dropped before anything is computed, so weights (1, 0)
    give exactly the run of the first style alone.

    ``style_loss`` other than "gram" (``nstlib.style_losses``, one record each in
    ``nstlib.style_loss_specs``) computes that loss's targets per style image, pyramid
    level and style layer (the deepest two layers only for "mrf"), and the style term
    Σ_i ω_i Σ_k v_k Σ_l w_l L(F_kl, T_ikl): several styles without masks weigh their
    losses by the normalised blend weights (mixing targets such as sorted samples or
    patches has no meaning), with masks as the guided Grams do (ω_i = w_i / mean(w));
    "mrf" refuses masks. "sliced_wasserstein" draws new directions at every call, from
    a stateless generator keyed on ``seed`` and a call counter: the same seed gives the
    same run, and the losses the history records (and the guard compares) are each
    measured with that step's directions.

    Calling it on a (1, H, W, 3) image returns a dict of scalar tensors with keys
    "total", "content", "style" and "tv" (the last three unweighted).

    Attributes:
        config: The ``LossConfig`` in use.
        style_targets: One (1, N_l, N_l) target Gram per style layer (finest level).
        style_targets_per_level: ``pyramid_levels`` such lists, finest first.
    """

    def __init__(self, extractor: FeatureExtractor, content_image: tf.Tensor,
                 style_image: tf.Tensor | Sequence[tf.Tensor],
                 config: LossConfig | None = None, *,
                 style_masks: Sequence[tf.Tensor] | None = None, seed: int = 0,
                 **overrides):
        self.config = _objective_config(extractor, config, overrides)
        cfg = self.config
        self.spec = style_loss_spec(cfg.style_loss)
        if style_masks is not None:
            self.spec.check_masks(error=ConfigError)
        self.extractor = extractor
        if cfg.style_loss != "gram":
            self._init_other(content_image, style_image, style_masks, seed)
            return
        self.weights = (cfg.content_weight, cfg.style_weight, cfg.tv_weight)
        self.content_targets = [tf.constant(f) for f in extractor(content_image).content]
        check_pyramid_size(extractor, content_image.shape, cfg.pyramid_levels, "content image")
        styles, weights = _styles_and_blend(style_image, style_masks, cfg.style_blend)
        active = [i for i, w in enumerate(weights) if w > 0]
        targets = [self._targets(styles[i]) for i in active]
        self.style_terms = None  # with masks: (weight, targets per level, masks per level)
        if style_masks is None:
            self.style_targets_per_level = targets[0] if len(active) == 1 else blend_targets(
                targets, [weights[i] for i in active])
        else:
            self.style_targets_per_level = targets[0]
            mean = sum(weights[i] for i in active) / len(active)
            grids = self._style_grids(content_image)
            self.style_terms = [(weights[i] / mean, target, _masks_on(style_masks[i], grids))
                                for i, target in zip(active, targets, strict=True)]
        self.style_targets = self.style_targets_per_level[0]

    def _init_other(self, content_image, style_image, style_masks, seed: int) -> None:
        """The targets of a style loss other than the Gram's (``style_loss_specs``): per
        style image, per pyramid level, one target per used style layer; the style term
        is Σ_i ω_i Σ_k v_k Σ_l w_l L(F_kl, T_ikl, mask) (``_other_style``)."""
        cfg, spec, extractor = self.config, self.spec, self.extractor
        self.weights = (cfg.content_weight, cfg.style_weight, cfg.tv_weight)
        content_features = extractor(content_image)
        self.content_targets = [tf.constant(f) for f in content_features.content]
        check_pyramid_size(extractor, content_image.shape, cfg.pyramid_levels, "content image")
        styles, weights = _styles_and_blend(style_image, style_masks, cfg.style_blend)
        layers = list(extractor.style_layers)
        used = sorted(range(len(layers)), key=lambda i: network_spec(
            extractor.network).layer_names.index(layers[i]))
        used = sorted(used[-spec.deepest_layers:] if spec.deepest_layers else used)
        self.used_style_layers = [layers[i] for i in used]
        self.layer_weights = ([1.0 / len(used)] * len(used) if cfg.style_layer_weights is None
                              else [cfg.style_layer_weights[i] for i in used])
        self.level_weights = ([1.0 / cfg.pyramid_levels] * cfg.pyramid_levels
                              if cfg.pyramid_level_weights is None
                              else list(cfg.pyramid_level_weights))
        self.options = {name: getattr(cfg, name) for name in spec.settings}
        target_fn, self.layer_loss = spec.functions()
        active = [i for i, w in enumerate(weights) if w > 0]
        if style_masks is None:  # Σ w_i L_i with the normalised blend weights
            factors, masks = [weights[i] for i in active], [None] * len(active)
        else:  # ω_i = w_i / mean(w), as the guided Grams
            mean = sum(weights[i] for i in active) / len(active)
            grids = self._style_grids(content_image)
            factors = [weights[i] / mean for i in active]
            masks = [[[level[j] for j in used] for level in _masks_on(style_masks[i], grids)]
                     for i in active]
        self.style_terms = []
        for i, factor, mask in zip(active, factors, masks, strict=True):
            targets = []
            for level in image_pyramid(styles[i], cfg.pyramid_levels, cfg.pyramid_sigma):
                features = extractor(level).style
                targets.append([tf.nest.map_structure(tf.constant, target_fn(
                    features[j], **self.options)) for j in used])
            self.style_terms.append((factor, targets, mask))
        if spec.name == "mrf":  # refuse too many pairs now rather than at the first step
            from nstlib.style_losses import MRF_PATCH, check_mrf_pairs
            for j, target in zip(used, self.style_terms[0][1][0], strict=True):
                _, h, w, _ = content_features.style[j].shape
                check_mrf_pairs(max(h - MRF_PATCH + 1, 0) * max(w - MRF_PATCH + 1, 0),
                                int(target[0].shape[0]))
        self.style_targets_per_level = [term[1] for term in self.style_terms][0]
        self.style_targets = self.style_targets_per_level[0]
        self._seed = int(seed)
        self._evaluations = tf.Variable(0, dtype=tf.int64, trainable=False) if spec.random \
            else None

    def _other_style(self, image: tf.Tensor, finest_features: list) -> tf.Tensor:
        """Style term of a style loss other than the Gram's (see ``_init_other``)."""
        cfg, spec = self.config, self.spec
        coarser = image_pyramid(image, cfg.pyramid_levels, cfg.pyramid_sigma)[1:]
        generated = [finest_features] + [self.extractor(level).style for level in coarser]
        layers = list(self.extractor.style_layers)
        used = [layers.index(name) for name in self.used_style_layers]
        options = dict(self.options)
        if spec.random:  # fresh draws at every evaluation, keyed on (seed, counter)
            key = tf.stack([tf.constant(self._seed, tf.int64), self._evaluations.assign_add(1)])
        total = tf.constant(0.0)
        for factor, targets, masks in self.style_terms:
            term = tf.constant(0.0)
            for k, (level_weight, features, level_targets) in enumerate(zip(
                    self.level_weights, generated, targets, strict=True)):
                level = tf.constant(0.0)
                for n, (j, layer_weight, target) in enumerate(zip(
                        used, self.layer_weights, level_targets, strict=True)):
                    if spec.random:
                        options["seed"] = tf.random.experimental.stateless_fold_in(
                            key, k * len(used) + n)
                    mask = None if masks is None else masks[k][n]
                    level += layer_weight * self.layer_loss(features[j], target, mask,
                                                            **options)
                term += level_weight * level
            total += factor * term
        return total

    def _targets(self, style_image: tf.Tensor) -> list[list[tf.Tensor]]:
        """One style image's target Grams, per pyramid level, per style layer."""
        cfg = self.config
        return [[tf.constant(gram) for gram in level] for level in pyramid_style_targets(
            self.extractor, style_image, cfg.pyramid_levels, cfg.pyramid_sigma,
            cfg.gram_shrinkage)]

    def _style_grids(self, image: tf.Tensor) -> list[list[tuple[int, int]]]:
        """(h, w) of every style layer at every pyramid level of an image of this size."""
        cfg = self.config
        levels = image_pyramid(image, cfg.pyramid_levels, cfg.pyramid_sigma)
        return [[(int(f.shape[1]), int(f.shape[2])) for f in self.extractor(level).style]
                for level in levels]

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        cfg = self.config
        features = self.extractor(image)
        zero = tf.constant(0.0)
        content = zero
        for generated, target in zip(features.content, self.content_targets, strict=True):
            content += content_loss(generated, target, cfg.content_reduction)
        if self.content_targets:
            content /= len(self.content_targets)
        style = self._style(image, features.style) if self.style_targets else zero
        tv = total_variation_loss(image, cfg.tv_kind, cfg.tv_reduction)
        alpha, beta, gamma = self.weights
        total = alpha * content + beta * style + gamma * tv
        return {"total": total, "content": content, "style": style, "tv": tv}

    def _style(self, image: tf.Tensor, finest_features: list) -> tf.Tensor:
        """Style term: plain for one level, else over the image's pyramid (finest reused)."""
        cfg = self.config
        if cfg.style_loss != "gram":
            return self._other_style(image, finest_features)
        if self.style_terms is not None:
            return self._guided_style(image, finest_features)
        if cfg.pyramid_levels == 1:
            return style_loss(finest_features, self.style_targets, cfg.style_layer_weights,
                              cfg.style_form)
        coarser = image_pyramid(image, cfg.pyramid_levels, cfg.pyramid_sigma)[1:]
        generated = [finest_features] + [self.extractor(level).style for level in coarser]
        return pyramid_style_loss(generated, self.style_targets_per_level,
                                  cfg.pyramid_level_weights, cfg.style_layer_weights,
                                  cfg.style_form)

    def _guided_style(self, image: tf.Tensor, finest_features: list) -> tf.Tensor:
        """Σ_i ω_i L_i with each style's guided Grams over its mask (finest level reused)."""
        cfg = self.config
        coarser = image_pyramid(image, cfg.pyramid_levels, cfg.pyramid_sigma)[1:]
        generated = [finest_features] + [self.extractor(level).style for level in coarser]
        total = tf.constant(0.0)
        for weight, targets, masks in self.style_terms:
            total += weight * pyramid_style_loss(generated, targets, cfg.pyramid_level_weights,
                                                 cfg.style_layer_weights, cfg.style_form,
                                                 masks)
        return total


def _masks_on(mask: tf.Tensor, grids: list[list[tuple[int, int]]]) -> list[list[tf.Tensor]]:
    """A (1, H, W, 1) mask resized (area average, antialiased) to every (h, w) in grids."""
    mask = tf.convert_to_tensor(mask, tf.float32)
    if mask.shape.rank != 4 or mask.shape[0] != 1 or mask.shape[-1] != 1:
        raise ValueError(f"a style mask must have shape (1, H, W, 1), got {mask.shape}")
    resized = {}
    for level in grids:
        for hw in level:
            if hw not in resized:
                resized[hw] = tf.constant(tf.clip_by_value(tf.image.resize(
                    mask, hw, method="area", antialias=True), 0.0, 1.0))
    return [[resized[hw] for hw in level] for level in grids]


def _objective_config(extractor: FeatureExtractor, config: LossConfig | None,
                      overrides: dict) -> LossConfig:
    """``config`` plus overrides, with layers checked against (or taken from) the extractor.

    A run passes its plan's loss settings, resolved already (``plan.make_plan``); settings
    still at None (an objective built by hand) are resolved for the extractor's weights
    by ``plan.resolve_loss``, the run's own recipe step, never looked up here.
    """
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(LossConfig)})
    if unknown:
        raise ConfigError(f"unknown loss setting {unknown[0]!r}; LossConfig fields: "
                          f"{', '.join(f.name for f in dataclasses.fields(LossConfig))}")
    layers = {"content_layers": tuple(extractor.content_layers),
              "style_layers": tuple(extractor.style_layers)}
    # layers left open are the extractor's; the other open settings its weights' recipe's
    config = config or LossConfig()
    config = dataclasses.replace(config, **{**{k: v for k, v in layers.items()
                                               if getattr(config, k) is None}, **overrides})
    config = resolve_loss(config, FoundWeights(extractor.weights_source, extractor.network))
    for name, value in layers.items():
        if getattr(config, name) != value:
            raise ConfigError(f"the extractor's {name.replace('_', ' ')} {list(value)} differ "
                              f"from the loss config's {list(getattr(config, name))}")
    return config
