"""Writing files safely: output paths checked before any work, and atomic writes, so that a
reader (or a crash) never sees half a file.

The data is synced before the rename and the directory after it, so that once a function here
returns, the new file (and not an empty or missing one) survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nmt import NmtError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temp file beside `path`; on success it is synced and renamed over `path`."""
    path = Path(path)
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


def check_dir(path: Path, option: str) -> None:
    """Check that the output folder `path` (an option's value) exists or can be made, before
    any work is done: one line if not."""
    if path.exists() and not path.is_dir():
        raise NmtError(f"{option} {path} is a file: give a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise NmtError(f"{option} {path}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise NmtError(f"{option} {path}: {existing} is not writable")


def check_file(path: str | Path, option: str = "-o") -> None:
    """Check that the output file `path` (an option's value) can be written into its folder,
    before any work is done: one line if not."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise NmtError(f"{option} {path} is a folder: give a file name")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise NmtError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise NmtError(f"{option} {path}: {folder} is not writable")
