"""Dynamic batching for a server: sentences of concurrent requests decoded together.

Requests hand their sentences to a `Batcher`; one task on the event loop collects the sentences
of the requests waiting with equal search options into a token-budget batch (waiting at most
`max_wait_ms` for it to fill), decodes it on one thread beside the loop, and hands each request
its own results. Search is batch-invariant, so a request gets the same translations whatever it
was batched with. A request cancelled before its sentences are taken into a batch costs nothing
more: they are dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nmt import NmtError, require_whole
from nmt.runtime.base import Translation
from nmt.search_options import SearchOptions

# decodes sentences with options: Translator.translate with the server's token budget
Decode = Callable[[list[str], SearchOptions], list[Translation]]


@dataclass(frozen=True)
class BatchOptions:
    """How requests are merged into batches; checked when made."""

    max_batch_tokens: int = 4096  # sentences x longest source (EOS incl.) in a batch
    max_wait_ms: float = 10.0  # how long the oldest request may wait for a batch to fill

    def __post_init__(self) -> None:
        require_whole("max_batch_tokens", self.max_batch_tokens)
        if not 0 <= self.max_wait_ms <= 60_000:
            raise NmtError(
                f"must be between 0 and 60000, got {self.max_wait_ms!r}", option="max_wait_ms"
            )


@dataclass(eq=False)
class _Job:
    """One request's sentences; `taken` of them (a prefix) are in batches already."""

    sentences: list[str]
    lengths: list[int]  # source tokens of each sentence, EOS incl.
    options: SearchOptions
    done: asyncio.Future
    arrived: float
    results: list[Translation | None] = field(default_factory=list)
    taken: int = 0
    left: int = 0  # results still to come

    def __post_init__(self) -> None:
        self.results = [None] * len(self.sentences)
        self.left = len(self.sentences)


@dataclass
class BatchStats:
    """What the batcher has done, for /health and tests."""

    batches: int = 0
    sentences: int = 0  # decoded
    dropped: int = 0  # of cancelled requests, never decoded
    largest: int = 0  # sentences in the largest batch


class Batcher:
    """Merges concurrent requests into batches; `run()` is its task on the event loop."""

    def __init__(self, decode: Decode, options: BatchOptions | None = None) -> None:
        self._decode = decode
        self.options = options or BatchOptions()
        self.stats = BatchStats()
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        # one thread: batches are decoded one after the other, each with all of torch's threads
        # (or the Translator's worker processes), while the loop keeps serving requests
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nmt-decode")

    async def translate(
        self, sentences: list[str], lengths: list[int], options: SearchOptions
    ) -> list[Translation]:
        """Translations of `sentences` (with `lengths` source tokens each), in order.

        Cancelling the caller drops the sentences not yet in a batch."""
        if not sentences:
            return []
        loop = asyncio.get_running_loop()
        job = _Job(sentences, lengths, options, loop.create_future(), time.monotonic())
        self._queue.append(job)
        self._wake.set()
        try:
            return await job.done
        except asyncio.CancelledError:
            self.stats.dropped += len(job.sentences) - job.taken
            job.taken = len(job.sentences)  # nothing more of it goes into a batch
            if job in self._queue:
                self._queue.remove(job)
            raise

    async def run(self) -> None:
        """Batch and decode until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            await self._fill()
            await self._decode_next()

    async def _fill(self) -> None:
        """Wait until the oldest request's batch is full or it has waited max_wait_ms."""
        deadline = self._queue[0].arrived + self.options.max_wait_ms / 1000
        while self._queue and self._pending_tokens() < self.options.max_batch_tokens:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                return

    def _pending_tokens(self) -> int:
        """Padded tokens of everything waiting with the oldest request's options."""
        first = self._queue[0].options
        lengths = [
            n for job in self._queue if job.options == first for n in job.lengths[job.taken :]
        ]
        return len(lengths) * max(lengths, default=0)

    def _take(self) -> list[tuple[_Job, int]]:
        """(job, sentence index) of the next batch: the oldest request's options, requests
        in arrival order, at least one sentence, within max_batch_tokens."""
        options = self._queue[0].options
        picked: list[tuple[_Job, int]] = []
        longest = 0
        for job in [j for j in self._queue if j.options == options]:
            while job.taken < len(job.sentences):
                size = max(longest, job.lengths[job.taken])
                if picked and (len(picked) + 1) * size > self.options.max_batch_tokens:
                    return picked
                picked.append((job, job.taken))
                longest = size
                job.taken += 1
            self._queue.remove(job)  # all its sentences are in batches now
        return picked

    async def _decode_next(self) -> None:
        if not self._queue:
            return
        picked = self._take()
        if self._queue:
            self._wake.set()  # more to do after this batch
        options = picked[0][0].options
        texts = [job.sentences[i] for job, i in picked]
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._executor, self._decode, texts, options)
        except Exception as e:  # the requests of this batch fail, the server goes on
            for job, _ in picked:
                if not job.done.done():
                    job.done.set_exception(e)
            return
        self.stats.batches += 1
        self.stats.sentences += len(picked)
        self.stats.largest = max(self.stats.largest, len(picked))
        for (job, i), translation in zip(picked, found):
            job.results[i] = translation
            job.left -= 1
            if job.left == 0 and not job.done.done():
                job.done.set_result(job.results)

    def close(self) -> None:
        """Stop the decoding thread (after the batch it is decoding)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
