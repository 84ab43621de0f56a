"""Writing files safely: output paths checked before any work, and atomic writes, so that a
reader (or a crash) never sees half a file.

The data is synced before the rename and the directory after it, so that once a function here
returns, the new file (and not an empty or missing one) survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nmt import NmtError

# paths whose target is the process's own descriptors (/dev/stdout, /proc/self/fd/N): written
# in place whatever is behind them, never renamed over
_STREAM_DIRS = ("/dev/", "/proc/")


@dataclass(frozen=True)
class OutputFile:
    path: Path  # the file written (symlinks followed)
    direct: bool  # written in place: a device, FIFO, socket or stdout-like path


def output_file(path: str | Path, option: str = "-o") -> OutputFile:
    """The one check of an output file (an option's value), made before any work: one line if
    it cannot be written. Devices, FIFOs, sockets and paths under /dev and /proc are written in
    place (`direct`): renaming a file over them would replace the device node, not write to
    it. Otherwise the file a symlink points to is what gets replaced."""
    given = Path(path)
    if str(given).endswith(os.sep):
        raise NmtError(f"{option} {given} is a folder: give a file name")
    try:
        st = os.stat(given)  # follows symlinks
    except FileNotFoundError:
        st = None
    except OSError as e:  # ENOTDIR: a file where a folder should be; ELOOP, EACCES
        raise NmtError(f"{option} {given}: {e.strerror or e}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise NmtError(f"{option} {given} is a folder: give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return OutputFile(given, direct=True)
    if str(given.absolute()).startswith(_STREAM_DIRS):
        return OutputFile(given, direct=True)
    real = Path(os.path.realpath(given))
    if not real.parent.is_dir():
        raise NmtError(f"{option} {given}: the folder {real.parent} does not exist")
    if not os.access(real.parent, os.W_OK):
        raise NmtError(f"{option} {given}: the folder {real.parent} is not writable")
    return OutputFile(real, direct=False)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temp file beside `path`; on success it is synced and renamed over `path`.

    A path that `output_file` finds is written in place (a device, a FIFO) is opened and
    written directly, and a failed write there is an NmtError naming it."""
    found = output_file(path, "output")
    if found.direct:
        try:
            with open(found.path, mode, **kwargs) as f:
                yield f
        except OSError as e:
            raise NmtError(f"cannot write {found.path} ({e.strerror or e})") from None
        return
    path = found.path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file 0600; give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy `src` over `dst`: a reader or a crash sees the old `dst` or the whole copy."""
    with open(src, "rb") as f, atomic_open(dst, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 20)


def fsync_dir(path: str | Path) -> None:
    """Make renames in the folder `path` survive a power loss (the folder is a file too)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its renames need no folder sync
        return
    try:
        # some file systems cannot sync a folder: the file itself is synced already
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def check_dir(path: Path, option: str, writable: bool = True) -> None:
    """Check that the output folder `path` (an option's value) exists or can be made, before
    any work is done: one line if not. With `writable` False, a folder that exists (a cache
    to read) may be read-only."""
    if path.exists() and not path.is_dir():
        raise NmtError(f"{option} {path} is a file: give a folder")
    top = path.absolute().parts[1:2]
    if top in (("proc",), ("sys",)):  # the kernel's: no folder of ours there, even as root
        raise NmtError(f"{option} {path} is in /{top[0]}, the kernel's: give a folder on a disk")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise NmtError(f"{option} {path}: {existing} is a file")
    if (writable or existing != path) and not os.access(existing, os.W_OK):
        raise NmtError(f"{option} {path}: {existing} is not writable")
