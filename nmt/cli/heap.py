"""Process-wide tuning of glibc's allocator for tensor work, applied by `nmt translate`.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it on free, so a tensor of that size costs page faults on every fill. A beam search
step makes several (rows x vocabulary logits, rows x source x attention energies). With mmap
off they come from the heap; but glibc also gives the top of the heap back to the system
whenever more than 128 KB of it is free, as a decoder step's temporaries often leave it, and
the next step faults the same pages in again. With both off, freed memory stays in the
process for the next step, for somewhat more peak memory (README's Performance section has
the figures). Memory is still given back when more than 1 GiB is free at the top. Without
glibc (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt: free bytes at the heap's top before they are given back
M_MMAP_MAX = -4  # mallopt: how many allocations may be mmap'ed at once
KEEP_FREE = 1 << 30


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap instead of mmap; True if glibc took it."""
    try:
        # the symbols the process has loaded, libc's among them: `ctypes.util.find_library`
        # would run `ldconfig -p` in a subprocess to find the same library
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE))
    except (OSError, AttributeError, TypeError):  # no mallopt (not glibc), or no CDLL(None)
        return False
