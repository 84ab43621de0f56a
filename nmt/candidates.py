"""The best token of each row, and the best beam extensions, of a step's log-probabilities.

Each search has a plain reference form (`max`, top-k over all sums) and the form search
uses, which gives the same results through block maxima: a reduction over (R, V / b, b)
blocks is vectorized, and only the few blocks that can hold the answer are searched.

Shapes: N sentences, width hypotheses a sentence, R = N * width rows, V vocabulary.
"""

from __future__ import annotations

import functools
import math

import torch


def best_in_rows_reference(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, V) -> the max (R,) and the index of its first occurrence (R,)."""
    best, index = log_probs.max(-1)
    return best, index


def top_candidates_reference(
    log_probs: torch.Tensor, beam_lp: torch.Tensor, width: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `count` best extensions of each sentence's `width` hypotheses: log_probs (R, V),
    beam_lp (R,) -> (N, count) sums beam_lp + log_prob, best first, their rows of R and
    their tokens."""
    rows, vocab = log_probs.shape
    n = rows // width
    sums = (beam_lp[:, None] + log_probs).view(n, width * vocab)
    top_lp, index = sums.topk(min(count, width * vocab), dim=-1)
    first_row = torch.arange(n, device=log_probs.device)[:, None] * width
    return top_lp, first_row + index // vocab, index % vocab


@functools.cache
def block_size(vocab: int) -> int:
    """Columns per block: the smallest divisor of the vocabulary from its square root up
    (8000 -> 100), so that neither the number of blocks nor their size is large."""
    return next(b for b in range(max(1, math.isqrt(vocab - 1) + 1), vocab + 1) if vocab % b == 0)


def _blocks(log_probs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(R, V) -> the same values as (R, V / b, b) blocks, and b."""
    rows, vocab = log_probs.shape
    size = block_size(vocab)
    return log_probs.reshape(rows, vocab // size, size), size


def best_in_rows(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`best_in_rows_reference` through block maxima: `amax` over the blocks is vectorized,
    while `max(-1)` tracks an index per element; only the best block of each row is then
    searched for the index."""
    blocks, size = _blocks(log_probs)
    best, block = blocks.amax(-1).max(-1)  # (R,)
    rows = torch.arange(blocks.size(0), device=log_probs.device)
    within = blocks[rows, block].argmax(-1)  # (R,)
    return best, block * size + within


def top_candidates(
    log_probs: torch.Tensor, beam_lp: torch.Tensor, width: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`top_candidates_reference` without forming the N x (width * V) sums: a block's best
    sum is its row's beam_lp plus its max, and the `count` best sums lie in the `count`
    blocks with the best maxima (a sum outside them is beaten by the max of each of those
    blocks), so only those blocks are summed and searched."""
    blocks, size = _blocks(log_probs)
    rows, n_blocks, _ = blocks.shape
    n, vocab = rows // width, n_blocks * size
    block_best = (blocks.amax(-1) + beam_lp[:, None]).view(n, width * n_blocks)
    n_picked = min(count, width * n_blocks)
    pick = block_best.topk(n_picked, dim=-1).indices  # (N, n_picked) blocks of the sentence
    row = pick // n_blocks + torch.arange(n, device=log_probs.device)[:, None] * width
    block = pick % n_blocks
    sums = blocks[row, block] + beam_lp[row][..., None]  # (N, n_picked, size)
    top_lp, idx = sums.view(n, n_picked * size).topk(min(count, width * vocab), dim=-1)
    which = idx // size
    return top_lp, row.gather(1, which), block.gather(1, which) * size + idx % size
