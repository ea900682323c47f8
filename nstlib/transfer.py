"""``stylize``: from two images and one ``StylizeConfig`` to a ``StylizeResult``.

The settings are ``nstlib.settings``' (``StylizeConfig`` with its ``network``, ``loss`` and
``optim`` sections, each setting also by flat name). This module decides the weights of a
run, makes its plan once (``nstlib.plan.make_plan``: the recipe of the weights found
applied, every stage's exact sizes, the predicted memory, checked here), builds the feature
extractor, loads the images and masks, runs ``optimize.minimize`` at each coarse-to-fine
stage of the plan and returns the image, the history and the run record (``run_record``: a
plain dict, the ``record`` of the result, not a ``StylizeConfig``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import tensorflow as tf

from nstlib import colors, images
from nstlib._io import atomic_write_all, json_bytes, write_json  # noqa: F401 - re-exported
from nstlib.conv_choice import size_bucket
from nstlib.features import FeatureExtractor
from nstlib.losses import StyleTransferObjective
from nstlib.optimize import History, minimize
from nstlib.plan import RunPlan, StagePlan, make_plan, resolve_config
from nstlib.records import old_record_name, record_path
from nstlib.reproducibility import environment_record, set_seed
from nstlib.resources import check_fits
from nstlib.settings import INITS, StylizeConfig, check_style_counts
from nstlib.sizes import fitted_hw
from nstlib.vgg_weights import resolve_weights


@dataclass
class StylizeResult:
    """Outcome of ``stylize``.

    Attributes:
        image: (1, H, W, 3) float32 in [0, 1] (under the guard, the image of lowest loss
            seen: ``optimize.minimize``).
        history: Per-step total, content, style and tv losses and elapsed seconds (every
            step's row; ``history.kept`` is the returned image's row when not the last).
        record: The run record, a plain dict (``run_record``; not a ``StylizeConfig``,
            which ``StylizeConfig.from_record`` rebuilds from it): every setting by flat
            name (``StylizeConfig.to_flat``), the inputs, image sizes, resolved weights
            source, library and TensorFlow versions, plus the outcome (status, learning
            rate used, wall seconds).
        plan: The run's ``plan.RunPlan`` (its record is ``record["plan"]``), or None.

    ``config`` is the old name of ``record`` (read-only; it warns, ``DeprecationWarning``).
    """

    image: tf.Tensor
    history: History
    record: dict
    plan: RunPlan | None = None

    config = old_record_name()

    @property
    def losses(self) -> dict:
        """The returned image's losses: the last history row, or under the guard the row
        of the lowest loss when that came earlier (``History.final``; its "step" says
        which)."""
        return self.history.final

    def to_dict(self) -> dict:
        """The JSON record saved next to the image: ``record``, the final losses and the
        full per-step history."""
        return {**self.record, "final": self.losses, "history": self.history.to_dict()}

    def save(self, path, inputs: Sequence = ()) -> tuple[Path, Path]:
        """Write the image and, next to it, its record ``<image name>.json`` (``x.png`` ->
        ``x.png.json``; ``records.record_path``) holding ``to_dict()`` and the image's name.

        Both files are written in full before either replaces anything (the record last,
        ``_io.atomic_write_all``): a full disk or Ctrl-C leaves the previous image and
        record as they were, never a new image without its record.

        Args:
            path: Image destination (.png or .jpg).
            inputs: Input image paths that must not be overwritten.

        Returns:
            (image path, record path).

        Raises:
            OSError: a write failed; its ``filename`` is the destination that failed.
        """
        image_path = Path(path)
        record_file = record_path(image_path)
        data = images.encode_image(self.image, image_path)
        for target in (image_path, record_file):
            images.check_not_an_input(target, inputs)
        atomic_write_all([(image_path, data),
                          (record_file, json_bytes({**self.to_dict(), "image": image_path.name}))])
        return image_path, record_file


@functools.lru_cache(maxsize=8)
def cached_extractor(content_layers: tuple, style_layers: tuple, weights, pooling: str,
                     seed: int, compute_dtype: str = "float32",
                     conv_impl: str = "auto", image_size: int | None = None,
                     first_layer_dc: float = 1.0,
                     network: str | None = None) -> FeatureExtractor:
    """A ``FeatureExtractor`` reused across runs with identical settings."""
    return FeatureExtractor(content_layers, style_layers, weights=weights, pooling=pooling,
                            seed=seed, compute_dtype=compute_dtype, conv_impl=conv_impl,
                            image_size=image_size, first_layer_dc=first_layer_dc,
                            network=network)


def weight_seed(config: StylizeConfig) -> int:
    """Seed of the random weights: ``weight_seed``, or the run's seed."""
    return config.seed if config.network.weight_seed is None else config.network.weight_seed


