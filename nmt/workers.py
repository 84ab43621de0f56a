"""Worker processes that search whole batches side by side, the model shared through fork.

Each worker translates on one thread by default: decoder steps are small matmuls and
elementwise passes that two threads on a CPU speed up far less than twice, while two
processes each on its own core come closer (see README, Performance).
"""

from __future__ import annotations

import multiprocessing
import weakref

import torch
from torch import nn

from nmt.search import Hypothesis, SearchOptions, search_batch

# batches a worker gets of a translate call, so that none waits long for the last one to
# finish; more, smaller batches use the cores less well
BATCHES_PER_WORKER = 4

# the model of this worker process, set by _worker_init: a Pool's tasks reach the state
# of their process only through its globals
_worker_model: nn.Module | None = None


def _worker_init(model: nn.Module, threads: int) -> None:
    global _worker_model
    torch.set_num_threads(threads)
    _worker_model = model


def _worker_search(task: tuple[list[list[int]], SearchOptions]) -> list[list[Hypothesis]]:
    batch, opts = task
    return search_batch(_worker_model, batch, opts)


def _padded_tokens(batch: list[list[int]]) -> int:
    return len(batch) * (max(map(len, batch)) + 1)


class WorkerPool:
    """`workers` forked processes of `threads` threads each, holding `model`."""

    def __init__(self, model: nn.Module, workers: int, threads: int) -> None:
        self.workers = workers
        # fork: the workers share the loaded model's memory instead of loading their own
        ctx = multiprocessing.get_context("fork")
        self._pool = ctx.Pool(workers, _worker_init, (model, threads))
        # stops the workers when the pool is collected, or at the latest at exit while the
        # modules terminate() needs are still there
        self._stop = weakref.finalize(self, self._pool.terminate)

    def batch_tokens(self, src_ids: list[list[int]], batch_tokens: int) -> int:
        """A token budget small enough to give every worker several batches of `src_ids`."""
        tokens = sum(len(seq) + 1 for seq in src_ids)
        split = BATCHES_PER_WORKER * self.workers
        return max(1, min(batch_tokens, -(-tokens // split)))

    def map_batches(
        self, batches: list[list[list[int]]], opts: SearchOptions
    ) -> list[list[list[Hypothesis]]]:
        """The hypotheses of each batch, searched by the workers, in the order of `batches`."""
        # the largest batches first, so that the small ones fill the gaps at the end
        order = sorted(range(len(batches)), key=lambda i: -_padded_tokens(batches[i]))
        found = self._pool.imap(_worker_search, [(batches[i], opts) for i in order])
        results: list = [None] * len(batches)
        for i, hyps in zip(order, found):
            results[i] = hyps
        return results

    def close(self) -> None:
        self._stop()
