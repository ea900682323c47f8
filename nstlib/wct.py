"""Whitening-colouring: covariance spectra, whitening, colouring, WCT stylisation.

This module owns the whitening-colouring transform (Li et al. 2017) and everything built on
it: per-image channel covariances and their eigendecomposition, the energy kept by a
rank-k truncation, ``whiten``/``color``/``wct`` on feature maps, and the optimisation-based
"decoder" (feature inversion at one layer) that ``wct_stylize`` chains from deep to shallow
layers. Notebook 08 (``08_whitening_coloring.ipynb``) teaches it; per-channel moments
(IN/BN/AdaIN) and Gram shrinkage stay in ``nstlib.statistics``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from nstlib import images
from nstlib._options import field_infos
from nstlib.features import FeatureExtractor
from nstlib.losses import content_loss, total_variation_loss
from nstlib.optimize import History, OptimizationResult, minimize
from nstlib.plan import make_plan
from nstlib.reproducibility import set_seed
from nstlib.settings import (
    DEFAULT_INVERSION_TV_WEIGHT,
    DEFAULT_WCT_LAYERS,  # noqa: F401 - re-exported (wct.DEFAULT_WCT_LAYERS)
    SECTIONS,
    WCT_UNUSED,
    ConfigError,
    LossConfig,
    OptimConfig,
    StylizeConfig,
    WCTConfig,
    unknown_setting_message,
)
from nstlib.statistics import _check_rank4
from nstlib.transfer import (
    StylizeResult,
    _find_weights,
    cached_extractor,
    extractor_for,
    run_record,
)

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

#: Steps per level of ``wct_stylize``'s default config (each level is one inversion).
DEFAULT_LEVEL_STEPS = 100
#: ``wct_stylize``'s config when none is given: ``StylizeConfig()`` with 100 steps per level
#: under a constant learning rate (the inversions start from a good image, the previous
#: level's, so the cosine schedule's high start and its guard buy nothing).
DEFAULT_WCT_CONFIG = StylizeConfig(optim=OptimConfig(steps=DEFAULT_LEVEL_STEPS,
                                                     schedule="constant"))


@dataclass
class WCTStylizeResult(StylizeResult):
    """``StylizeResult`` of ``wct_stylize`` plus the image after each level.

    Attributes:
        level_images: One (1, H, W, 3) float32 image per level, in level order (the last
            one is ``image``). The history has a "level" column.

    ``record`` is ``stylize``'s record (``transfer.run_record``, same keys) plus
    ``WCT_RECORD_KEYS``.
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
                    schedule: str = "constant", guard: bool | None = None,
                    callbacks: Sequence = (), progress: bool = True) -> OptimizationResult:
    """An image whose activations at the extractor's content layer match ``target``.

    Args:
        extractor: Extractor with exactly one content layer.
        target: (1, h, w, c) target activations; h, w must be those of ``init``'s.
        init: (1, H, W, 3) starting image in [0, 1].
        steps, optimizer, learning_rate, schedule, guard, callbacks, progress: As in
            ``minimize``.
        tv_weight: See ``feature_inversion_loss``.

    Returns:
        ``OptimizationResult`` (image (1, H, W, 3) in [0, 1], history with "content",
        the relative feature error, and "tv").
    """
    loss_fn = feature_inversion_loss(extractor, target, tv_weight)
    return minimize(loss_fn, init, steps=steps, optimizer=optimizer,
                    learning_rate=learning_rate, schedule=schedule, guard=guard,
                    callbacks=callbacks, progress=progress,
                    description=f"invert {extractor.content_layers[0]}")


def wct_level(image: tf.Tensor, style_image: tf.Tensor, extractor: FeatureExtractor, *,
              alpha: float = 1.0, eps: float = 1e-5, rank: int | None = None,
              steps: int = 100, tv_weight: float = DEFAULT_INVERSION_TV_WEIGHT,
              optimizer: str = "adam", learning_rate: float | None = None,
              schedule: str = "constant", guard: bool | None = None,
              progress: bool = True) -> OptimizationResult:
    """One WCT level: transform ``image``'s features towards the style's, then invert.

    Args:
        image: (1, H, W, 3) in [0, 1]: the content (first level) or the previous level's
            result; it is also the starting point of the inversion.
        style_image: (1, H_s, W_s, 3) in [0, 1].
        extractor: Extractor with exactly one content layer (the level's layer).
        alpha, eps, rank: See ``wct``.
        steps, tv_weight, optimizer, learning_rate, schedule, guard, progress: See
            ``invert_features``.

    Returns:
        ``OptimizationResult`` of the inversion.
    """
    target = wct(extractor(image).content[0], extractor(style_image).content[0], alpha, eps,
                 rank)
    return invert_features(extractor, target, image, steps=steps, tv_weight=tv_weight,
                           optimizer=optimizer, learning_rate=learning_rate,
                           schedule=schedule, guard=guard, progress=progress)


#: What a ``wct_stylize`` record has beyond ``stylize``'s keys.
WCT_RECORD_KEYS = ("method", *field_infos(WCTConfig))