def resolve_run(config: StylizeConfig) -> tuple[StylizeConfig, object]:
    """Decide the weights of a run once, then fill in the settings their recipe sets.

    ``weights="auto"`` looks for (or downloads) the ImageNet file, then the trained VGG16,
    and says in one line when it did not get ImageNet weights; the settings left at None
    then take the values of ``settings.RECIPES`` for the weights found, and the network
    is theirs.

    Returns:
        (the config with every setting concrete, the ``vgg_weights.ResolvedWeights`` for
        ``FeatureExtractor``: source, file, network and why).
    """
    found = _find_weights(config)
    return resolve_config(config, found)[0], found


def _find_weights(config: StylizeConfig):
    """The ``vgg_weights.ResolvedWeights`` of a run (looked up, downloaded or random)."""
    return resolve_weights(config.network.weights, weight_seed(config),
                           config.network.architecture)


def extractor_for(config: StylizeConfig | RunPlan, weights=None, *,
                  layers: tuple[Sequence[str], Sequence[str]] | None = None
                  ) -> FeatureExtractor:
    """The (cached) extractor of a run: the loss's layers, the network settings.

    Args:
        config: The run's ``plan.RunPlan`` (``stylize``), or a config whose recipe
            settings are filled in (``resolve_run``); with None left, the weights are
            resolved here.
        weights: The resolved weights (default: resolve ``config.network.weights``).
        layers: (content layers, style layers) instead of the loss's (``wct_stylize``:
            one level's layer as the only content layer).
    """
    if isinstance(config, RunPlan):
        config = config.config  # the recipe applied; its result size is the plan's
        weights = _find_weights(config) if weights is None else weights
    elif weights is None:
        config, weights = resolve_run(config)
    network = config.network
    content_layers, style_layers = layers or (config.loss.content_layers,
                                              config.loss.style_layers)
    return cached_extractor(tuple(content_layers), tuple(style_layers),
                            weights, network.pooling, weight_seed(config),
                            network.compute_dtype, network.conv_impl,
                            size_bucket(config.result_size), network.first_layer_dc,
                            network.architecture)


def _describe_source(source) -> str | list[str]:
    """An input as JSON-able text: its path or name, "array (H, W, 3)", or a list of those."""
    if isinstance(source, list | tuple):
        return [_describe_source(s) for s in source]
    if isinstance(source, str | os.PathLike):
        return str(source)
    return f"array {tuple(getattr(source, 'shape', ()))}"


def _as_list(sources) -> list:
    """One input or a list/tuple of them, as a list (an array is one input)."""
    return list(sources) if isinstance(sources, list | tuple) else [sources]


def load_style_masks(style_masks, n_styles: int, content_shape, result_size: int,
                     max_pixels: int = images.MAX_PIXELS) -> list[tf.Tensor]:
    """Load and check one mask per style image (``images.load_mask``).

    Args:
        style_masks: One mask source (path, PIL image or array) per style image; a single
            source when there is one style.
        n_styles: Number of style images.
        content_shape: (1, H, W, 3) of the content image as loaded.
        result_size: Longer side of the result (``StylizeConfig.size`` or last scale).

    Returns:
        One (1, H_m, W_m, 1) float32 mask in [0, 1] per style.

    Raises:
        ConfigError: the wrong number of masks.
        ImageError: not an image, not the content's (or the result's) size, or all black.
    """
    sources = _as_list(style_masks)
    check_style_counts(n_styles, n_masks=len(sources))
    height, width = int(content_shape[1]), int(content_shape[2])
    allowed = {(height, width), fitted_hw((height, width), result_size)}
    masks = []
    for number, source in enumerate(sources, start=1):
        mask = images.load_mask(source, max_pixels=max_pixels)
        shape = (int(mask.shape[1]), int(mask.shape[2]))
        if shape not in allowed:
            sizes = " or ".join(f"{w}x{h}" for h, w in sorted(allowed, reverse=True))
            raise images.ImageError(f"style mask {number} ({_describe_source(source)}) is "
                                    f"{shape[1]}x{shape[0]} pixels; it must have the content "
                                    f"image's size ({sizes})")
        if float(tf.reduce_max(mask)) == 0.0:
            raise images.ImageError(f"style mask {number} ({_describe_source(source)}) is "
                                    f"all black: its style would apply nowhere")
        masks.append(mask)
    return masks


