"""``stylize``: the one high-level call, from two images to a stylised image and its record."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from nstlib import images
from nstlib.features import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor
from nstlib.losses import StyleTransferObjective, content_loss, total_variation_loss
from nstlib.optimize import History, OptimizationResult, minimize
from nstlib.reproducibility import environment_record, set_seed
from nstlib.statistics import wct

INITS = ("content", "noise", "style")

#: Default loss weights for the normalised objective (relative content error, mean
#: relative Gram error per layer, mean absolute TV); see ``StyleTransferObjective``.
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 10.0
DEFAULT_TV_WEIGHT = 1.0


@dataclass
class StylizeResult:
    """Outcome of ``stylize``.

    Attributes:
        image: (1, H, W, 3) float32 in [0, 1].
        history: Per-step total, content, style and tv losses and elapsed seconds.
        config: Everything needed to reproduce the run (arguments, resolved weights
            source, image sizes, library and TensorFlow versions, seed) plus its outcome.
    """

    image: tf.Tensor
    history: History
    config: dict

    @property
    def losses(self) -> dict:
        """Final losses (the last history row)."""
        return self.history.final

    def record(self) -> dict:
        """The JSON record: config, final losses and the full per-step history."""
        return {**self.config, "final": self.losses, "history": self.history.to_dict()}

    def save(self, path, inputs: Sequence = ()) -> tuple[Path, Path]:
        """Write the image and, next to it, ``<name>.json`` with ``record()`` (atomically).

        Args:
            path: Image destination (.png or .jpg).
            inputs: Input image paths that must not be overwritten.

        Returns:
            (image path, record path).
        """
        image_path = images.save_image(self.image, path, inputs=inputs)
        return image_path, write_json(self.record(), Path(path).with_suffix(".json"))


def write_json(data: dict, path) -> Path:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@functools.lru_cache(maxsize=8)
def cached_extractor(content_layers: tuple, style_layers: tuple, weights, pooling: str,
                     seed: int, compute_dtype: str = "float32") -> FeatureExtractor:
    """A ``FeatureExtractor`` reused across runs with identical settings."""
    return FeatureExtractor(content_layers, style_layers, weights=weights, pooling=pooling,
                            seed=seed, compute_dtype=compute_dtype)


def _describe_source(source) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return f"array {tuple(getattr(source, 'shape', ()))}"


def initial_image(init: str, content: tf.Tensor, style: tf.Tensor, seed: int) -> tf.Tensor:
    """The starting image: the content, uniform noise, or the style resized to the content.

    Returns:
        (1, H, W, 3) float32 in [0, 1] with the content's height and width.
    """
    if init == "content":
        return content
    if init == "noise":
        return tf.random.stateless_uniform(content.shape, seed=[seed, 1], dtype=tf.float32)
    if init == "style":
        return images.resize(style, (int(content.shape[1]), int(content.shape[2])))
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def check_scales(scales: Sequence[int] | None, size: int) -> list[int]:
    """The longer sides to optimise at, coarse to fine: ``[size]`` when ``scales`` is None."""
    if scales is None:
        if int(size) <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        return [int(size)]
    scales = [int(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty sequence of positive sizes, got {scales}")
    return scales


def steps_per_scale(steps: int | Sequence[int], n_scales: int) -> list[int]:
    """Steps at each scale: one int for every scale, or one entry per scale."""
    if isinstance(steps, Sequence):
        if len(steps) != n_scales:
            raise ValueError(f"{len(steps)} step counts for {n_scales} scales")
        return [int(n) for n in steps]
    return [int(steps)] * n_scales


def _scaled_history(history: History, parts: list) -> History:
    """Concatenate per-scale histories (scale, History, seconds offset) into one.

    Steps are numbered on from the previous scale (each scale's row 0 is its upsampled
    starting image); seconds count from the start of the first scale's optimisation,
    so the time spent building the next scale's targets is included.
    """
    for scale, part, offset in parts:
        step0 = history.rows[-1]["step"] + 1 if history.rows else 0
        for row in part.rows:
            history.rows.append({**row, "step": step0 + row["step"],
                                 "seconds": offset + row["seconds"], "scale": scale})
    return history


def stylize(content, style, *, size: int = 256, steps: int | Sequence[int] = 300,
            optimizer: str = "adam",
            learning_rate: float | None = None,
            content_weight: float = DEFAULT_CONTENT_WEIGHT,
            style_weight: float = DEFAULT_STYLE_WEIGHT, tv_weight: float = DEFAULT_TV_WEIGHT,
            content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
            style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
            style_layer_weights: Sequence[float] | None = None, init: str = "content",
            weights="auto", pooling: str = "max", style_size: int | None = None,
            content_reduction: str = "normalized", style_form: str = "normalized",
            tv_kind: str = "l1", seed: int = 0, deterministic: bool = True,
            callbacks: Sequence = (), progress: bool = True, pyramid_levels: int = 1,
            pyramid_level_weights: Sequence[float] | None = None,
            scales: Sequence[int] | None = None, gram_shrinkage=None,
            schedule: str = "constant", compute_dtype: str = "float32") -> StylizeResult:
    """Neural style transfer by optimisation (Gatys et al. 2016).

    Args:
        content: Content image: path, sample name, PIL image or array (see
            ``images.load_image``).
        style: Style image, same forms.
        size: Longer side of the result in pixels (the content is resized to it).
        steps: Optimisation steps; with ``scales``, an int (per scale) or one per scale.
        optimizer: "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam" or "lbfgs".
        learning_rate: None for the optimizer's default.
        content_weight, style_weight, tv_weight: α, β, γ of the objective.
        content_layers, style_layers: VGG19 layer names.
        style_layer_weights: Weight per style layer (default 1/L).
        init: "content", "noise" or "style".
        weights: "auto", "imagenet", "random" or a VGG19 ``.h5`` path (README: weights).
        pooling: "max" or "avg".
        style_size: Longer side of the style image (default: ``size``).
        content_reduction, style_form, tv_kind: Loss definitions (see ``nstlib.losses``).
        seed: Seeds Python, NumPy, TF, the noise init and random weights.
        deterministic: Enable TF op determinism (same seed -> same bits on one machine).
        callbacks: ``callback(step, image, losses)``; returning True stops the run.
        progress: Show a progress bar.
        pyramid_levels: 1 (plain style loss) or K > 1: style loss over K Gaussian-pyramid
            levels of the result and the style (``losses.pyramid_style_loss``).
        pyramid_level_weights: Weight per pyramid level (default 1/K).
        scales: Coarse-to-fine schedule, e.g. (128, 256, 384): optimise with the longer
            side at each size in turn (the style image scaled in proportion, so that
            ``style_size`` or the last scale is its size at the last scale), starting
            each scale from the previous result upsampled. None: the single scale
            ``size`` (which ``scales`` otherwise replaces). The optimizer starts afresh at
            every scale: Adam's (and RMSprop's, momentum's, L-BFGS's) state holds one
            moment estimate per pixel, and after upsampling the pixel grid is a different
            one, so the old estimates belong to no pixel of the new image; and with the
            normalised (mean-type) losses each pixel's gradient shrinks about 4x when the
            side doubles, so even upsampled second moments would be ~16x too large and
            damp the steps for a long time (Adam's β2 = 0.999 forgets with a time
            constant of 1000 steps). The history gains a "scale" column,
            steps are numbered on across scales and seconds count from the start of
            the first scale.
        gram_shrinkage: None, a λ in [0, 1] or "ledoit-wolf": shrink the style target
            Grams towards (tr A / N)·I (``statistics.shrink_gram``), which reduces the
            noise of Grams estimated from few positions (notebook 06 measures when
            that helps the result).
        schedule: Learning-rate schedule of the Keras optimizers, "constant" or "cosine"
            (decay to 5 % over each scale's steps; ``optimize.learning_rate_schedule``).
        compute_dtype: "float32" or "bfloat16" convolutions (``FeatureExtractor``; Grams
            and losses stay float32). bfloat16 is several times faster on CPUs with
            AMX/AVX512-BF16 and slower on others; results then depend on the CPU
            (README: Performance).

    Returns:
        ``StylizeResult`` with the (1, H, W, 3) image, the history and the config.

    Raises:
        nstlib.optimize.NonFiniteLossError: the loss diverged (the last finite image is
            attached to the error).
    """
    scale_list = check_scales(scales, size)
    steps_list = steps_per_scale(steps, len(scale_list))
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    set_seed(seed, deterministic)
    started = time.perf_counter()
    content_full, style_full = images.load_image(content), images.load_image(style)
    top, top_style = scale_list[-1], int(style_size or scale_list[-1])
    extractor = cached_extractor(tuple(content_layers), tuple(style_layers), weights, pooling,
                                 int(seed), compute_dtype)
    image, parts, first_start = None, [], None
    for scale, n_steps in zip(scale_list, steps_list, strict=True):
        content_image = images.resize_max_side(content_full, scale)
        style_image = images.resize_max_side(style_full, max(1, round(top_style * scale / top)))
        objective = StyleTransferObjective(
            extractor, content_image, style_image, content_weight, style_weight, tv_weight,
            style_layer_weights, content_reduction, style_form, tv_kind,
            pyramid_levels=pyramid_levels, pyramid_level_weights=pyramid_level_weights,
            gram_shrinkage=gram_shrinkage)
        start = (initial_image(init, content_image, style_image, seed) if image is None else
                 images.resize(image, (int(content_image.shape[1]), int(content_image.shape[2]))))
        scale_start = time.perf_counter()
        first_start = scale_start if first_start is None else first_start
        outcome = minimize(objective, start, steps=n_steps, optimizer=optimizer,
                           learning_rate=learning_rate, schedule=schedule, callbacks=callbacks,
                           progress=progress,
                           description="stylize" if scales is None else f"stylize @{scale}")
        image = outcome.image
        parts.append((scale, outcome.history, scale_start - first_start))
        if outcome.status != "completed":
            break
    history = outcome.history if scales is None else _scaled_history(History(), parts)
    config = {
        "content": _describe_source(content), "style": _describe_source(style),
        "size": top, "style_size": top_style,
        "content_shape": list(content_image.shape), "style_shape": list(style_image.shape),
        "steps": steps_list[0] if scales is None else steps_list,
        "scales": None if scales is None else scale_list,
        "pyramid_levels": int(pyramid_levels),
        "pyramid_level_weights": None if pyramid_level_weights is None else list(
            pyramid_level_weights),
        "gram_shrinkage": gram_shrinkage,
        "optimizer": optimizer, "learning_rate": outcome.learning_rate,
        "schedule": schedule, "compute_dtype": compute_dtype,
        "content_weight": content_weight, "style_weight": style_weight,
        "tv_weight": tv_weight, "content_layers": list(content_layers),
        "style_layers": list(style_layers),
        "style_layer_weights": None if style_layer_weights is None else list(
            style_layer_weights),
        "init": init, "pooling": pooling, "content_reduction": content_reduction,
        "style_form": style_form, "tv_kind": tv_kind, "seed": int(seed),
        "deterministic": deterministic, "weights": str(weights),
        "weights_source": extractor.weights_source,
        "weights_path": None if extractor.weights_path is None else str(extractor.weights_path),
        "status": outcome.status, "wall_seconds": time.perf_counter() - started,
        "environment": environment_record(),
    }
    return StylizeResult(image, history, config)


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
                    seed: int = 0) -> FeatureExtractor:
    """A (cached) extractor with ``layer`` as its only content layer, truncated there."""
    return cached_extractor((layer,), (), weights, pooling, int(seed))


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
        alpha, eps, rank: See ``nstlib.statistics.wct``.
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
                progress: bool = True) -> WCTStylizeResult:
    """Multi-level whitening-colouring style transfer with optimisation as the decoder.

    For each layer in ``layers`` (deep to shallow): WCT of the current image's features
    with the style's at that layer, then ``steps`` inversion steps starting from the
    current image. The first level starts from the content image.

    Args:
        content, style: Images in any form ``images.load_image`` accepts.
        layers: VGG19 layer names, one level each, applied in the given order.
        alpha, eps, rank: See ``nstlib.statistics.wct``.
        size, style_size: Longer sides in pixels (``style_size`` defaults to ``size``).
        steps: Inversion steps per level.
        tv_weight, optimizer, learning_rate: See ``invert_features``.
        weights, pooling, seed, deterministic, progress: As in ``stylize``.

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
    history, level_images, image, extractor = History(), [], content_image, None
    for level, layer in enumerate(layers):
        extractor = layer_extractor(layer, weights, pooling, seed)
        outcome = wct_level(image, style_image, extractor, alpha=alpha, eps=eps, rank=rank,
                            steps=steps, tv_weight=tv_weight, optimizer=optimizer,
                            learning_rate=learning_rate, progress=progress)
        _append_level(history, outcome.history, level)
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
        "weights_source": extractor.weights_source,
        "weights_path": None if extractor.weights_path is None else str(extractor.weights_path),
        "status": outcome.status, "wall_seconds": time.perf_counter() - started,
        "environment": environment_record(),
    }
    return WCTStylizeResult(image, history, config, level_images)


def _append_level(history: History, level_history: History, level: int) -> None:
    """Append one level's rows, numbering steps and seconds on from the previous rows."""
    step0 = history.rows[-1]["step"] + 1 if history.rows else 0
    seconds0 = history.rows[-1]["seconds"] if history.rows else 0.0
    for row in level_history.rows:
        losses = {k: v for k, v in row.items() if k not in ("step", "seconds")}
        history.append(step0 + row["step"], {**losses, "level": level},
                       seconds0 + row["seconds"])
