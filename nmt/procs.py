"""Worker processes that do not outlive their parent (translation and tokenizing pools)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # prctl: the signal a process gets when its parent dies


def die_with(parent: int) -> None:
    """Linux: this process is killed when its parent dies (kill -9, the OOM killer), instead of
    waiting forever for work that will not come."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or no prctl
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
