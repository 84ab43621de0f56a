"""Where a translation goes: output paths checked before any work, the locked OUT.partial
that a killed run leaves for `--resume`, and the side file that says what it holds.

A regular file is written through OUT.partial and renamed when complete. Character devices
(/dev/null, a terminal), FIFOs and stdout-like paths (/dev/stdout, /proc/self/fd/N) are
written in place: renaming a file over them would replace the device, not write to it.

OUT.partial.meta records what OUT.partial was made from (checkpoint, options, input size)
and a hash of the input lines translated so far, so that `--resume` refuses a partial file
of another input, model or options instead of mixing their lines in.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nmt import NmtError
from nmt.data.corpus import check_input
from nmt.files import check_dir, output_file

META_VERSION = 1


@dataclass(frozen=True)
class OutputTarget:
    path: Path  # the file written (symlinks followed)
    direct: bool  # written in place: a device, FIFO or stdout-like path (no .partial)

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    @property
    def meta(self) -> Path:
        return self.path.with_name(self.path.name + ".partial.meta")


def output_target(output: str | Path, option: str = "-o") -> OutputTarget:
    """Check `output` before any work (nmt.files.output_file): an error names what is wrong."""
    if Path(output).is_dir():
        raise NmtError(f"{option} {output} is a directory: give a file name")
    found = output_file(output, option)
    target = OutputTarget(found.path, direct=found.direct)
    if not target.direct:
        for side in (target.partial, target.meta):
            if side.is_dir():
                raise NmtError(f"{side} is a directory: remove it or choose another {option}")
    return target


def check_streams(
    input: Path | None, output: Path | None, resume: bool, attention_dir: Path | None
) -> bool:
    """Check a translation's input, output and heatmap folder before any work (None: stdin,
    stdout, no heatmaps); True if the input is stdin on a terminal (typed, interactive)."""
    if resume and output is None:
        raise NmtError("--resume needs --output")
    if input is not None:
        check_input(input)
    elif sys.stdin is None:
        raise NmtError("stdin is closed: give an input file")
    if output is not None:
        target = output_target(output)
        if input is not None and target.path.exists() and target.path.samefile(input):
            raise NmtError(f"the output {output} is the input file: choose another output")
    elif sys.stdout is None:
        raise NmtError("stdout is closed: give --output FILE")
    if attention_dir is not None:
        check_dir(attention_dir, "--attention-dir")
    return input is None and sys.stdin.isatty()


def same_file(stream: IO[bytes], path: Path) -> bool:
    """Whether `stream` (an open input) is the file at `path`."""
    try:
        a, b = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, AttributeError, ValueError):  # no descriptor (in memory), or no file
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and stat.S_ISREG(a.st_mode)


def stream_size(stream: IO[bytes]) -> int | None:
    """Size of a regular file's stream; None for pipes, terminals and in-memory streams."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def open_partial(target: OutputTarget) -> IO[str]:
    """target.partial opened for appending: created exclusively, or the one a killed run left.
    Never opened through a symlink: a link, hard link or special file planted at its name is
    refused, as writing through it would overwrite the file it points to."""
    path = target.partial
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        fd = _open_left(path, flags)
    except OSError as e:
        raise NmtError(f"cannot write {path} ({e.strerror or e})") from None
    return os.fdopen(fd, "a+", encoding="utf-8", newline="\n")


