"""Token-budget batches bucketed by length, padding and masks.

Shapes: B batch, S source length, T target length. Every source sequence ends with EOS;
targets are split into decoder input (BOS y) and output (y EOS).

Planning translation batches needs no torch (the runtime plans its batches here too): torch is
imported by the functions that make tensors, not by the module.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from nmt.tokenizer import BOS, EOS, PAD

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# corpora of this many pairs or more are sorted one target length at a time (less memory)
BUCKET_SORT_FROM = 1 << 18


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids + EOS, PAD after
    src_lengths: torch.Tensor  # (B,) int64, on the CPU (pack_padded_sequence wants it there)
    tgt_in: torch.Tensor  # (B, T) BOS y, PAD after
    tgt_out: torch.Tensor  # (B, T) y EOS, PAD after
    n_tokens: int  # target tokens, padding excluded

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths,
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.n_tokens,
        )


def pad(seqs: Sequence[Sequence[int]], prefix: int | None = None, suffix: int | None = None):
    """Right-pad id lists into a (N, L) tensor; returns it with the lengths (N,)."""
    import torch

    extra = (prefix is not None) + (suffix is not None)
    lengths = torch.tensor([len(s) + extra for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        row = ([prefix] if prefix is not None else []) + list(s)
        if suffix is not None:
            row.append(suffix)
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out, lengths


def source_tensor(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad(seqs, suffix=EOS)


def make_batch(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> Batch:
    src, src_lengths = source_tensor(src_ids)
    tgt_in, _ = pad(tgt_ids, prefix=BOS)
    tgt_out, tgt_lengths = pad(tgt_ids, suffix=EOS)
    return Batch(src, src_lengths, tgt_in, tgt_out, int(tgt_lengths.sum()))


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, L) bool, True at real tokens."""
    import torch

    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


@dataclass
class BatchPlan:
    """Batches of example indices as arrays: batch k is `order[starts[k]:ends[k]]`.

    Two arrays the size of the corpus, not a Python list per batch: an epoch of millions of
    pairs is planned in a few bytes a pair.
    """

    order: np.ndarray  # (N,) example indices, grouped batch after batch
    starts: np.ndarray  # (n_batches,) where each batch starts in `order`, in the plan's order
    ends: np.ndarray  # (n_batches,)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, k: int) -> list[int]:
        return self.order[self.starts[k] : self.ends[k]].tolist()


def plan_epoch(
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
    batch_tokens: int,
    generator: torch.Generator | None = None,
) -> BatchPlan:
    """Group example indices into batches of similar length.

    A batch holds at most `batch_tokens` tokens counted with padding: sentences x (longest
    source + longest target). With a generator, ties in length are broken at random and the
    batch order is shuffled; without one the plan is deterministic (validation, translation).
    Every rank of a distributed run builds the same plan from the same generator seed.
    """
    n = len(src_lens)
    if n == 0:
        return BatchPlan(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
    src_l, tgt_l = np.asarray(src_lens), np.asarray(tgt_lens)
    if generator is None:  # translation and validation: a fixed order, without torch
        order = np.lexsort((src_l, tgt_l)).astype(np.int32 if n < 2**31 else np.int64)
        bounds = _greedy_bounds(src_l, tgt_l, order, batch_tokens)
        return BatchPlan(order, bounds[:-1], bounds[1:])
    import torch

    tie = torch.rand(n, generator=generator)
    # lexicographic sort on (target length, source length, random tie-break): the decoder
    # steps through every padded target position, while packing spares the encoder padding
    if n >= BUCKET_SORT_FROM:
        order = _sort_by_buckets(src_l, tgt_l, tie.numpy())
    else:
        # the key (t + 1) * 4096 + (s + 1) + tie / 2 (+ 1: EOS, BOS/EOS) is exact in float64
        key = tgt_l.astype(np.float64)
        key *= 4096
        key += src_l
        key += 4096 + 1
        order = torch.argsort(torch.from_numpy(key).add_(tie, alpha=0.5)).numpy()
        del key
    del tie
    if n < 2**31:
        order = order.astype(np.int32, copy=False)  # half the memory of the plan
    bounds = _greedy_bounds(src_l, tgt_l, order, batch_tokens)
    perm = torch.randperm(len(bounds) - 1, generator=generator).numpy()
    return BatchPlan(order, bounds[:-1][perm], bounds[1:][perm])


def _sort_by_buckets(src_l: np.ndarray, tgt_l: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """The order of a sort on (target length, source length, tie), one target length at a
    time: temporary arrays the size of one length's pairs, not of the corpus (a global
    argsort of a float64 key needs some 30 bytes a pair). It agrees with that argsort except
    on exactly equal keys, which the argsort leaves in no defined order anyway."""
    order = np.empty(len(src_l), dtype=np.int32 if len(src_l) < 2**31 else np.int64)
    at = 0
    for t in np.unique(tgt_l).tolist():
        members = np.flatnonzero(tgt_l == t)
        members = members[np.lexsort((tie[members], src_l[members]))]
        order[at : at + len(members)] = members
        at += len(members)
    return order


def _greedy_bounds(
    src_l: np.ndarray, tgt_l: np.ndarray, order: np.ndarray, batch_tokens: int
) -> np.ndarray:
    """Boundaries in the sorted `order`, [0, ..., N]: each batch takes sentences while
    (sentences) x (longest source + longest target) stays within the budget (+ 1 for EOS,
    BOS/EOS on each length)."""
    cuts = [0]
    max_s = max_t = 0
    size = 0
    step = 1 << 16  # Python ints a block at a time: memory stays flat on any corpus
    for first in range(0, len(order), step):
        ids = order[first : first + step]
        block = zip(
            np.add(src_l[ids], 1, dtype=np.int64).tolist(),
            np.add(tgt_l[ids], 1, dtype=np.int64).tolist(),
        )
        for i, (src, tgt) in enumerate(block, first):
            s, t = max(max_s, src), max(max_t, tgt)
            if size and (size + 1) * (s + t) > batch_tokens:
                cuts.append(i)
                size, s, t = 0, src, tgt
            size += 1
            max_s, max_t = s, t
    cuts.append(len(order))
    return np.asarray(cuts, dtype=np.int64)


def plan_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    batch_tokens: int,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """`plan_epoch` as lists of example indices, one a batch."""
    plan = plan_epoch(src_lens, tgt_lens, batch_tokens, generator)
    return [plan.batch(k) for k in range(len(plan))]


def prefetch(
    make: Callable[[int], T], items: Iterable[int], ahead: int = 3
) -> Generator[T, None, None]:
    """`make(item)` for each item, in order, computed up to `ahead` items early in a
    background thread (gathering and padding the next batches while the model trains)."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = deque(pool.submit(make, k) for k in itertools.islice(items, ahead))
        while pending:
            done = pending.popleft().result()
            for k in itertools.islice(items, 1):
                pending.append(pool.submit(make, k))
            yield done
