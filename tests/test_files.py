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


# -- output paths that are not regular files: written in place, never renamed over ------
def _read_fifo_in_background(fifo: Path) -> list[bytes]:
    import threading

    got: list[bytes] = []
    threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True).start()
    return got


def test_a_fifo_is_written_in_place_not_replaced(tmp_path: Path) -> None:
    import time

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = _read_fifo_in_background(fifo)
    write_atomic(fifo, b"data")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fifo.is_fifo() and got == [b"data"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]  # no temp file left


def test_output_file_says_which_paths_are_written_in_place(tmp_path: Path) -> None:
    from nmt.files import output_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    assert output_file(fifo).direct and output_file("/dev/null").direct
    assert output_file("/dev/stdout").direct  # whatever file stdout is, never renamed over
    assert output_file(link) == nmt.files.OutputFile(tmp_path / "target", direct=False)
    for bad, message in [
        (tmp_path, "is a folder"),
        (tmp_path / "no" / "x", "does not exist"),
        (fifo / "x", "Not a directory"),
    ]:
        with pytest.raises(nmt.NmtError, match=message):
            output_file(bad)


def test_a_full_device_is_one_error_and_stays_a_device() -> None:
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    with pytest.raises(nmt.NmtError, match="cannot write /dev/full .*No space left"):
        write_atomic("/dev/full", b"x" * 100_000)
    assert Path("/dev/full").is_char_device()
    write_atomic("/dev/null", b"x")
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/proc/nmt-test", "/sys/nmt"])
def test_folders_that_cannot_be_made_are_one_line(tmp_path: Path, where: str) -> None:
    from nmt.files import check_dir

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(nmt.NmtError, match="is a file|the kernel's"):
        check_dir(tmp_path / where, "-o")
