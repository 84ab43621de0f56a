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
constraint; one whose model would end it now (from then on), or with exactly as many steps
left as constraint tokens to go, may only take those (no filler while a term waits): so
the search always ends with every constraint met (the length limit grows by the
constraints' tokens).

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


def beam_width(opts: SearchOptions) -> int:
    """The beam of a sentence with constraints: MIN_BEAM at least, else the beam asked for
    (the same for every sentence, so that a batch is searched as one)."""
    return max(opts.beam_size, MIN_BEAM)


@dataclass(frozen=True)
class Progress:
    """What a hypothesis has met of its sentence's constraints."""

    met: frozenset[int] = frozenset()  # constraints produced whole
    phrase: int = -1  # the constraint it is in the middle of (-1: none)
    position: int = 0  # tokens of that constraint produced so far
    tokens_met: int = 0  # constraint tokens produced: the hypothesis's bank
    ended: bool = False  # its last token ended a constraint
    closing: bool = False  # its model would have ended it: constraint tokens only, then EOS

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
                    return Progress(self.met | {self.phrase}, -1, 0, done, True, self.closing)
                return Progress(self.met, self.phrase, self.position + 1, done, False, self.closing)
            # the phrase was left: it starts over
            base = Progress(self.met, tokens_met=self.tokens_met - self.position)
        else:
            base = Progress(self.met, tokens_met=self.tokens_met)
        for i, c in enumerate(constraints):
            if i not in base.met and c[0] == token:
                done = base.tokens_met + 1
                if len(c) == 1:
                    return Progress(base.met | {i}, -1, 0, done, True, self.closing)
                return Progress(base.met, i, 1, done, False, self.closing)
        return base

    def closed(self) -> Progress:
        """The same progress, from now on taking constraint tokens only."""
        return Progress(self.met, self.phrase, self.position, self.tokens_met, self.ended, True)

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
    Searched with a beam of `beam` (0: `beam_width`). `word_pieces` (V,) bool: the pieces
    that may not follow a constraint (they would continue its last word)."""
    k, device = beam or beam_width(opts), src.device
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
    # done at `nbest` finished hypotheses that no open one beats (the plain search waits for
    # K): an open hypothesis here still owes its constraints, which only lower its score
    finished = _Finished(batch, opts.nbest, device)
    step = 0
    while active:
        log_probs, state, weights = model.decode_step(state, prev, enc)  # (R, V)
        if weights is None:
            attn_history = None
        at_max = torch.tensor([limits[s] <= step for s in active]).repeat_interleave(width)
        _mask_special(log_probs, step, opts.min_len, at_max.to(device))
        rows_lp = beam_lp.tolist()
        if word_pieces is not None:  # nothing continues the last word of a constraint
            glued = [r for r, p in enumerate(progress) if p.ended]
            if glued:
                log_probs[glued] = log_probs[glued].masked_fill(word_pieces, NEG_INF)
        wants_end = (log_probs.argmax(-1) == EOS).tolist()  # (R,)
        # the candidates each sentence's rows give, and their tokens' log-probs in one gather
        cand: list[list[tuple[int, int]]] = []
        owing: list[int] = []  # rows that may not end: a constraint is not met
        only: list[tuple[int, list[int]]] = []  # rows that may take constraint tokens only
        closing: set[int] = set()  # rows whose model would end them here
        for i, sent in enumerate(active):
            cs = constraints[sent]
            pairs: list[tuple[int, int]] = []
            for r in range(i * width, (i + 1) * width):
                p = progress[r]
                left, steps_left = p.left(cs), limits[sent] - step
                if left:
                    owing.append(r)
                    # a row whose model would end here, or with just the steps its constraints
                    # need left, takes them now: no filler while a term waits for the end
                    if p.closing or wants_end[r] or left >= steps_left:
                        if wants_end[r]:
                            closing.add(r)
                        only.append((r, p.advancing(cs) if left <= steps_left else []))
                pairs += [(r, t) for t in p.advancing(cs)]
            cand.append(pairs)
        if owing:
            log_probs[owing, EOS] = NEG_INF
        for r, keep in only:
            allowed_lp = log_probs[r, keep].clone()
            log_probs[r] = NEG_INF
            log_probs[r, keep] = allowed_lp
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
            candidates = [
                (score, r, t, lp, progress[r] if t == EOS else progress[r].after(t, cs))
                if r not in closing
                else (score, r, t, lp, progress[r].closed().after(t, cs))
                for score, r, t, lp in scored
            ]
            # an EOS (finite only where every constraint is met) finishes when the banks keep
            # it: Post & Vilar's beam holds finished hypotheses too, and a global top K would
            # let the open ones that still owe a constraint crowd every finished one out
            for score, r, t, lp, _ in _allocate(candidates, k, len(cs)):
                if t == EOS:
                    hyp = _hypothesis(history, lp_history, attn_history, weights, r, score, lp)
                    finished.add(sent, _ended(hyp, step, opts, src_lengths[sent]))
            kept = _allocate([c for c in candidates if c[2] != EOS], k, len(cs))
            # the best an open hypothesis may still score: its log-prob (which only falls) at
            # the earliest end its constraints allow ("early"), or at the max length
            bound = max(
                (
                    opts.normalize(c[0], limits[sent] + 1.0)
                    if opts.stopping == "exact"
                    else opts.normalize(c[0], step + 2.0 + c[4].left(cs))
                    for c in kept
                ),
                default=NEG_INF,
            )
            done = (
                not kept
                or kept[0][0] == NEG_INF
                or float(finished.kth_best[sent]) >= bound
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
    bank (candidates that met as many constraints) its share of the beam (`bank_sizes`).
    With K or more constraints the top banks are one (K - 1 met or more): each bank keeps a
    place, that of the hypotheses that met none included."""
    top = min(total, k - 1)
    banks: list[list[tuple[float, int, int, float, Progress]]] = [[] for _ in range(top + 1)]
    for c in opened:  # sorted best first, so each bank is too
        banks[min(len(c[4].met), top)].append(c)
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
        if with_c:
            src, src_lengths = source_tensor([src_ids[i] for i in with_c])
            hyps = constrained_beam_search(
                model, src.to(device), src_lengths, opts, [constraints[i] for i in with_c],
                word_pieces.to(device) if word_pieces is not None else None,
            )  # fmt: skip
            found.update(zip(with_c, hyps))
        yield idxs, [found[i] for i in idxs]
