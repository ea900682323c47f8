"""Run records on disk: which file is the record of a result image, and reading one safely.

Every result image gets a JSON record next to it, named after the image's whole file
name: ``out/x.png`` -> ``out/x.png.json``, ``out/x.jpeg`` -> ``out/x.jpeg.json``. So one
record belongs to exactly one image, and two results that differ only in their format
(``x.png`` and ``x.jpeg``) keep a record each. Earlier versions wrote ``out/x.json``
(the image's suffix replaced), which such a pair shared: ``legacy_record_path`` names that
older file, which nstlib never writes or deletes (``nst stylize`` says in one line that it
is left beside a new record). A batch re-run keeps only results whose record is of the
new layout: older records do not say which settings were asked for.

Records of ``nst ablate`` (``runs/<id>.json``) are named after their run id instead, which
their image (``runs/<id>.png``) shares; ``load_record`` reads both kinds.

Plain Python (no TensorFlow), so the ``nst`` command can check outputs and records first.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

#: What a record's file name adds to its image's name.
RECORD_SUFFIX = ".json"


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file and what is wrong."""


def record_path(image) -> Path:
    """The record of a result image: its file name plus ``.json`` (``x.png.json``)."""
    image = Path(image)
    return image.with_name(image.name + RECORD_SUFFIX)


def legacy_record_path(image) -> Path:
    """Where earlier versions put an image's record: ``x.json`` for ``x.png`` (and for
    ``x.jpg``, ``x.jpeg``...: a name those images shared)."""
    return Path(image).with_suffix(RECORD_SUFFIX)


def load_record(path) -> dict:
    """A record file's contents, checked to be a JSON object.

    Raises:
        FileNotFoundError: there is no such file.
        RecordError: the file cannot be read, is not valid JSON (e.g. cut short by a full
            disk or a copy that stopped), or holds something other than a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or str(err)
        raise RecordError(f"{path} cannot be read ({why})") from None
    try:
        record = json.loads(text)
    except ValueError as err:
        raise RecordError(f"{path} is not valid JSON (truncated or damaged: {err})") from None
    if not isinstance(record, dict):
        kind = {list: "a list", str: "a string", type(None): "null"}.get(type(record), "a number")
        raise RecordError(f"{path} holds {kind}, not a run record (a JSON object)")
    return record


def old_record_name() -> property:
    """``config``, the name a result's ``record`` had before: a read-only property that
    returns ``result.record`` (the same dict) and emits a ``DeprecationWarning``.

    "config" names the settings (``nstlib.settings.StylizeConfig``) and the environment
    switches (``nstlib.config``); a run's record is ``record``. Used as a class attribute
    of ``transfer.StylizeResult`` (and so ``wct.WCTStylizeResult``) and ``toy.ToyResult``.
    """

    def config(self) -> dict:
        warnings.warn(f"{type(self).__name__}.config is now .record", DeprecationWarning,
                      stacklevel=2)
        return self.record

    return property(config, doc="Deprecated: the old name of ``record`` (the same dict).")
