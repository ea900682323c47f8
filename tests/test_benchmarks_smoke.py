"""Cheap correctness checks of the benchmark helpers: FLOP counts by hand, statistics,
turn-taking, and the reference loss against the tutorial model (no timed assertions)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import common  # noqa: E402
import flops  # noqa: E402


def test_conv_flops_hand_count_one_layer():
    # block1_conv2 at 256 x 256: 64 -> 64 channels, 3x3 kernel, 2 FLOPs per multiply-add.
    assert flops.conv_flops(256, 256, 64, 64) == 2 * 256 * 256 * 9 * 64 * 64 == 4_831_838_208
    rows = flops.layer_table(256, 256, "block1_conv2")
    assert [r["layer"] for r in rows] == ["block1_conv1", "block1_conv2"]
    assert rows[0]["forward"] == 2 * 256 * 256 * 9 * 3 * 64
    assert rows[1]["forward"] == 4_831_838_208


def test_layer_table_pools_with_floor_division():
    rows = {r["layer"]: r for r in flops.layer_table(170, 256, "block5_conv2")}
    assert (rows["block2_conv1"]["height"], rows["block2_conv1"]["width"]) == (85, 128)
    assert (rows["block3_conv1"]["height"], rows["block3_conv1"]["width"]) == (42, 64)
    assert (rows["block5_conv2"]["height"], rows["block5_conv2"]["width"]) == (10, 16)


def test_step_flops_counts_forward_and_input_gradient_to_deepest_layer():
    counts = flops.step_flops(224, 224)
    assert counts["deepest_layer"] == "block5_conv1"
    assert counts["conv_layers"] == 13
    table = flops.layer_table(224, 224, "block5_conv1")
    forward = sum(r["forward"] for r in table)
    assert counts["forward"] == counts["input_gradient"] == forward
    assert counts["conv_total"] == 2 * forward
    # All 16 VGG19 convs at 224 px are the well-known ~19.6 G multiply-adds.
    full = sum(r["forward"] for r in flops.layer_table(224, 224, "block5_conv4"))
    assert full / 2 == pytest.approx(19.6e9, rel=0.01)
    # Gram: 4·h·w·C² per style layer (block1_conv1 at full size, C = 64, ...).
    assert counts["gram"] == sum(4 * h * h * c * c for h, c in
                                 [(224, 64), (112, 128), (56, 256), (28, 512), (14, 512)])


def test_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="unknown conv layer"):
        flops.layer_table(64, 64, "block6_conv1")


def test_summary_median_and_quartiles():
    s = common.summary([3.0, 1.0, 2.0, 10.0])
    assert s["n"] == 4 and s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0
    assert common.summary([])["median"] is None


def test_turn_taking_alternates_and_times_each_participant():
    order = []

    def sleeper(name, seconds, steps):
        def step():
            order.append(name)
            time.sleep(seconds)
        return common.loop(step, steps)

    taking = common.TurnTaking({"a": sleeper("a", 0.02, 3), "b": sleeper("b", 0.001, 5)})
    durations = taking.run()
    assert order == ["a", "b", "a", "b", "a", "b", "b", "b"]
    assert len(durations["a"]) == 3 and len(durations["b"]) == 5
    assert min(durations["a"]) >= 0.015  # each interval holds only that participant's step
    assert max(durations["b"]) < 0.015


def test_turn_taking_reports_a_failing_participant():
    def broken(callback):
        callback(0)
        raise ZeroDivisionError

    with pytest.raises(RuntimeError, match="broken"):
        common.TurnTaking({"ok": common.loop(lambda: None, 3), "broken": broken}).run()





def test_machine_record_and_stamp_name_the_cpu_class_the_library_detects():
    from nstlib import conv_choice

    try:
        flags = next(line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = []
    expected = ("amx" if "amx_tile" in flags else "avx512" if "avx512f" in flags
                else "avx2" if "avx2" in flags else "other")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()  # `make test-avx2` sets AVX2
    if cap.startswith("AVX2") and expected in ("avx512", "amx"):
        expected = "avx2"
    info, stamp = common.machine_info(), common.stamp()
    assert info["isa_class"] == stamp["isa_class"] == conv_choice.isa_class() == expected
    assert info["cpu_model"] == stamp["cpu_model"] == conv_choice.cpu_model()
    assert stamp["tensorflow"] == info["tensorflow"] and stamp["date_utc"][:4].isdigit()
    assert set(info["cpu_flags"]) <= set(flags)


def test_reference_loss_on_nstlib_matches_the_tutorial_model():
    import reference_tutorial as ref
    from time_to_image import ReferenceLoss

    import nstlib

    content = nstlib.load_sample("chelsea", max_size=40)
    style = nstlib.load_sample("brushstrokes", max_size=40)
    image = nstlib.load_sample("coffee", max_size=40)[:, : content.shape[1], : content.shape[2]]
    tutorial = ref.TutorialLoss(content, style)
    ours = ReferenceLoss(content, style)
    for key in ("total", "content", "style"):
        assert float(ours(image)[key]) == pytest.approx(float(tutorial(image)[key]), rel=1e-4)


def test_time_to_quality_targets_the_previous_default_and_counts_own_time_only():
    """A tiny pair: the target is the previous method's final loss, the new default's time
    is its own (the other method's turns excluded), and the ratio is their quotient."""
    import time_to_quality

    row = time_to_quality.measure_pair("chelsea", "brushstrokes", size=32, steps_previous=6)
    assert row["previous_steps"] == 6 and row["default_method"]["schedule"] == "cosine"
    assert row["default_method"]["steps"] == 120
    if row["steps_to_target"] is None:
        assert row["default_final_loss"] > row["target_loss"]
    else:
        assert 1 <= row["steps_to_target"] <= 120
        assert 0 < row["seconds_to_target"] <= row["default_seconds"]
        assert row["ratio"] == pytest.approx(row["seconds_to_target"] / row["previous_seconds"])
    # own seconds: both ran alternately, so neither clock can exceed the wall time of both
    assert row["previous_seconds"] + row["default_seconds"] < row["wall_seconds"] * 1.05


def test_descent_reports_the_returned_loss_against_the_start():
    """benchmarks/descent.py at one tiny cell: ratios of the returned and the last image's
    loss to the start, computed from the run's own history."""
    import descent

    out = descent.run((32,), (3,), unguarded=True, weights="random")
    assert [(c["inputs"], c["size"], c["steps"]) for c in out["cells"]] == [
        ("noise", 32, 3), ("natural", 32, 3)]
    for cell in out["cells"]:
        default, plain = cell["default"], cell["unguarded"]
        assert default["guard"] is True and plain["guard"] is False
        assert default["returned_ratio"] <= default["last_ratio"] + 1e-12
        assert plain["returned_ratio"] == pytest.approx(plain["last_ratio"])
        assert default["min_ratio"] <= default["returned_ratio"] + 1e-12
    assert out["default_lowers_every_cell"] == (not out["cells_not_lowered"])


@pytest.mark.parametrize("network", ["vgg16", "vgg19"])
def test_tutorial_model_copies_every_convolution_of_the_source_network(network):
    """The tutorial's Keras model of the source's network gives the source's own features
    at the deepest layer (a convolution left at Keras's random initialisation would not)."""
    import reference_tutorial as ref

    import nstlib

    source = nstlib.FeatureExtractor(ref.TUTORIAL_CONTENT_LAYERS, ref.TUTORIAL_STYLE_LAYERS,
                                     weights="random", seed=3, network=network)
    image = nstlib.load_sample("chelsea", max_size=48)
    ours = source(image)
    tutorial = ref.TutorialExtractor(source)(image)
    a = tutorial["content"]["block5_conv2"].numpy()
    b = ours.content[0].numpy()  # block5_conv2, the one content layer
    assert a.shape == b.shape
    assert float(abs(a - b).max()) <= 1e-4 * float(abs(b).max())


def test_first_good_needs_both_judge_targets():
    from time_to_picture import first_good

    judged = [{"step": 0, "style": 0.9, "content": 1.0},
              {"step": 10, "style": 0.5, "content": 0.70},   # style met, content not
              {"step": 20, "style": 0.6, "content": 0.85},   # content met, style not
              {"step": 30, "style": 0.52, "content": 0.81}]
    assert first_good(judged, 0.525, 0.8)["step"] == 30
    assert first_good(judged, 0.4, 0.8) is None


def test_time_to_picture_times_own_seconds_against_the_reference(monkeypatch):
    """A tiny pair: targets come from the reference's final judged image, a method's
    picture time is its first judged image within both targets, and the ratio and the
    tutorial-loss time follow from the recorded traces."""
    import time_to_picture as ttp

    monkeypatch.setitem(ttp.METHODS, "lbfgs_tutorial_loss",
                        ("tutorial_loss", {"optimizer": "lbfgs", "steps": 8}, "test"))
    monkeypatch.setitem(ttp.METHODS, "default",
                        ("stylize", {"steps": 12, "weights": "random"}, "test"))
    monkeypatch.setattr(ttp, "JUDGE_EVERY", 2)
    out = ttp.measure_pair("chelsea", "brushstrokes", 32, 6,
                           ["default", "lbfgs_tutorial_loss"])
    reference = out["reference"]
    assert reference["judged"][-1][0] == 6
    assert out["targets"]["judge_style_at_most"] == pytest.approx(
        ttp.STYLE_TOLERANCE * reference["final_judge_style"])
    own = reference["own_seconds"]
    for name, row in out["methods"].items():
        steps = [j[0] for j in row["judged"] if j[0] != "returned"]
        assert all(s % 2 == 0 for s in steps) and row["judged"][-1][0] == "returned"
        good = [j for j in row["judged"]
                if j[2] <= out["targets"]["judge_style_at_most"]
                and j[3] >= out["targets"]["judge_content_at_least"]]
        if good:
            assert row["seconds_to_picture"] == pytest.approx(good[0][1], abs=0.01)
            assert row["ratio_to_reference"] == pytest.approx(
                row["seconds_to_picture"] / own, rel=0.01)
        else:
            assert row["seconds_to_picture"] is None
        assert row["own_seconds"] + own < out["wall_seconds"] * 1.05, name
    tutorial = out["methods"]["lbfgs_tutorial_loss"]
    if tutorial["seconds_to_reference_loss"] is not None:
        assert tutorial["seconds_to_reference_loss"] <= tutorial["own_seconds"]
    else:
        assert tutorial["final_tutorial_loss"] > reference["final_tutorial_loss"]


def test_time_to_quality_runs_the_unguarded_default_at_the_rate_given():
    """--unguarded: a third method, the default with guard=False, keeps Adam's default
    rate and is measured against the same target as the default."""
    import time_to_quality

    row = time_to_quality.measure_pair("chelsea", "brushstrokes", size=32, steps_previous=4,
                                       unguarded=True)
    plain = row["unguarded"]
    assert plain["learning_rate"] == pytest.approx(0.1)
    if plain["steps_to_target"] is None:
        assert plain["final_loss"] > row["target_loss"]
    else:
        assert plain["ratio"] == pytest.approx(plain["seconds_to_target"]
                                               / row["previous_seconds"])


def test_time_to_picture_runs_the_headline_methods_unless_all_are_asked_for(capsys):
    import time_to_picture as ttp

    assert ttp.chosen_methods() == ["default", "constant_adam", "lbfgs"]
    assert set(ttp.HEADLINE_METHODS) <= set(ttp.METHODS)
    assert ttp.chosen_methods(["all"]) == list(ttp.METHODS)
    assert ttp.chosen_methods(["bfloat16"]) == ["bfloat16"]
    with pytest.raises(SystemExit):
        ttp.parse_args(["--methods", "all,default"])
    assert "stands alone" in capsys.readouterr().err


def test_parse_pairs_reads_content_plus_style_lists():
    import common

    assert common.parse_pairs("chelsea+mosaic,coffee+stripes") == [("chelsea", "mosaic"),
                                                                   ("coffee", "stripes")]
    assert common.parse_pairs("") is None
