"""`nst ablate` and `nst report`: one-line errors for bad grids, a real grid, the report."""

from __future__ import annotations

import csv
import functools
import json

import cli_helpers
import numpy as np
import pytest
import yaml
from cli_helpers import run
from PIL import Image

from nstlib import ablation, cli

assert_one_line_error = functools.partial(cli_helpers.assert_one_line_error, command="ablate")

GRID = {"name": "cli test",
        "fixed": {"content": "chelsea", "style": "mosaic", "size": 32, "steps": 3,
                  "weights": "random", "content_layers": ["block2_conv1"],
                  "style_layers": ["block1_conv1", "block2_conv1"]},
        "axes": {"style_weight": [1.0, 30.0]},
        "evaluate": {"weights": "random", "content_layers": ["block2_conv1"],
                     "style_layers": ["block1_conv1"]}}



@pytest.mark.parametrize("text, fragments", [
    ("fixed: {content: chelsea, style: mosaic\n", ("invalid YAML", "line 2")),
    ("fixed: {content: chelsea, style: mosaic}\naxes: {optimiser: [adam]}\n",
     ("unknown setting 'optimiser' in axes", "did you mean 'optimizer'")),
    ("fixed: {content: chelsea}\n", ("every run needs 'style'",)),
    ("- just\n- a list\n", ("a grid must be a mapping",)),
    ("fixed: {content: chelsea, style: mosaic}\naxes: {seed: 3}\n",
     ("axis 'seed' must be a non-empty list",)),
])
def test_bad_grid_file_is_one_line_and_exit_2(text, fragments, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    out = tmp_path / "results"
    code, stdout, err = run(["ablate", grid, "-o", out], capsys)
    assert code == 2 and stdout == ""
    assert_one_line_error(err, str(grid), *fragments)
    assert not out.exists()  # nothing written for a bad grid


def test_missing_grid_file_and_bad_options(tmp_path, capsys):
    code, _, err = run(["ablate", tmp_path / "nope.yaml", "-o", tmp_path / "r"], capsys)
    assert code == 2
    assert_one_line_error(err, "grid file not found", "nope.yaml")
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    code, _, err = run(["ablate", grid, "-o", tmp_path / "r", "--scheduler", "tcp://h:1",
                        "--workers", "2"], capsys)
    assert code == 2
    assert_one_line_error(err, "--workers applies to local processes")
    code, _, err = run(["ablate", grid, "-o", tmp_path / "r", "--scheduler", "nowhere"], capsys)
    assert code == 2
    assert_one_line_error(err, "scheduler must be 'local-cluster' or an address")
    with pytest.raises(SystemExit) as info:  # argparse: usage errors exit 2 too
        cli.main(["ablate", str(grid), "-o", str(tmp_path / "r"), "--workers", "0"])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--workers: must be positive")
    assert not (tmp_path / "r").exists()


def test_report_on_a_folder_that_is_not_a_results_folder(tmp_path, capsys):
    code, _, err = run(["report", tmp_path], capsys)
    assert code == 2
    assert_one_line_error(err, "is not a results folder")


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
    assert "VGG19 weights: random" in markdown and "![images.png](images.png)" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 and "style_weight" in table[0]
    for row, line in zip(rows, table[1:], strict=True):
        assert f"`{row['run_id']}`" in line and "completed" in line
        assert f"{float(row['final_total']):.4g}" in line
    record = json.loads(ablation.record_path(out, rows[0]["run_id"]).read_text())
    assert record["weights_source"] == "random" and record["status"] == "completed"
