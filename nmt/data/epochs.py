"""The batches of each training epoch, for one rank.

An epoch's plan (which pairs go in which batch, in which order) is a function of (seed, epoch)
and the pairs' lengths alone, so a resumed run makes the same one and continues at the batch
it stopped before. Each rank takes its share of the plan's batches; a batch's token ids are
read (from the cache's files, or the in-memory pairs) and padded a few batches ahead.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from nmt.batching import Batch, BatchPlan, make_batch, plan_epoch, prefetch
from nmt.config import Config
from nmt.data.cache import InMemoryPairs, TrainPairs
from nmt.data.corpus import FilterStats, SeenPairs, filter_pairs
from nmt.data.prepare import TrainData, pair_filter
from nmt.distributed import shard
from nmt.tokenizer import Tokenizer


class Epochs:
    """The training pairs of `data` and the batches of each epoch on rank `rank` of `world`."""

    def __init__(
        self, config: Config, data: TrainData, tokenizer: Tokenizer, rank: int, world: int
    ) -> None:
        self.config, self.data, self.tokenizer = config, data, tokenizer
        self.rank, self.world = rank, world
        # the training pairs: the cache's token ids on disk, or the text encoded in memory
        self.pairs: TrainPairs
        self.filter_stats: FilterStats
        if data.train_ids is not None:
            self.pairs, self.filter_stats = data.train_ids, data.train_ids.stats
        else:
            self.pairs, self.filter_stats = self._encode(epoch=0)
        self._plan: tuple[int, BatchPlan] | None = None  # the epoch planned last, its plan

    @property
    def resampled(self) -> bool:
        """Whether each epoch encodes the text anew (subword sampling, data.sampling_alpha)."""
        return self.data.train_ids is None and self.config.data.sampling_alpha > 0

    def _encode(self, epoch: int) -> tuple[InMemoryPairs, FilterStats]:
        d, t = self.config.data, self.config.train
        if d.sampling_alpha > 0:
            import sentencepiece

            # subword sampling drawn per epoch from (seed, epoch): resuming redraws the same
            # (sentencepiece takes 32 bits: the same seed as before for every seed below 4.29M)
            sentencepiece.set_random_generator_seed((t.seed * 1000 + epoch) % 2**32)
        src = self.tokenizer.encode_src(self.data.train_src, d.sampling_alpha)
        tgt = self.tokenizer.encode_tgt(self.data.train_tgt, d.sampling_alpha)
        texts = (self.data.train_src, self.data.train_tgt)
        keep, stats = filter_pairs(src, tgt, pair_filter(d), texts=texts, seen=SeenPairs())
        return InMemoryPairs([src[i] for i in keep], [tgt[i] for i in keep]), stats

    def resume(self, epoch: int) -> None:
        """Continue in `epoch`: its sampled encoding, and a plan made anew."""
        if self.resampled:
            self.pairs, _ = self._encode(epoch)
        self._plan = None

    def plan(self, epoch: int, batch_in_epoch: int) -> tuple[BatchPlan, list[int]]:
        """The batch plan of `epoch` and the numbers of this rank's batches in it; made once
        an epoch (the start of training counts its batches with it)."""
        if self._plan is None or self._plan[0] != epoch:
            gen = torch.Generator().manual_seed(self.config.train.seed * 1000 + epoch)
            if batch_in_epoch == 0 and epoch > 0 and self.resampled:
                self.pairs, _ = self._encode(epoch)
            plan = plan_epoch(
                self.pairs.src_lens, self.pairs.tgt_lens, self.config.train.batch_tokens, gen
            )
            self._plan = (epoch, plan)
        plan = self._plan[1]
        return plan, shard(list(range(len(plan))), self.rank, self.world)

    def batches(self, epoch: int, batch_in_epoch: int) -> Generator[Batch, None, None]:
        """This rank's batches of `epoch` from `batch_in_epoch` on, each gathered and padded
        a few batches ahead."""
        plan, mine = self.plan(epoch, batch_in_epoch)
        return prefetch(
            lambda k: make_batch(*self.pairs.pairs(plan.batch(k))), mine[batch_in_epoch:]
        )