def color_inputs(preserve_colors: str, content: tf.Tensor,
                 styles: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The images the network sees under ``preserve_colors`` (``nstlib.colors``).

    "none": unchanged; "luminance": grey content and grey styles whose luminance has the
    content's mean and standard deviation; "histogram": the content and each style
    recoloured to the content's RGB mean and covariance (clipped to [0, 1]).

    Args:
        content: (1, H, W, 3) in [0, 1].
        styles: (1, H_s, W_s, 3) in [0, 1] each.

    Returns:
        (content, styles) as float32 tensors of the same shapes.
    """
    if preserve_colors == "none":
        return content, styles
    if preserve_colors == "histogram":
        return content, [tf.constant(colors.match_color_statistics(s, content)) for s in styles]
    luma = colors.luminance(content)
    matched = [colors.match_luminance(colors.luminance(s), luma) for s in styles]
    return tf.constant(colors.grey(luma)), [tf.constant(colors.grey(y)) for y in matched]


def _recolor(image, chroma_source: tf.Tensor) -> tf.Tensor:
    """A result of a luminance-only transfer with the content's chroma put back."""
    return tf.constant(colors.combine_luminance(colors.luminance(image), chroma_source))


def _recolored_callbacks(callbacks: Sequence, chroma_source: tf.Tensor) -> list:
    """Callbacks that see the image in colour (luminance mode optimises a grey image)."""
    def wrap(callback):
        return lambda step, image, losses: callback(step, _recolor(image, chroma_source),
                                                    losses)
    return [wrap(cb) for cb in callbacks]


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


def stylize(content, style, config: StylizeConfig | None = None, *, style_masks=None,
            callbacks: Sequence = (), progress: bool = True,
            checked_plan: RunPlan | None = None, **overrides) -> StylizeResult:
    """Neural style transfer by optimisation (Gatys et al. 2016).

    Args:
        content: Content image: path, sample name, PIL image or array (see
            ``images.load_image``).
        style: Style image, same forms, or a list of them (weighted by ``style_blend``;
            see ``losses.StyleTransferObjective`` for how several styles combine).
        config: Every setting of the run (default ``StylizeConfig()``).
        style_masks: None, or one mask per style image (path, PIL image or array; white =
            style applies, black = not, grey in between; ``images.load_mask``) of the
            content image's size or the result's. Each style then styles only its
            region, with guided Grams (Gatys et al. 2017); a region no mask covers keeps
            the content. Masks, like the images, are inputs rather than settings: they
            can be arrays and must fit one content image, so they are arguments next to
            ``style`` (and the record describes them as text, like the images).
        callbacks: ``callback(step, image, losses)``; returning True stops the run.
        progress: Show a progress bar.
        checked_plan: A plan of this run whose memory the caller already checked
            (``nst stylize`` checks the plan it makes from the image headers before
            TensorFlow loads): the memory is then checked here only if the plan of the
            weights found predicts more. None: checked here.
        **overrides: Settings by flat name over ``config``, e.g. ``size=128,
            style_weight=100, optimizer="lbfgs"`` (``StylizeConfig.flat_fields()`` lists
            them with their help text).

    ``preserve_colors`` keeps the content's colours (``color_inputs``): "luminance"
    optimises a grey image and puts the content's chroma back at the end (the history's
    losses are those of the grey images; callbacks see colour images), "histogram"
    recolours the style images first.

    With ``scales`` the run is coarse to fine (``settings.coarse_to_fine_schedule``): the
    optimizer starts afresh at each scale, because its per-pixel state (Adam's moments,
    L-BFGS's curvature pairs) belongs to a pixel grid that upsampling replaces, and with
    the mean-type losses each pixel's gradient shrinks about 4x when the side doubles.
    The history then has a "scale" column, steps numbered on across scales, and seconds
    counted from the start of the first scale.

    The run is planned once, after its weights are found (``nstlib.plan.make_plan``):
    every stage's sizes, the recipe and the memory check come from that plan, which the
    record keeps under "plan".

    Returns:
        ``StylizeResult`` with the (1, H, W, 3) image, the history and the run record.

    Raises:
        nstlib.ConfigError: an unknown setting or a bad value (before any work).
        nstlib.resources.InsufficientMemoryError: the plan needs more memory than there
            is (a CPU run).
        nstlib.optimize.NonFiniteLossError: the loss diverged (the last finite image is
            attached to the error).
    """
    config = (config or StylizeConfig()).replace(**overrides)
    if style_masks is not None:
        config.loss.check_masks()
    set_seed(config.seed, config.deterministic)
    started = time.perf_counter()
    inputs, weights, plan = _load_and_plan(config, content, style, style_masks, checked_plan)
    config = plan.config
    extractor = extractor_for(plan, weights)
    image, parts, first_start = None, [], None
    for stage in plan.stages:
        outcome, content_image, style_images, scale_start = _run_stage(
            config, stage, extractor, inputs, image, callbacks, progress)
        first_start = scale_start if first_start is None else first_start
        image = outcome.image
        parts.append((stage.size, outcome.history, scale_start - first_start))
        if outcome.status != "completed":
            break
    history = outcome.history if config.scales is None else History.joined(parts, "scale")
    if config.preserve_colors == "luminance":
        image = _recolor(image, images.at_size(inputs.content_rgb, stage.content_hw))
    record = run_record(plan, content, style, extractor, outcome, content_image=content_image,
                        style_images=style_images,
                        steps_done=sum(int(part.rows[-1]["step"]) for _, part, _ in parts
                                       if part.rows),  # made, not the guard's kept step
                        started=started, style_masks=style_masks)
    return StylizeResult(image, history, record, plan)


class _Inputs(NamedTuple):
    """The loaded images of a run (full size; ``content`` and ``styles`` recoloured as
    ``preserve_colors`` asks, ``content_rgb`` as given) and which style ``init`` uses
    (the plan's ``main_style``)."""

    content_rgb: tf.Tensor
    content: tf.Tensor
    styles: list
    masks: list | None
    first: int


def _load_and_plan(config: StylizeConfig, content, style, style_masks,
                   checked_plan: RunPlan | None):
    """Load the images, find the weights, plan the run (``make_plan``), check its memory
    (unless ``checked_plan`` predicted as much) and load the masks, before any network is
    built.

    Returns:
        (the ``_Inputs``, the ``vgg_weights.ResolvedWeights``, the ``RunPlan``).
    """
    check_style_counts(len(_as_list(style)), config.loss.style_blend,
                       None if style_masks is None else len(_as_list(style_masks)))
    content_full = images.load_image(content)
    styles_full = [images.load_image(s) for s in _as_list(style)]
    weights = _find_weights(config)
    plan = make_plan(config, content_full.shape[1:3], [s.shape[1:3] for s in styles_full],
                     weights)
    plan.check_sizes()  # every stage's images large enough for the deepest layer
    if checked_plan is None or plan.peak_bytes > checked_plan.peak_bytes:
        check_fits(plan)
    masks = None if style_masks is None else load_style_masks(
        style_masks, len(styles_full), content_full.shape, plan.size)
    content, styles = color_inputs(plan.config.preserve_colors, content_full, styles_full)
    return _Inputs(content_full, content, styles, masks, plan.main_style), weights, plan


def _run_stage(config: StylizeConfig, stage: StagePlan, extractor: FeatureExtractor,
               inputs: _Inputs, image, callbacks, progress: bool):
    """Optimise at one scale, from ``image`` upsampled (or the init at the first scale).

    Returns:
        (the ``OptimizationResult``, the content image and the style images at this scale,
        the ``time.perf_counter()`` at the start of the optimisation).
    """
    content_image = images.at_size(inputs.content, stage.content_hw)
    style_images = [images.at_size(s, hw)
                    for s, hw in zip(inputs.styles, stage.style_hws, strict=True)]
    objective = StyleTransferObjective(extractor, content_image, style_images, config.loss,
                                       style_masks=inputs.masks, seed=config.seed)
    start = (initial_image(config.init, content_image, style_images[inputs.first], config.seed)
             if image is None else images.resize(image, (int(content_image.shape[1]),
                                                    int(content_image.shape[2]))))
    if config.preserve_colors == "luminance":  # callbacks see the recoloured image
        callbacks = _recolored_callbacks(callbacks, images.at_size(inputs.content_rgb,
                                                         stage.content_hw))
    started = time.perf_counter()
    outcome = minimize(objective, start, steps=stage.steps, optimizer=config.optim.optimizer,
                       learning_rate=config.optim.learning_rate,
                       schedule=config.optim.schedule_used(), callbacks=callbacks,
                       progress=progress, description=_bar_label(config, stage),
                       guard=config.optim.guard_used())
    return outcome, content_image, style_images, started


def _bar_label(config: StylizeConfig, stage: StagePlan) -> str:
    return "stylize" if config.scales is None else f"stylize @{stage.size}"


def run_record(plan: RunPlan, content, style, extractor: FeatureExtractor, outcome, *,
               content_image, style_images: Sequence, steps_done: int, started: float,
               style_masks=None) -> dict:
    """The record of a run (``stylize``'s and ``wct.wct_stylize``'s): inputs, every setting
    by flat name, weights used, image sizes, outcome and the plan.

    ``size``/``style_size`` are the last scale's (``style_size`` stays None when
    ``style_scale`` set it, so that ``StylizeConfig.from_record`` gives the config back),
    ``steps`` is per scale when ``scales`` is set, ``learning_rate`` is the rate actually
    used. ``style`` is a list when several style images were given (then
    ``style_shapes`` has each one's shape, ``style_shape`` the plan's ``main_style``'s).
    ``steps_done`` counts the updates made over all scales (the history's step numbers
    also count each later scale's starting row). ``recipe`` and "plan" are the plan's.

    Args:
        plan: The run's ``RunPlan``.
        content, style: The inputs as given (described as text).
        extractor: The run's (last) extractor: weights source, file and conv form used.
        outcome: The last ``OptimizationResult`` (status, learning rate used).
        content_image, style_images: The images at the last scale, (1, H, W, 3) each.
        steps_done: Updates made over the whole run.
        started: ``time.perf_counter()`` at the start of the run.
        style_masks: The masks as given, or None.
    """
    config, stages = plan.config, plan.stages
    flat = config.to_flat()
    style_size = stages[-1].style_size if config.style_scale is None else None
    flat.update(size=stages[-1].size, style_size=style_size,
                steps=stages[0].steps if config.scales is None else [s.steps for s in stages],
                learning_rate=outcome.learning_rate, schedule=config.optim.schedule_used(),
                guard=config.optim.guard_used(),
                weights=str(config.network.weights))
    record = {"content": _describe_source(content), "style": _describe_source(style), **flat,
              "weights_source": extractor.weights_source,
              "weights_reason": extractor.weights_reason,
              "recipe": plan.recipe,
              "weights_path": None if extractor.weights_path is None else str(
                  extractor.weights_path),
              "conv_impl_used": extractor.conv_impl,
              "conv_impl_reason": extractor.conv_impl_reason,
              "status": outcome.status,
              "environment": environment_record(),
              "content_shape": list(content_image.shape),
              "style_shape": list(style_images[plan.main_style].shape),
              "steps_done": int(steps_done),
              "wall_seconds": time.perf_counter() - started}
    if len(style_images) > 1:
        record["style_shapes"] = [list(s.shape) for s in style_images]
    if style_masks is not None:
        record["style_masks"] = _describe_source(_as_list(style_masks))
    record["plan"] = plan.record()
    return record
