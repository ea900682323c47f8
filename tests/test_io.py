"""Tests for nstlib._io: atomic writes, the permissions they give, and clean failures."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from fs_helpers import disk_full_for

from nstlib._io import (
    atomic_open,
    atomic_path,
    atomic_write_all,
    atomic_write_bytes,
    atomic_write_text,
    write_json,
)


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write_bytes(b"data", tmp_path / "new.bin")
    assert _mode(path) == expected
    # the same as a plain open() under that umask
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"data")
    assert _mode(plain) == expected


@pytest.mark.parametrize("writer", ["bytes", "text", "json", "path"])
def test_replacing_an_existing_file_keeps_its_mode(tmp_path, umask, writer):
    umask(0o022)
    path = tmp_path / "existing.out"
    path.write_bytes(b"old")
    path.chmod(0o640)
    if writer == "bytes":
        atomic_write_bytes(b"new", path)
    elif writer == "text":
        atomic_write_text("new", path)
    elif writer == "json":
        write_json({"new": 1}, path)
    else:
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"new")
    assert _mode(path) == 0o640
    assert path.read_bytes() != b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["existing.out"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.txt"
    path.write_text("old")
    with pytest.raises(OSError, match="simulated"), atomic_open(path, "w") as handle:
        handle.write("half of the new con")
        raise OSError("disk full (simulated)")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_failure_of_a_path_writer_leaves_no_temporary(tmp_path):
    path = tmp_path / "weights.h5"
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp") and tmp.is_file()
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


def test_failed_json_keeps_the_old_record(tmp_path, monkeypatch):
    path = write_json({"old": 1}, tmp_path / "run.json")

    def broken_dump(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="simulated"):
        write_json({"new": 1}, path)
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_writers_create_folders_and_return_the_path(tmp_path):
    path = tmp_path / "a" / "b" / "record.json"
    assert write_json({"value": Path("x"), "n": 1}, path) == path
    assert path.read_text() == json.dumps({"value": "x", "n": 1}, indent=1)
    text_path = tmp_path / "c" / "notes.md"
    assert atomic_write_text("π ≈ 3.14\n", text_path) == text_path
    assert text_path.read_bytes() == "π ≈ 3.14\n".encode()


def test_the_destination_appears_only_by_rename(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(src).read_bytes(), Path(dst).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(b"complete", tmp_path / "out.bin")
    assert seen == [(tmp_path, b"complete", False)]


def test_a_full_disk_is_reported_naming_the_destination(tmp_path, monkeypatch):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    disk_full_for(monkeypatch, "figure.png")  # the kernel refuses the write: ENOSPC
    with pytest.raises(OSError) as info:
        atomic_write_bytes(b"new figure", target)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(target))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def test_write_all_replaces_nothing_unless_every_file_is_written(tmp_path, monkeypatch):
    image, record = tmp_path / "x.png", tmp_path / "x.png.json"
    image.write_bytes(b"old image")
    record.write_bytes(b"old record")
    disk_full_for(monkeypatch, "x.png.json")  # the image fits, the record does not
    with pytest.raises(OSError) as info:
        atomic_write_all([(image, b"new image"), (record, b"new record")])
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(record))
    assert (image.read_bytes(), record.read_bytes()) == (b"old image", b"old record")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x.png.json"]
    monkeypatch.undo()
    assert atomic_write_all([(image, b"new image"), (tmp_path / "sub" / "r", b"r")]) == [
        image, tmp_path / "sub" / "r"]
    assert (image.read_bytes(), (tmp_path / "sub" / "r").read_bytes()) == (b"new image", b"r")


def test_write_all_renames_in_the_order_given(tmp_path, monkeypatch):
    """The record goes last: seen from outside, a new record never precedes its image."""
    from nstlib import _io

    renamed, real = [], os.replace
    monkeypatch.setattr(_io.os, "replace", lambda a, b: (renamed.append(Path(b).name),
                                                         real(a, b)))
    atomic_write_all([(tmp_path / "b.png", b"1"), (tmp_path / "a.json", b"2")])
    assert renamed == ["b.png", "a.json"]
