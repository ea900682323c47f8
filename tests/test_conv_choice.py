"""Tests for nstlib.conv_choice: the measured conv_impl="auto", its cache and its key."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import nstlib
from nstlib import conv_choice, transfer
from nstlib.features import FeatureExtractor

SHALLOW = {"content_layers": ("block2_conv1",), "style_layers": ("block1_conv1",)}


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No forcing variable, no GPU, an empty cache folder and an empty in-process memo."""
    monkeypatch.delenv(conv_choice.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(conv_choice, "_MEMO", {})
    monkeypatch.setattr(conv_choice, "_gpu_visible", lambda: False)
    return tmp_path / "cache" / "nstlib" / "conv_choice.json"


class FakeMachine:
    """Step functions that advance a fake clock by a fixed time per call, and count."""

    def __init__(self, monkeypatch, standard: float, transposed: float):
        self.now, self.clock_calls, self.builds = 0.0, 0, []
        self.cost = {"standard": standard, "transposed": transposed}
        self.calls = {"standard": 0, "transposed": 0}
        monkeypatch.setattr(conv_choice, "_clock", self.clock)

    def clock(self) -> float:
        self.clock_calls += 1
        return self.now

    def make_steps(self, last_layer, size, compute_dtype):
        self.builds.append((last_layer, size, compute_dtype))
        return {form: (lambda f=form: self._run(f)) for form in ("standard", "transposed")}

    def _run(self, form):
        self.calls[form] += 1
        self.now += self.cost[form]


def _choose(machine, conv_impl="auto", last_layer="block5_conv1", size=256):
    return conv_choice.choose(conv_impl, "float32", last_layer, size, machine.make_steps)


# ----------------------------------------------------------------------------- the key


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, "amx"),
    ({"sse4_2", "avx2", "avx512f", "avx512_bf16"}, "avx512"),
    ({"sse4_2", "avx2", "fma"}, "avx2"),
    ({"neon", "asimd"}, "other"),
    (set(), "other"),
])
def test_isa_class_from_cpu_flags(flags, expected):
    assert conv_choice.isa_class(flags) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("", None), ("ALL", None), ("default", None), ("AVX2", "avx2"), ("AVX2_VNNI", "avx2"),
    ("AVX512_CORE", "avx512"), ("AVX512_CORE_BF16", "avx512"), ("AVX10_1_512", "avx512"),
    ("AVX512_CORE_AMX", "amx"), ("SSE41", "other"), ("AVX", "other"),
])
def test_onednn_isa_cap_names_the_class_it_allows(value, expected):
    assert conv_choice.onednn_isa_cap(value) == expected


@pytest.mark.parametrize(("cap", "hardware", "expected"), [
    ("AVX2", {"avx2", "avx512f", "amx_tile"}, "avx2"),  # capped below the CPU
    ("AVX512_CORE", {"avx2", "avx512f", "amx_tile"}, "avx512"),
    ("AVX512_CORE_AMX", {"avx2"}, "avx2"),  # a cap above the CPU changes nothing
    ("", {"avx2", "avx512f"}, "avx512"),
])
def test_isa_class_of_this_machine_is_lowered_to_the_onednn_cap(monkeypatch, cap, hardware,
                                                                 expected):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(conv_choice, "cpu_flags", lambda: hardware)
    assert conv_choice.isa_class() == expected
    # flags passed in are classified as they are: the cap speaks of this machine only
    assert conv_choice.isa_class({"avx2", "avx512f"}) == "avx512"


