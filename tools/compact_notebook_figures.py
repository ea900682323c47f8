"""Tidy stored notebook outputs: large PNG figures as JPEG, and no log lines.

Stylised images and image grids compress badly as PNG (a 6-panel grid of 256 px results is
about 1 MB); as JPEG at quality 90 they take about a quarter of that with no visible
change. Small figures (line plots, whose sharp edges suit PNG) are left as they are.

What a process writes on stderr while a notebook runs is logging, not teaching:
TensorFlow's absl/oneDNN start-up lines, Keras' "Downloading data from", nstlib's
"which weights" line and progress bars. nbval never compares it (notebooks/conftest.py),
and each notebook prints what a reader needs (CPU, network, weights source) on stdout, so
stderr streams are dropped from the stored outputs, and so are the lines TensorFlow's Python
logger prints on stdout (retracing warnings). Every other output is left as it is.
``make notebooks`` runs this after executing the notebooks.

    python tools/compact_notebook_figures.py notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

from PIL import Image

from nstlib._io import atomic_open

#: PNG outputs larger than this many bytes (decoded) are re-encoded.
MIN_BYTES = 200_000
JPEG_QUALITY = 90


def png_to_jpeg(png: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a PNG image, transparent parts composited on white."""
    image = Image.open(io.BytesIO(png))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def compact_outputs(notebook: dict, min_bytes: int = MIN_BYTES) -> int:
    """Replace large ``image/png`` outputs by ``image/jpeg`` ones, in place.

    Args:
        notebook: A notebook as parsed from its JSON (nbformat 4).
        min_bytes: Only PNGs larger than this (decoded) are re-encoded, and only when
            the JPEG is smaller.

    Returns:
        The number of bytes saved (decoded image sizes).
    """
    saved = 0
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode("".join(data["image/png"]))
            if len(png) <= min_bytes:
                continue
            jpeg = png_to_jpeg(png)
            if len(jpeg) >= len(png):
                continue
            del data["image/png"]
            data["image/jpeg"] = base64.b64encode(jpeg).decode("ascii")
            saved += len(png) - len(jpeg)
    return saved


#: What TensorFlow's Python logger prints on stdout ("WARNING:tensorflow:5 out of the last
#: 17 calls ... triggered tf.function retracing"): logging, like stderr.
TENSORFLOW_LOG_PREFIXES = ("WARNING:tensorflow:", "INFO:tensorflow:", "ERROR:tensorflow:")


def _without_log_lines(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(TENSORFLOW_LOG_PREFIXES))


def drop_stderr_streams(notebook: dict) -> int:
    """Remove every stderr stream output and TensorFlow's log lines from stdout streams, in
    place; returns how many outputs were removed or shortened."""
    touched = 0
    for cell in notebook.get("cells", []):
        outputs = cell.get("outputs", [])
        kept = []
        for output in outputs:
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                tidy = "" if output.get("name") == "stderr" else _without_log_lines(text)
                if tidy != text:
                    touched += 1
                    if not tidy:
                        continue
                    output = {**output, "text": tidy}
            kept.append(output)
        if outputs:
            cell["outputs"] = kept
    return touched


def compact_file(path: Path, min_bytes: int = MIN_BYTES) -> int:
    """Tidy one ``.ipynb`` file (atomically rewritten only if something changed).

    Returns:
        The bytes saved by re-encoding figures.
    """
    notebook = json.loads(path.read_text(encoding="utf-8"))
    saved = compact_outputs(notebook, min_bytes)
    dropped = drop_stderr_streams(notebook)
    if saved or dropped:
        with atomic_open(path, "w", encoding="utf-8") as handle:
            json.dump(notebook, handle, indent=1, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
    return saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--min-bytes", type=int, default=MIN_BYTES)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        before = path.stat().st_size
        compact_file(path, args.min_bytes)
        print(f"{path}: {before / 2**20:.2f} MiB -> {path.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
