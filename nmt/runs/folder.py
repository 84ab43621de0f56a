"""Who may write into a run dir: one training at a time (a lock held for the whole run), a new
run into a folder without a run, a resumed run into its own, and `--overwrite`, which replaces
the earlier run once the new one has a checkpoint.

A run is what `nmt train` writes: best.pt, last.pt, log.jsonl, and the tokenizer/ it trained
when the config names none. Other files in the folder (data, translations) are never touched.
An overwritten run waits in RUN_DIR/.replaced/ until the new run saves its first checkpoint;
a new run that ends before that (an error, Ctrl-C, kill -9) gives the old one back, at once
or when the next `nmt train` starts in the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from nmt import NmtError
from nmt.config import Config
from nmt.files import write_atomic

RUN_FILES = ("best.pt", "last.pt", "log.jsonl")
REPLACED = ".replaced"  # an overwritten run, until the new one has a checkpoint
REPLACING = ".replacing"  # the same while its files are being moved in
RESTORING = ".restoring"  # the same while its files are being moved back
LOCK = ".lock"  # held (flock) by the training that writes into the folder


def run_files(config: Config) -> list[Path]:
    """What a run of `config` writes into its run dir (that --overwrite replaces): its
    checkpoints (best-step-STEP.pt of train.keep_best included), log, TensorBoard events and
    the tokenizer it trained."""
    run_dir = Path(config.train.run_dir)
    paths = [run_dir / name for name in RUN_FILES]
    paths += sorted(run_dir.glob("best-step-*.pt")) + [run_dir / "tensorboard"]
    tok_dir = run_dir / "tokenizer"
    named = config.data.tokenizer
    # a tokenizer the config names is the user's, even when it lies in the run dir
    if not named or Path(named).resolve() != tok_dir.resolve():
        paths.append(tok_dir)
    return paths


def claim_run_dir(config: Config, *, resume: str | Path | None, overwrite: bool) -> None:
    """Refuse a run dir that holds another run, unless `overwrite` (then remove that run) or
    `resume` continues it from a checkpoint in that folder."""
    run_dir = Path(config.train.run_dir)
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume is not None:
        if held and Path(resume).resolve().parent != run_dir.resolve():
            raise NmtError(
                f"run dir {run_dir} holds another run ({', '.join(held)}) than the checkpoint "
                f"{resume}: resume into the checkpoint's folder or a new train.run_dir"
            )
        return
    removed = [p for p in run_files(config) if p.exists()]
    if not held and not overwrite:
        return
    if not overwrite:
        last = run_dir / "last.pt"
        ways = f"continue it with --resume {last}, or " if last.is_file() else ""
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in removed)
        raise NmtError(
            f"run dir {run_dir} already holds a run ({', '.join(held)}): {ways}start over "
            f"with --overwrite (removes {names}), or set another train.run_dir"
        )
    # renames: the old run stays whole until the new one can replace it. They go into a
    # folder renamed to .replaced once all are in it, so that a kill between two of them
    # leaves a .replacing that the next start moves back, never half a run in .replaced
    moving = run_dir / REPLACING
    moving.mkdir()
    for path in removed:
        path.rename(moving / path.name)
    moving.rename(run_dir / REPLACED)


@contextlib.contextmanager
def claimed_run_dir(
    config: Config, *, resume: str | Path | None, overwrite: bool, owner: bool = True
) -> Iterator[None]:
    """The run dir, locked against a second training for as long as this one runs, and
    claimed (`claim_run_dir`); an overwritten run is dropped at the end if the new run saved
    a checkpoint, else given back. `owner` False (the other ranks of torchrun): nothing."""
    if not owner:
        yield
        return
    if not config.train.run_dir.strip():
        raise NmtError(
            "config: train.run_dir is empty: name a folder for the checkpoints and log.jsonl"
        )
    run_dir = Path(config.train.run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO planted as the lock must not block the open (it is refused below)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(run_dir / LOCK, flags, 0o644)
    except OSError as e:
        if run_dir.exists() and not run_dir.is_dir():
            raise NmtError(f"train.run_dir {run_dir} is a file: give a folder") from None
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # planted: a link, a folder
            raise NmtError(
                f"{run_dir / LOCK} is not a file nmt made: remove it, then train again"
            ) from None
        raise NmtError(f"train.run_dir {run_dir} is not writable ({e.strerror or e})") from None
    try:
        _lock(fd, run_dir)
        settle_replaced(config)  # what a killed run left
        claim_run_dir(config, resume=resume, overwrite=overwrite)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for the message a second training gets
        try:
            with _terminate_as_exit():
                yield
        finally:
            settle_replaced(config)
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
            # a run that failed before writing anything (bad data, say) leaves no folder; the
            # lock file goes while still held: one who opened it meanwhile finds it gone
            with contextlib.suppress(OSError):
                (run_dir / LOCK).unlink()
                run_dir.rmdir()
        os.close(fd)  # releases the lock, as the end of the process would


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (timeout, Slurm, docker stop) ends the run as Ctrl-C does, through the code
    that settles the run dir, instead of killing the process where it stands."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _lock(fd: int, run_dir: Path) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted as the lock
        raise NmtError(f"{run_dir / LOCK} is not a regular file: remove it, then train again")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        on_disk = os.stat(run_dir / LOCK, follow_symlinks=False)
    except FileNotFoundError:
        on_disk = None
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise NmtError(f"cannot lock {run_dir / LOCK} ({e.strerror or e})") from None
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise NmtError(
            f"run dir {run_dir} is in use by another training{who}: wait for it to end, or "
            "set another train.run_dir"
        ) from None
    held = os.fstat(fd)
    if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
        # the lock file was removed or replaced between our open and our lock: what we hold
        # locks nothing another training would see
        raise NmtError(f"run dir {run_dir} changed while it was being locked: train again")


def settle_replaced(config: Config) -> None:
    """An overwritten run in RUN_DIR/.replaced goes once the new run has a checkpoint; without
    one, the new run's files go and the old run comes back. Each state survives a kill: the
    next start takes it from where it stopped."""
    run_dir = Path(config.train.run_dir)
    for name in (REPLACING, REPLACED, RESTORING):
        path = run_dir / name
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_dir()):
            raise NmtError(f"{path} is not a folder nmt made: remove it, then train again")
    if (run_dir / REPLACING).is_dir():  # killed while moving the old run aside: nothing new
        _move_back(run_dir / REPLACING, run_dir)
    replaced = run_dir / REPLACED
    if replaced.is_dir():
        if any((run_dir / name).is_file() for name in ("best.pt", "last.pt")):
            shutil.rmtree(replaced)  # the new run has a checkpoint: the old one can go
            return
        # the new run's files go, those named like the old run's first, then the old run
        # comes back through .restoring, so that a kill now never mixes the two
        for path in [*(run_dir / p.name for p in replaced.iterdir()), *run_files(config)]:
            _remove(path)
        replaced.rename(run_dir / RESTORING)
    if (run_dir / RESTORING).is_dir():
        _move_back(run_dir / RESTORING, run_dir)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move_back(folder: Path, run_dir: Path) -> None:
    """The files of `folder` back into the run dir: what is there under their names is a
    leftover of an interrupted move of the same run (a kill), never another run's."""
    for path in folder.iterdir():
        target = run_dir / path.name
        if target.exists() or target.is_symlink():
            raise NmtError(
                f"{target} is in the way of the run in {folder}: move one of them, then train again"
            )
        path.rename(target)
    folder.rmdir()


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of log.jsonl up to `step` (the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        try:
            if json.loads(ln).get("step", 0) <= step:
                kept.append(ln)
        except json.JSONDecodeError:
            break
    write_atomic(path, "".join(k + "\n" for k in kept).encode())
