"""Greedy and beam search over a model's decoder steps.

Both are batched over sentences (and beams) with one code path for any batch size: a
sentence's result never depends on what it is batched with. Sentences that are done leave
the active set, so no work is spent on them.

Shapes: N sentences still active, K beam size, R = N * K rows, S source length, V vocab.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from nmt.batching import pad, plan_batches, source_tensor
from nmt.candidates import best_in_rows, top_candidates
from nmt.search_options import NEG_INF, Hypothesis, SearchOptions
from nmt.tokenizer import BOS, EOS, PAD


@runtime_checkable
class SearchModel(Protocol):
    """What greedy and beam search need from a model (Seq2Seq, Transformer, an ensemble)."""

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Any, Any]:
        """src (B, S) ids incl. EOS, padded with PAD; src_lengths (B,) on the CPU
        -> (enc, state): what every decoder step reads (B rows), the first decoder state
        (B rows)."""
        ...

    def decode_step(
        self, state: Any, prev: Tensor, enc: Any, normalize: bool = True
    ) -> tuple[Tensor, Any, Tensor | None]:
        """prev (R,) last tokens, state R rows, enc N rows with R = N * K (K hypotheses of a
        sentence in consecutive rows, K inferred as R // N) -> float32 log-probs (R, V)
        (raw logits when not normalize: same argmax), new state (R rows), attention weights
        (R, S) that the heatmaps show, or None."""
        ...

    def select_state(self, state: Any, rows: Tensor) -> Any:
        """The state's rows picked by index (R' rows): beam backpointers, dropping sentences."""
        ...

    def select_encoded(self, enc: Any, sentences: Tensor) -> Any:
        """enc's rows picked by index (N' rows): dropping finished sentences."""
        ...

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing_ratio: float = 1.0,
        return_attention: bool = False,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) (or (N, V) at `keep` positions) and attention
        (B, T, S) when asked: training and `score_tokens` use it."""
        ...

    def __call__(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing_ratio: float = 1.0,
        return_attention: bool = False,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """`forward` through nn.Module's call (with its hooks): what `score_tokens` runs."""
        ...

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """nn.Module's: `search_batch` puts its batch on the device of the first."""
        ...


def max_lengths(src_lengths: torch.Tensor, opts: SearchOptions) -> torch.Tensor:
    """(B,) source lengths incl. EOS -> (B,) max output tokens (EOS excluded), at least min_len."""
    limit = torch.floor((src_lengths - 1).double() * opts.max_len_ratio).long()
    return (limit + opts.max_len_offset).clamp(min=max(opts.min_len, 1))


def _mask_special(log_probs: torch.Tensor, step: int, min_len: int, at_max: torch.Tensor) -> None:
    """In place: never PAD or BOS, no EOS before min_len, only EOS at max length (rows at_max)."""
    log_probs[:, PAD] = NEG_INF
    log_probs[:, BOS] = NEG_INF
    if step < min_len:
        log_probs[:, EOS] = NEG_INF
    if at_max.any():
        eos = log_probs[at_max, EOS]
        log_probs[at_max] = NEG_INF
        log_probs[at_max, EOS] = eos


def _trim(attention: torch.Tensor | None, src_len: torch.Tensor | int) -> torch.Tensor | None:
    return None if attention is None else attention[:, : int(src_len)].float().cpu()


@torch.inference_mode()
def greedy(
    model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """The most probable token at every step; one hypothesis per sentence."""
    batch = src.size(0)
    enc, state = model.encode(src, src_lengths)
    limits = max_lengths(src_lengths, opts).to(src.device)
    active = torch.arange(batch, device=src.device)  # (N,) sentence of each row
    prev = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    log_prob = torch.zeros(batch, device=src.device)
    tokens = torch.empty(batch, 0, dtype=torch.long, device=src.device)  # (N, t)
    token_lp = torch.empty(batch, 0, device=src.device)  # (N, t) each token's log-prob
    attn: list[Tensor] | None = [] if opts.return_attention else None
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while active.numel():
        # (N, V) log-probabilities, or logits: the same argmax
        log_probs, state, weights = model.decode_step(state, prev, enc, normalize=opts.scores)
        if weights is None:
            attn = None  # a model without attention has none to return
        at_max = limits[active] <= step
        _mask_special(log_probs, step, opts.min_len, at_max)
        best_lp, prev = best_in_rows(log_probs)  # (N,)
        # a row at its max length ends here even if its scores are NaN or all -inf (the
        # argmax of such a row is no EOS), so the loop ends by the max length whatever happens
        prev = prev.masked_fill(at_max, EOS)
        if opts.scores:
            log_prob = log_prob + best_lp
            token_lp = torch.cat([token_lp, best_lp[:, None].float()], 1)
        tokens = torch.cat([tokens, prev[:, None]], 1)
        if attn is not None:
            assert weights is not None  # attn is None once a step gives no weights
            attn = attn + [weights]
        ended_rows = (prev == EOS).nonzero().flatten().tolist()
        for r in ended_rows:
            hyp_attn = torch.stack([w[r] for w in attn]) if attn is not None else None
            lp = float(log_prob[r]) if opts.scores else math.nan
            results[int(active[r])] = [
                Hypothesis(
                    tokens[r, :-1].tolist(),
                    lp,
                    opts.normalize(lp, step + 1),
                    _trim(hyp_attn, src_lengths[int(active[r])]),
                    token_lp[r].tolist() if opts.scores else None,
                )
            ]
        if ended_rows:
            open_rows = (prev != EOS).nonzero().flatten()
            active, prev, log_prob, tokens, token_lp = (
                t.index_select(0, open_rows) for t in (active, prev, log_prob, tokens, token_lp)
            )
            state = model.select_state(state, open_rows)
            enc = model.select_encoded(enc, open_rows)
            if attn is not None:
                attn = [w.index_select(0, open_rows) for w in attn]
        step += 1
    return results


def _extend(history: torch.Tensor, rows: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """history (R, t, ...) -> its `rows` (R',) with new (R', ...) appended: (R', t + 1, ...)."""
    return torch.cat([history.index_select(0, rows), new[:, None]], 1)


class _Finished:
    """Each sentence's best `k` finished hypotheses, best first, and the k-th best score
    (-inf while it has fewer than k)."""

    def __init__(self, batch: int, k: int, device: torch.device) -> None:
        self.k = k
        self.hypotheses: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.kth_best = torch.full((batch,), NEG_INF, device=device)  # (B,)

    def add(self, sentence: int, hyp: Hypothesis) -> None:
        hyps = self.hypotheses[sentence]
        hyps.append(hyp)
        hyps.sort(key=lambda h: -h.score)
        del hyps[self.k :]
        if len(hyps) == self.k:
            self.kth_best[sentence] = hyps[-1].score


@torch.inference_mode()
def beam_search(
    model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """Beam search; returns for every sentence its `nbest` best hypotheses, best first.

    A sentence is done when it has `beam_size` finished hypotheses that the best open one
    does not beat. An open hypothesis's log-probability only falls as it grows, so with
    stopping "exact" its best possible score is its current log-probability normalized at
    the sentence's max length: provably nothing better is left, but with a length penalty
    that bound is loose and most sentences run to the max length. Stopping "early" (the
    default, and Hugging Face's) compares with its score if it ended at the next step: the
    same rule without a length penalty, and on Multi30k fewer decoder steps than "exact"
    for the same BLEU.

    One loop over steps, longer than most functions here: a step's parts (extend, finish,
    stop, reorder) share a dozen tensors that would otherwise travel as arguments.
    """
    k, device = opts.beam_size, src.device
    batch = src.size(0)
    enc, state = model.encode(src, src_lengths)
    limits = max_lengths(src_lengths, opts).to(device)  # (B,)
    active = torch.arange(batch, device=device)  # (N,) sentence ids
    # every beam starts from the same BOS state, so the first step runs one row per sentence
    # and the beam widens to K after it; `width` is the number of rows per sentence
    width = 1
    beam_lp = torch.zeros(batch, device=device)  # (R,)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=device)
    history = torch.empty(batch, 0, dtype=torch.long, device=device)  # (R, t)
    lp_history = torch.empty(batch, 0, device=device)  # (R, t) each token's log-prob
    attn_history = (
        torch.empty(batch, 0, src.size(1), device=device) if opts.return_attention else None
    )
    finished = _Finished(batch, k, device)
    step = 0
    while active.numel():
        n = active.numel()
        log_probs, state, weights = model.decode_step(state, prev, enc)  # (R, V)
        if weights is None:
            attn_history = None  # a model without attention has none to return
        at_max = (limits[active] <= step).repeat_interleave(width)
        _mask_special(log_probs, step, opts.min_len, at_max)
        # (N, 2K) best extensions of each sentence: scores, rows of R, tokens
        top_lp, top_row, top_tok = top_candidates(log_probs, beam_lp, width, 2 * k)
        top_tok_lp = log_probs[top_row, top_tok]  # (N, 2K) the last token's own log-prob
        # candidates ending in EOS leave the beam; only the best K of them may finish (an
        # EOS ranked below them would be pruned by a beam of K), so beam 1 is greedy search
        is_eos = top_tok == EOS
        finishes = is_eos & (top_lp > NEG_INF)
        finishes[:, k:] = False
        # one transfer to Python lists per step, not one per finished hypothesis
        finish_at = finishes.nonzero().tolist()  # [(sentence of N, candidate)]
        if finish_at:
            rows_l, lp_l, active_l = top_row.tolist(), top_lp.tolist(), active.tolist()
            tok_lp_l = top_tok_lp.tolist()
        for i, j in finish_at:
            r, lp, sent = rows_l[i][j], lp_l[i][j], active_l[i]
            hyp_attn = None
            if attn_history is not None:
                assert weights is not None  # attn_history is None once a step gives none
                hyp_attn = _trim(torch.cat([attn_history[r], weights[r][None]]), src_lengths[sent])
            token_lps = lp_history[r].tolist() + [tok_lp_l[i][j]]
            finished.add(
                sent,
                Hypothesis(
                    history[r].tolist(), lp, opts.normalize(lp, step + 1), hyp_attn, token_lps
                ),
            )
        # the best K candidates that do not end in EOS stay open
        open_lp = top_lp.masked_fill(is_eos, NEG_INF)
        next_lp, pick = open_lp.topk(min(k, open_lp.size(1)), dim=-1)  # (N, K)
        next_rows = top_row.gather(1, pick).flatten()  # (R,)
        next_tok = top_tok.gather(1, pick).flatten()
        next_tok_lp = top_tok_lp.gather(1, pick).flatten()
        # done: k finished ones that the best open hypothesis cannot beat, or nothing open
        best_open = next_lp[:, 0]
        ends_at: Tensor | float
        if opts.stopping == "exact":
            ends_at = limits[active].add(1).to(best_open.dtype)  # EOS after the longest
        else:
            ends_at = step + 2.0  # EOS at the next step
        bound = opts.normalize(best_open, ends_at)
        done = (finished.kth_best[active] >= bound) | (best_open == NEG_INF)
        # at the max length only EOS was allowed: done even when NaN scores (broken weights)
        # compare false with everything
        done |= limits[active] <= step
        remaining = (~done).nonzero().flatten()  # (N',) sentences of N still searched
        width = next_lp.size(1)  # K, fewer only if the vocabulary is smaller than the beam
        # (R',) positions in next_* of the remaining sentences' hypotheses
        remaining_rows = (remaining[:, None] * width + torch.arange(width, device=device)).flatten()
        src_rows = next_rows.index_select(0, remaining_rows)  # (R',) their parent rows of R
        state = model.select_state(state, src_rows)
        if remaining.numel() < n:
            enc = model.select_encoded(enc, remaining)  # one row a sentence, read by its beams
        history = _extend(history, src_rows, next_tok.index_select(0, remaining_rows))
        lp_history = _extend(lp_history, src_rows, next_tok_lp.index_select(0, remaining_rows))
        if attn_history is not None:
            assert weights is not None
            attn_history = _extend(attn_history, src_rows, weights.index_select(0, src_rows))
        beam_lp = next_lp.flatten().index_select(0, remaining_rows)
        prev = next_tok.index_select(0, remaining_rows)
        active = active.index_select(0, remaining)
        step += 1
    return [hyps[: opts.nbest] for hyps in finished.hypotheses]


def translate_batch(
    model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """Greedy for beam size 1, beam search otherwise."""
    if opts.beam_size == 1:
        return greedy(model, src, src_lengths, opts)
    return beam_search(model, src, src_lengths, opts)


def score_tokens(
    model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor, hyps: list[list[int]]
) -> list[float]:
    """Teacher-forced log-probability of each output (+ EOS) given its source."""
    tgt_in, _ = pad(hyps, prefix=BOS)
    tgt_out, _ = pad(hyps, suffix=EOS)
    with torch.inference_mode():
        logits, _ = model(src, src_lengths, tgt_in.to(src.device))
        lp = logits.float().log_softmax(-1).gather(2, tgt_out.to(src.device)[:, :, None]).squeeze(2)
        lp = lp.masked_fill(tgt_out.to(src.device) == PAD, 0.0)
    return lp.sum(1).tolist()


def search_batch(
    model: SearchModel, src_ids: list[list[int]], opts: SearchOptions
) -> list[list[Hypothesis]]:
    """One batch of id sequences (EOS not included) -> their hypotheses."""
    device = next(model.parameters()).device
    src, src_lengths = source_tensor(src_ids)
    return translate_batch(model, src.to(device), src_lengths, opts)


# searches batches elsewhere (worker processes), yielding their results in order
MapBatches = Callable[[list[list[list[int]]], SearchOptions], Iterable[list[list[Hypothesis]]]]


def search_id_batches(
    model: SearchModel,
    src_ids: list[list[int]],
    opts: SearchOptions,
    batch_tokens: int = 4096,
    map_batches: MapBatches | None = None,
) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
    """search_ids batch by batch: (indices into src_ids, their hypotheses) as each batch is
    done, so that a caller can write results before the last batch is searched."""
    plan = plan_batches([len(s) for s in src_ids], [0] * len(src_ids), batch_tokens)
    batches = [[src_ids[i] for i in idxs] for idxs in plan]
    if map_batches is None:
        found: Iterable[list[list[Hypothesis]]] = (search_batch(model, b, opts) for b in batches)
    else:
        found = map_batches(batches, opts)
    yield from zip(plan, found)


def search_ids(
    model: SearchModel,
    src_ids: list[list[int]],
    opts: SearchOptions,
    batch_tokens: int = 4096,
    map_batches: MapBatches | None = None,
) -> list[list[Hypothesis]]:
    """Translate id sequences in length-sorted token-budget batches; results in input order.

    `batch_tokens` bounds sentences x longest source in a batch (beams multiply it by K).
    `map_batches(batches, opts)`, when given, searches the batches elsewhere (worker
    processes) and yields their results in order; by default they run here, one by one.
    """
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    for idxs, hyps in search_id_batches(model, src_ids, opts, batch_tokens, map_batches):
        for i, h in zip(idxs, hyps):
            results[i] = h
    return results