def wct_settings(config: StylizeConfig | None = None, settings: WCTConfig | None = None,
                 **overrides) -> tuple[StylizeConfig, WCTConfig]:
    """The ``StylizeConfig`` and ``WCTConfig`` of a ``wct_stylize`` call (checked, before any
    work).

    Args:
        config: The run's settings (default ``DEFAULT_WCT_CONFIG``).
        settings: The WCT levels' settings (default ``WCTConfig()``).
        **overrides: By flat name, over either: ``WCTConfig`` names (layers, alpha, eps,
            rank, inversion_tv_weight) and ``StylizeConfig`` names (size, steps,
            weights, ...). ``network="vgg16"`` is read as ``architecture`` (its old name
            here).

    Raises:
        ConfigError: an unknown name, a bad value, or a setting ``wct_stylize`` does not
            use (``WCT_UNUSED``, the loss settings) set away from its default.
    """
    if isinstance(overrides.get("network"), str):
        overrides["architecture"] = overrides.pop("network")
    wct_names = field_infos(WCTConfig)
    infos = {**StylizeConfig.flat_fields(), **wct_names}
    unknown = [name for name in overrides if name not in infos and name not in SECTIONS]
    if unknown:
        raise ConfigError(unknown_setting_message(unknown[0], infos))
    settings = dataclasses.replace(settings or WCTConfig(),
                                   **{k: v for k, v in overrides.items() if k in wct_names})
    config = (config or DEFAULT_WCT_CONFIG).replace(
        **{k: v for k, v in overrides.items() if k not in wct_names})
    unused = [name for name in (*WCT_UNUSED, *field_infos(LossConfig))
              if name in config.non_default() or name in overrides]
    if unused:
        hint = (" (the inversions' total-variation weight is inversion_tv_weight)"
                if "tv_weight" in unused else "")
        raise ConfigError(f"wct_stylize does not use {', '.join(unused)}: leave "
                          f"{'it' if len(unused) == 1 else 'them'} unset{hint}")
    return config, settings


def wct_stylize(content, style, config: StylizeConfig | None = None,
                settings: WCTConfig | None = None, *, progress: bool = True,
                **overrides) -> WCTStylizeResult:
    """Multi-level whitening-colouring style transfer with optimisation as the decoder.

    For each layer in ``settings.layers`` (deep to shallow): WCT of the current image's
    features with the style's at that layer, then ``steps`` inversion steps starting from
    the current image. The first level starts from the content image.

    The run is planned once, like ``stylize``'s, after its weights are found
    (``nstlib.plan.make_plan``): the network, pooling and random weights' first layer come
    from the recipe of the weights found, the image sizes from the plan. (The plan's
    memory and time predictions are those of ``stylize``'s model; the memory is not
    checked here.)

    Args:
        content, style: Images in any form ``images.load_image`` accepts (one style).
        config: The run's settings (default ``DEFAULT_WCT_CONFIG``: 100 steps per level,
            constant learning rate). Used: size, style_size or style_scale, steps (per
            level), optimizer, learning_rate, schedule, guard, the network section
            (weights, architecture, pooling, ...), seed, deterministic. The others
            (``WCT_UNUSED`` and the loss section) must stay at their defaults.
        settings: The levels: layers, alpha, eps, rank (see ``wct``) and
            inversion_tv_weight (see ``feature_inversion_loss``); default ``WCTConfig()``.
        progress: Show a progress bar per level.
        **overrides: Settings by flat name over ``config`` and ``settings``, e.g.
            ``size=128, steps=50, layers=("block2_conv1", "block1_conv1"), alpha=0.5``
            (``wct_settings``).

    Returns:
        ``WCTStylizeResult``: final (1, H, W, 3) image, one image per level, the history
        of all levels (steps numbered consecutively, with a "level" column), the record
        (``transfer.run_record``'s, as ``stylize``'s, plus ``WCT_RECORD_KEYS``: "method"
        "wct" and the ``WCTConfig``) and the plan.

    Raises:
        nstlib.ConfigError: see ``wct_settings``; ValueError: a layer the network lacks
            (before any level runs).
    """
    config, settings = wct_settings(config, settings, **overrides)
    set_seed(config.seed, config.deterministic)
    started = time.perf_counter()
    content_full, style_full = images.load_image(content), images.load_image(style)
    weights = _find_weights(config)
    plan = make_plan(config, content_full.shape[1:3], style_full.shape[1:3], weights)
    config, stage = plan.config, plan.stages[0]
    content_image = images.at_size(content_full, stage.content_hw)
    style_image = images.at_size(style_full, stage.style_hws[0])
    # Every level's extractor first: a layer the network lacks (VGG16 has no block3_conv4)
    # fails here, before any level has spent its steps.
    extractors = [extractor_for(plan, weights, layers=((layer,), ()))
                  for layer in settings.layers]
    parts, level_images, image, offset = [], [], content_image, 0.0
    for level, extractor in enumerate(extractors):
        outcome = wct_level(image, style_image, extractor, alpha=settings.alpha,
                            eps=settings.eps, rank=settings.rank, steps=stage.steps,
                            tv_weight=settings.inversion_tv_weight,
                            optimizer=config.optim.optimizer,
                            learning_rate=config.optim.learning_rate,
                            schedule=config.optim.schedule_used(),
                            guard=config.optim.guard_used(), progress=progress)
        parts.append((level, outcome.history, offset))  # seconds run on across levels
        offset += outcome.history.rows[-1]["seconds"] if outcome.history.rows else 0.0
        image = outcome.image
        level_images.append(image)
        if outcome.status != "completed":
            break
    record = run_record(plan, content, style, extractor, outcome,
                        content_image=content_image, style_images=[style_image],
                        steps_done=sum(int(part.rows[-1]["step"]) for _, part, _ in parts
                                       if part.rows),
                        started=started)
    record.update(method="wct", **settings.to_dict())
    return WCTStylizeResult(image, History.joined(parts, "level"), record, plan,
                            level_images=level_images)