@pytest.mark.parametrize(("cap", "suffix"), [("", ""), ("AVX2", " (oneDNN capped at avx2)")])
def test_describe_cpu_names_model_cores_and_the_class_that_runs(monkeypatch, cap, suffix):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(conv_choice, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(conv_choice, "cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr(conv_choice, "usable_cores", lambda: 3)
    expected_class = "avx2" if cap else "avx512"
    assert conv_choice.describe_cpu() == (
        f"Test CPU 9000, 3 cores, {expected_class} instruction-set class{suffix}")


def test_cache_key_includes_isa_class_tf_version_dtype_size_and_depth(monkeypatch):
    monkeypatch.setattr(conv_choice, "isa_class", lambda: "avx2")
    key = conv_choice.cache_key("float32", 256, "block5_conv1", tf_version="2.21.0")
    assert "avx2" in key and "tf 2.21.0" in key and conv_choice.cpu_model() in key
    others = {conv_choice.cache_key("float32", 256, "block5_conv1", tf_version="2.22.0"),
              conv_choice.cache_key("bfloat16", 256, "block5_conv1", tf_version="2.21.0"),
              conv_choice.cache_key("float32", 512, "block5_conv1", tf_version="2.21.0"),
              conv_choice.cache_key("float32", 256, "block4_conv2", tf_version="2.21.0")}
    monkeypatch.setattr(conv_choice, "isa_class", lambda: "avx512")
    others.add(conv_choice.cache_key("float32", 256, "block5_conv1", tf_version="2.21.0"))
    assert key not in others and len(others) == 5


@pytest.mark.parametrize(("size", "bucket"), [(None, 256), (16, 64), (90, 64), (91, 128),
                                              (256, 256), (300, 256), (363, 512), (4000, 512)])
def test_size_bucket_is_the_nearest_on_a_log_scale(size, bucket):
    # 90 < 64·√2 = 90.5 < 91; 362 < 256·√2 = 362.04 < 363
    assert conv_choice.size_bucket(size) == bucket


# ----------------------------------------------------------------------------- measuring


@pytest.mark.parametrize(("standard", "transposed", "expected"),
                         [(0.050, 0.030, "transposed"), (0.041, 0.052, "standard"),
                          (0.100, 0.096, "standard"), (0.100, 0.094, "transposed")])
def test_the_faster_of_two_fake_timings_is_chosen_and_cached(isolated, monkeypatch, standard,
                                                              transposed, expected):
    machine = FakeMachine(monkeypatch, standard, transposed)
    impl, reason = _choose(machine)
    assert impl == expected
    assert machine.builds == [("block5_conv1", 256, "float32")]
    assert machine.calls == {"standard": 4, "transposed": 4}  # a warm-up and 3 repeats
    assert reason == (f"measured: standard {1000 * standard:.1f} ms, transposed "
                      f"{1000 * transposed:.1f} ms (forward pass to block5_conv1 at 256 px, "
                      f"median of 3) (cache {conv_choice._display(isolated)})")
    entry = next(iter(json.loads(isolated.read_text())["entries"].values()))
    assert entry["choice"] == expected
    assert entry["seconds"] == pytest.approx({"standard": standard, "transposed": transposed})


def test_time_forms_stops_rounds_at_the_budget_and_measure_takes_the_median(monkeypatch):
    machine = FakeMachine(monkeypatch, 1.5, 1.0)
    steps = machine.make_steps("block5_conv1", 512, "float32")
    assert conv_choice.time_forms(steps, repeats=3, budget=2.0) == {
        "standard": [1.5, 1.5], "transposed": [1.0, 1.0]}  # 5 s after two rounds: no third
    durations = {"standard": iter([5.0, 0.9, 0.2, 0.1]), "transposed": iter([5.0, 0.3, 0.3, 0.3])}

    def run(form):  # the first call of each is the warm-up, which is not timed
        machine.now += next(durations[form])

    monkeypatch.setattr(machine, "_run", run)
    entry = conv_choice._measure("key", "float32", 512, "block5_conv1", machine.make_steps)
    assert entry["seconds"] == pytest.approx({"standard": 0.2, "transposed": 0.3})
    assert (entry["choice"], entry["repeats"], entry["size"]) == ("standard", 3, 512)


def test_a_cached_decision_is_reused_without_measuring(isolated, monkeypatch):
    first = FakeMachine(monkeypatch, 0.041, 0.052)
    assert _choose(first).impl == "standard"
    monkeypatch.setattr(conv_choice, "_MEMO", {})  # as a new process would start
    again = FakeMachine(monkeypatch, 0.001, 0.002)
    impl, reason = _choose(again)
    assert impl == "standard" and again.builds == [] and again.clock_calls == 0
    assert reason.startswith("cached measurement of ") and "standard 41.0 ms" in reason
    isolated.unlink()  # within one process the decision is remembered without the file
    assert _choose(again) == (impl, reason) and again.clock_calls == 0
    assert _choose(again, size=512).impl == "standard" and again.builds == [
        ("block5_conv1", 512, "float32")]  # another size bucket is measured anew


@pytest.mark.parametrize("content", ["{not json", '{"entries": [1, 2]}', "[]",
                                     '{"entries": {"KEY": {"choice": "winograd"}}}'])
def test_a_corrupt_cache_is_measured_again_and_replaced(isolated, monkeypatch, content):
    key = conv_choice.cache_key("float32", 256, "block5_conv1")
    isolated.parent.mkdir(parents=True)
    isolated.write_text(content.replace("KEY", key))
    machine = FakeMachine(monkeypatch, 0.050, 0.030)
    impl, reason = _choose(machine)
    assert impl == "transposed" and len(machine.builds) == 1
    assert reason.startswith("measured: ")
    assert json.loads(isolated.read_text())["entries"][key]["choice"] == "transposed"


def test_an_unwritable_cache_is_not_an_error(isolated, monkeypatch, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    machine = FakeMachine(monkeypatch, 0.050, 0.030)
    impl, reason = _choose(machine)
    assert impl == "transposed" and "; cache not written: " in reason
    assert blocker.read_text() == "a file where the cache folder would be"


# ----------------------------------------------------------------------------- not measuring


def test_explicit_forms_env_var_and_gpu_skip_measuring(isolated, monkeypatch):
    machine = FakeMachine(monkeypatch, 0.050, 0.030)
    assert _choose(machine, "standard") == ("standard", "requested")
    assert _choose(machine, "transposed") == ("transposed", "requested")
    monkeypatch.setenv(conv_choice.ENV_VAR, "standard")
    assert _choose(machine) == ("standard", "forced by NSTLIB_CONV_IMPL=standard")
    monkeypatch.setenv(conv_choice.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=r"^NSTLIB_CONV_IMPL must be one of standard, "
                                         r"transposed, got 'fast'$"):
        _choose(machine)
    monkeypatch.delenv(conv_choice.ENV_VAR)
    monkeypatch.setattr(conv_choice, "_gpu_visible", lambda: True)
    assert _choose(machine) == ("standard", "GPU visible: plain Conv2D (cuDNN), not measured")
    with pytest.raises(ValueError, match="conv_impl must be one of auto, standard, transposed"):
        _choose(machine, "winograd")
    assert machine.builds == [] and machine.clock_calls == 0 and not isolated.exists()


def test_an_explicit_form_builds_the_extractor_without_timing(isolated, monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("measured although the form was given")

    monkeypatch.setattr(conv_choice, "time_forms", no_timing)
    extractor = FeatureExtractor(**SHALLOW, weights="random", conv_impl="standard")
    assert (extractor.conv_impl, extractor.conv_impl_reason) == ("standard", "requested")
    assert not isolated.exists()


# ----------------------------------------------------------------------------- for real


def test_auto_measures_the_real_network_once_and_keeps_random_streams(isolated):
    random.seed(0)
    FeatureExtractor(**SHALLOW, weights="random", conv_impl="transposed")
    without_measuring = random.getstate()  # Keras' unseeded initializers draw from `random`
    random.seed(0)
    extractor = FeatureExtractor(**SHALLOW, weights="random", image_size=40)
    assert random.getstate() == without_measuring  # the measurement's models drew nothing
    assert extractor.conv_impl in conv_choice.FORMS
    assert extractor.conv_impl_reason.startswith("measured: standard ")
    assert "(forward pass to block2_conv1 at 64 px, median of " in extractor.conv_impl_reason
    entries = json.loads(isolated.read_text())["entries"]
    (key, entry), = entries.items()
    assert f"| {conv_choice.isa_class()} |" in key and "| tf 2." in key
    assert entry["choice"] == extractor.conv_impl and 2 <= entry["repeats"] <= 3
    again = FeatureExtractor(**SHALLOW, weights="random", seed=1, image_size=60)
    assert (again.conv_impl, again.conv_impl_reason) == (extractor.conv_impl,
                                                         extractor.conv_impl_reason)


def test_the_run_record_says_which_form_was_used_and_why(monkeypatch):
    monkeypatch.setenv(conv_choice.ENV_VAR, "standard")
    transfer.cached_extractor.cache_clear()
    try:
        content = np.full((12, 16, 3), 0.5, np.float32)
        record = nstlib.stylize(content, content, size=16, steps=1, weights="random",
                                progress=False, **SHALLOW).record
    finally:
        transfer.cached_extractor.cache_clear()
    assert record["conv_impl"] == "auto" and record["conv_impl_used"] == "standard"
    assert record["conv_impl_reason"] == "forced by NSTLIB_CONV_IMPL=standard"
