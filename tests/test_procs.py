"""nmt.procs: the cores this process may use and the threads training takes of them."""

from __future__ import annotations

import pytest

from nmt import procs
from nmt.runs.progress import SpeedWatch


@pytest.mark.parametrize(
    "cores, busy, processes, want",
    [
        (2, 0.05, 1, 2),  # an idle machine: every core
        (2, 1.9, 1, 1),  # another training on one core: one thread, not two fighting
        (8, 3.2, 1, 5),
        (8, 0.0, 2, 4),  # two data-parallel processes share the cores
        (4, 9.0, 1, 1),  # overloaded: still one
    ],
)
def test_auto_threads_take_the_idle_cores(monkeypatch, cores, busy, processes, want):
    monkeypatch.setattr(procs, "available_cores", lambda: cores)
    monkeypatch.setattr(procs, "busy_cores", lambda seconds=0.3: busy)
    threads, why = procs.pick_threads(0, processes)
    assert threads == want
    assert why.startswith(f"auto: {cores} cores, {busy:.1f} busy")


def test_a_thread_count_given_is_taken(monkeypatch):
    monkeypatch.setattr(procs, "busy_cores", lambda seconds=0.3: 100.0)
    assert procs.pick_threads(3) == (3, "train.threads")


@pytest.mark.parametrize(
    "text, want", [("150000 100000\n", 1.5), ("max 100000\n", None), ("junk", None)]
)
def test_the_cgroup_quota_is_read(tmp_path, text, want):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert procs._cgroup_quota(str(path)) == want
    assert procs._cgroup_quota(str(tmp_path / "missing")) is None


def test_a_cgroup_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(procs, "_cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(procs.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert procs.available_cores() == 2


def test_busy_cores_is_a_share_of_the_machine():
    assert 0.0 <= procs.busy_cores(0.05) <= (procs.os.cpu_count() or 1) + 1e-6


def test_a_slowdown_far_below_the_first_updates_is_said_once_in_a_while():
    watch = SpeedWatch(reference_windows=3, ratio=0.5, every=3)
    said = [watch.check(speed, threads=2) for speed in (900, 1100, 1000, 1000, 800, 400, 300)]
    assert said[:5] == [None] * 5
    assert said[5] is not None and "36% of the 1,100" in said[5] and "train.threads 1" in said[5]
    assert said[6] is None  # quiet for `every` windows
    assert [watch.check(300, threads=2) for _ in range(2)][-1] is not None
    one = SpeedWatch(reference_windows=1)
    assert one.check(1000, threads=1) is None
    warning = one.check(100, threads=1)
    assert warning is not None and "train.threads" not in warning
