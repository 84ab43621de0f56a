"""Tests for nmt.files: a file appears whole or not at all, and the rename is synced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import nmt.files
from nmt.files import atomic_open, copy_atomic, write_atomic


def test_write_atomic_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as f:
        f.write("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_file_and_directory_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "f.bin", b"data")
    # the data before the rename, the directory entry after it
    assert synced == ["file", "dir"]


def _count_fsyncs(monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))  # a folder or a file
        return real(fd)

    monkeypatch.setattr(nmt.files.os, "fsync", recording)
    return synced


def test_copy_replaces_the_target_and_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    src, dst = tmp_path / "a.bin", tmp_path / "b.bin"
    src.write_bytes(os.urandom(3 << 20))  # more than one chunk of the copy
    dst.write_bytes(b"old")
    synced = _count_fsyncs(monkeypatch)
    copy_atomic(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert synced == [False, True]  # the copy, then the folder that holds its new name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_a_failed_copy_leaves_the_target_alone(tmp_path):
    dst = tmp_path / "b.bin"
    dst.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        copy_atomic(tmp_path / "missing", dst)
    assert dst.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]
