"""Lexically constrained beam search: dynamic beam allocation (Post & Vilar, NAACL 2018).

Every sentence has a list of constraints, token sequences that must all appear in its
output (glossary terms, placeholders). A hypothesis's progress is how many constraint
tokens it has produced: whole constraints met, plus the tokens of the one it is in the
middle of (a phrase left half-way starts over). At each step the candidates of a sentence
are the K best extensions overall, each hypothesis's best token, and every token that
advances a constraint; the K places of the beam are split between "banks" of equal
progress (0 ... C constraints met; Post & Vilar count tokens, which with a few
multi-piece terms makes more banks than beam places and pushes every term to the first
steps), so that hypotheses that took a constraint early are not pushed out by those that
postpone it. A hypothesis may end only when it has met every
constraint, and one with exactly as many steps left as constraint tokens to go may only
take those: so the search always ends with every constraint met (the length limit grows
by the constraints' tokens).

One code path for any batch: a sentence's banks, candidates and allocation read only its
own rows, so its result never depends on what it is batched with (as nmt/search.py).

Shapes: N sentences still active, K beam size, R = N * K rows, S source length, V vocab.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nmt.batching import plan_batches, source_tensor
from nmt.candidates import best_in_rows, top_candidates
from nmt.search import (
    SearchModel,
    _extend,
    _Finished,
    _mask_special,
    _trim,
    max_lengths,
    search_batch,
)
from nmt.search_options import NEG_INF, Hypothesis, SearchOptions
from nmt.tokenizer import BOS, EOS

# a sentence with constraints is searched with this beam at least: with beam 1 every step
# would have to choose between taking a constraint now and never (greedy search has no
# room for a second bank)
MIN_BEAM = 4


def beam_width(opts: SearchOptions, constraints: int) -> int:
    """The beam of a sentence with `constraints` constraints: room for every bank (C + 1)
    and MIN_BEAM at least, else the beam asked for."""
    return max(opts.beam_size, MIN_BEAM, constraints + 1)


@dataclass(frozen=True)
class Progress:
    """What a hypothesis has met of its sentence's constraints."""

    met: frozenset[int] = frozenset()  # constraints produced whole
    phrase: int = -1  # the constraint it is in the middle of (-1: none)
    position: int = 0  # tokens of that constraint produced so far
    tokens_met: int = 0  # constraint tokens produced: the hypothesis's bank
    ended: bool = False  # its last token ended a constraint

    def advancing(self, constraints: list[list[int]]) -> list[int]:
        """The tokens that advance a constraint: the next of the phrase under way, or the
        first token of each constraint not met."""
        if self.phrase >= 0:
            return [constraints[self.phrase][self.position]]
        return [c[0] for i, c in enumerate(constraints) if i not in self.met]

    def after(self, token: int, constraints: list[list[int]]) -> Progress:
        """The progress once `token` is produced."""
        if self.phrase >= 0:
            phrase = constraints[self.phrase]
            if token == phrase[self.position]:
                done = self.tokens_met + 1
                if self.position + 1 == len(phrase):
                    return Progress(self.met | {self.phrase}, tokens_met=done, ended=True)
                return Progress(self.met, self.phrase, self.position + 1, done)
            # the phrase was left: it starts over
            base = Progress(self.met, tokens_met=self.tokens_met - self.position)
        else:
            base = Progress(self.met, tokens_met=self.tokens_met)
        for i, c in enumerate(constraints):
            if i not in base.met and c[0] == token:
                done = base.tokens_met + 1
                if len(c) == 1:
                    return Progress(base.met | {i}, tokens_met=done, ended=True)
                return Progress(base.met, i, 1, done)
        return base

    def left(self, constraints: list[list[int]]) -> int:
        """Tokens still to produce before every constraint is met."""
        return sum(len(c) for c in constraints) - self.tokens_met


