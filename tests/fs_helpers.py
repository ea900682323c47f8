"""File-permission helpers: make a read or a write be refused, even when tests run as root."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from pathlib import Path

import pytest

NOBODY = 65534


@contextlib.contextmanager
def as_unprivileged():
    """File permission checks of this thread as an ordinary user.

    Root bypasses file modes, so as root the thread's file-system user id is set to
    'nobody' (Linux ``setfsuid``, which also drops CAP_DAC_OVERRIDE for file access) and
    restored afterwards. Only modules already imported can be used inside the block (the
    Python installation may not be readable by 'nobody').
    """
    if os.geteuid() != 0:
        yield
        return
    try:
        setfsuid = ctypes.CDLL(None, use_errno=True).setfsuid
    except (OSError, AttributeError):
        pytest.skip("running as root without setfsuid: file modes are not enforced")
    setfsuid(NOBODY)
    try:
        yield
    finally:
        setfsuid(0)


@contextlib.contextmanager
def open_folder():
    """A folder that 'nobody' may enter (pytest's tmp_path is closed to other users)."""
    path = Path(tempfile.mkdtemp(prefix="nstlib-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):  # let the clean-up into folders made read-only
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(0o755)
        shutil.rmtree(path)


def disk_full_for(monkeypatch, *names: str) -> None:
    """Make every nstlib write to a file named in ``names`` fail with a real ENOSPC.

    nstlib writes each file through a temporary file (``nstlib._io._create_temporary``);
    for those destinations its descriptor is swapped for one of ``/dev/full``, on which
    the kernel refuses every write with "No space left on device". The temporary file
    itself is still created (and must be cleaned up by the writer), as on a real disk.
    """
    from nstlib import _io

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    real = _io._create_temporary

    def create(path):
        fd, tmp = real(path)
        if Path(path).name in names:
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(_io, "_create_temporary", create)
