"""Greedy and beam search over numpy arrays: nmt/search.py's search, rule for rule, for the
runtime, which has no torch. The two share their tests (tests/test_search.py runs the same
cases against both), so that a change to one that the other lacks fails there.

Shapes: N sentences still active, K beam size, R = N * K rows, S source length, V vocab.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from nmt.batching import plan_batches
from nmt.search_options import NEG_INF, Hypothesis, SearchOptions, max_length
from nmt.tokenizer import BOS, EOS, PAD


class ArrayModel(Protocol):
    """What the search needs from a model run outside torch (nmt/runtime/model.py)."""

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Any, Any]:
        """src (N, S) int64 incl. EOS, padded with PAD; src_lengths (N,) -> (enc, state)."""
        ...

    def decode_step(
        self, state: Any, prev: np.ndarray, enc: Any
    ) -> tuple[np.ndarray, Any, np.ndarray | None]:
        """prev (R,) -> float32 log-probs (R, V), the next state, attention (R, S) or None."""
        ...

    def select_state(self, state: Any, rows: np.ndarray) -> Any: ...

    def select_encoded(self, enc: Any, sentences: np.ndarray) -> Any: ...


def source_array(src_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences (EOS not included) -> src (N, S) with EOS, padded with PAD, lengths (N,)."""
    lengths = np.array([len(s) + 1 for s in src_ids], dtype=np.int64)
    src = np.full((len(src_ids), int(lengths.max())), PAD, dtype=np.int64)
    for i, seq in enumerate(src_ids):
        src[i, : len(seq)] = seq
        src[i, len(seq)] = EOS
    return src, lengths


def _mask_special(log_probs: np.ndarray, step: int, min_len: int, at_max: np.ndarray) -> None:
    """In place: never PAD or BOS, no EOS before min_len, only EOS at max length (rows at_max)."""
    log_probs[:, PAD] = NEG_INF
    log_probs[:, BOS] = NEG_INF
    if step < min_len:
        log_probs[:, EOS] = NEG_INF
    if at_max.any():
        eos = log_probs[at_max, EOS]
        log_probs[at_max] = NEG_INF
        log_probs[at_max, EOS] = eos


def _trim(attention: np.ndarray | None, src_len: int) -> np.ndarray | None:
    return None if attention is None else attention[:, :src_len].astype(np.float32)


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """values (N, M) -> the k largest of each row, best first (ties: lower index first), and
    their indices (N, k)."""
    m = values.shape[1]
    k = min(k, m)
    # the k largest are the last k after partitioning at m - k (no negated copy needed)
    idx = np.argpartition(values, m - k, axis=1)[:, m - k :] if k < m else None
    if idx is None:
        idx = np.broadcast_to(np.arange(m), values.shape)
    picked = np.take_along_axis(values, idx, 1)
    order = np.lexsort((idx, -picked), axis=1)  # by value descending, then index
    idx = np.take_along_axis(idx, order, 1)
    return np.take_along_axis(values, idx, 1), idx


