"""Processes and cores: worker processes that do not outlive their parent (translation and
tokenizing pools), the cores this process may use, and the threads training takes of them."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import time

PR_SET_PDEATHSIG = 1  # prctl: the signal a process gets when its parent dies


def die_with(parent: int) -> None:
    """Linux: this process is killed when its parent dies (kill -9, the OOM killer), instead of
    waiting forever for work that will not come."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or no prctl
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def available_cores() -> int:
    """CPU cores this process may run on: its affinity, not the machine's count, and no more
    than its cgroup's CPU quota (a container limited to 1.5 CPUs gets 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """The CPUs cgroup v2 lets this process use ("QUOTA PERIOD"), None where unlimited."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def busy_cores(seconds: float = 0.3) -> float:
    """How many cores' worth of work the machine does right now (all processes): /proc/stat
    read twice, `seconds` apart; 0.0 where there is no /proc (not Linux)."""

    def times() -> tuple[int, int]:  # (busy, total) jiffies of all CPUs since boot
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = times()
        time.sleep(seconds)
        busy1, total1 = times()
    except (OSError, ValueError, IndexError):
        return 0.0
    cpus = os.cpu_count() or 1
    return cpus * (busy1 - busy0) / max(total1 - total0, 1)


def pick_threads(requested: int, processes: int = 1) -> tuple[int, str]:
    """Torch threads for one of `processes` training processes, and why, as a log line says.

    `requested` > 0 is taken as given. 0 (auto) takes this process's share of the cores it
    may use (its affinity) that other work leaves idle now: a thread more than there are free
    cores waits for the others at every matmul, which costs far more than the thread gives.
    """
    if requested > 0:
        return requested, "train.threads"
    cores = available_cores()
    others = busy_cores()
    free = max(1, round(cores - others))
    threads = max(1, min(cores, free) // max(processes, 1))
    why = f"auto: {cores} cores, {others:.1f} busy with other work"
    return threads, why + (f", {processes} processes" if processes > 1 else "")
