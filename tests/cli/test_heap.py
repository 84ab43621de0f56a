"""Tests for nmt.cli.heap: the allocator setting `nmt translate` applies at start-up."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_large_tensors_come_from_the_heap_and_stay_after_the_setting() -> None:
    # in a fresh process: the setting is process-wide and must not leak into the test run
    code = """
import ctypes
import torch
from nmt.cli.heap import reuse_freed_memory

libc = ctypes.CDLL(None)
libc.sbrk.restype = ctypes.c_void_p

def heap_growth():  # bytes the heap (program break) grows by for one 64 MB tensor
    before = libc.sbrk(0)
    big = torch.ones(64 * 2**20, dtype=torch.uint8)
    return libc.sbrk(0) - before

default = heap_growth()
assert reuse_freed_memory()
start = libc.sbrk(0)
tuned = heap_growth()  # the tensor is freed on return
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(48 * 2**20))  # a free at the top of the heap, nothing above it
print(default, tuned, libc.sbrk(0) - start)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    default, tuned, kept = map(int, out.stdout.split())
    assert default < 2**20  # glibc's default: a mapping of its own, outside the heap
    assert tuned >= 32 * 2**20  # from the heap (grown by most of the 64 MB), reused when freed
    assert kept >= 32 * 2**20  # and kept, not given back to the system, once freed
