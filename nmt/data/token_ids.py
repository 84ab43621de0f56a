"""Tokenizing a corpus on every core: chunks of text in, flat arrays of token ids out.

The plain form is one call per side, `tokenizer.encode_src(lines)`, a list of id lists. A cache
build needs the ids flat (one array per side, plus each line's length), and on a large corpus
both the encoding and the conversion from Python lists cost as much as each other, both on
one core under the GIL. So the chunks go to worker processes (one a core, forked: they share
the loaded tokenizer), each encoding a whole chunk on its own and sending back numpy arrays;
chunks come back in order, a few in flight at a time, so memory stays that of a few chunks.
A corpus of a few chunks is encoded in this process: forking would cost more than it saves.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from nmt import NmtError
from nmt.procs import die_with
from nmt.tokenizer import Tokenizer

# a corpus of fewer chunks is encoded in this process, on sentencepiece's threads: starting
# the workers costs more than they save on it
MIN_CHUNKS_FOR_WORKERS = 8
# chunks sent ahead to each worker: enough to keep it busy while the parent writes
AHEAD_PER_WORKER = 2

Chunk = tuple[list[str], list[str], float]  # source lines, target lines, fraction read


@dataclass
class EncodedChunk:
    """One chunk's token ids, flat, and the token count of each line, per side."""

    src_ids: np.ndarray  # (source tokens,) ids_dtype
    src_lens: np.ndarray  # (N,) int64
    tgt_ids: np.ndarray  # (target tokens,)
    tgt_lens: np.ndarray  # (N,)


def encode_chunk(
    tokenizer: Tokenizer, src: list[str], tgt: list[str], dtype: np.dtype, threads: int = 1
) -> EncodedChunk:
    """The ids of `src` and `tgt` as flat arrays of `dtype`, with each line's length."""
    sides = []
    for ids in (
        tokenizer.encode_src(src, threads=threads),
        tokenizer.encode_tgt(tgt, threads=threads),
    ):
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lens.sum()))
        sides += [flat, lens]
    return EncodedChunk(*sides)


# the tokenizer and id type of this worker process, set by _init
_worker: tuple[Tokenizer, np.dtype] | None = None


def _init(tokenizer: Tokenizer, dtype: np.dtype, parent: int) -> None:
    global _worker
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _worker = (tokenizer, dtype)


def _encode(texts: tuple[list[str], list[str]]) -> EncodedChunk:
    assert _worker is not None
    return encode_chunk(_worker[0], *texts, _worker[1])


def encode_chunks(
    chunks: Iterable[Chunk], tokenizer: Tokenizer, dtype: np.dtype, workers: int
) -> Iterator[tuple[Chunk, EncodedChunk]]:
    """Each chunk with its ids, in the order of `chunks`, encoded by `workers` processes."""
    it = iter(chunks)
    head = list(itertools.islice(it, 1))
    # the share of the corpus the first chunk was says how many chunks there are
    few = not head or head[0][2] * MIN_CHUNKS_FOR_WORKERS > 1
    if workers <= 1 or few:
        for chunk in itertools.chain(head, it):
            yield chunk, encode_chunk(tokenizer, chunk[0], chunk[1], dtype, threads=workers)
        return
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, ctx, _init, (tokenizer, dtype, os.getpid()))
    pending: deque[tuple[Chunk, Future[EncodedChunk]]] = deque()
    try:
        for chunk in itertools.chain(head, it):
            pending.append((chunk, pool.submit(_encode, (chunk[0], chunk[1]))))
            while len(pending) > AHEAD_PER_WORKER * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    except BrokenProcessPool:
        raise NmtError(
            "a tokenizing worker process died (killed from outside, or out of memory?)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
