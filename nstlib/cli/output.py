"""Where ``nst stylize`` and ``nst demo`` write: the output checked before any work, a
batch's file names, a result kept from an earlier run, a diverged run's last image, and
the summary line of a result.

Needs no TensorFlow at import (``nstlib.images`` is imported when a file is written).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from nstlib.cli.errors import EXIT_FAILED, CliError
from nstlib.records import legacy_record_path, load_record, record_path


def check_output_location(output: Path) -> None:
    """Refuse, before any work, an output that could not be written (one line naming it).

    The image and its record (``OUT.png.json``, ``records.record_path``) must not be
    folders, the image must end in .png or
    .jpg, and the nearest existing folder on the way must be a folder (not a file) in which
    a file can be created. That is probed with a real temporary file, so permissions,
    read-only mounts and ACLs count exactly as they will when the result is written.
    Needs no TensorFlow: ``cmd_stylize`` and ``cmd_demo`` call it first.

    Raises:
        CliError: with the output path (never the hidden temporary file's name).
    """
    for target in (output, record_path(output)):
        if target.is_dir():
            raise CliError(f"output {target} is a folder; name a file, e.g. "
                           f"{target / 'result.png'}")
        if target == output and output.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            raise CliError(f"output must end in .png or .jpg, got {output.name!r}")
    folder = output.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the folders still missing are created when writing
        if not folder.is_dir():
            raise CliError(f"cannot write {output}: {folder} is a file, not a folder")
        fd, probe = tempfile.mkstemp(prefix=".nst-write-check-", dir=folder)
    except OSError as err:
        raise CliError(f"cannot write {output}: folder {folder} is not writable "
                       f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def _say_replacing(output: Path) -> None:
    """One line when a write replaces files (or leaves an older-layout record beside)."""
    replaced = [str(p) for p in (output, record_path(output)) if p.exists()]
    if replaced:
        print(f"nst: replacing the existing {' and '.join(replaced)}", file=sys.stderr)
    legacy = legacy_record_path(output)
    if legacy.is_file() and not record_path(output).exists():
        print(f"nst: the record now goes to {record_path(output).name}; {legacy} (written "
              f"by an earlier version) is left as it is", file=sys.stderr)


def _save_failed_run(err, config, content: str, style, output: Path,
                     inputs) -> tuple[int, Path | None]:
    """The last finite image and a record with the run's settings: (EXIT_FAILED, image)."""
    from nstlib import images
    from nstlib._io import atomic_write_all, json_bytes

    if err.image is None:
        print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_FAILED, None
    record = {"content": content, "style": style, **config.to_flat(), "status": "failed",
              "error": str(err), "history": err.history.to_dict(), "image": output.name,
              "requested": config.non_default()}
    for target in (output, record_path(output)):
        images.check_not_an_input(target, inputs)
    _say_replacing(output)
    atomic_write_all([(output, images.encode_image(err.image, output)),
                      (record_path(output), json_bytes(record))])
    print(f"nst: error: {err}; the last finite image is in {output}", file=sys.stderr)
    return EXIT_FAILED, output


def summary_line(result, image_path: Path, record_path: Path) -> str:
    """One line: where the result went, which weights, final losses, steps and time.

    The steps are the updates made (``steps_done``: with ``--scales 16,32 --steps 3``,
    3 + 3 = 6; the history's step numbers also count the second scale's starting row).
    """
    final, record = result.losses, result.record
    steps = record.get("steps_done", final.get("step", 0))
    return (f"{image_path} ({record_path.name}): weights {record['weights_source']}; "
            f"loss {final['total']:.4g} (content {final['content']:.3g}, style "
            f"{final['style']:.3g}, tv {final['tv']:.3g}); {steps} step"
            f"{'' if steps == 1 else 's'} in {record['wall_seconds']:.1f} s")


def batch_outputs(contents: list[str], out_dir: Path, inputs: list[str]) -> list[Path]:
    """``OUT/<content name>.png`` per content; refuses clashes and inputs (one line)."""
    from nstlib import images

    outputs, seen = [], {}
    for content in contents:
        output = out_dir / f"{Path(content).stem}.png"
        if output in seen:
            raise CliError(f"{seen[output]} and {content} would both be written to {output}; "
                           f"rename one")
        seen[output] = content
        for target in (output, record_path(output)):
            images.check_not_an_input(target, inputs)
        check_output_location(output)
        outputs.append(output)
    return outputs


def finished_before(output: Path, content: str, style, style_masks, config) -> bool:
    """Whether ``output`` is a complete result of this very request (a batch keeps it).

    True when the image exists and its record (``OUT.png.json``) says "completed" for the
    same content, style(s), masks and settings as asked (``StylizeConfig.non_default``,
    stored as ``requested``). Records of an earlier version (``OUT.json``) hold no
    ``requested``, so their image is stylized again.

    Raises:
        RecordError: the record exists but cannot be used (one line naming it).
    """
    try:
        record = load_record(record_path(output))
    except FileNotFoundError:
        return False
    wanted = {"content": content, "style": style, "style_masks": style_masks or None,
              "requested": config.non_default(), "status": "completed",
              "image": output.name}
    return output.is_file() and all(record.get(k) == v for k, v in wanted.items())