def top_candidates_reference(
    log_probs: np.ndarray, beam_lp: np.ndarray, width: int, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `count` best extensions of each sentence's `width` hypotheses: log_probs (R, V),
    beam_lp (R,) -> (N, count) sums beam_lp + log_prob, best first, their rows and tokens."""
    rows, vocab = log_probs.shape
    n = rows // width
    sums = (beam_lp[:, None] + log_probs).reshape(n, width * vocab)
    top_lp, index = top_k(sums, count)
    return top_lp, np.arange(n)[:, None] * width + index // vocab, index % vocab


@functools.cache
def block_size(vocab: int) -> int:
    """Columns per block: the smallest divisor of the vocabulary from its square root up."""
    return next(b for b in range(max(1, math.isqrt(vocab - 1) + 1), vocab + 1) if vocab % b == 0)


def top_candidates(
    log_probs: np.ndarray, beam_lp: np.ndarray, width: int, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`top_candidates_reference` through block maxima, as nmt/candidates.py: a block's best
    sum is its row's beam_lp plus its max, so the `count` best sums lie in the `count` blocks
    with the best maxima; only those are summed and searched."""
    rows, vocab = log_probs.shape
    size = block_size(vocab)
    n_blocks, n = vocab // size, rows // width
    blocks = log_probs.reshape(rows, n_blocks, size)
    block_best = (blocks.max(-1) + beam_lp[:, None]).reshape(n, width * n_blocks)
    _, pick = top_k(block_best, min(count, width * n_blocks))  # (N, picked) blocks
    row = pick // n_blocks + np.arange(n)[:, None] * width
    block = pick % n_blocks
    sums = blocks[row, block] + beam_lp[row][..., None]  # (N, picked, size)
    top_lp, idx = top_k(sums.reshape(n, -1), min(count, width * vocab))
    which = idx // size
    tokens = np.take_along_axis(block, which, 1) * size + idx % size
    return top_lp, np.take_along_axis(row, which, 1), tokens


def greedy(
    model: ArrayModel, src: np.ndarray, src_lengths: np.ndarray, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """The most probable token at every step; one hypothesis per sentence."""
    batch = src.shape[0]
    enc, state = model.encode(src, src_lengths)
    limits = np.array([max_length(int(n), opts) for n in src_lengths])
    active = np.arange(batch)  # (N,) sentence of each row
    prev = np.full(batch, BOS, dtype=np.int64)
    # float32 sums, as the torch search's, so that both give the same scores
    log_prob = np.zeros(batch, dtype=np.float32)
    tokens = np.empty((batch, 0), dtype=np.int64)  # (N, t)
    token_lp = np.empty((batch, 0), dtype=np.float32)  # (N, t) each token's log-prob
    attn: list[np.ndarray] | None = [] if opts.return_attention else None
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while active.size:
        log_probs, state, weights = model.decode_step(state, prev, enc)  # (N, V)
        if weights is None:
            attn = None
        at_max = limits[active] <= step
        _mask_special(log_probs, step, opts.min_len, at_max)
        prev = log_probs.argmax(-1)  # (N,) the first maximum, as torch's max
        best_lp = log_probs[np.arange(prev.size), prev]
        prev = np.where(at_max, EOS, prev)
        if opts.scores:
            log_prob = log_prob + best_lp
            token_lp = np.concatenate([token_lp, best_lp[:, None].astype(np.float32)], 1)
        tokens = np.concatenate([tokens, prev[:, None]], 1)
        if attn is not None:
            assert weights is not None
            attn = attn + [weights]
        ended = np.flatnonzero(prev == EOS)
        for r in ended.tolist():
            hyp_attn = np.stack([w[r] for w in attn]) if attn is not None else None
            lp = float(log_prob[r]) if opts.scores else math.nan
            sent = int(active[r])
            results[sent] = [
                Hypothesis(
                    tokens[r, :-1].tolist(),
                    lp,
                    opts.normalize(lp, step + 1),
                    _trim(hyp_attn, int(src_lengths[sent])),
                    token_lp[r].tolist() if opts.scores else None,
                )
            ]
        if ended.size:
            keep = np.flatnonzero(prev != EOS)
            active, prev, log_prob, tokens = active[keep], prev[keep], log_prob[keep], tokens[keep]
            token_lp = token_lp[keep]
            state = model.select_state(state, keep)
            enc = model.select_encoded(enc, keep)
            if attn is not None:
                attn = [w[keep] for w in attn]
        step += 1
    return results


class _Finished:
    """Each sentence's best `k` finished hypotheses, best first, and the k-th best score."""

    def __init__(self, batch: int, k: int) -> None:
        self.k = k
        self.hypotheses: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.kth_best = np.full(batch, NEG_INF, dtype=np.float32)

    def add(self, sentence: int, hyp: Hypothesis) -> None:
        hyps = self.hypotheses[sentence]
        hyps.append(hyp)
        hyps.sort(key=lambda h: -h.score)
        del hyps[self.k :]
        if len(hyps) == self.k:
            self.kth_best[sentence] = hyps[-1].score


def beam_search(
    model: ArrayModel, src: np.ndarray, src_lengths: np.ndarray, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """Beam search; for every sentence its `nbest` best hypotheses, best first. The rules
    (which candidates may finish, when a sentence is done, stopping early or exact) are
    nmt.search.beam_search's; read the reasons there."""
    k = opts.beam_size
    batch = src.shape[0]
    enc, state = model.encode(src, src_lengths)
    limits = np.array([max_length(int(n), opts) for n in src_lengths])
    active = np.arange(batch)
    width = 1  # rows a sentence: 1 at the first step (every beam starts from BOS), then K
    beam_lp = np.zeros(batch, dtype=np.float32)  # (R,)
    prev = np.full(batch, BOS, dtype=np.int64)
    history = np.empty((batch, 0), dtype=np.int64)  # (R, t)
    lp_history = np.empty((batch, 0), dtype=np.float32)  # (R, t) each token's log-prob
    attn_history = np.empty((batch, 0, src.shape[1]), np.float32) if opts.return_attention else None
    finished = _Finished(batch, k)
    step = 0
    while active.size:
        n = active.size
        log_probs, state, weights = model.decode_step(state, prev, enc)  # (R, V)
        if weights is None:
            attn_history = None
        at_max = np.repeat(limits[active] <= step, width)
        _mask_special(log_probs, step, opts.min_len, at_max)
        # (N, 2K) best extensions of each sentence: scores, rows of R, tokens
        top_lp, top_row, top_tok = top_candidates(log_probs, beam_lp, width, 2 * k)
        top_tok_lp = log_probs[top_row, top_tok]  # (N, 2K) the last token's own log-prob
        is_eos = top_tok == EOS
        finishes = is_eos & (top_lp > NEG_INF)
        finishes[:, k:] = False
        for i, j in zip(*np.nonzero(finishes)):
            r, lp, sent = int(top_row[i, j]), float(top_lp[i, j]), int(active[i])
            hyp_attn = None
            if attn_history is not None:
                assert weights is not None
                hyp_attn = _trim(
                    np.concatenate([attn_history[r], weights[r][None]]), int(src_lengths[sent])
                )
            token_lps = lp_history[r].tolist() + [float(top_tok_lp[i, j])]
            finished.add(
                sent,
                Hypothesis(
                    history[r].tolist(), lp, opts.normalize(lp, step + 1), hyp_attn, token_lps
                ),
            )
        open_lp = np.where(is_eos, np.float32(NEG_INF), top_lp)
        next_lp, pick = top_k(open_lp, k)  # (N, K)
        next_rows = np.take_along_axis(top_row, pick, 1).reshape(-1)  # (R,)
        next_tok = np.take_along_axis(top_tok, pick, 1).reshape(-1)
        next_tok_lp = np.take_along_axis(top_tok_lp, pick, 1).reshape(-1)
        best_open = next_lp[:, 0]
        if opts.stopping == "exact":
            ends_at: Any = (limits[active] + 1).astype(np.float32)
        else:
            ends_at = step + 2.0
        with np.errstate(invalid="ignore"):
            bound = opts.normalize(best_open, ends_at)
            done = (finished.kth_best[active] >= bound) | (best_open == NEG_INF)
        done |= limits[active] <= step
        remaining = np.flatnonzero(~done)  # (N',)
        width = next_lp.shape[1]
        remaining_rows = (remaining[:, None] * width + np.arange(width)).reshape(-1)  # (R',)
        src_rows = next_rows[remaining_rows]
        state = model.select_state(state, src_rows)
        if remaining.size < n:
            enc = model.select_encoded(enc, remaining)
        history = np.concatenate([history[src_rows], next_tok[remaining_rows][:, None]], 1)
        lp_history = np.concatenate([lp_history[src_rows], next_tok_lp[remaining_rows][:, None]], 1)
        if attn_history is not None:
            assert weights is not None
            attn_history = np.concatenate([attn_history[src_rows], weights[src_rows][:, None]], 1)
        beam_lp = next_lp.reshape(-1)[remaining_rows]
        prev = next_tok[remaining_rows]
        active = active[remaining]
        step += 1
    return [hyps[: opts.nbest] for hyps in finished.hypotheses]


def search_batch(
    model: ArrayModel, src_ids: list[list[int]], opts: SearchOptions
) -> list[list[Hypothesis]]:
    """One batch of id sequences (EOS not included) -> their hypotheses: greedy for beam
    size 1, beam search otherwise."""
    src, lengths = source_array(src_ids)
    if opts.beam_size == 1:
        return greedy(model, src, lengths, opts)
    return beam_search(model, src, lengths, opts)


MapBatches = Callable[[list[list[list[int]]], SearchOptions], Iterable[list[list[Hypothesis]]]]


def search_id_batches(
    model: ArrayModel,
    src_ids: list[list[int]],
    opts: SearchOptions,
    batch_tokens: int = 4096,
    map_batches: MapBatches | None = None,
) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
    """Length-sorted token-budget batches, as nmt.search.search_id_batches: (indices into
    src_ids, their hypotheses) as each batch is done."""
    plan = plan_batches([len(s) for s in src_ids], [0] * len(src_ids), batch_tokens)
    batches = [[src_ids[i] for i in idxs] for idxs in plan]
    if map_batches is None:
        found: Iterable[list[list[Hypothesis]]] = (search_batch(model, b, opts) for b in batches)
    else:
        found = map_batches(batches, opts)
    yield from zip(plan, found)


def search_ids(
    model: ArrayModel, src_ids: list[list[int]], opts: SearchOptions, batch_tokens: int = 4096
) -> list[list[Hypothesis]]:
    """Translate id sequences in token-budget batches; results in input order."""
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    for idxs, hyps in search_id_batches(model, src_ids, opts, batch_tokens):
        for i, h in zip(idxs, hyps):
            results[i] = h
    return results
