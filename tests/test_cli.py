"""The `nst` command: successful runs write image + record; bad input is one line, exit 2."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cli_helpers
import numpy as np
import pytest
import yaml
from cli_helpers import run
from fs_helpers import as_unprivileged, disk_full_for, open_folder
from PIL import Image

from nstlib import ablation, cli, config, images, transfer
from nstlib.optimize import History, NonFiniteLossError
from nstlib.settings import StylizeConfig

assert_one_line_error = functools.partial(cli_helpers.assert_one_line_error, command="stylize")

FAST = ["--size", "32", "--steps", "3", "--weights", "random", "--no-progress",
        "--content-layers", "block2_conv1", "--style-layers", "block1_conv1,block2_conv1"]


def _record(image: Path) -> Path:
    """Where the record of a result image is expected: its whole name plus .json."""
    return image.with_name(image.name + ".json")


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
    record = json.loads(_record(out).read_text())
    assert record["content"] == str(content) and record["style"] == str(style)
    assert record["weights_source"] == "random"
    assert record["steps"] == 3 and len(record["history"]["total"]) == 4
    # the guard of the default method returns the image of lowest loss seen
    assert record["final"]["total"] == pytest.approx(min(record["history"]["total"]))
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
    assert json.loads(_record(out).read_text())["status"] == "failed"


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
    # unguarded: the image written is the current one (the guard would write the best seen)
    code, _, err = run(["stylize", content, style, "-o", out, *FAST, "--steps", "50",
                        "--guard", "false"], capsys)
    assert code == cli.EXIT_INTERRUPTED and "interrupted" in err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), seen["image"])
    record = json.loads(_record(out).read_text())
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


def test_precision_and_schedule_reach_the_record(pair, tmp_path, capsys,
                                                bfloat16_convolutions):
    content, style = pair
    out = tmp_path / "fast.png"
    code, _, _ = run(["stylize", content, style, "-o", out, *FAST, "--precision", "bfloat16",
                      "--schedule", "cosine"], capsys)
    assert code == 0
    record = json.loads(_record(out).read_text())
    assert record["compute_dtype"] == "bfloat16" and record["schedule"] == "cosine"


# ----------------------------------------------------------------------------- issue 15:
# nothing lost, nothing cryptic (outputs, inputs, signals)


@pytest.fixture
def open_dir():
    with open_folder() as path:
        yield path


def _cli(*argv) -> list[str]:
    """``python -m nstlib.cli ARGV`` as a command line for a real process."""
    return [sys.executable, "-m", "nstlib.cli", *map(str, argv)]


def test_outputs_get_the_umask_mode_and_an_existing_output_keeps_its_mode(pair, tmp_path,
                                                                         capsys):
    content, style = pair
    out = tmp_path / "o.png"
    old_umask = os.umask(0o022)
    try:
        assert run(["stylize", content, style, "-o", out, *FAST], capsys)[0] == 0
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in (out, _record(out))} \
            == {"o.png": "0o644", "o.png.json": "0o644"}  # 0o666 & ~umask, as open() gives
        out.chmod(0o640)
        assert run(["stylize", content, style, "-o", out, *FAST], capsys)[0] == 0
    finally:
        os.umask(old_umask)
    assert oct(out.stat().st_mode & 0o777) == "0o640"
    assert oct(_record(out).stat().st_mode & 0o777) == "0o644"


def test_sigterm_during_stylize_writes_the_current_image_and_exits_143(pair, tmp_path):
    content, style = pair
    out = tmp_path / "r.png"
    # unguarded: the image written is the current one (the guard would keep the best seen)
    proc = subprocess.Popen(_cli("stylize", content, style, "-o", out, *FAST, "--steps",
                                 "100000", "--save-every", "1", "--conv-impl", "standard",
                                 "--guard", "false"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "r.step0001.png").exists():  # the optimisation is running
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == cli.EXIT_TERMINATED == 143
    assert err.strip() == f"nst: terminated (SIGTERM); the current image was written to {out}"
    record = json.loads(_record(out).read_text())
    assert record["status"] == "interrupted" and record["steps"] == 100000
    step = record["final"]["step"]
    assert 1 <= step < 100000 and len(record["history"]["total"]) == step + 1
    last_step_image = tmp_path / f"r.step{step:04d}.png"
    if last_step_image.exists():  # the final image is the last recorded step's
        np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                      np.asarray(Image.open(last_step_image)))
    assert not list(tmp_path.glob(".*.tmp"))


WITH_PROGRESS = [a for a in FAST if a != "--no-progress"]


def _read_stderr_into(proc, chunks: list) -> threading.Thread:
    def read():
        for chunk in iter(lambda: proc.stderr.read(64), ""):
            chunks.append(chunk)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_sigterm_during_demo_writes_the_current_image_and_exits_143(tmp_path):
    """The progress bar (on stderr) shows when the first pair's optimisation is running."""
    out_dir = tmp_path / "demo"
    proc = subprocess.Popen(_cli("demo", "-o", out_dir, *WITH_PROGRESS, "--steps", "100000",
                                 "--conv-impl", "standard"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    chunks: list[str] = []
    reader = _read_stderr_into(proc, chunks)
    try:
        deadline = time.monotonic() + 240
        while not re.search(r"\b[1-9]\d*/100000\b", "".join(chunks)):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(chunks)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == cli.EXIT_TERMINATED
    out = out_dir / "chelsea_brushstrokes.png"
    messages = [part.strip() for part in re.split(r"[\r\n]", "".join(chunks))
                if part.strip() and not part.strip().startswith("stylize")]
    assert messages == [f"nst: terminated (SIGTERM); the current image was written to {out}"]
    assert json.loads(_record(out).read_text())["status"] == "interrupted"
    assert np.asarray(Image.open(out)).shape[:2] == (21, 32)  # chelsea is 300x451
    assert not (out_dir / "astronaut_mosaic.png").exists()  # the demo stopped there


#: A child that runs ``nst`` (argv[1:]) and holds still when TensorFlow's import begins:
#: it writes one byte to fd ``READY`` and blocks reading fd ``HOLD`` (never written), so a
#: signal sent after the byte arrives always lands while TensorFlow is being imported.
_GATED_TF_IMPORT = """
import os, sys
READY, HOLD = int(os.environ["NST_TEST_READY_FD"]), int(os.environ["NST_TEST_HOLD_FD"])

class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            sys.meta_path.remove(self)
            os.write(READY, b"1")
            os.read(HOLD, 1)  # the signal's handler raises here
        return None

sys.meta_path.insert(0, Gate())
from nstlib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _default_signal_dispositions() -> None:
    """In the child: SIGINT and SIGTERM as a terminal gives them, whatever this runner
    inherited (a background job of a non-interactive shell starts with SIGINT ignored,
    and Python keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_at_the_gate(script: str, argv, sig, cwd, gate_env=None):
    """Run ``script`` (a gated child, e.g. ``_GATED_TF_IMPORT``) with ``argv``, SIGINT and
    SIGTERM at their defaults; send ``sig`` once it says it reached its gate (one byte on
    ``NST_TEST_READY_FD``; it then blocks on ``NST_TEST_HOLD_FD``, never written), so the
    signal cannot race. Returns (exit code, stdout, stderr)."""
    ready_read, ready_write = os.pipe()
    hold_read, hold_write = os.pipe()
    env = {**os.environ, "NST_TEST_READY_FD": str(ready_write),
           "NST_TEST_HOLD_FD": str(hold_read), **(gate_env or {})}
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=env, pass_fds=(ready_write, hold_read),
                            preexec_fn=_default_signal_dispositions)
    os.close(ready_write)
    os.close(hold_read)
    try:
        assert os.read(ready_read, 1) == b"1", proc.communicate()  # "" if it exited early
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        proc.kill()
        os.close(ready_read)
        os.close(hold_write)
    return proc.returncode, out, err


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, cli.EXIT_INTERRUPTED, "nst: interrupted"),
    (signal.SIGTERM, cli.EXIT_TERMINATED, "nst: terminated (SIGTERM)"),
])
def test_signal_while_tensorflow_loads_is_one_line(sig, code, message, pair, tmp_path):
    content, style = pair
    out = tmp_path / "o.png"
    returncode, out_text, err = _signal_at_the_gate(
        _GATED_TF_IMPORT, ["stylize", content, style, "-o", out, *FAST], sig, tmp_path)
    assert returncode == code, err
    assert err == message + "\n" and out_text == ""
    assert not out.exists()


