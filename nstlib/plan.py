"""The plan of one run, made once and frozen: what ``stylize`` will do, before it does it.

A ``StylizeConfig`` leaves some settings at None ("decided by the weights' recipe") and says
sizes as longer sides. ``make_plan`` turns it, the input images' sizes and the weights a
run found (or, before they are looked up, the source ``weight_sources.likely_source``
expects) into a ``RunPlan``: the network, the weights source and recipe, the config with
the recipe applied (no None left), every coarse-to-fine stage's exact (height, width) for
the content and each style image, the deepest layer the losses use, and the predicted peak
memory and time (``nstlib.resources``' model). ``RunPlan.check_sizes`` refuses a plan in
which an image is too small for that layer. ``stylize``, the memory check, ``nst
stylize``'s size checks and its ``--dry-run`` all read this one plan; none of them looks a
recipe up or turns a longer side into a size again.

TensorFlow-free, so the command line makes the plan from image headers before TensorFlow
loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from nstlib import resources
from nstlib._options import ConfigError
from nstlib.settings import LossConfig, StylizeConfig, recipe_for
from nstlib.sizes import fitted_hw, pyramid_hws
from nstlib.vgg_layers import deepest_layer, min_input_side
from nstlib.weight_sources import likely_source


class FoundWeights(NamedTuple):
    """The part of ``vgg_weights.ResolvedWeights`` a plan needs: the source and its network."""

    source: str
    network: str


@dataclass(frozen=True)
class StagePlan:
    """One coarse-to-fine scale of a run, in exact pixels.

    Attributes:
        size: Longer side of the result at this scale.
        style_size: Longer side of the style images at this scale.
        steps: Optimisation steps at this scale.
        content_hw: (height, width) the content (and the result) has at this scale.
        style_hws: (height, width) of each style image at this scale.
        step_seconds: Predicted seconds per step at this scale (an estimate,
            ``resources.predict_step_seconds``).
    """

    size: int
    style_size: int
    steps: int
    content_hw: tuple[int, int]
    style_hws: tuple[tuple[int, int], ...]
    step_seconds: float


@dataclass(frozen=True)
class RunPlan:
    """Everything a run was decided to be, before it starts (frozen; ``make_plan`` makes it).

    Attributes:
        config: The run's settings with the recipe of its weights applied: no None left
            in the recipe's settings, the network set.
        network: "vgg19" or "vgg16".
        weights_source: "imagenet", "hed-vgg16", "file" or "random".
        weights_found: True when the source is the one the run found; False when it is
            the one ``weight_sources.likely_source`` expects before the weights are
            looked up (the CLI's plan, made before TensorFlow loads).
        recipe: The ``settings.RECIPES`` key applied.
        content_hw: (height, width) of the content image as loaded.
        style_hws: (height, width) of each style image as loaded.
        stages: One ``StagePlan`` per scale, coarse first (one without ``scales``).
        main_style: Index of the most heavily weighted style image (``style_blend``; the
            first on a tie): the one ``init="style"`` starts from and evaluations measure
            against.
        deepest_layer: The deepest layer any loss uses (the network is built up to it).
        peak_bytes: Predicted peak resident memory of a CPU run
            (``resources.predict_peak_bytes``'s model).
        seconds: Predicted seconds of all steps (an estimate for this machine's cores).
    """

    config: StylizeConfig
    network: str
    weights_source: str
    weights_found: bool
    recipe: str
    content_hw: tuple[int, int]
    style_hws: tuple[tuple[int, int], ...]
    stages: tuple[StagePlan, ...]
    main_style: int
    deepest_layer: str
    peak_bytes: int
    seconds: float

    @property
    def size(self) -> int:
        """Longer side of the result (the last scale's)."""
        return self.stages[-1].size

    @property
    def result_hw(self) -> tuple[int, int]:
        """(height, width) of the result."""
        return self.stages[-1].content_hw

    @property
    def total_steps(self) -> int:
        """Optimisation steps over every scale."""
        return sum(stage.steps for stage in self.stages)

    def describe(self, available: int | None = None) -> list[str]:
        """The lines ``nst stylize --dry-run`` prints: result size, memory, time, the
        network and recipe (``resources.describe``)."""
        return resources.describe(self, available=available)

    def at_size(self, size: int) -> RunPlan:
        """This plan with the result's longer side at ``size`` (other scales and an
        explicit style size in proportion; same inputs, weights and recipe)."""
        ratio = size / self.size
        config = self.config
        scales = None if config.scales is None else tuple(max(1, round(s * ratio))
                                                          for s in config.scales)
        style = None if config.style_size is None else max(1, round(config.style_size * ratio))
        return _make(config.replace(size=size, scales=scales, style_size=style),
                     self.content_hw, self.style_hws,
                     FoundWeights(self.weights_source, self.network), self.weights_found)

    def check_sizes(self, check_content: bool = True) -> None:
        """Refuse (ConfigError, one line) a plan in which an image is too small for the
        network, naming the setting that made it so.

        Each 2x2 pool halves a side (rounding down), so the deepest layer needs a shorter
        side of at least ``vgg_layers.min_input_side`` (16 px for block5_conv1) in the
        content and every style image, at every stage; and the coarsest level of a style
        pyramid (``sizes.pyramid_hws``) needs that of the deepest style layer
        (``losses.check_pyramid_size``'s rule). ``stylize`` calls it, and ``nst stylize``
        on the plan made from the image headers, before TensorFlow loads (it spells the
        setting as its flag: "size 18 ..." -> "--size 18 ...").

        Args:
            check_content: False to check only the style images (a batch checks each
                content when it comes to it).

        Raises:
            ConfigError: starting with the setting at fault ("size", "scales",
                "style_size", "style_scale" or "pyramid_levels") and its value.
        """
        config, loss = self.config, self.config.loss
        layer = deepest_layer(loss.content_layers + loss.style_layers, self.network)
        minimum = min_input_side(layer, self.network)
        style_layer = (deepest_layer(loss.style_layers, self.network) if loss.style_layers
                       else layer)
        style_minimum = min_input_side(style_layer, self.network) if loss.style_layers else 1
        result = (f"scales {','.join(map(str, config.scales))}" if config.scales
                  else f"size {config.size}")
        style = (f"style_size {config.style_size}" if config.style_size is not None
                 else f"style_scale {config.style_scale:g}" if config.style_scale is not None
                 else result)  # the style follows the result's size
        levels = loss.pyramid_levels
        for stage in self.stages:
            at = f" (at scale {stage.size})" if config.scales else ""
            checked = [("style", hw, style) for hw in stage.style_hws]
            if check_content:
                checked.insert(0, ("content", stage.content_hw, result))
            for what, (h, w), setting in checked:
                if min(h, w) < minimum:
                    raise ConfigError(f"{setting} is too small: the {what} image would be "
                                      f"{h}x{w} px{at} and {layer} needs a shorter side of "
                                      f"at least {minimum} px")
                coarsest = pyramid_hws((h, w), levels)[-1]
                if min(coarsest) < style_minimum:
                    most = next(k for k in range(levels, 0, -1)
                                if min(pyramid_hws((h, w), k)[-1]) >= style_minimum)
                    raise ConfigError(
                        f"pyramid_levels {levels} is too many for the {what} image at "
                        f"{h}x{w} px{at}: its level {levels - 1} would be {coarsest[0]}x"
                        f"{coarsest[1]} px and {style_layer} needs a shorter side of at "
                        f"least {style_minimum} px; use at most {most}")

    def record(self) -> dict:
        """The plan as JSON-able values, for the run record's "plan" entry."""
        return {"network": self.network, "weights_source": self.weights_source,
                "recipe": self.recipe, "deepest_layer": self.deepest_layer,
                "stages": [{"size": s.size, "style_size": s.style_size, "steps": s.steps,
                            "content_hw": list(s.content_hw),
                            "style_hws": [list(hw) for hw in s.style_hws]}
                           for s in self.stages],
                "predicted_peak_bytes": self.peak_bytes,
                "predicted_seconds": self.seconds}


def resolve_config(config: StylizeConfig, weights=None) -> tuple[StylizeConfig, FoundWeights]:
    """``config`` with its weights' recipe applied, and those weights (source, network).

    Args:
        config: The run's settings (settings may be None: the recipe decides).
        weights: What the run found (``vgg_weights.ResolvedWeights`` or anything with
            ``source`` and ``network``), or None: the source
            ``weight_sources.likely_source`` expects.
    """
    if weights is None:
        found = FoundWeights(*likely_source(config.network.weights,
                                            config.network.architecture))
    else:
        found = FoundWeights(str(weights.source), weights.network)
    return config.resolved(found.source, found.network), found


def resolve_loss(loss: LossConfig, weights) -> LossConfig:
    """``loss`` with the settings it leaves at None set by the recipe of ``weights``
    (``resolve_config`` of a config with this loss section): for an objective built
    without a run, ``losses.StyleTransferObjective(extractor, ...)`` by hand.

    Args:
        loss: The loss settings; layers it leaves at None take the recipe's.
        weights: Anything with ``source`` and ``network`` (``FoundWeights``).
    """
    return resolve_config(StylizeConfig(loss=loss), weights)[0].loss


def make_plan(config: StylizeConfig, content_hw, style_hws, weights=None) -> RunPlan:
    """The plan of a run (see the module docstring).

    Args:
        config: The run's settings.
        content_hw: (height, width) of the content image as loaded (or from its header).
        style_hws: (height, width) of each style image as loaded, or one (height, width).
        weights: The weights the run found (``vgg_weights.ResolvedWeights`` or anything
            with ``source`` and ``network``), or None: plan for the source
            ``weight_sources.likely_source`` expects (as ``StylizeConfig.planned``).

    Raises:
        ConfigError: the recipe's or the config's layers do not exist in the network.
    """
    resolved, found = resolve_config(config, weights)
    return _make(resolved, content_hw, style_hws, found, weights is not None)


def _make(resolved: StylizeConfig, content_hw, style_hws, found: FoundWeights,
          weights_found: bool) -> RunPlan:
    """``make_plan`` for a config already resolved for ``found``."""
    content_hw = (int(content_hw[0]), int(content_hw[1]))
    style_hws = tuple(resources.as_hws(style_hws))
    stages = []
    for stage in resolved.stages():
        stage_hw = fitted_hw(content_hw, stage.size)
        stages.append(StagePlan(stage.size, stage.style_size, stage.steps, stage_hw,
                                tuple(fitted_hw(hw, stage.style_size) for hw in style_hws),
                                resources.step_seconds_at(resolved, stage_hw)))
    loss = resolved.loss
    peak = resources.peak_bytes_of(resolved, [(s.content_hw, s.style_hws) for s in stages],
                                   [content_hw, *style_hws])
    return RunPlan(
        config=resolved, network=resolved.network.architecture,
        weights_source=found.source, weights_found=weights_found,
        recipe=recipe_for(found.source), content_hw=content_hw, style_hws=style_hws,
        stages=tuple(stages), main_style=_main_style(loss.style_blend, len(style_hws)),
        deepest_layer=deepest_layer(tuple(loss.content_layers) + tuple(loss.style_layers),
                                    resolved.network.architecture),
        peak_bytes=peak, seconds=sum(s.steps * s.step_seconds for s in stages))


def _main_style(style_blend, count: int) -> int:
    """Index of the largest weight of ``style_blend`` (the first on a tie), 0 if None."""
    if style_blend is None or len(style_blend) != count:  # a wrong count: refused by the run
        return 0
    return max(range(count), key=lambda i: (style_blend[i], -i))


def as_plan(config, content_hw=None, style_hws=None) -> RunPlan:
    """``config`` itself when it is a ``RunPlan``, else ``make_plan(config, content_hw,
    style_hws)`` (the functions of ``resources`` take either)."""
    if isinstance(config, RunPlan):
        return config
    if content_hw is None or style_hws is None:
        raise TypeError("a StylizeConfig needs content_hw and style_hw to be planned")
    return make_plan(config, content_hw, style_hws)


__all__ = ["FoundWeights", "RunPlan", "StagePlan", "as_plan", "make_plan", "resolve_config",
           "resolve_loss"]
