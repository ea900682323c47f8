"""Atomic file writing: the one implementation every nstlib writer uses.

This private module owns how a result reaches the disk: the content is written to a
temporary file in the destination's folder and renamed over the destination with
``os.replace``, so a reader (or a crash) never sees a half-written file and a failure
leaves any existing file untouched and no temporary file behind. The new file gets the
permissions a plain ``open(path, "w")`` would give it: ``0o666 & ~umask`` for a new file,
the existing file's mode when one is replaced. No notebook teaches it; images, run
records, weight files, ablation tables and the notebook tools all write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO


def _create_temporary(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<random>.tmp`` next to ``path``; return (fd, name).

    ``os.open`` with mode 0o666 lets the kernel apply the process umask, as ``open()``
    does (``tempfile.mkstemp`` would give 0o600). If ``path`` exists its mode is copied.
    """
    try:
        existing_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        existing_mode = None
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        break
    if existing_mode is not None:
        try:
            os.fchmod(fd, existing_mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds.

    The destination's folder must exist. On any exception (Ctrl-C included) the temporary
    file is removed, ``path`` is left as it was and the exception propagates; an OSError
    that names no file, or the temporary one (a full disk), is raised naming ``path``.

    Args:
        path: Destination.
        mode: "wb" (bytes) or "w" (text); ``kwargs`` go to ``os.fdopen`` (``encoding``).

    Yields:
        The open file object (for ``json.dump``, ``PIL.Image.save(handle, format=...)``).
    """
    path = Path(path)
    try:
        fd, tmp = _create_temporary(path)
    except OSError as err:
        raise _naming(err, path) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename not in (None, tmp):
            raise
        raise _naming(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path (an empty file) that replaces ``path`` when the block succeeds.

    For writers that need a file name rather than a file object (``h5py.File(tmp, "w")``).
    The destination's folder must exist; a failure removes the temporary file.
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(data: bytes, path) -> Path:
    """Write bytes to ``path`` atomically, creating its folder if needed; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return path


def atomic_write_text(text: str, path, encoding: str = "utf-8") -> Path:
    """Write text to ``path`` atomically, creating its folder if needed; returns ``path``."""
    return atomic_write_bytes(text.encode(encoding), path)


def write_json(data: dict, path) -> Path:
    """Write JSON atomically (temporary file in the same folder, then rename).

    ``indent=1``; values JSON cannot represent are written as ``str(value)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    return path


def atomic_write_all(files: Sequence[tuple[os.PathLike | str, bytes]]) -> list[Path]:
    """Write several files so that each is replaced only once every one is fully written.

    Every file's data goes to its temporary file first; only when all of them are on
    disk are they renamed over their destinations, in the order given. A write that
    fails (a full disk, Ctrl-C) therefore changes none of the destinations and leaves no
    temporary file, and the renames themselves need no free space. Put the file that
    vouches for the others last (a run's record after its image): a crash between two
    renames then leaves the new image with the old record at worst, never a new record
    without its image.

    Args:
        files: (destination, data) pairs; their folders are created if needed.

    Returns:
        The destinations, in the order given.

    Raises:
        OSError: as raised by the failing write or rename, with ``filename`` set to its
            destination (never the hidden temporary file's name).
    """
    written: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = _create_temporary(path)
                written.append((tmp, path))
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            except OSError as err:
                raise _naming(err, path) from None
        for tmp, path in written:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise _naming(err, path) from None
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path in written]


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` as the same kind of OSError, naming ``path`` instead of a temporary file
    (an OSError without an errno cannot name a file: it is returned as it is)."""
    if err.errno is None:
        return err
    return type(err)(err.errno, err.strerror or str(err), str(path))


def json_bytes(data) -> bytes:
    """``data`` as ``write_json`` writes it (``indent=1``, other values as ``str``), UTF-8."""
    return json.dumps(data, indent=1, default=str).encode("utf-8")
