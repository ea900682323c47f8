"""One record per style loss: every fact nstlib uses about it, in one entry (no TensorFlow).

A ``StyleLossSpec`` says, for one ``LossConfig.style_loss`` name: which statistic of the
style features it matches, the functions of ``nstlib.style_losses`` that compute its target
and its per-layer loss (by name, so that reading this table imports no TensorFlow), whether
it works with style masks, how several style images combine, which style layers it uses,
which ``LossConfig`` settings belong to it alone, and whether it draws random numbers.
``STYLE_LOSS_SPECS`` maps names to records: the settings (``settings.LossConfig`` and so the
``nst`` flags, grid files and records), the objective (``losses.StyleTransferObjective``)
and ``stylize``'s mask check all read it, so a new style loss is one entry here, its two
functions in ``nstlib.style_losses`` (and a test).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from nstlib._checks import check_choice

#: How the style images of a blend (several styles without masks) combine:
#: "targets": one target per layer, the weighted mean of the styles' targets (the Gram of
#: the styles' mixed feature distribution); "losses": Σ_i w_i L_i, one loss per style.
BLEND_MODES = ("targets", "losses")


@dataclass(frozen=True, kw_only=True)
class StyleLossSpec:
    """Everything nstlib knows about one style loss.

    Attributes:
        name: Its name in settings, flags, grid files and records.
        title: Its name in prose.
        statistic: One line: what of the style features it matches.
        reference: The paper it follows.
        target: Name of the function in ``nstlib.style_losses`` that maps one layer's style
            features (1, h, w, C) to the loss's target (see ``style_losses``).
        layer_loss: Name of the function in ``nstlib.style_losses`` that maps a layer's
            generated features, that target and a mask (or None) to a scalar.
        masks: Whether it works with style masks (``stylize(style_masks=...)``); where it
            does not, ``check_masks`` refuses them before anything runs.
        mask_reason: Why not, for the refusal message.
        blend: How several styles without masks combine (a key of ``BLEND_MODES``).
        deepest_layers: Use only this many of the style layers, the deepest ones (None:
            all of them); the per-layer weights of the others are dropped and the rest
            renormalised.
        settings: The ``LossConfig`` fields that apply to this loss alone; setting one of
            another loss's away from its default is refused (``check_settings``).
        random: Whether its value depends on random numbers drawn each evaluation (from a
            stateless generator keyed on the run's seed and an evaluation counter).
    """

    name: str
    title: str
    statistic: str
    reference: str
    target: str
    layer_loss: str
    masks: bool = True
    mask_reason: str = ""
    blend: str = "losses"
    deepest_layers: int | None = None
    settings: tuple[str, ...] = ()
    random: bool = False

    def __post_init__(self):
        check_choice(self.blend, BLEND_MODES, "blend")
        if not self.masks and not self.mask_reason:
            raise ValueError(f"style loss {self.name!r} refuses masks: say why (mask_reason)")

    def functions(self) -> tuple[Callable, Callable]:
        """(target function, layer loss function) looked up in ``nstlib.style_losses``."""
        module = importlib.import_module("nstlib.style_losses")
        return getattr(module, self.target), getattr(module, self.layer_loss)

    def check_masks(self, *, error: type[Exception] = ValueError) -> None:
        """``error`` with a one-line message if this loss does not work with style masks."""
        if not self.masks:
            raise error(f"style_loss {self.name!r} does not work with style masks: "
                        f"{self.mask_reason}")


#: Every style loss by name ("gram" first: the default). Each value is relative (divided by
#: the size of its target, so about 1 when the generated features are zero, like the Gram
#: loss's default "normalized" form; "mrf" divides by the style patches' mean square, so
#: its value for zero features is that of the nearest patch, 0.25-1.5 in a test), so one
#: ``style_weight`` means roughly the same for each.
STYLE_LOSS_SPECS: dict[str, StyleLossSpec] = {spec.name: spec for spec in (
    StyleLossSpec(
        name="gram", title="Gram matrix",
        statistic="the second moments E[x xᵀ] of the C-dim feature vectors (C×C Gram)",
        reference="Gatys, Ecker & Bethge 2016", target="gram_target",
        layer_loss="gram_layer_loss", blend="targets",
        settings=("style_form", "gram_shrinkage")),
    StyleLossSpec(
        name="mean_std", title="mean and standard deviation",
        statistic="each channel's mean and standard deviation over the positions (the AdaIN "
                  "statistics)",
        reference="Li, Wang, Liu & Hou 2017 (Demystifying neural style transfer); Huang & "
                  "Belongie 2017",
        target="mean_std_target", layer_loss="mean_std_layer_loss"),
    StyleLossSpec(
        name="sliced_wasserstein", title="sliced Wasserstein",
        statistic="the distributions of random 1-D projections of the feature vectors "
                  "(sorted values)",
        reference="Heitz, Vanhoey, Chambon & Belcour 2021",
        target="sliced_wasserstein_target", layer_loss="sliced_wasserstein_layer_loss",
        settings=("sw_projections",), random=True),
    StyleLossSpec(
        name="histogram", title="histogram",
        statistic="each channel's full distribution over the positions (exact histogram "
                  "matching by sorting)",
        reference="Risser, Wilmot & Barnes 2017", target="histogram_target",
        layer_loss="histogram_layer_loss"),
    StyleLossSpec(
        name="mrf", title="MRF patches",
        statistic="3x3 feature patches: each generated patch is pulled to its nearest style "
                  "patch (normalised cross-correlation)",
        reference="Li & Wand 2016", target="mrf_target", layer_loss="mrf_layer_loss",
        masks=False, mask_reason="its nearest-patch target has no masked form here; use "
                                 "gram, mean_std, sliced_wasserstein or histogram",
        deepest_layers=2),
)}


def style_loss_spec(name: str | StyleLossSpec) -> StyleLossSpec:
    """The record of a style loss name; a record is returned as given.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(name, StyleLossSpec):
        return name
    check_choice(name, STYLE_LOSS_SPECS, "style loss", unknown=True)
    return STYLE_LOSS_SPECS[name]


def foreign_settings(name: str) -> dict[str, str]:
    """Setting -> the style loss it belongs to, for every loss-specific setting of the
    *other* style losses (those ``name`` must leave at their defaults)."""
    return {setting: other.name for other in STYLE_LOSS_SPECS.values() if other.name != name
            for setting in other.settings}
