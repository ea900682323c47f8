"""``stylize`` and ``StylizeConfig``: from two images and one configuration to a result.

``StylizeConfig`` holds every setting of a run: its own (size, style size, scales, init,
seed, determinism) and three sections owned by the modules that use them, ``network``
(``features.NetworkConfig``), ``loss`` (``losses.LossConfig``) and ``optim``
(``optimize.OptimConfig``). Each setting also has a flat name (its field name, unique
across the sections): the ``stylize`` keyword, the ``nst stylize`` flag, the grid-file
key and the key in every run record.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from nstlib import images
from nstlib._io import write_json
from nstlib.features import FeatureExtractor
from nstlib.losses import StyleTransferObjective
from nstlib.optimize import History, minimize
from nstlib.reproducibility import environment_record, set_seed
from nstlib.settings import INITS, Stage, StylizeConfig


@dataclass
class StylizeResult:
    """Outcome of ``stylize``.

    Attributes:
        image: (1, H, W, 3) float32 in [0, 1].
        history: Per-step total, content, style and tv losses and elapsed seconds.
        config: The run record: every setting by flat name (``StylizeConfig.to_flat``),
            the inputs, image sizes, resolved weights source, library and TensorFlow
            versions, plus the outcome (status, learning rate used, wall seconds).
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


@functools.lru_cache(maxsize=8)
def cached_extractor(content_layers: tuple, style_layers: tuple, weights, pooling: str,
                     seed: int, compute_dtype: str = "float32",
                     conv_impl: str = "auto") -> FeatureExtractor:
    """A ``FeatureExtractor`` reused across runs with identical settings."""
    return FeatureExtractor(content_layers, style_layers, weights=weights, pooling=pooling,
                            seed=seed, compute_dtype=compute_dtype, conv_impl=conv_impl)


def extractor_for(config: StylizeConfig) -> FeatureExtractor:
    """The (cached) extractor of a run: the loss's layers, the network settings."""
    network = config.network
    seed = config.seed if network.weight_seed is None else network.weight_seed
    return cached_extractor(config.loss.content_layers, config.loss.style_layers,
                            network.weights, network.pooling, seed, network.compute_dtype,
                            network.conv_impl)


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


def stylize(content, style, config: StylizeConfig | None = None, *, callbacks: Sequence = (),
            progress: bool = True, **overrides) -> StylizeResult:
    """Neural style transfer by optimisation (Gatys et al. 2016).

    Args:
        content: Content image: path, sample name, PIL image or array (see
            ``images.load_image``).
        style: Style image, same forms.
        config: Every setting of the run (default ``StylizeConfig()``).
        callbacks: ``callback(step, image, losses)``; returning True stops the run.
        progress: Show a progress bar.
        **overrides: Settings by flat name over ``config``, e.g. ``size=128,
            style_weight=100, optimizer="lbfgs"`` (``StylizeConfig.flat_fields()`` lists
            them with their help text).

    With ``scales`` the run is coarse to fine (``pyramids.coarse_to_fine_schedule``): the
    optimizer starts afresh at each scale, because its per-pixel state (Adam's moments,
    L-BFGS's curvature pairs) belongs to a pixel grid that upsampling replaces, and with
    the mean-type losses each pixel's gradient shrinks about 4x when the side doubles.
    The history then has a "scale" column, steps numbered on across scales, and seconds
    counted from the start of the first scale.

    Returns:
        ``StylizeResult`` with the (1, H, W, 3) image, the history and the run record.

    Raises:
        nstlib.ConfigError: an unknown setting or a bad value (before any work).
        nstlib.optimize.NonFiniteLossError: the loss diverged (the last finite image is
            attached to the error).
    """
    config = (config or StylizeConfig()).replace(**overrides)
    stages = config.stages()
    set_seed(config.seed, config.deterministic)
    started = time.perf_counter()
    content_full, style_full = images.load_image(content), images.load_image(style)
    extractor = extractor_for(config)
    image, parts, first_start = None, [], None
    for stage in stages:
        content_image = images.resize_max_side(content_full, stage.size)
        style_image = images.resize_max_side(style_full, stage.style_size)
        objective = StyleTransferObjective(extractor, content_image, style_image, config.loss)
        start = (initial_image(config.init, content_image, style_image, config.seed)
                 if image is None else images.resize(image, (int(content_image.shape[1]),
                                                        int(content_image.shape[2]))))
        scale_start = time.perf_counter()
        first_start = scale_start if first_start is None else first_start
        outcome = minimize(objective, start, steps=stage.steps, optimizer=config.optim.optimizer,
                           learning_rate=config.optim.learning_rate,
                           schedule=config.optim.schedule, callbacks=callbacks,
                           progress=progress, description=_bar_label(config, stage))
        image = outcome.image
        parts.append((stage.size, outcome.history, scale_start - first_start))
        if outcome.status != "completed":
            break
    history = outcome.history if config.scales is None else History.joined(parts, "scale")
    record = run_record(config, stages, content, style, extractor, outcome)
    record.update(content_shape=list(content_image.shape), style_shape=list(style_image.shape),
                  wall_seconds=time.perf_counter() - started)
    return StylizeResult(image, history, record)


def _bar_label(config: StylizeConfig, stage: Stage) -> str:
    return "stylize" if config.scales is None else f"stylize @{stage.size}"


def run_record(config: StylizeConfig, stages: list[Stage], content, style,
               extractor: FeatureExtractor, outcome) -> dict:
    """The record of a run: inputs, every setting by flat name, weights used, outcome.

    ``size``/``style_size`` are the last scale's, ``steps`` is per scale when ``scales``
    is set, ``learning_rate`` is the rate actually used.
    """
    flat = config.to_flat()
    flat.update(size=stages[-1].size, style_size=stages[-1].style_size,
                steps=stages[0].steps if config.scales is None else [s.steps for s in stages],
                learning_rate=outcome.learning_rate, weights=str(config.network.weights))
    return {"content": _describe_source(content), "style": _describe_source(style), **flat,
            "weights_source": extractor.weights_source,
            "weights_path": None if extractor.weights_path is None else str(
                extractor.weights_path),
            "conv_impl_used": extractor.conv_impl, "status": outcome.status,
            "environment": environment_record()}
