"""The run plan: made once, frozen, the sizes of ``sizes``, the recipe of the weights found."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from nstlib import resources, sizes
from nstlib.plan import FoundWeights, RunPlan, make_plan
from nstlib.settings import RECIPES, StylizeConfig

PACKAGE = Path(__file__).resolve().parents[1] / "nstlib"


class Found(NamedTuple):
    """Stands in for ``vgg_weights.ResolvedWeights`` (only source and network are read)."""

    source: str
    path: None
    network: str
    reason: str


@pytest.mark.parametrize("content_hw", [(301, 200), (37, 1000), (257, 255), (999, 1)])
@pytest.mark.parametrize("style_hws", [[(512, 384)], [(3, 700), (641, 641)]])
def test_stage_sizes_are_fitted_hw_of_each_scale(content_hw, style_hws):
    config = StylizeConfig.from_flat(scales=(63, 129, 255), steps=(1, 2, 3), style_scale=0.7,
                                     weights="random")
    plan = make_plan(config, content_hw, style_hws)
    top_style = round(0.7 * 255)  # style_scale is relative to the last scale
    assert [s.size for s in plan.stages] == [63, 129, 255]
    assert [s.steps for s in plan.stages] == [1, 2, 3] and plan.total_steps == 6
    for stage in plan.stages:
        style_side = max(1, round(top_style * stage.size / 255))
        assert stage.style_size == style_side
        assert stage.content_hw == sizes.fitted_hw(content_hw, stage.size)
        assert stage.style_hws == tuple(sizes.fitted_hw(hw, style_side) for hw in style_hws)
        assert max(stage.content_hw) == stage.size
    assert plan.result_hw == sizes.fitted_hw(content_hw, 255) and plan.size == 255


def test_stage_sizes_by_hand_for_an_odd_aspect_ratio():
    plan = make_plan(StylizeConfig.from_flat(size=150, style_size=99, weights="random"),
                     (301, 200), (640, 427))
    # 200 * 150 / 301 = 99.67 -> 100; 427 * 99 / 640 = 66.05 -> 66
    assert plan.stages[0].content_hw == (150, 100)
    assert plan.stages[0].style_hws == ((99, 66),)


def test_auto_plans_the_recipe_of_the_weights_found():
    config = StylizeConfig.from_flat(weights="auto", size=64)
    hed = make_plan(config, (64, 64), (64, 64), Found("hed-vgg16", None, "vgg16", "found"))
    random = make_plan(config, (64, 64), (64, 64), Found("random", None, "vgg19", "fell back"))
    assert (hed.network, hed.weights_source, hed.recipe) == ("vgg16", "hed-vgg16", "hed-vgg16")
    assert (random.network, random.weights_source, random.recipe) == ("vgg19", "random",
                                                                       "random")
    assert hed.weights_found and random.weights_found
    for plan in (hed, random):
        recipe, loss, network = RECIPES[plan.recipe], plan.config.loss, plan.config.network
        assert network.architecture == plan.network and network.weights == "auto"
        assert network.pooling == recipe["pooling"]
        assert network.first_layer_dc == recipe["first_layer_dc"]
        for name in ("content_weight", "style_weight", "tv_weight", "content_layers",
                     "style_layers"):
            assert getattr(loss, name) == recipe[name]
    assert (hed.deepest_layer, random.deepest_layer) == ("block4_conv2", "block3_conv1")
    assert random.peak_bytes < hed.peak_bytes  # shallower layers, smaller activations
    assert "(expected)" not in resources.describe_plan(hed)
    assert resources.describe_plan(hed).startswith("network: VGG16, weights hed-vgg16, recipe "
                                                   "hed-vgg16: max pooling")
    assert resources.describe_plan(random).startswith("network: VGG19, weights random, "
                                                      "recipe random: avg pooling")


def test_a_plan_before_the_weights_are_found_is_the_expected_one(monkeypatch):
    from nstlib import plan as plan_module

    monkeypatch.setattr(plan_module, "likely_source", lambda weights, network: ("hed-vgg16",
                                                                                "vgg16"))
    expected = make_plan(StylizeConfig.from_flat(size=64), (64, 64), (64, 64))
    assert not expected.weights_found and expected.network == "vgg16"
    assert "weights hed-vgg16 (expected)" in resources.describe_plan(expected)
    assert expected.describe()[-1] == resources.describe_plan(expected)


def test_the_plan_is_frozen_and_leaves_no_recipe_setting_open():
    plan = make_plan(StylizeConfig(size=64), (48, 64), [(64, 64)], FoundWeights("random",
                                                                                 "vgg19"))
    assert isinstance(plan, RunPlan) and isinstance(plan.stages, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.peak_bytes = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stages[0].content_hw = (1, 1)
    loss, network = plan.config.loss, plan.config.network
    for value in (loss.content_weight, loss.style_weight, loss.tv_weight, loss.content_layers,
                  loss.style_layers, network.pooling, network.architecture,
                  network.first_layer_dc):
        assert value is not None


def test_predictions_are_the_resources_models():
    config = StylizeConfig.from_flat(scales=(64, 128), steps=(3, 5), weights="random",
                                     optimizer="lbfgs", pyramid_levels=2)
    plan = make_plan(config, (200, 300), [(128, 96), (50, 400)])
    assert plan.peak_bytes == resources.predict_peak_bytes(config, (200, 300),
                                                           [(128, 96), (50, 400)])
    assert plan.seconds == pytest.approx(resources.predict_run_seconds(config, (200, 300)))
    assert plan.stages[0].step_seconds == pytest.approx(
        resources.predict_step_seconds(config, (200, 300), 64))
    assert resources.predict_peak_bytes(plan) == plan.peak_bytes
    assert plan.describe(None) == resources.describe(config, (200, 300),
                                                     [(128, 96), (50, 400)], None)
    record = plan.record()
    assert record["stages"][1] == {"size": 128, "style_size": 128, "steps": 5,
                                   "content_hw": [85, 128], "style_hws": [[128, 96], [16, 128]]}
    assert record["predicted_peak_bytes"] == plan.peak_bytes


def test_sizes_and_recipes_are_looked_up_in_few_places():
    # The run's sizes come from its plan: StylizeConfig.stages() is called by
    # StylizeConfig.validate (it checks scales against steps), plan.make_plan, and the
    # CLI's batch bar (steps only). The recipe is applied in plan.resolve_config (and
    # StylizeConfig.planned, kept for notebooks), and memory is checked by stylize and
    # by the CLI before TensorFlow loads.
    def calls(pattern):
        return {path.name: len(found) for path in PACKAGE.rglob("*.py")
                if (found := re.findall(pattern, path.read_text()))}

    assert sum(calls(r"\.stages\(\)").values()) <= 3, calls(r"\.stages\(\)")
    assert calls(r"\.planned\(\)") == {}
    assert set(calls(r"\.resolved\(")) == {"plan.py", "settings.py"}
    assert calls(r"\bcheck_fits\(") == {"resources.py": 1, "transfer.py": 1, "inputs.py": 1}


def test_recipes_are_read_and_sizes_decided_in_one_place_each():
    # The recipe table is read only where it is defined and in StylizeConfig.resolved
    # (reached through plan.resolve_config); the objective resolves an open loss config
    # through plan.resolve_loss. Before issue #24's last step losses.py read RECIPES[...]
    # itself and transfer.py, wct.py and the ablation worker named or sized things on
    # their own (4 RECIPES[ in nstlib, 5 recipe_for calls, 2 style_side calls, 3
    # resize_max_side calls, 2 "most heavily weighted style" look-ups).
    def calls(pattern):
        return {str(path.relative_to(PACKAGE)): len(found) for path in PACKAGE.rglob("*.py")
                if (found := re.findall(pattern, path.read_text()))}

    assert calls(r"RECIPES\[") == {"settings.py": 3}  # 2 in the table itself
    assert calls(r"(?<!def )\brecipe_for\(") == {"settings.py": 1, "plan.py": 1,
                                                   "resources.py": 1}
    assert calls(r"(?<!def )\bresolve_loss\(") == {"losses.py": 1}
    assert calls(r"(?<!def )\bstyle_side\(") == {"settings.py": 1}
    assert calls(r"(?<!def )\bresize_max_side\(") == {"images.py": 1}  # load_image's max_size
    assert calls(r"index\(max\(") == {}  # the main style is the plan's


def test_stylize_records_its_plan_and_checks_memory_once(monkeypatch):
    from nstlib import transfer

    checks = []
    monkeypatch.setattr(transfer, "check_fits", lambda plan: checks.append(plan))
    rng = np.random.default_rng(0)
    content, style = rng.random((30, 20, 3), np.float32), rng.random((24, 24, 3), np.float32)
    config = StylizeConfig.from_flat(size=24, steps=2, weights="random",
                                     content_layers=("block2_conv1",),
                                     style_layers=("block1_conv1",))
    result = transfer.stylize(content, style, config, progress=False)
    assert len(checks) == 1 and checks[0].weights_found
    plan = result.record["plan"]
    assert plan["stages"] == [{"size": 24, "style_size": 24, "steps": 2, "content_hw": [24, 16],
                               "style_hws": [[24, 24]]}]
    assert result.record["content_shape"] == [1, 24, 16, 3]
    assert plan["recipe"] == result.record["recipe"] == "random"
    checked = make_plan(config, (30, 20), (24, 24))  # as the CLI plans from the headers
    transfer.stylize(content, style, config, progress=False, checked_plan=checked)
    assert len(checks) == 1  # the caller's check stands: the plan found needs no more


@pytest.mark.parametrize(("blend", "main"), [(None, 0), ((0.2, 0.5, 0.5), 1), ((0, 0, 3), 2)])
def test_the_main_style_is_the_most_heavily_weighted_first_on_a_tie(blend, main):
    config = StylizeConfig.from_flat(size=32, weights="random", style_blend=blend)
    plan = make_plan(config, (32, 32), [(32, 32)] * 3)
    assert plan.main_style == main


def test_min_input_side_is_the_stride_of_the_receptive_field():
    from nstlib.receptive_fields import receptive_field
    from nstlib.vgg_layers import NETWORKS, min_input_side

    for network, spec in NETWORKS.items():
        for layer in spec.layer_names:
            assert min_input_side(layer, network) == receptive_field(layer, network)[1]
    assert min_input_side("block5_conv1") == 16 and min_input_side("block5_pool") == 32


SMALL_LAYERS = {"weights": "random", "content_layers": ("block2_conv1",),
                "style_layers": ("block1_conv1", "block2_conv1")}


@pytest.mark.parametrize("flat, check_content, message", [
    ({"size": 32}, True, None),
    ({"size": 18, "content_layers": ("block5_conv1",)}, True,
     "size 18 is too small: the content image would be 15x18 px and block5_conv1 needs a "
     "shorter side of at least 16 px"),
    ({"size": 32, "style_size": 1}, True, "style_size 1 is too small: the style image would "
     "be 1x1 px and block2_conv1 needs a shorter side of at least 2 px"),
    ({"size": 32, "style_scale": 0.02}, False, "style_scale 0.02 is too small: the style "
     "image would be 1x1 px and block2_conv1 needs a shorter side of at least 2 px"),
    ({"size": 32, "pyramid_levels": 10}, True, "pyramid_levels 10 is too many for the "
     "content image at 27x32 px: its level 9 would be 1x1 px and block2_conv1 needs a "
     "shorter side of at least 2 px; use at most 5"),
    ({"scales": (1, 32), "steps": 1}, True, "scales 1,32 is too small: the content image "
     "would be 1x1 px (at scale 1) and block2_conv1 needs a shorter side of at least 2 px"),
    ({"scales": (1, 32), "steps": 1}, False, "scales 1,32 is too small: the style image "
     "would be 1x1 px (at scale 1)"),
    ({"size": 3, "style_size": 32}, False, None),  # the content is a batch's to check
])
def test_check_sizes_names_the_setting_that_makes_an_image_too_small(flat, check_content,
                                                                     message):
    from nstlib import ConfigError

    plan = make_plan(StylizeConfig.from_flat(**{**SMALL_LAYERS, **flat}), (40, 48), (32, 32))
    if message is None:
        plan.check_sizes(check_content)
        return
    with pytest.raises(ConfigError) as info:
        plan.check_sizes(check_content)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_stylize_refuses_a_plan_too_small_for_its_deepest_layer_before_any_work():
    from nstlib import ConfigError, transfer

    content, style = np.ones((40, 48, 3), np.float32), np.ones((32, 32, 3), np.float32)
    config = StylizeConfig.from_flat(**SMALL_LAYERS, size=32, style_size=1, steps=1)
    with pytest.raises(ConfigError) as info:
        transfer.stylize(content, style, config, progress=False)
    with pytest.raises(ConfigError) as planned:
        make_plan(config, (40, 48), (32, 32)).check_sizes()
    assert str(info.value) == str(planned.value)