def test_a_run_started_with_sigint_ignored_keeps_it_ignored(pair, tmp_path):
    """POSIX: a program started with SIGINT ignored (``nohup``, a background job of a
    script) must leave it ignored, so a Ctrl-C meant for the foreground job does not
    stop it. ``nst`` installs no SIGINT handler of its own, so it keeps that rule."""
    content, style = pair
    script = ("import signal, sys\n"
              "from nstlib import cli\n"
              "code = cli.main(sys.argv[1:])\n"
              "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
              "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script, "stylize", str(content), str(style),
                           "-o", str(tmp_path / "o.png"), *FAST], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "True"


def test_usage_and_setting_errors_are_answered_without_importing_tensorflow(tmp_path):
    folder = tmp_path / "already_a_folder.png"
    folder.mkdir()
    cases = [
        ["stylize", "a.png", "b.png"],  # -o missing
        ["stylize", "a.png", "b.png", "-o", "o.png", "--lr", "-1"],  # ConfigError
        ["stylize", "a.png", "b.png", "-o", "o.png", "--lr", "1e30"],  # absurd
        ["stylize", "a.png", "b.png", "-o", "o.png", "--content-weight", "1e39"],
        ["stylize", "a.png", "b.png", "-o", str(folder)],  # output checked first too
        ["demo", "--steps", "ten"],
    ]
    script = ("import json, sys, nstlib.cli\n"
              "codes = []\n"
              f"for argv in {cases!r}:\n"
              "    try:\n"
              "        codes.append(nstlib.cli.main(argv))\n"
              "    except SystemExit as stop:\n"
              "        codes.append(stop.code)\n"
              "print(json.dumps([codes, 'tensorflow' in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    codes, imported = json.loads(proc.stdout)
    assert codes == [cli.EXIT_BAD_INPUT] * len(cases) and imported is False
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(cases) and "Traceback" not in proc.stderr
    assert "--learning-rate 1e+30 is absurd for adam" in lines[2]
    assert "--content-weight 1e+39 is absurd" in lines[3]
    assert f"output {folder} is a folder" in lines[4]


@pytest.mark.parametrize("value, quick, warned", [("1", True, False), ("Yes", True, False),
                                                  ("", False, False), ("off", False, False),
                                                  ("banana", False, True)])
def test_nst_quick_that_is_not_yes_or_no_is_said_in_one_line(value, quick, warned, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import nstlib.config as c; print(c.QUICK)"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "NST_QUICK": value})
    assert proc.returncode == 0 and proc.stdout.strip() == str(quick)
    if warned:
        assert proc.stderr.strip() == ("nstlib: NST_QUICK='banana' is not understood (use "
                                       "1/true/yes/on or 0/false/no/off); quick mode is OFF")
    else:
        assert proc.stderr == ""


# outputs are checked before the run


def _assert_refused_before_the_run(argv, capsys, *fragments):
    code, _, err = run(argv, capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, *fragments)
    assert ".tmp" not in err  # never the hidden temporary file's name


def test_output_that_is_a_folder_is_refused(pair, tmp_path, capsys):
    content, style = pair
    folder = tmp_path / "results.png"
    folder.mkdir()
    _assert_refused_before_the_run(["stylize", content, style, "-o", folder, *FAST], capsys,
                                   f"output {folder} is a folder")
    assert list(folder.iterdir()) == []


def test_output_whose_json_record_would_be_a_folder_is_refused(pair, tmp_path, capsys):
    content, style = pair
    (tmp_path / "o.png.json").mkdir()
    _assert_refused_before_the_run(["stylize", content, style, "-o", tmp_path / "o.png",
                                    *FAST], capsys,
                                   f"output {tmp_path / 'o.png.json'} is a folder")
    assert not (tmp_path / "o.png").exists()


def test_output_under_a_file_is_refused(pair, tmp_path, capsys):
    content, style = pair
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    out = notes / "sub" / "o.png"
    _assert_refused_before_the_run(["stylize", content, style, "-o", out, *FAST], capsys,
                                   f"cannot write {out}: {notes} is a file, not a folder")
    assert notes.read_text() == "a file, not a folder"


def test_output_in_a_read_only_folder_is_refused_before_the_run(pair, open_dir, capsys,
                                                                monkeypatch):
    content, style = pair
    read_only = open_dir / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    out = read_only / "new" / "o.png"
    monkeypatch.setattr(cli.commands, "_import_tensorflow_quietly",
                        lambda: pytest.fail("the output must be checked before any work"))
    with as_unprivileged():
        _assert_refused_before_the_run(["stylize", content, style, "-o", out, *FAST], capsys,
                                       f"cannot write {out}: folder {read_only} is not "
                                       f"writable (Permission denied)")
    assert list(read_only.iterdir()) == []


def test_output_that_is_a_hard_link_to_an_input_is_refused(pair, tmp_path, capsys):
    content, style = pair
    link = tmp_path / "link.png"
    os.link(content, link)
    before = content.read_bytes()
    _assert_refused_before_the_run(["stylize", content, style, "-o", link, *FAST], capsys,
                                   f"refusing to overwrite the input image {content}: "
                                   f"{link} is that file")
    assert content.read_bytes() == before


@pytest.mark.parametrize("sample, suffix", [("chelsea", ".jpg"), ("brushstrokes", ".png")])
def test_a_bundled_sample_given_by_name_is_never_overwritten(sample, suffix, pair, tmp_path,
                                                             capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(config.DATA_DIR, data)
    monkeypatch.setattr(config, "DATA_DIR", data)
    monkeypatch.chdir(tmp_path)  # "chelsea" is not a file here: it names the sample
    target = data / f"{sample}{suffix}"
    before = target.read_bytes()
    content, style = pair
    argv = (["stylize", sample, style] if sample in images.CONTENT_SAMPLES
            else ["stylize", content, sample])
    _assert_refused_before_the_run([*argv, "-o", target, *FAST], capsys,
                                   f"refusing to overwrite the input image {sample} ({target})")
    assert target.read_bytes() == before
    assert not _record(target).exists()


def test_existing_output_and_record_are_replaced_with_one_line(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    assert run(["stylize", content, style, "-o", out, *FAST], capsys)[0] == 0
    _record(out).write_text("{}")
    code, _, err = run(["stylize", content, style, "-o", out, *FAST], capsys)
    assert code == 0
    assert err.strip() == f"nst: replacing the existing {out} and {_record(out)}"
    assert json.loads(_record(out).read_text())["status"] == "completed"


def test_failed_run_record_has_its_settings_and_inputs(pair, tmp_path, capsys, monkeypatch):
    content, style = pair
    history = History()
    history.append(0, {"total": 1.0}, 0.0)

    def diverging(*args, **kwargs):
        raise NonFiniteLossError("loss became non-finite at step 1", np.zeros((1, 4, 4, 3)),
                                 history)

    monkeypatch.setattr(transfer, "stylize", diverging)
    out = tmp_path / "o.png"
    code, _, _ = run(["stylize", content, style, "-o", out, *FAST, "--style-weight", "7"],
                     capsys)
    assert code == cli.EXIT_FAILED
    record = json.loads(_record(out).read_text())
    expected = StylizeConfig.from_flat(size=32, steps=3, weights="random", style_weight=7,
                                       content_layers="block2_conv1",
                                       style_layers="block1_conv1,block2_conv1").to_flat()
    assert {k: record[k] for k in expected} == expected
    assert record["content"] == str(content) and record["style"] == str(style)
    assert record["status"] == "failed" and record["history"]["total"] == [1.0]


def test_image_over_pillows_own_limit_is_read_when_max_pixels_allows(tmp_path, pair, capsys):
    """A 95-megapixel PNG header (no pixel data): Pillow's 89 M limit must not decide."""
    _, style = pair
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(10_000, 9_500))
    code, _, err = run(["stylize", path, style, "-o", tmp_path / "o.png", *FAST,
                        "--max-pixels", "100000000"], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "corrupt or truncated image")  # decoding began: size accepted
    code, _, err = run(["stylize", path, style, "-o", tmp_path / "o.png", *FAST], capsys)
    assert_one_line_error(err, "image too large", "10000x9500", "64,000,000")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_unreadable_input_is_reported_as_permission_denied(pair, open_dir, capsys):
    content, style = pair
    secret = open_dir / "secret.png"
    shutil.copy(content, secret)
    secret.chmod(0o000)
    out_dir = open_dir / "out"
    out_dir.mkdir()
    out_dir.chmod(0o777)
    images.load_image(content)  # Pillow's plugins are loaded before permissions tighten
    with as_unprivileged():
        code, _, err = run(["stylize", secret, style, "-o", out_dir / "o.png", *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, f"permission denied: {secret}")
    assert list(out_dir.iterdir()) == []


def test_weights_file_that_is_not_hdf5_is_one_line_exit_2(pair, tmp_path, capsys):
    content, style = pair
    notes = tmp_path / "vgg19.h5"
    notes.write_text("not weights")
    code, _, err = run(["stylize", content, style, "-o", tmp_path / "o.png", *FAST,
                        "--weights", notes], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, f"not a VGG weights file: {notes} (not an HDF5 file)")
    assert not (tmp_path / "o.png").exists()


def test_size_too_small_for_the_deepest_layer_is_one_line(pair, tmp_path, capsys):
    content, style = pair
    # the ImageNet recipe's deepest layer is block5_conv1 (checked before any weights load)
    code, _, err = run(["stylize", content, style, "-o", tmp_path / "o.png", "--size", "18",
                        "--weights", "imagenet", "--no-progress"], capsys)
    assert code == cli.EXIT_BAD_INPUT  # 40x48 at 18 px is 15x18; block5_conv1 needs 16
    assert_one_line_error(err, "size 18 is too small: the content image would be 15x18 px and "
                               "block5_conv1 needs a shorter side of at least 16 px")


# ----------------------------------------------------------------------------- controls, batches


@pytest.fixture
def photos(tmp_path):
    """A folder with two photographs, and a style image next to it."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "b.jpg")
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return folder, style


def test_several_contents_write_one_result_and_record_each(photos, tmp_path, capsys):
    folder, style = photos
    out = tmp_path / "out"
    code, stdout, _ = run(["stylize", folder / "a.png", folder / "b.jpg", style, "-o", out,
                           *FAST, "--preserve-colors", "luminance"], capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.json", "b.png", "b.png.json"]
    for name, source in (("a", "a.png"), ("b", "b.jpg")):
        record = json.loads((out / f"{name}.png.json").read_text())
        assert record["content"] == str(folder / source) and record["style"] == str(style)
        assert record["preserve_colors"] == "luminance"
    assert "2 of 2 images stylized" in stdout


def test_a_folder_with_a_bad_image_reports_it_and_finishes_the_others(photos, tmp_path,
                                                                      capsys):
    folder, style = photos
    (folder / "broken.png").write_bytes(b"not an image")
    before = sorted(p.name for p in folder.iterdir())
    out = tmp_path / "out"
    code, _, err = run(["stylize", folder, "--style", style, "-o", out, *FAST], capsys)
    assert code == cli.EXIT_FAILED
    errors = [line for line in err.splitlines() if line.startswith("nst: error:")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "not an image" in errors[0]
    assert "1 of 3 inputs failed" in errors[1] and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.json", "b.png", "b.png.json"]
    assert sorted(p.name for p in folder.iterdir()) == before  # inputs untouched


def test_several_styles_blend_and_masks_reach_the_record(photos, tmp_path, capsys):
    folder, style = photos
    left = np.zeros((40, 48), np.uint8)
    left[:, :24] = 255
    masks = tmp_path / "left.png", tmp_path / "right.png"
    Image.fromarray(left).save(masks[0])
    Image.fromarray(255 - left).save(masks[1])
    out = tmp_path / "masked.png"
    code, _, _ = run(["stylize", folder / "a.png", "--style", style, "--style", "stripes",
                      "--style-blend", "3,1", "--style-mask", masks[0], "--style-mask",
                      masks[1], "--style-scale", "0.5", "-o", out, *FAST], capsys)
    assert code == 0
    record = json.loads(_record(out).read_text())
    assert record["style"] == [str(style), "stripes"] and record["style_blend"] == [3.0, 1.0]
    assert record["style_masks"] == [str(m) for m in masks]
    assert record["style_scale"] == 0.5 and record["style_shape"] == [1, 16, 16, 3]


@pytest.mark.parametrize("extra, fragment", [
    (["--style", "stripes", "--style-blend", "1,2,3"],
     "--style-blend has 3 weights for 2 style image(s)"),
    (["--style", "stripes", "--style-blend", "1,-1"], "--style-blend must be at least 0, got -1"),
    (["--style-mask", "m.png", "--style", "stripes"], "1 --style-mask for 2 style image(s)"),
    (["--style-size", "16", "--style-scale", "0.5"], "--style-size (16) and style_scale (0.5)"),
    (["--style-scale", "0"], "--style-scale must be greater than 0"),
])
def test_bad_controls_are_one_line_usage_errors(extra, fragment, pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    code, _, err = run(["stylize", content, "--style", style, "-o", out, *FAST, *extra], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, fragment)
    assert not out.exists()


@pytest.mark.parametrize("make_mask, fragment", [
    (lambda d: Image.fromarray(np.zeros((10, 10), np.uint8) + 255).save(d / "m.png"),
     "style mask 1 ({d}/m.png) is 10x10 pixels; it must have the content image's size"),
    (lambda d: (d / "m.png").write_text("not a mask"), "not an image Pillow can read"),
])
def test_a_bad_mask_is_one_line(make_mask, fragment, pair, tmp_path, capsys):
    content, style = pair
    make_mask(tmp_path)
    out = tmp_path / "o.png"
    code, _, err = run(["stylize", content, style, "--style-mask", tmp_path / "m.png", "-o",
                        out, *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, fragment.format(d=tmp_path))
    assert not out.exists()


def test_batch_output_must_be_a_folder_and_never_an_input(photos, capsys):
    folder, style = photos
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run(["stylize", folder, "--style", style, "-o", folder, *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "refusing to overwrite the input image", "a.png")
    code, _, err = run(["stylize", folder / "a.png", folder / "b.jpg", style, "-o",
                        folder / "x.png", *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "2 content images, so -o must be a folder")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_one_positional_without_style_is_a_usage_error(pair, tmp_path, capsys):
    content, _ = pair
    code, _, err = run(["stylize", content, "-o", tmp_path / "o.png", *FAST], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert_one_line_error(err, "give a content and a style image")


def test_write_failure_at_the_end_names_the_output_not_the_temporary_file(pair, tmp_path,
                                                                          capsys, monkeypatch):
    content, style = pair
    out = tmp_path / "o.png"

    def disk_full(self, path, inputs=()):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".o.png.1a2b.tmp"))

    monkeypatch.setattr(transfer.StylizeResult, "save", disk_full)
    code, _, err = run(["stylize", content, style, "-o", out, *FAST], capsys)
    assert code == cli.EXIT_FAILED
    assert_one_line_error(err, f"could not write {out} (No space left on device)")
    assert ".tmp" not in err


# ----------------------------------------------------------------------------- memory check


def _nst_without_tensorflow(*argv, timeout=120):
    """Run ``nst`` in a fresh process; also reports whether TensorFlow got imported."""
    code = ("import sys; from nstlib import cli; code = cli.main(sys.argv[1:]); "
            "print('TF' if 'tensorflow' in sys.modules else 'noTF', file=sys.stderr); "
            "sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def test_a_size_that_cannot_fit_is_refused_in_one_line_before_tensorflow(tmp_path):
    import re

    out = tmp_path / "o.png"
    for command in (["stylize", "chelsea", "brushstrokes", "-o", out], ["demo", "-o", tmp_path]):
        proc = _nst_without_tensorflow(*command, "--size", "100000")
        assert proc.returncode == cli.EXIT_BAD_INPUT, proc.stderr
        error, marker = proc.stderr.strip().splitlines()
        assert marker == "noTF"
        assert re.fullmatch(r"nst: error: --size 100000 needs about [\d.]+ TiB, [\d.]+ [GMT]iB "
                            r"available; the largest size that fits is about \d+ px", error)
    assert not out.exists() and not list(tmp_path.glob("*.png"))


def test_dry_run_prints_memory_and_time_and_loads_no_tensorflow(tmp_path):
    from nstlib import resources
    from nstlib.settings import StylizeConfig

    out = tmp_path / "o.png"
    proc = _nst_without_tensorflow("stylize", "chelsea", "brushstrokes", "-o", out,
                                   "--dry-run", "--size", "128", "--steps", "7")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "noTF" and not out.exists()
    config = StylizeConfig.from_flat(size=128, steps=7)
    expected = resources.describe(config, resources.image_hw("chelsea"),
                                  resources.image_hw("brushstrokes"), None)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == expected[0] == "result 128x85 px, float32, adam, 7 steps"
    assert lines[1].startswith(expected[1].split(" (")[0])  # the predicted peak
    assert lines[2] == expected[2] and "seconds per step (estimated)" in lines[2]
    assert "available: " in lines[1]
    assert lines[-1] == expected[-1] and lines[-1].startswith("network: VGG")
    hed = resources.describe_plan(StylizeConfig.from_flat(weights="hed-vgg16"))
    assert hed.startswith("network: VGG16, weights hed-vgg16, recipe hed-vgg16: ")
    random = resources.describe_plan(StylizeConfig.from_flat(weights="random"))
    assert random == ("network: VGG19, weights random, recipe random: avg pooling, content "
                      "block2_conv2, style block1_conv1,block2_conv1,block3_conv1, α 2, β 30, "
                      "γ 3")


def test_dry_run_of_a_run_that_cannot_fit_exits_2(tmp_path):
    proc = _nst_without_tensorflow("stylize", "chelsea", "brushstrokes", "-o",
                                   tmp_path / "o.png", "--dry-run", "--size", "100000")
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert "predicted peak memory" in proc.stdout
    assert proc.stderr.splitlines()[0].startswith("nst: error: --size 100000 needs about")


# ----------------------------------------------------------------------- nst ablate and nst report


assert_one_line_error_cli_ablate = functools.partial(cli_helpers.assert_one_line_error,
                                                     command="ablate")


GRID = {"name": "cli test",
        "fixed": {"content": "chelsea", "style": "mosaic", "size": 32, "steps": 3,
                  "weights": "random", "content_layers": ["block2_conv1"],
                  "style_layers": ["block1_conv1", "block2_conv1"]},
        "axes": {"style_weight": [1.0, 30.0]},
        "evaluate": {"weights": "random", "content_layers": ["block2_conv1"],
                     "style_layers": ["block1_conv1"]}}


PROCESS_TIMEOUT = 600  # seconds; generous for a loaded 2-core machine


@pytest.mark.parametrize("text, fragments", [
    ("fixed: {content: chelsea, style: mosaic\n", ("invalid YAML", "line 2")),
    ("fixed: {content: chelsea, style: mosaic}\naxes: {optimiser: [adam]}\n",
     ("unknown setting 'optimiser' in axes", "did you mean 'optimizer'")),
    ("fixed: {content: chelsea}\n", ("every run needs 'style'",)),
    ("- just\n- a list\n", ("a grid must be a mapping",)),
    ("fixed: {content: chelsea, style: mosaic}\naxes: {seed: 3}\n",
     ("axis 'seed' must be a non-empty list",)),
    # wrong types are found when the grid loads, not inside every worker
    ("fixed: {content: chelsea, style: mosaic, steps: ten}\naxes: {seed: [0, 1]}\n",
     ("run 1 (seed=0): steps must be a whole number, got 'ten'",)),
    ("fixed: {content: chelsea, style: mosaic, size: [1, 2]}\n",
     ("run 1: size must be a whole number, got [1, 2]",)),
    ("fixed: {content: chelsea, style: mosaic}\naxes: {content_layers: [5]}\n",
     ("run 1 (content_layers=5): content_layers must be a list, got 5",)),
    ("fixed: {content: chelsea, style: mosaic}\nruns: [{colour: red}]\n",
     ("unknown setting 'colour' in runs[1]", "valid settings: content, style")),
    ("fixed: {content: chelsea, style: mosaic}\nsteps: 3\n",
     ("unknown key(s) 'steps'; a grid has name, fixed, axes, runs, evaluate",)),
])
def test_bad_grid_file_is_one_line_and_exit_2(text, fragments, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    out = tmp_path / "results"
    code, stdout, err = run(["ablate", grid, "-o", out], capsys)
    assert code == 2 and stdout == ""
    assert_one_line_error_cli_ablate(err, str(grid), *fragments)
    assert not out.exists()  # nothing written for a bad grid


def test_a_bad_grid_fails_before_tensorflow_is_imported(tmp_path):
    grid, out = tmp_path / "grid.yaml", tmp_path / "results"
    grid.write_text("fixed: {content: chelsea, style: mosaic, steps: ten}\n")
    probe = ("import sys\nfrom nstlib import cli\ncode = cli.main(sys.argv[1:])\n"
             "print(code, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe, "ablate", str(grid), "-o", str(out)],
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert proc.stdout == "2 False\n"
    assert_one_line_error_cli_ablate(proc.stderr, "steps must be a whole number, got 'ten'")
    assert not out.exists()


def test_missing_grid_file_and_bad_options(tmp_path, capsys):
    code, _, err = run(["ablate", tmp_path / "nope.yaml", "-o", tmp_path / "r"], capsys)
    assert code == 2
    assert_one_line_error_cli_ablate(err, "grid file not found", "nope.yaml")
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    code, _, err = run(["ablate", grid, "-o", tmp_path / "r", "--scheduler", "tcp://h:1",
                        "--workers", "2"], capsys)
    assert code == 2
    assert_one_line_error_cli_ablate(err, "--workers applies to local processes")
    code, _, err = run(["ablate", grid, "-o", tmp_path / "r", "--scheduler", "nowhere"], capsys)
    assert code == 2
    assert_one_line_error_cli_ablate(err, "scheduler must be 'local-cluster' or an address")
    with pytest.raises(SystemExit) as info:  # argparse: usage errors exit 2 too
        cli.main(["ablate", str(grid), "-o", str(tmp_path / "r"), "--workers", "0"])
    assert info.value.code == 2
    assert_one_line_error_cli_ablate(capsys.readouterr().err, "--workers: must be positive")
    assert not (tmp_path / "r").exists()


def test_report_on_a_folder_that_is_not_a_results_folder(tmp_path, capsys):
    code, _, err = run(["report", tmp_path], capsys)
    assert code == 2
    assert_one_line_error_cli_ablate(err, "is not a results folder")


def test_ablate_then_report(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
    out = tmp_path / "results"
    code, stdout, err = run(["ablate", grid, "-o", out, "--workers", "1", "--no-progress"],
                            capsys)
    assert code == 0, err
    assert stdout.startswith("2 runs (2 completed)") and "results.csv" in stdout
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["style_weight"]) for r in rows] == [1.0, 30.0]
    assert all(r["status"] == "completed" for r in rows)
    # the heavier style weight lowers the style term of the objective
    assert float(rows[1]["final_style"]) < float(rows[0]["final_style"])

    code, stdout, err = run(["report", out], capsys)
    assert code == 0, err
    written = stdout.split()
    assert written == [str(out / n) for n in ("images.png", "metrics.png", "results.md",
                                              "results.csv")]
    for name in ("images.png", "metrics.png"):
        image = np.asarray(Image.open(out / name))
        assert image.ndim == 3 and min(image.shape[:2]) > 200 and image.std() > 0
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# Ablation: cli test")
    assert "Weights: random weights (VGG19)" in markdown and "![images.png](images.png)" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 and "style_weight" in table[0]
    for row, line in zip(rows, table[1:], strict=True):
        assert f"`{row['run_id']}`" in line and "completed" in line
        assert f"{float(row['final_total']):.4g}" in line
    record = json.loads(ablation.record_path(out, rows[0]["run_id"]).read_text())
    assert record["weights_source"] == "random" and record["status"] == "completed"


def _results_folder(out, completed: set[int]) -> list:
    """A results folder of GRID's runs (plus a third) as ``nst ablate`` leaves it: the runs
    numbered in ``completed`` completed (a real PNG), the others failed with an error."""
    grid = ablation.load_grid({**GRID, "runs": [{"style_weight": 5.0}]})
    specs = grid.expand()
    ablation.save_grid(grid, out)
    for i, spec in enumerate(specs):
        png = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(png, format="PNG")
        ok = i in completed
        record = {"run_id": spec.run_id, "config": spec.config,
                  "status": "completed" if ok else "failed",
                  "error": None if ok else f"NonFiniteLossError: run {i} exploded",
                  "final": {"step": 3, "total": 2.0 + i, "content": 1.0, "style": 0.5 + i,
                            "tv": 0.1} if ok else {},
                  "history": {"seconds": [0.0, 0.5, 1.0], "total": [9.0, 4.0, 2.0 + i]}
                  if ok else {},
                  "metrics": {"ssim": 0.5} if ok else {}, "weights_source": "random",
                  "environment": {"nstlib": "x", "tensorflow": "y", "host": "h"}}
        ablation.persist({"record": record, "png": png.getvalue() if ok else None}, out)
    return specs


def test_report_of_a_folder_whose_runs_all_failed_lists_the_failures(tmp_path, capsys):
    out = tmp_path / "results"
    specs = _results_folder(out, completed=set())
    code, stdout, err = run(["report", out], capsys)
    assert code == 1  # no report with figures: a script should notice
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"nst: error: no completed runs in {out} (3 failed, 0 not run); "
                     f"{out / 'results.md'} lists them with their errors"]
    assert stdout.split() == [str(out / "results.md"), str(out / "results.csv")]
    assert not (out / "images.png").exists() and not (out / "metrics.png").exists()
    markdown = (out / "results.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3 and "![" not in markdown
    for i, (spec, line) in enumerate(zip(specs, table[1:], strict=True)):
        assert f"`{spec.run_id}`" in line and "| failed |" in line
        assert f"* run #{i + 1} `{spec.run_id}` failed: NonFiniteLossError: run {i} " \
               f"exploded" in markdown
    assert "3 runs: 0 completed, 3 failed, 0 not run." in markdown


def test_report_with_failed_and_completed_runs_plots_the_completed_ones(tmp_path, capsys):
    out = tmp_path / "results"
    specs = _results_folder(out, completed={1})
    code, stdout, err = run(["report", out], capsys)
    assert code == 0 and err == ""
    assert stdout.split() == [str(out / n) for n in ("images.png", "metrics.png",
                                                      "results.md", "results.csv")]
    markdown = (out / "results.md").read_text()
    assert "3 runs: 1 completed, 2 failed, 0 not run." in markdown
    assert "![metrics.png](metrics.png)" in markdown
    assert f"run #1 `{specs[0].run_id}` failed: NonFiniteLossError: run 0 exploded" in markdown
    assert f"run #2 `{specs[1].run_id}` failed" not in markdown
    result = ablation.load_results(out)
    figure = ablation.plot_metrics(result)
    bars, curves = figure.axes[:2]
    heights = [patch.get_height() for patch in bars.patches]
    assert heights[1] == 3.0 and np.isnan(heights[0]) and np.isnan(heights[2])
    assert bars.get_yscale() == "log" and curves.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in curves.lines] == [[9.0, 4.0, 3.0]]
    # with nothing positive to plot the axes stay linear instead of failing
    failed = ablation.load_results(out)
    failed.rows = [{**row, "status": "failed"} for row in failed.rows]
    figure = ablation.plot_metrics(failed)
    assert [ax.get_yscale() for ax in figure.axes[:2]] == ["linear", "linear"]


TINY = {**GRID, "fixed": {**GRID["fixed"], "steps": 20}, "axes": {"seed": list(range(5))}}


def _nst(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nstlib.cli", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _versions(runs) -> dict[str, tuple]:
    """Each record's identity now: {file name: (inode, mtime_ns, size)}."""
    found = {}
    for path in runs.glob("*.json"):
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            found[path.name] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


def _children(pid: int) -> list[int]:
    """The ids of the processes whose parent is ``pid`` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _running(pids, wait: float = 30.0) -> list[str]:
    """The command lines of those ``pids`` still running after up to ``wait`` seconds."""
    deadline, running = time.monotonic() + wait, list(pids)
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = []
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # Z: exited, not yet reaped
                    running.append(Path(f"/proc/{pid}/cmdline").read_text())
    return running


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_stops_ablate_cleanly_and_a_rerun_completes_the_rest(tmp_path):
    grid, out = tmp_path / "grid.yaml", tmp_path / "results"
    grid.write_text(yaml.safe_dump(TINY))
    proc = _nst("ablate", grid, "-o", out, "--workers", "1", "--no-progress")
    deadline, workers = time.monotonic() + PROCESS_TIMEOUT, set()
    while not _versions(out / "runs") and proc.poll() is None:
        assert time.monotonic() < deadline, "no run finished in time"
        workers.update(_children(proc.pid))
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    workers.update(_children(proc.pid))
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 143, err
    finished = {path.stem for path in (out / "runs").glob("*.json")}
    assert 1 <= len(finished) < 5
    assert err.splitlines() == [
        f"nst: stopped by SIGTERM: {len(finished)} run(s) finished before it, "
        f"{len(finished)} of 5 complete in {out}; re-run the same command to complete the rest"]
    assert stdout == ""
    assert workers and _running(workers) == []  # no orphaned worker
    assert not list((out / "runs").glob("*.lock"))
    with open(out / "results.csv", newline="") as handle:
        statuses = {r["run_id"]: r["status"] for r in csv.DictReader(handle)}
    assert {k for k, v in statuses.items() if v == "completed"} == finished
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "runs").iterdir()}

    proc = _nst("ablate", grid, "-o", out, "--workers", "1", "--no-progress")
    stdout, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 0, err
    assert stdout.startswith(f"5 runs (5 completed, {len(finished)} already complete); ")
    assert err == ""
    for name, (data, mtime) in kept.items():  # the finished runs were not run again
        assert (out / "runs" / name).read_bytes() == data
        assert (out / "runs" / name).stat().st_mtime_ns == mtime
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 5 and all(r["status"] == "completed" for r in records)


def test_two_runners_on_one_folder_run_each_run_once(tmp_path):
    grid, out = tmp_path / "grid.yaml", tmp_path / "results"
    grid.write_text(yaml.safe_dump({**TINY, "axes": {"seed": list(range(6))}}))
    runners = [_nst("ablate", grid, "-o", out, "--workers", "1", "--no-progress")
               for _ in range(2)]
    # Every execution writes its record once (atomically: a new file); a run executed
    # twice would show two versions of its record.
    seen, deadline = {}, time.monotonic() + PROCESS_TIMEOUT
    while any(r.poll() is None for r in runners):
        assert time.monotonic() < deadline, "the runners did not finish in time"
        for name, version in _versions(out / "runs").items():
            seen.setdefault(name, set()).add(version)
        time.sleep(0.05)
    outputs = [r.communicate() for r in runners]
    for name, version in _versions(out / "runs").items():
        seen.setdefault(name, set()).add(version)
    assert [r.returncode for r in runners] == [0, 0], outputs
    assert len(seen) == 6 and all(len(v) == 1 for v in seen.values()), seen
    executed = []
    for stdout, err in outputs:
        assert err == ""
        summary = re.fullmatch(r"6 runs \(\d completed(?:, (\d+) already complete)?"
                               r"(?:, (\d+) left to another runner)?\); table: .*\n", stdout)
        assert summary, stdout
        executed.append(6 - sum(int(n or 0) for n in summary.groups()))
    assert sum(executed) == 6 and min(executed) >= 1, executed  # shared, each run once
    assert not list((out / "runs").glob("*.lock"))
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)


def test_sigterm_during_an_intermediate_save_stops_the_run_after_the_file_is_complete(tmp_path):
    """A SIGTERM that lands while a --save-every image is written is held until the file
    is complete (no temporary file left), then stops the run like Ctrl-C."""
    from nstlib import images

    cli._SigtermState.received = cli._SigtermState.deferred = False
    target = tmp_path / "r.step0001.png"
    with pytest.raises(cli.Terminated):
        with cli._sigterm_deferred(raise_after=True):
            cli._on_sigterm(signal.SIGTERM, None)  # arrives mid-save: nothing raised here
            images.save_image(np.zeros((4, 4, 3), np.float32), target)
    assert target.is_file() and not list(tmp_path.glob(".*.tmp"))
    cli._SigtermState.received = False


# ----------------------------------------------------------------------------- issue 23:
# nothing lost, nothing cryptic, round 2 (records, early signals, damaged folders, batches)


def test_two_results_that_differ_only_in_format_keep_a_record_each(pair, tmp_path, capsys):
    content, style = pair
    other = tmp_path / "other.png"
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(other)
    odd = tmp_path / "odd"
    assert run(["stylize", content, style, "-o", odd / "x.jpeg", *FAST], capsys)[0] == 0
    code, _, err = run(["stylize", other, style, "-o", odd / "x.png", *FAST, "--seed", "5"],
                       capsys)
    assert code == 0 and err == ""  # nothing of the first result is replaced
    assert sorted(p.name for p in odd.iterdir()) == ["x.jpeg", "x.jpeg.json", "x.png",
                                                    "x.png.json"]
    first = json.loads((odd / "x.jpeg.json").read_text())
    second = json.loads((odd / "x.png.json").read_text())
    assert (first["image"], first["content"], first["seed"]) == ("x.jpeg", str(content), 0)
    assert (second["image"], second["content"], second["seed"]) == ("x.png", str(other), 5)


def test_a_record_of_the_older_layout_is_left_as_it_is_and_said_once(pair, tmp_path, capsys):
    content, style = pair
    out, old = tmp_path / "x.png", tmp_path / "x.json"
    old.write_text('{"written": "by an earlier version"}')
    code, _, err = run(["stylize", content, style, "-o", out, *FAST], capsys)
    assert code == 0
    assert err.splitlines() == [f"nst: the record now goes to x.png.json; {old} (written by "
                                f"an earlier version) is left as it is"]
    assert old.read_text() == '{"written": "by an earlier version"}'
    assert json.loads(_record(out).read_text())["image"] == "x.png"


def test_a_full_disk_while_saving_changes_neither_the_image_nor_its_record(
        pair, tmp_path, capsys, monkeypatch):
    content, style = pair
    out = tmp_path / "o.png"
    assert run(["stylize", content, style, "-o", out, *FAST], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    disk_full_for(monkeypatch, "o.png.json")  # the image fits, its record does not
    code, _, err = run(["stylize", content, style, "-o", out, *FAST, "--seed", "3"], capsys)
    assert code == cli.EXIT_FAILED
    assert err.splitlines()[-1] == (
        f"nst: error: could not write {_record(out)} (No space left on device); the "
        f"previous o.png and its record, if any, are as they were")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .tmp either


def test_scales_report_the_steps_made_at_every_scale(pair, tmp_path, capsys):
    content, style = pair
    out = tmp_path / "o.png"
    code, stdout, _ = run(["stylize", content, style, "-o", out, *FAST, "--scales", "16,32"],
                          capsys)
    assert code == 0
    record = json.loads(_record(out).read_text())
    assert record["steps"] == [3, 3] and record["steps_done"] == 3 + 3
    assert record["history"]["scale"] == [16] * 4 + [32] * 4  # each scale: start + 3 steps
    assert "; 6 steps in " in stdout


def test_a_value_starting_with_a_minus_is_taken_like_the_equals_form(pair, tmp_path, capsys):
    content, style = pair
    base = ["stylize", content, "--style", style, "--style", "stripes", "-o",
            tmp_path / "o.png", *FAST]
    spaced = run([*base, "--style-blend", "-1,2"], capsys)
    joined = run([*base, "--style-blend=-1,2"], capsys)
    assert spaced == joined
    assert spaced[0] == cli.EXIT_BAD_INPUT
    assert_one_line_error(spaced[2], "--style-blend must be at least 0, got -1")
    code, _, err = run([*base, "--lr", "-1e-3"], capsys)
    assert_one_line_error(err, "--learning-rate must be greater than 0, got -0.001")
    assert not (tmp_path / "o.png").exists()


def test_sizes_and_seeds_are_refused_before_tensorflow_naming_the_option(pair, tmp_path):
    """Each case in one fresh process: one line naming the flag at fault, no TensorFlow."""
    content, style = pair  # 40x48 and 32x32; FAST: 32 px, deepest layer block2_conv1
    out = str(tmp_path / "o.png")
    common = ["stylize", str(content), str(style), "-o", out, *FAST]
    cases = [
        [*common, "--seed", str(2**64), "--init", "noise"],
        [*common, "--style-size", "1"],
        [*common, "--pyramid-levels", "10"],
        [*common, "--scales", "1,32"],
        ["stylize", "nope.png", str(style), "-o", out, "--dry-run"],
        ["stylize", str(content), str(tmp_path), "-o", out, "--dry-run"],
    ]
    script = ("import json, sys, nstlib.cli\n"
              f"codes = [nstlib.cli.main(argv) for argv in {cases!r}]\n"
              "print(json.dumps([codes, 'tensorflow' in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    codes, imported = json.loads(proc.stdout)
    assert codes == [cli.EXIT_BAD_INPUT] * len(cases) and imported is False, proc.stderr
    # 40x48 at 32 px is 27x32; its pyramid halves (rounding up) to 14x16, 7x8, 4x4, 2x2,
    # 1x1: level 5 is the first under block2_conv1's 2 px, so 5 levels is the most.
    assert proc.stderr.splitlines() == [
        f"nst: error: --seed must be below 2**63 = {2**63} with init 'noise' (the noise's "
        f"seed is a signed 64-bit integer), got {2**64}",
        "nst: error: --style-size 1 is too small: the style image would be 1x1 px and "
        "block2_conv1 needs a shorter side of at least 2 px",
        "nst: error: --pyramid-levels 10 is too many for the content image at 27x32 px: its "
        "level 9 would be 1x1 px and block2_conv1 needs a shorter side of at least 2 px; "
        "use at most 5",
        "nst: error: --scales 1,32 is too small: the content image would be 1x1 px (at "
        "scale 1) and block2_conv1 needs a shorter side of at least 2 px",
        "nst: error: --dry-run: image not found: nope.png",
        f"nst: error: --dry-run: expected an image file, got a directory: {tmp_path}",
    ]
    assert not Path(out).exists()


#: A child that runs ``nst`` (argv[1:]) and holds still in the run numbered
#: NST_TEST_GATE_RUN (from 1) just before it records step NST_TEST_GATE_STEP: it writes
#: one byte to fd READY and blocks reading fd HOLD (never written), so a signal sent after
#: the byte arrives lands there. At step 0 no step has been recorded: the signal lands
#: "before the first step finished".
_GATED_STEP = """
import os, sys
READY, HOLD = int(os.environ["NST_TEST_READY_FD"]), int(os.environ["NST_TEST_HOLD_FD"])
RUN, STEP = int(os.environ["NST_TEST_GATE_RUN"]), int(os.environ["NST_TEST_GATE_STEP"])
from nstlib import cli
cli._import_tensorflow_quietly()
from nstlib import optimize
real, runs = optimize._Recorder.record, []

def record(self, step, image, losses):
    if step == 0:
        runs.append(step)
    if len(runs) == RUN and step == STEP:
        os.write(READY, b"1")
        os.read(HOLD, 1)  # the signal's handler raises here
    return real(self, step, image, losses)

optimize._Recorder.record = record
sys.exit(cli.main(sys.argv[1:]))
"""


def _signal_at_a_step(argv, sig, cwd, run_number: int = 1, step: int = 0):
    """Run ``nst ARGV`` in a child (SIGINT and SIGTERM at their defaults), send ``sig``
    when run ``run_number`` is about to record ``step``; returns (exit code, out, err)."""
    return _signal_at_the_gate(_GATED_STEP, argv, sig, cwd, {
        "NST_TEST_GATE_RUN": str(run_number), "NST_TEST_GATE_STEP": str(step)})


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, cli.EXIT_INTERRUPTED, "nst: interrupted"),
    (signal.SIGTERM, cli.EXIT_TERMINATED, "nst: terminated (SIGTERM)"),
])
def test_a_signal_before_the_first_step_is_one_line_and_keeps_the_earlier_result(
        sig, code, message, pair, tmp_path):
    content, style = pair
    out = tmp_path / "o.png"
    out.write_bytes(b"an earlier result")
    _record(out).write_text('{"an": "earlier record"}')
    returned, stdout, err = _signal_at_a_step(["stylize", content, style, "-o", out, *FAST],
                                              sig, tmp_path)
    assert returned == code, err
    assert err == message + "\n" and stdout == ""  # no traceback, no "replacing" line
    assert out.read_bytes() == b"an earlier result"
    assert _record(out).read_text() == '{"an": "earlier record"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [content.name, style.name, "o.png", "o.png.json"])


@pytest.mark.parametrize("sig, step", [(signal.SIGINT, 0), (signal.SIGTERM, 2)])
def test_a_batch_stopped_by_a_signal_says_what_is_kept_and_a_rerun_completes_it(
        sig, step, photos, tmp_path):
    folder, style = photos
    out = tmp_path / "out"
    argv = ["stylize", folder, "--style", style, "-o", out, *FAST]
    code, stdout, err = _signal_at_a_step(argv, sig, tmp_path, run_number=2, step=step)
    how, expected = {signal.SIGINT: ("interrupted", cli.EXIT_INTERRUPTED),
                     signal.SIGTERM: ("terminated (SIGTERM)", cli.EXIT_TERMINATED)}[sig]
    current = (f"the current image was written to {out / 'b.png'} (status interrupted)"
               if step else "nothing was written for b.png")
    assert code == expected, err
    assert err.splitlines() == [f"nst: {how}: 1 of 2 results complete in {out}; {current}; "
                                f"re-run the same command to stylize the rest (complete "
                                f"results are kept)"]
    summaries = stdout.splitlines()  # one per image written
    assert [line.split(" (")[0] for line in summaries] == [
        str(out / "a.png"), *([str(out / "b.png")] if step else [])]
    assert summaries[-1].endswith(" s") and (not step or "; 1 step in " in summaries[-1])
    assert json.loads((out / "a.png.json").read_text())["status"] == "completed"
    if step:  # two rows recorded (steps 0 and 1): one step made
        partial = json.loads((out / "b.png.json").read_text())
        assert partial["status"] == "interrupted" and partial["steps_done"] == 1
    else:
        assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.json"]
    kept = (out / "a.png").read_bytes(), (out / "a.png.json").stat().st_mtime_ns

    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, cwd=tmp_path,
                          timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"nst: keeping 1 of 2 results already complete with these settings in {out} "
        f"(--redo stylizes them again)"] + ([f"nst: replacing the existing {out / 'b.png'} "
                                             f"and {out / 'b.png.json'}"] if step else [])
    assert proc.stdout.splitlines()[-1] == (f"nst: 2 of 2 images stylized into {out} (1 kept "
                                            f"from an earlier run)")
    assert ((out / "a.png").read_bytes(), (out / "a.png.json").stat().st_mtime_ns) == kept
    assert json.loads((out / "b.png.json").read_text())["status"] == "completed"


def test_a_batch_rerun_redoes_what_changed_and_says_why(photos, tmp_path, capsys):
    folder, style = photos
    out = tmp_path / "out"
    argv = ["stylize", folder, "--style", style, "-o", out, *FAST]
    assert run(argv, capsys)[0] == 0

    def versions():
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    first = versions()
    code, stdout, err = run(argv, capsys)  # everything complete: nothing is run
    assert code == 0 and versions() == first
    assert err.splitlines() == [f"nst: keeping 2 of 2 results already complete with these "
                                f"settings in {out} (--redo stylizes them again)"]
    assert stdout.splitlines() == [f"nst: 2 of 2 images stylized into {out} (2 kept from an "
                                   f"earlier run)"]
    (out / "a.png.json").write_text('{"status": "comp')  # cut short
    code, _, err = run(argv, capsys)
    assert code == 0
    assert err.splitlines()[:2] == [
        f"nst: {out / 'a.png.json'} is not valid JSON (truncated or damaged: Unterminated "
        f"string starting at: line 1 column 12 (char 11)); a.png will be stylized again",
        f"nst: keeping 1 of 2 results already complete with these settings in {out} "
        f"(--redo stylizes them again)"]
    assert json.loads((out / "a.png.json").read_text())["status"] == "completed"
    second = versions()
    assert second["b.png"] == first["b.png"] and second["a.png"] != first["a.png"]
    # other settings, or --redo: every image is stylized again
    for extra in (["--style-weight", "7"], ["--redo"]):
        before = versions()
        code, _, err = run([*argv, *extra], capsys)
        assert code == 0 and "keeping" not in err
        assert all(versions()[name] != before[name] for name in before)
    assert json.loads((out / "b.png.json").read_text())["requested"] == {
        "size": 32, "steps": 3, "weights": "random", "content_layers": ["block2_conv1"],
        "style_layers": ["block1_conv1", "block2_conv1"]}


# damaged results folders and full disks under nst ablate / nst report


@pytest.mark.parametrize("text, problem", [
    ("[]", "holds a list, not a run record (a JSON object)"),
    ('{"status": "completed"}', "has no run_id, so it is not a run record"),
    ('{"run_id": "', "is not valid JSON (truncated or damaged: Unterminated string starting "
                     "at: line 1 column 12 (char 11))"),
])
def test_report_names_a_damaged_record_and_lists_its_run_as_not_run(text, problem, tmp_path,
                                                                   capsys):
    out = tmp_path / "results"
    specs = _results_folder(out, completed={0, 1, 2})
    damaged = ablation.record_path(out, specs[0].run_id)
    damaged.write_text(text)
    code, stdout, err = run(["report", out], capsys)
    assert code == 0
    assert err.splitlines() == [f"nst: {damaged} {problem}; run #1 is listed as not run (nst "
                                f"ablate on {out} runs it again)"]
    assert stdout.split() == [str(out / n) for n in ("images.png", "metrics.png",
                                                      "results.md", "results.csv")]
    with open(out / "results.csv", newline="") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["pending", "completed",
                                                                 "completed"]
    markdown = (out / "results.md").read_text()
    assert "3 runs: 2 completed, 0 failed, 1 not run." in markdown
    assert f"* run #1 `{specs[0].run_id}` is listed as not run: {damaged} {problem}" in markdown
    assert damaged.read_text() == text  # a report changes no record


class _PayloadBackend:
    """An in-process backend: every run "completes" at once with a small real PNG."""

    slots = 1

    def submit(self, config, out_dir, base_dir):
        import concurrent.futures

        rid = ablation.run_id(config)
        png = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(png, format="PNG")
        record = {"run_id": rid, "config": config, "status": "completed", "error": None,
                  "final": {"step": 3, "total": 1.5, "content": 1.0, "style": 0.5, "tv": 0.0},
                  "history": {"seconds": [0.0, 1.0], "total": [3.0, 1.5]}, "metrics": {},
                  "weights_source": "random", "environment": {"host": "h"}}
        future = concurrent.futures.Future()
        future.set_result({"record": record, "png": png.getvalue()})
        return future

    def wait_first(self, futures):
        return set(futures)

    def cancel(self, futures):
        pass

    def close(self):
        pass


@pytest.fixture
def payload_backend(monkeypatch):
    from nstlib.ablation import runner

    monkeypatch.setattr(runner, "make_backend", lambda *args: _PayloadBackend())


def test_ablate_names_a_damaged_record_then_runs_it_again(tmp_path, capsys, payload_backend):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
    out = tmp_path / "results"
    specs = ablation.load_grid(GRID).expand()
    (out / "runs").mkdir(parents=True)
    damaged = ablation.record_path(out, specs[1].run_id)
    damaged.write_text("[]")
    code, stdout, err = run(["ablate", grid, "-o", out, "--no-progress"], capsys)
    assert code == 0
    assert err.splitlines() == [f"nst: {damaged} holds a list, not a run record (a JSON "
                                f"object); run {specs[1].run_id} will be run again and that "
                                f"file replaced"]
    assert stdout.startswith("2 runs (2 completed)")
    assert json.loads(damaged.read_text())["status"] == "completed"


def test_a_full_disk_during_ablate_keeps_finished_runs_and_says_how_to_resume(
        tmp_path, capsys, payload_backend, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
    out = tmp_path / "results"
    first, second = (spec.run_id for spec in ablation.load_grid(GRID).expand())
    disk_full_for(monkeypatch, f"{second}.json")
    code, stdout, err = run(["ablate", grid, "-o", out, "--no-progress"], capsys)
    assert code == cli.EXIT_FAILED and stdout == ""
    assert err.splitlines() == [
        f"nst: error: could not write {out / 'runs' / second}.json (No space left on "
        f"device); 1 of 2 runs complete in {out} (1 finished by this call); free some "
        f"space, then re-run the same command to resume"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [f"{first}.json",
                                                                f"{first}.png"]  # no image
    # without its record, no temporary file, no claim left
    monkeypatch.undo()
    from nstlib.ablation import runner

    monkeypatch.setattr(runner, "make_backend", lambda *args: _PayloadBackend())
    code, stdout, err = run(["ablate", grid, "-o", out, "--no-progress"], capsys)
    assert code == 0 and err == ""
    assert stdout.startswith("2 runs (2 completed, 1 already complete)")


def test_a_full_disk_during_report_changes_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    _results_folder(out, completed={0, 1})
    (out / "results.csv").write_text("the table of an earlier collection\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    disk_full_for(monkeypatch, "metrics.png")
    code, stdout, err = run(["report", out], capsys)
    assert code == cli.EXIT_FAILED and stdout == ""
    assert err.splitlines() == [
        f"nst: error: could not write {out / 'metrics.png'} (No space left on device); the "
        f"report and table in {out} are as they were; free some space, then re-run nst "
        f"report {out}"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not (out / "results.md").exists() and not list(out.glob(".*.tmp"))


def test_a_grid_with_a_seed_too_large_for_noise_fails_when_it_loads():
    with pytest.raises(ablation.GridError, match=r"seed must be below 2\*\*63"):
        ablation.load_grid({**GRID, "fixed": {**GRID["fixed"], "init": "noise",
                                              "seed": 2**63}})