def bank_sizes(beam: int, counts: list[int]) -> list[int]:
    """The places of a beam of `beam` given to each bank (0 ... C constraint tokens met),
    whose candidates number `counts`: an equal share, the rest to the bank that met most;
    places a bank cannot fill pass to the bank below (Post & Vilar's allocation, as
    Sockeye's `get_bank_sizes`)."""
    banks = len(counts)
    sizes = [beam // banks] * banks
    sizes[-1] += beam - sum(sizes)
    for _ in range(2):  # twice round: a place passed down from bank 0 wraps to the top
        for i in reversed(range(banks)):
            over = sizes[i] - counts[i]
            if over > 0:
                sizes[i] -= over
                sizes[(i - 1) % banks] += over
    return sizes


@torch.inference_mode()
def constrained_beam_search(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    opts: SearchOptions,
    constraints: list[list[list[int]]],
    word_pieces: torch.Tensor | None = None,
    beam: int = 0,
) -> list[list[Hypothesis]]:
    """Beam search whose outputs contain every token sequence of their sentence's
    `constraints` (a list a sentence); the `nbest` best, best first, as `beam_search`.
    Searched with a beam of `beam` (0: `beam_width` of the most constraints a sentence
    has). `word_pieces` (V,) bool: the pieces that may not follow a constraint (they would
    continue its last word)."""
    k, device = beam or beam_width(opts, max(map(len, constraints))), src.device
    batch = src.size(0)
    need = torch.tensor([sum(len(c) for c in cs) for cs in constraints])
    enc, state = model.encode(src, src_lengths)
    limits = (max_lengths(src_lengths, opts) + need).tolist()  # (B,) room for the constraints
    active = list(range(batch))  # sentence of each of the N active sentences
    width = 1  # hypotheses a sentence: 1 at the first step (all start from BOS), then K
    beam_lp = torch.zeros(batch, device=device)  # (R,)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=device)
    history = torch.empty(batch, 0, dtype=torch.long, device=device)  # (R, t)
    lp_history = torch.empty(batch, 0, device=device)  # (R, t)
    attn_history = (
        torch.empty(batch, 0, src.size(1), device=device) if opts.return_attention else None
    )
    progress = [Progress() for _ in range(batch)]  # (R,) each row's
    finished = _Finished(batch, k, device)
    step = 0
    while active:
        log_probs, state, weights = model.decode_step(state, prev, enc)  # (R, V)
        if weights is None:
            attn_history = None
        at_max = torch.tensor([limits[s] <= step for s in active]).repeat_interleave(width)
        _mask_special(log_probs, step, opts.min_len, at_max.to(device))
        rows_lp = beam_lp.tolist()
        # the candidates each sentence's rows give, and their tokens' log-probs in one gather
        cand: list[list[tuple[int, int]]] = []
        for i, sent in enumerate(active):
            cs = constraints[sent]
            pairs: list[tuple[int, int]] = []
            for r in range(i * width, (i + 1) * width):
                p = progress[r]
                if p.ended and word_pieces is not None:
                    log_probs[r].masked_fill_(word_pieces, NEG_INF)
                left, steps_left = p.left(cs), limits[sent] - step
                if left:  # no end before every constraint is met
                    log_probs[r, EOS] = NEG_INF
                if left and left >= steps_left:  # only constraint tokens fit in what is left
                    keep = p.advancing(cs) if left == steps_left else []
                    allowed_lp = log_probs[r, keep].clone()
                    log_probs[r] = NEG_INF
                    log_probs[r, keep] = allowed_lp
                pairs += [(r, t) for t in p.advancing(cs)]
            cand.append(pairs)
        top_lp, top_row, top_tok = top_candidates(log_probs, beam_lp, width, 2 * k)
        _, best_tok = best_in_rows(log_probs)  # (R,)
        best_l, top_row_l, top_tok_l = best_tok.tolist(), top_row.tolist(), top_tok.tolist()
        for i in range(len(active)):
            extra = [(r, best_l[r]) for r in range(i * width, (i + 1) * width)]
            cand[i] = list(dict.fromkeys(list(zip(top_row_l[i], top_tok_l[i])) + extra + cand[i]))
        flat = [pair for pairs in cand for pair in pairs]
        rows_t = torch.tensor([r for r, _ in flat], dtype=torch.long, device=device)
        toks_t = torch.tensor([t for _, t in flat], dtype=torch.long, device=device)
        tok_lp_l = log_probs[rows_t, toks_t].tolist()  # each candidate's token log-prob
        picked: list[list[tuple[float, int, int, float, Progress]]] = []
        at = 0
        still: list[int] = []  # indices into active of the sentences searched on
        for i, sent in enumerate(active):
            cs = constraints[sent]
            scored = []
            for r, t in cand[i]:
                lp = tok_lp_l[at]
                at += 1
                if lp > NEG_INF:
                    scored.append((rows_lp[r] + lp, r, t, lp))
            scored.sort(key=lambda c: (-c[0], c[1], c[2]))  # ties: by row, then token
            for score, r, t, lp in scored[:k]:
                if t == EOS:  # only hypotheses that met every constraint have a finite EOS
                    hyp = _hypothesis(history, lp_history, attn_history, weights, r, score, lp)
                    finished.add(sent, _ended(hyp, step, opts, src_lengths[sent]))
            opened = [
                (score, r, t, lp, progress[r].after(t, cs))
                for score, r, t, lp in scored
                if t != EOS
            ]
            kept = _allocate(opened, k, len(cs))
            best_open = kept[0][0] if kept else NEG_INF
            ends_at = limits[sent] + 1.0 if opts.stopping == "exact" else step + 2.0
            done = (
                best_open == NEG_INF
                or float(finished.kth_best[sent]) >= opts.normalize(best_open, ends_at)
                or limits[sent] <= step
            )
            if not done:
                # a beam short of K (few candidates) is padded with dead rows
                kept += [(NEG_INF, kept[0][1], kept[0][2], NEG_INF, kept[0][4])] * (k - len(kept))
                picked.append(kept)
                still.append(i)
        if not still:
            break
        flat_pick = [c for kept in picked for c in kept]  # (R',)
        parents = torch.tensor([c[1] for c in flat_pick], dtype=torch.long, device=device)
        state = model.select_state(state, parents)
        if len(still) < len(active):
            enc = model.select_encoded(enc, torch.tensor(still, dtype=torch.long, device=device))
        tokens = torch.tensor([c[2] for c in flat_pick], dtype=torch.long, device=device)
        history = _extend(history, parents, tokens)
        lp_history = _extend(
            lp_history, parents, torch.tensor([c[3] for c in flat_pick]).to(lp_history)
        )
        if attn_history is not None:
            assert weights is not None
            attn_history = _extend(attn_history, parents, weights.index_select(0, parents))
        beam_lp = torch.tensor([c[0] for c in flat_pick], device=device)
        progress = [c[4] for c in flat_pick]
        prev, active, width = tokens, [active[i] for i in still], k
        step += 1
    return [hyps[: opts.nbest] for hyps in finished.hypotheses]


def _allocate(
    opened: list[tuple[float, int, int, float, Progress]], k: int, total: int
) -> list[tuple[float, int, int, float, Progress]]:
    """The K open candidates a sentence keeps (best first), `total` its constraints: each
    bank (candidates that met as many constraints) its share of the beam (`bank_sizes`)."""
    banks: list[list[tuple[float, int, int, float, Progress]]] = [[] for _ in range(total + 1)]
    for c in opened:  # sorted best first, so each bank is too
        banks[len(c[4].met)].append(c)
    sizes = bank_sizes(k, [len(b) for b in banks])
    kept = [c for bank, size in zip(banks, sizes) for c in bank[:size]]
    kept.sort(key=lambda c: (-c[0], c[1], c[2]))
    return kept


def _hypothesis(
    history: torch.Tensor,
    lp_history: torch.Tensor,
    attn_history: torch.Tensor | None,
    weights: torch.Tensor | None,
    row: int,
    lp: float,
    eos_lp: float,
) -> Hypothesis:
    """The hypothesis of `row` ended by EOS (log-prob `lp`, the EOS's own `eos_lp`); its
    score and attention are set by `_ended`."""
    attention = None
    if attn_history is not None and weights is not None:
        attention = torch.cat([attn_history[row], weights[row][None]])
    return Hypothesis(history[row].tolist(), lp, lp, attention, lp_history[row].tolist() + [eos_lp])


def _ended(hyp: Hypothesis, step: int, opts: SearchOptions, src_len: torch.Tensor) -> Hypothesis:
    hyp.score = opts.normalize(hyp.log_prob, step + 1)
    hyp.attention = _trim(hyp.attention, src_len)
    return hyp


def constrained_id_batches(
    model: SearchModel,
    src_ids: list[list[int]],
    constraints: list[list[list[int]]],
    opts: SearchOptions,
    batch_tokens: int = 4096,
    word_pieces: torch.Tensor | None = None,
) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
    """`search_id_batches` with each sentence's constraints: in every token-budget batch,
    the sentences with constraints are searched by `constrained_beam_search`, the others by
    the plain search (greedy or beam, as asked), so that a glossary leaves the outputs and
    speed of sentences without its terms as they were."""
    device = next(model.parameters()).device
    plan = plan_batches([len(s) for s in src_ids], [0] * len(src_ids), batch_tokens)
    for idxs in plan:
        found: dict[int, list[Hypothesis]] = {}
        with_c = [i for i in idxs if constraints[i]]
        without = [i for i in idxs if not constraints[i]]
        if without:
            found.update(zip(without, search_batch(model, [src_ids[i] for i in without], opts)))
        # sentences that need the same beam are searched together: a sentence's beam
        # depends on its own constraints only, so the batch does not change its result
        widths = {i: beam_width(opts, len(constraints[i])) for i in with_c}
        for k in sorted(set(widths.values())):
            group = [i for i in with_c if widths[i] == k]
            src, src_lengths = source_tensor([src_ids[i] for i in group])
            hyps = constrained_beam_search(
                model, src.to(device), src_lengths, opts, [constraints[i] for i in group],
                word_pieces.to(device) if word_pieces is not None else None, beam=k,
            )  # fmt: skip
            found.update(zip(group, hyps))
        yield idxs, [found[i] for i in idxs]