def _open_left(path: Path, flags: int) -> int:
    """The descriptor of the partial file at `path` that a killed run left, if it is one."""

    def foreign(what: str) -> NmtError:
        return NmtError(
            f"{path} is {what}, not a partial output nmt made: remove it or choose another -o"
        )

    try:
        # O_NONBLOCK: opening a FIFO swapped in after the check below must not wait
        fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise foreign("a symlink") from None
        raise NmtError(f"cannot write {path} ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise foreign("a hard link" if stat.S_ISREG(st.st_mode) else "not a regular file")
    os.set_blocking(fd, True)
    return fd


def lock(f: IO, name: Path) -> None:
    """Hold an exclusive lock on the open file `f` until it is closed, or fail: two runs
    into one output would each lose part of the other's lines."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise NmtError(
                f"{name} is being written by another run (it is locked): wait for it or "
                "choose another output"
            ) from None
        raise NmtError(f"cannot lock {name} ({e.strerror or e})") from None


def complete_lines(f: IO[str]) -> int:
    """Lines of the open partial file `f`; a trailing partial line (a kill mid-write) is cut."""
    fd = f.fileno()
    count, complete, offset = 0, 0, 0
    with open(fd, "rb", closefd=False) as raw:
        raw.seek(0)
        while block := raw.read(1 << 20):
            count += block.count(b"\n")
            last = block.rfind(b"\n")
            if last >= 0:
                complete = offset + last + 1
            offset += len(block)
    if complete != offset:
        os.ftruncate(fd, complete)
    return count


class InputHash:
    """sha256 of the raw input lines written so far, as the meta file records it."""

    def __init__(self) -> None:
        self.lines = 0
        self._hash = hashlib.sha256()

    def add(self, raw: list[bytes]) -> None:
        for line in raw:
            self._hash.update(line)
        self.lines += len(raw)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def write_meta(target: OutputTarget, fingerprint: dict[str, Any], consumed: InputHash) -> None:
    """Record what target.partial holds; replaced whole, so a kill leaves the old or new one.

    Written after the lines it counts are flushed: it never counts more than the partial
    file holds, and a resumed run checks the input against its hash.
    """
    record = {
        "nmt_partial": META_VERSION,
        **fingerprint,
        "lines": consumed.lines,
        "sha256": consumed.hexdigest(),
    }
    tmp = target.meta.with_name(target.meta.name + ".tmp")
    try:
        # made anew, never written through a file or link left (or planted) at its name
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        os.replace(tmp, target.meta)
    except OSError as e:
        raise NmtError(f"cannot write {tmp} ({e.strerror or e})") from None


def read_meta(target: OutputTarget, fingerprint: dict[str, Any]) -> tuple[int, str]:
    """(lines, sha256) that target.meta records, once its fingerprint matches ours."""
    fresh = "; run without --resume to start over"
    try:
        record = json.loads(target.meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NmtError(
            f"{target.partial} has no {target.meta.name}: nothing says what it was "
            f"translated from{fresh}"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise NmtError(f"{target.meta} is damaged ({e}){fresh}") from None
    if not isinstance(record, dict) or record.get("nmt_partial") != META_VERSION:
        raise NmtError(f"{target.meta} is not a record this nmt writes{fresh}")
    for key, ours in fingerprint.items():
        theirs = record.get(key)
        if key == "input" and None in (_size(theirs), _size(ours)):
            continue  # a stream's size is unknown: the hash of its lines decides
        if theirs != ours:
            raise NmtError(
                f"{target.partial} was made with another {key} ({_differs(theirs, ours)}){fresh}"
            )
    lines, digest = record.get("lines"), record.get("sha256")
    if not isinstance(lines, int) or lines < 0 or not isinstance(digest, str):
        raise NmtError(f"{target.meta} is damaged (no line count and hash){fresh}")
    return lines, digest


def _size(record: Any) -> Any:
    return record.get("size") if isinstance(record, dict) else None


def _differs(theirs: Any, ours: Any) -> str:
    if isinstance(theirs, dict) and isinstance(ours, dict):
        keys = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        return ", ".join(f"{k}: {theirs.get(k)!r} then, {ours.get(k)!r} now" for k in keys)
    return f"{theirs!r} then, {ours!r} now"


def remove_side_files(target: OutputTarget) -> None:
    target.meta.unlink(missing_ok=True)
    target.meta.with_name(target.meta.name + ".tmp").unlink(missing_ok=True)
