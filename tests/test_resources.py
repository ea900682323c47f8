"""nstlib.resources: the memory and time model against hand counts, its structure, the
stored calibration measurements, available memory, and the one-line refusal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nstlib import resources
from nstlib.plan import make_plan
from nstlib.settings import StylizeConfig

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = ROOT / "benchmarks" / "results" / "memory_calibration.json"
GIB = 2**30


def config(**flat) -> StylizeConfig:
    """A config with ImageNet VGG19 weights unless told otherwise: the network the
    calibration was measured with, and a plan that does not depend on what this machine
    has installed or cached (``weights="auto"`` plans with the source it would find)."""
    return StylizeConfig.from_flat(**{"weights": "imagenet", **flat})


def peak(size: int, style: int | None = None, **flat) -> int:
    """Predicted peak for square content (and style) images of ``size`` px."""
    style = size if style is None else style
    return resources.predict_peak_bytes(config(size=size, **flat), (size, size), (style, style))


# ----------------------------------------------------------------------------- hand counts


def test_layer_shapes_pool_with_floor_division_and_channels():
    shapes = {name: (h, w, c) for name, h, w, c in
              resources.layer_shapes(170, 256, "block5_conv2")}
    assert shapes["block1_conv1"] == (170, 256, 64)
    assert shapes["block1_pool"] == (85, 128, 64)
    assert shapes["block3_conv1"] == (42, 64, 256)
    assert shapes["block5_conv2"] == (10, 16, 512)
    assert list(shapes)[-1] == "block5_conv2" and "block5_conv3" not in shapes


def test_activation_bytes_by_hand_at_224_px():
    # every layer up to block5_conv1 (the default deepest): (side, channels, count)
    net = [(224, 64, 2), (112, 64, 1), (112, 128, 2), (56, 128, 1), (56, 256, 4), (28, 256, 1),
           (28, 512, 4), (14, 512, 1), (14, 512, 1)]
    loss = [(224, 64), (112, 128), (56, 256), (28, 512), (28, 512), (14, 512)]
    elements = sum(s * s * c * n for s, c, n in net)
    loss_bytes = sum(s * s * c * 4 for s, c in loss)
    assert resources.activation_bytes(config(), (224, 224)) == (4 * elements, loss_bytes)
    assert resources.activation_bytes(config(compute_dtype="bfloat16"), (224, 224)) == (
        2 * elements, loss_bytes)


def test_vgg16_activation_bytes_by_hand_at_224_px():
    """The trained VGG16 (weights="hed-vgg16"): three convolutions in blocks 3-5."""
    net = [(224, 64, 2), (112, 64, 1), (112, 128, 2), (56, 128, 1), (56, 256, 3), (28, 256, 1),
           (28, 512, 3), (14, 512, 1), (14, 512, 1)]
    loss = [(224, 64), (112, 128), (56, 256), (28, 512), (28, 512), (14, 512)]
    elements = sum(s * s * c * n for s, c, n in net)
    loss_bytes = sum(s * s * c * 4 for s, c in loss)
    five = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
    assert resources.activation_bytes(config(weights="hed-vgg16", style_layers=five),
                                      (224, 224)) == (4 * elements, loss_bytes)
    vgg16 = resources.step_flops(32, 32, ("block3_conv3",), (), network="vgg16")
    assert [r["layer"] for r in vgg16["per_layer"]][-2:] == ["block3_conv2", "block3_conv3"]
    assert vgg16["conv_layers"] == 7


def test_step_flops_hand_count():
    counts = resources.step_flops(256, 256, ("block1_conv2",), ())
    assert [r["layer"] for r in counts["per_layer"]] == ["block1_conv1", "block1_conv2"]
    forward = 2 * 256 * 256 * 9 * (3 * 64 + 64 * 64)
    assert counts["forward"] == forward and counts["conv_total"] == 2 * forward
    assert counts["gram"] == 0
    gram = resources.step_flops(64, 64, (), ("block1_conv1", "block2_conv1"))["gram"]
    assert gram == 4 * 64 * 64 * 64**2 + 4 * 32 * 32 * 128**2


def test_optimizer_state_is_counted():
    hw = (100, 50)
    n = 3 * 100 * 50
    assert resources.optimizer_bytes(config(), hw) == (2 + resources.IMAGE_COPIES) * n * 4
    assert resources.optimizer_bytes(config(optimizer="sgd"), hw) == resources.IMAGE_COPIES * n * 4
    vectors = (2 * resources.LBFGS_MEMORY + resources.LBFGS_SCIPY_EXTRA_VECTORS
               + resources.LBFGS_OWN_VECTORS)
    assert resources.optimizer_bytes(config(optimizer="lbfgs"), hw) == vectors * n * 8


# ----------------------------------------------------------------------------- structure


def test_four_times_the_pixels_is_four_times_the_variable_part():
    for kw in ({}, {"compute_dtype": "bfloat16"}, {"optimizer": "lbfgs"}):
        small, large = peak(1024, **kw), peak(2048, **kw)
        assert (large - resources.BASE_BYTES) == pytest.approx(
            4 * (small - resources.BASE_BYTES), rel=1e-6)


def test_bfloat16_predicts_less_than_float32():
    for size in (256, 1024, 4096):
        assert peak(size, compute_dtype="bfloat16") < peak(size)


def test_deeper_more_and_costlier_settings_predict_more():
    shallow = {"content_layers": "block3_conv2",
               "style_layers": "block1_conv1,block2_conv1,block3_conv1"}
    assert peak(1024, **shallow) < peak(1024)
    assert peak(1024, content_layers="block4_conv2,block5_conv4") > peak(1024)  # deeper
    assert peak(1024, content_layers="block4_conv2,block1_conv2") > peak(1024)  # one more
    assert peak(1024, optimizer="lbfgs") > peak(1024) > peak(1024, optimizer="sgd")
    assert peak(1024, pyramid_levels=3) > peak(1024)


def test_scales_cost_what_the_largest_scale_costs():
    assert resources.predict_peak_bytes(config(scales=(256, 512, 1024)), (1024, 1024),
                                        (1024, 1024)) == peak(1024)


def test_a_large_style_image_dominates_only_when_its_forward_pass_does():
    base = peak(256)
    assert peak(256, style=128) < base  # only the smaller input image differs
    assert peak(256, style=4096) < 1.2 * base  # resized to 256 px: only the input is larger
    large = peak(256, style=4096, style_size=4096)
    assert large > 2 * base
    assert large < peak(4096)  # a forward pass, not a whole step


def test_step_seconds_follow_flops_rate_and_cores(monkeypatch):
    monkeypatch.setattr(resources, "usable_cores", lambda: resources.CALIBRATION_CORES)
    cfg = config(size=512)
    flops = resources.step_flop_count(cfg, (512, 512))
    loss = cfg.resolved("imagenet").loss  # "auto" plans for the deeper ImageNet recipe
    counts = resources.step_flops(512, 512, loss.content_layers, loss.style_layers)
    assert flops == counts["conv_total"] + counts["gram"]
    random_loss = cfg.replace(weights="random").resolved("random").loss  # its layers
    random_counts = resources.step_flops(512, 512, random_loss.content_layers,
                                         random_loss.style_layers)
    assert resources.step_flop_count(cfg.replace(weights="random"), (512, 512)) == (
        random_counts["conv_total"] + random_counts["gram"]) < flops
    seconds = resources.predict_step_seconds(cfg, (512, 512))
    assert seconds == pytest.approx(flops / (resources.STEP_GFLOPS["float32"] * 1e9))
    monkeypatch.setattr(resources, "usable_cores", lambda: 4 * resources.CALIBRATION_CORES)
    assert resources.predict_step_seconds(cfg, (512, 512)) == pytest.approx(seconds / 4)


# ----------------------------------------------------------------------------- calibration


def calibration_cases():
    document = json.loads(CALIBRATION.read_text())
    return [case for case in document["cases"] if "error" not in case]


def case_config(case) -> StylizeConfig:
    return config(size=case["size"], steps=case["steps"], weights="random",
                  **case["overrides"])


def test_calibration_file_records_its_machine():
    document = json.loads(CALIBRATION.read_text())
    assert {"date_utc", "cpu_model", "cpu_flags", "tensorflow", "cases"} <= set(document)
    names = {case["name"] for case in calibration_cases()}
    assert {"float32_256", "float32_2048", "bfloat16_2048", "lbfgs_1024"} <= names


@pytest.mark.parametrize("case", calibration_cases(), ids=lambda case: case["name"])
def test_prediction_within_25_percent_of_measured_peak(case):
    predicted = resources.predict_peak_bytes(case_config(case), case["content_hw"],
                                             case["style_hw"])
    measured = case["peak_mib"] * 2**20
    assert abs(predicted / measured - 1) <= 0.25, (predicted / GIB, measured / GIB)


def test_lbfgs_vectors_match_the_measured_scipy_count():
    measured = json.loads(CALIBRATION.read_text())["scipy_lbfgs"]
    assert measured["maxcor"] == resources.LBFGS_MEMORY
    counted = 2 * resources.LBFGS_MEMORY + resources.LBFGS_SCIPY_EXTRA_VECTORS
    assert counted == round(measured["float64_vectors"])


def test_constants_are_the_fit_of_the_calibration_file():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import memory
    finally:
        sys.path.pop(0)
    fitted = memory.fit(json.loads(CALIBRATION.read_text()))
    assert resources.BASE_BYTES == pytest.approx(fitted["BASE_BYTES"], rel=0.01)
    for name in ("K_NET", "K_LOSS", "K_STYLE"):
        assert getattr(resources, name) == pytest.approx(fitted[name], rel=0.01), name
    for dtype, rate in fitted["STEP_GFLOPS"].items():
        assert resources.STEP_GFLOPS[dtype] == pytest.approx(rate, rel=0.01), dtype


# ----------------------------------------------------------------------------- availability


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_available_bytes_reads_meminfo_and_honours_a_lower_cgroup_limit(tmp_path):
    meminfo, own = tmp_path / "meminfo", tmp_path / "self_cgroup"
    write(meminfo, "MemTotal:       24000000 kB\nMemAvailable:    8000000 kB\n")
    write(own, "0::/job\n")
    cgroup = tmp_path / "cgroup"

    def available():
        return resources.available_bytes(str(meminfo), str(cgroup), str(own))

    assert available() == 8000000 * 1024  # no cgroup files
    write(cgroup / "job" / "memory.max", "max\n")
    write(cgroup / "job" / "memory.current", "123\n")
    assert available() == 8000000 * 1024
    write(cgroup / "job" / "memory.max", f"{2 * GIB}\n")
    write(cgroup / "job" / "memory.current", f"{GIB // 2}\n")
    assert available() == 3 * GIB // 2
    write(cgroup / "job" / "memory.stat", f"anon 5\ninactive_file {GIB // 4}\n")
    assert available() == 3 * GIB // 2 + GIB // 4  # reclaimable page cache counts as free
    write(cgroup / "memory.max", f"{GIB}\n")  # a tighter limit one level up
    write(cgroup / "memory.current", f"{GIB // 2}\n")
    assert available() == GIB // 2
    write(cgroup / "job" / "memory.max", f"{64 * GIB}\n")
    write(cgroup / "memory.max", f"{64 * GIB}\n")  # limits above what is free: meminfo wins
    assert available() == 8000000 * 1024


def test_available_bytes_cgroup_v1_and_psutil_fallback(tmp_path, monkeypatch):
    own = tmp_path / "self_cgroup"
    write(own, "4:memory:/a/b\n3:cpuset:/\n")
    cgroup = tmp_path / "cgroup"
    write(cgroup / "memory" / "a" / "b" / "memory.limit_in_bytes", f"{4 * GIB}\n")
    write(cgroup / "memory" / "a" / "b" / "memory.usage_in_bytes", f"{GIB}\n")
    write(cgroup / "memory" / "a" / "b" / "memory.stat", f"total_inactive_file {GIB}\n")
    write(cgroup / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # no limit
    missing = str(tmp_path / "no_meminfo")
    assert resources.available_bytes(missing, str(cgroup), str(own)) == 4 * GIB
    monkeypatch.setattr(resources, "_psutil_available", lambda: 5 * GIB)
    none = str(tmp_path / "none")
    assert resources.available_bytes(missing, none, none) == 5 * GIB
    monkeypatch.setattr(resources, "_psutil_available", lambda: None)
    assert resources.available_bytes(missing, none, none) is None


# ----------------------------------------------------------------------------- the check


def test_check_fits_refuses_with_one_line_naming_the_largest_size():
    available = int(21.3 * GIB)
    cfg = config(size=100000)
    with pytest.raises(resources.InsufficientMemoryError) as info:
        resources.check_fits(cfg, (512, 512), (512, 512), available, flag="--size")
    message = str(info.value)
    match = re.fullmatch(r"--size 100000 needs about ([\d.]+) TiB, 21\.3 GiB available; "
                         r"the largest size that fits is about (\d+) px", message)
    assert match, message
    needed = resources.predict_peak_bytes(cfg, (512, 512), (512, 512))
    assert float(match.group(1)) == pytest.approx(needed / 2**40, rel=0.01)
    largest = resources.largest_size_that_fits(cfg, (512, 512), (512, 512), available)

    def needs(size):
        return resources.predict_peak_bytes(config(size=size), (512, 512), (512, 512))

    assert needs(largest) <= available < needs(largest + 1)
    shown = int(match.group(2))
    assert shown <= largest < shown * 1.1 and needs(shown) <= available


def test_check_fits_passes_runs_that_fit_and_unknown_memory(monkeypatch):
    resources.check_fits(config(size=256), (256, 256), (256, 256), 64 * GIB)
    monkeypatch.setattr(resources, "available_bytes", lambda: None)
    resources.check_fits(config(size=10**6), (256, 256), (256, 256))
    with pytest.raises(ValueError, match="not even a 1 px image fits"):
        resources.check_fits(config(size=256), (256, 256), (256, 256), 1)


def test_largest_size_scales_scales_and_style_size():
    cfg = config(scales=(500, 1000), style_size=2000)
    available = peak(3000)
    largest = resources.largest_size_that_fits(config(size=10**5, scales=(5 * 10**4, 10**5),
                                                      style_size=2 * 10**5),
                                               (1000, 1000), (1000, 1000), available)
    scaled = make_plan(cfg, (1000, 1000), (1000, 1000)).at_size(largest)  # as it searched
    assert scaled.config.scales == (round(largest / 2), largest)
    assert scaled.config.style_size == 2 * largest
    assert resources.predict_peak_bytes(scaled) <= available


@pytest.mark.parametrize("count, text", [(1.2 * 2**40, "1.2 TiB"), (21.3 * GIB, "21.3 GiB"),
                                         (512 * 2**20, "512 MiB"), (123.4 * GIB, "123 GiB"),
                                         (2048, "2 KiB")])
def test_format_bytes(count, text):
    assert resources.format_bytes(count) == text


@pytest.mark.parametrize("seconds, text", [(0.417, "0.42 s"), (42.4, "42 s"), (210, "3.5 min"),
                                           (12 * 3600, "12 h"), (2.7e6, "750 h")])
def test_format_seconds(seconds, text):
    assert resources.format_seconds(seconds) == text


def test_run_seconds_sum_the_scales_steps():
    cfg = config(scales=(128, 256), steps=(10, 5))
    expected = (10 * resources.predict_step_seconds(cfg, (512, 512), 128)
                + 5 * resources.predict_step_seconds(cfg, (512, 512), 256))
    assert resources.predict_run_seconds(cfg, (512, 512)) == pytest.approx(expected)
    assert resources.predict_step_seconds(cfg, (512, 512), 128) == pytest.approx(
        resources.predict_step_seconds(cfg, (512, 512), 256) / 4, rel=0.02)


def test_round_down_to_two_digits():
    assert [resources._round_down(n) for n in (3374, 87, 100, 12345)] == [3300, 87, 100, 12000]


def test_image_hw_from_header_without_decoding(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 10)).save(path)
    assert resources.image_hw(path) == (10, 40)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: loaded as 10 wide, 40 high
    Image.new("RGB", (40, 10)).save(rotated, exif=exif)
    assert resources.image_hw(rotated) == (40, 10)
    assert resources.image_hw("chelsea") == (300, 451)
    assert resources.image_hw(tmp_path / "missing.png") is None
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert resources.image_hw(tmp_path / "bad.png") is None


def test_resources_imports_no_tensorflow():
    code = ("import sys, nstlib.resources as r; r.check_fits(r.StylizeConfig(), (9, 9), (9, 9));"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stylize_refuses_a_run_that_cannot_fit_before_building_anything():
    import numpy as np

    from nstlib import transfer

    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(resources.InsufficientMemoryError, match=r"^size 1000000 needs about"):
        transfer.stylize(image, image, size=10**6, steps=1, weights="random", progress=False)
