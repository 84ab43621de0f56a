"""Token-budget batches bucketed by length, padding and masks.

Shapes: B batch, S source length, T target length. Every source sequence ends with EOS;
targets are split into decoder input (BOS y) and output (y EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nmt.tokenizer import BOS, EOS, PAD


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
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def plan_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    batch_tokens: int,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Group example indices into batches of similar length.

    A batch holds at most `batch_tokens` tokens counted with padding: sentences x (longest
    source + longest target). With a generator, ties in length are broken at random and the
    batch order is shuffled; without one the plan is deterministic (validation, translation).
    Every rank of a distributed run builds the same plan from the same generator seed.
    """
    n = len(src_lens)
    if n == 0:
        return []
    src_t = torch.as_tensor(src_lens, dtype=torch.long) + 1  # + EOS
    tgt_t = torch.as_tensor(tgt_lens, dtype=torch.long) + 1  # + BOS/EOS
    tie = torch.rand(n, generator=generator) if generator is not None else torch.zeros(n)
    # lexicographic sort on (target length, source length, random tie-break): the decoder
    # steps through every padded target position, while packing spares the encoder padding
    key = (tgt_t * 4096 + src_t).double() + tie.double() * 0.5
    order = torch.argsort(key).tolist()
    src_l, tgt_l = src_t.tolist(), tgt_t.tolist()
    batches: list[list[int]] = []
    current: list[int] = []
    max_s = max_t = 0
    for i in order:
        s, t = max(max_s, src_l[i]), max(max_t, tgt_l[i])
        if current and (len(current) + 1) * (s + t) > batch_tokens:
            batches.append(current)
            current, s, t = [], src_l[i], tgt_l[i]
        current.append(i)
        max_s, max_t = s, t
    batches.append(current)
    if generator is not None:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[p] for p in perm]
    return batches
