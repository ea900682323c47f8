"""The `nst` command: successful runs write image + record; bad input is one line, exit 2."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import cli_helpers
import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from nstlib import cli, images, transfer
from nstlib.optimize import History, NonFiniteLossError

assert_one_line_error = functools.partial(cli_helpers.assert_one_line_error, command="stylize")

FAST = ["--size", "32", "--steps", "3", "--weights", "random", "--no-progress",
        "--content-layers", "block2_conv1", "--style-layers", "block1_conv1,block2_conv1"]


@pytest.fixture
def pair(tmp_path):
    """A small content and style image written to disk."""
    rng = np.random.default_rng(0)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return content, style



def test_stylize_writes_image_and_record(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "result.png"
    code, stdout, _ = run(["stylize", content, style, "-o", out, *FAST], capsys)
    assert code == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (27, 32, 3)  # 40x48 scaled so the longer side is 32
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["content"] == str(content) and record["style"] == str(style)
    assert record["weights_source"] == "random"
    assert record["steps"] == 3 and len(record["history"]["total"]) == 4
    assert record["final"]["total"] == pytest.approx(record["history"]["total"][-1])
    assert "weights random" in stdout and str(out) in stdout


def test_save_every_writes_intermediate_images(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "r.png"
    code, _, _ = run(["stylize", content, style, "-o", out, *FAST, "--save-every", "1"],
                     capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("r.step*.png")) == [
        "r.step0001.png", "r.step0002.png", "r.step0003.png"]


@pytest.mark.parametrize("make_input, fragment", [
    (lambda d: d / "missing.png", "image not found"),
    (lambda d: (d / "noise.png").write_bytes(os.urandom(300)) and d / "noise.png",
     "not an image"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not an image"),
    (lambda d: d, "directory"),
])
def test_unreadable_content_is_one_line_and_writes_nothing(make_input, fragment, pair,
                                                           tmp_path, capsys):
    _, style = pair
    bad = make_input(tmp_path)
    out = tmp_path / "out.png"
    code, _, err = run(["stylize", bad, style, "-o", out, *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, fragment)
    assert not out.exists()


def test_image_over_pixel_limit_is_refused(pair, tmp_path, capsys):
    content, style = pair
    code, _, err = run(["stylize", content, style, "-o", tmp_path / "o.png", *FAST,
                        "--max-pixels", "1000"], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "image too large", "48x40")


@pytest.mark.parametrize("extra, fragment", [
    (["--style-layers", "block9_conv1"], "unknown VGG19 style layer"),
    (["--content-layers", "conv5"], "valid names are: block1_conv1"),
    (["--lr", "-1"], "--learning-rate must be greater than 0, got -1"),
    (["--style-weight", "inf"], "--style-weight must be a finite number"),
    (["--optimizer", "lbfgs", "--schedule", "cosine"], "needs a Keras optimizer"),
])
def test_bad_options_are_one_line(extra, fragment, pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    code, _, err = run(["stylize", content, style, "-o", out, *FAST, *extra], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, fragment)
    assert not out.exists()


@pytest.mark.parametrize("size", ["0", "-5", "big"])
def test_non_positive_size_is_a_usage_error(size, pair, tmp_path, capsys):
    content, style = pair
    try:
        code = cli.main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"),
                         "--size", size])
    except SystemExit as exit_info:  # argparse's own type errors exit from parse_args
        code = exit_info.code
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--size" in err


@pytest.mark.parametrize("option, value", [("--precision", "float16"), ("--schedule", "step"),
                                           ("--optimizer", "adamw"), ("--init", "zeros")])
def test_unknown_choice_is_a_one_line_usage_error(option, value, pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["stylize", str(content), str(style), "-o", str(out), option, value])
    assert exit_info.value.code == cli.EXIT_BAD_INPUT
    assert_one_line_error(capsys.readouterr().err, option, f"invalid choice: '{value}'")
    assert not out.exists()


def test_output_over_input_is_refused_and_input_untouched(pair, capsys):
    content, style = pair
    before = content.read_bytes()
    code, _, err = run(["stylize", content, style, "-o", content, *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "refusing to overwrite the input image")
    assert content.read_bytes() == before


def test_existing_output_is_replaced_only_on_success(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    out.write_bytes(b"previous result")
    code, _, _ = run(["stylize", tmp_path / "missing.png", style, "-o", out, *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT and out.read_bytes() == b"previous result"


def test_non_finite_loss_keeps_last_finite_image(pair, tmp_path, capsys, monkeypatch):
    content, style = pair
    last = np.full((1, 8, 8, 3), 0.25, np.float32)

    def diverging(*args, **kwargs):
        raise NonFiniteLossError("loss became non-finite at step 7", last, History())

    monkeypatch.setattr(transfer, "stylize", diverging)
    out = tmp_path / "o.png"
    code, _, err = run(["stylize", content, style, "-o", out, *FAST], capsys)
    assert code == cli.EXIT_FAILED
    assert_one_line_error(err, "non-finite", str(out))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), images.to_uint8(last))
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "failed"


def test_ctrl_c_writes_the_current_image(pair, tmp_path, capsys, monkeypatch):
    content, style = pair
    real_minimize, seen = transfer.minimize, {}

    def interrupted_at_step_2(*args, callbacks=(), **kwargs):
        def press_ctrl_c(step, image, losses):
            if step == 2:
                seen["image"] = images.to_uint8(image)
                raise KeyboardInterrupt
        return real_minimize(*args, callbacks=(*callbacks, press_ctrl_c), **kwargs)

    monkeypatch.setattr(transfer, "minimize", interrupted_at_step_2)
    out = tmp_path / "o.png"
    code, _, err = run(["stylize", content, style, "-o", out, *FAST, "--steps", "50"], capsys)
    assert code == cli.EXIT_INTERRUPTED and "interrupted" in err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), seen["image"])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["status"] == "interrupted" and record["final"]["step"] == 2


def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    """In a fresh process TensorFlow's native start-up lines must not leak into stderr."""
    out = tmp_path / "o.png"
    proc = subprocess.run([sys.executable, "-m", "nstlib.cli", "stylize", "nope.png",
                           "chelsea", "-o", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert proc.stderr.strip() == "nst: error: image not found: nope.png"
    assert not out.exists()


def test_precision_and_schedule_reach_the_record(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "fast.png"
    code, _, _ = run(["stylize", content, style, "-o", out, *FAST, "--precision", "bfloat16",
                      "--schedule", "cosine"], capsys)
    assert code == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["compute_dtype"] == "bfloat16" and record["schedule"] == "cosine"
