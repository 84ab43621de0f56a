"""Atomic writes and copies: the old file or the whole new one, synced with its folder."""

from __future__ import annotations

import os
import stat

import pytest

import nmt.atomic
from nmt.atomic import copy_atomic, write_atomic


def _count_fsyncs(monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))  # a folder or a file
        return real(fd)

    monkeypatch.setattr(nmt.atomic.os, "fsync", recording)
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


def test_writes_sync_the_folder_too(tmp_path, monkeypatch):
    synced = _count_fsyncs(monkeypatch)
    write_atomic(tmp_path / "x", b"data")
    assert (tmp_path / "x").read_bytes() == b"data" and synced == [False, True]
