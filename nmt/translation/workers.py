"""Worker processes that search whole batches side by side, the model shared through fork.

Each worker translates on one thread by default: decoder steps are small matmuls and
elementwise passes that two threads on a CPU speed up far less than twice, while two
processes each on its own core come closer (see README, Performance).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import weakref
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import cast

import torch
from torch import nn

from nmt import NmtError
from nmt.procs import die_with
from nmt.search import Hypothesis, SearchModel, SearchOptions, search_batch

# batches a worker gets of a translate call, so that none waits long for the last one to
# finish; more, smaller batches use the cores less well
BATCHES_PER_WORKER = 4

# the model of this worker process, set by _worker_init: a Pool's tasks reach the state
# of their process only through its globals
_worker_model: nn.Module | None = None


def _worker_init(model: nn.Module, threads: int, parent: int) -> None:
    global _worker_model
    die_with(parent)
    # Ctrl-C reaches the whole process group: the parent alone handles it and stops the
    # workers; a worker whose parent died (kill -9) fails on the closed pipe, and the
    # traceback it would print says nothing the parent does not (errors of a task travel
    # back to the parent, which reports them)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open for the life of the process)
    torch.set_num_threads(threads)
    _worker_model = model


def _worker_search(task: tuple[list[list[int]], SearchOptions]) -> list[list[Hypothesis]]:
    batch, opts = task
    assert _worker_model is not None  # set by _worker_init
    return search_batch(cast(SearchModel, _worker_model), batch, opts)


def _padded_tokens(batch: list[list[int]]) -> int:
    return len(batch) * (max(map(len, batch)) + 1)


class WorkerPool:
    """`workers` forked processes of `threads` threads each, holding `model`."""

    def __init__(self, model: nn.Module, workers: int, threads: int) -> None:
        self.workers = workers
        # fork: the workers share the loaded model's memory instead of loading their own
        ctx = multiprocessing.get_context("fork")
        # an executor rather than multiprocessing.Pool: a worker that dies (kill -9, the OOM
        # killer) breaks it with an error, where a Pool replaces the worker and waits forever
        # for the batch it held
        self._pool = ProcessPoolExecutor(workers, ctx, _worker_init, (model, threads, os.getpid()))
        # stops the workers when the pool is collected, or at the latest at exit
        self._stop = weakref.finalize(self, _terminate, self._pool)

    def batch_tokens(self, src_ids: list[list[int]], batch_tokens: int) -> int:
        """A token budget small enough to give every worker several batches of `src_ids`."""
        tokens = sum(len(seq) + 1 for seq in src_ids)
        split = BATCHES_PER_WORKER * self.workers
        return max(1, min(batch_tokens, -(-tokens // split)))

    def map_batches(
        self, batches: list[list[list[int]]], opts: SearchOptions
    ) -> Iterator[list[list[Hypothesis]]]:
        """The hypotheses of each batch, searched by the workers, yielded in the order of
        `batches` as soon as each (and those before it) is done."""
        # the largest batches first, so that the small ones fill the gaps at the end
        order = sorted(range(len(batches)), key=lambda i: -_padded_tokens(batches[i]))
        futures = {i: self._pool.submit(_worker_search, (batches[i], opts)) for i in order}
        try:
            for i in range(len(batches)):
                yield futures[i].result()
        except BrokenProcessPool:
            self.close()
            raise NmtError(
                "a worker process died (killed from outside, or out of memory?)"
            ) from None
        finally:
            for f in futures.values():
                f.cancel()

    def close(self) -> None:
        self._stop()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now, a batch in progress included (shutdown alone waits for it)."""
    # the executor names its processes only in a private attribute; terminating them is
    # what Pool.terminate did
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        if p.is_alive():
            p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
