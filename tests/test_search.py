"""Tests for the searches: exactness on scripted log-probabilities, and on a trained model of
each architecture (RNN, Transformer) beam 1 == greedy, batch-size independence, scores that
re-score, n-best and attention.

One definition of the search, two implementations: every test that searches runs against
torch's (nmt/search.py) and the runtime's numpy search (nmt/runtime/search.py), the latter
over the scripted model seen through numpy arrays and over the trained models' exported
ONNX graphs."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import zlib

import pytest
import torch

from nmt import NmtError
from nmt.batching import padding_mask, source_tensor
from nmt.candidates import (
    best_in_rows,
    best_in_rows_reference,
    block_size,
    top_candidates,
    top_candidates_reference,
)
from nmt.checkpoint import load_checkpoint
from nmt.config import config_from_dict
from nmt.decoder import DecoderState, EncoderOut, select
from nmt.model import Seq2Seq
from nmt.runtime import search as array_search
from nmt.runtime.folder import read_manifest
from nmt.runtime.model import OnnxModel
from nmt.search import (
    SearchOptions,
    beam_search,
    greedy,
    max_lengths,
    score_tokens,
    search_ids,
)
from nmt.tokenizer import BOS, EOS, PAD, UNK

NEG_INF = float("-inf")
VOCAB = 6  # pad, unk, bos, eos and two words
WORDS = (UNK, 4, 5)  # every id a search may output besides EOS
PENALTIES = [0, 1.0, "avg"]


class ScriptedModel:
    """A stand-in for Seq2Seq whose next-token distribution is a fixed random function of
    (source, output prefix). The decoder state's hidden carries the prefix.

    PAD and BOS get the highest scores of all, so a search that forgets to mask them shows it;
    `words` limits which tokens (besides EOS) get a finite log-probability.
    """

    def __init__(self, seed: int = 0, words: tuple[int, ...] = WORDS, max_steps: int = 32):
        self.seed, self.words, self.max_steps = seed, words, max_steps
        self.calls = 0
        self.rows: list[tuple[int, int]] = []  # (decoder rows, encoder rows) of each step

    def _random(self, key: tuple, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(repr((self.seed, key)).encode()))
        return torch.randn(n, generator=g)

    def log_probs(self, src: tuple[int, ...], prefix: tuple[int, ...]) -> torch.Tensor:
        logits = self._random(("lp", src, prefix), VOCAB) * 2
        allowed = torch.zeros(VOCAB, dtype=torch.bool)
        allowed[list(self.words) + [EOS]] = True
        logits = logits.masked_fill(~allowed, NEG_INF)
        out = logits.log_softmax(-1)
        # probability mass on PAD and BOS that search must ignore (not renormalized away)
        out[PAD] = out[BOS] = 0.0
        return out

    def attention(self, src: tuple[int, ...], prefix: tuple[int, ...], width: int):
        scores = torch.full((width,), NEG_INF)
        scores[: len(src)] = self._random(("att", src, prefix), len(src))
        return scores.softmax(-1)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor):
        mask = padding_mask(src_lengths, src.size(1))
        enc = EncoderOut(None, src[:, :, None], mask)  # values carry the source ids
        history = torch.full((1, src.size(0), self.max_steps), -1, dtype=torch.long)
        return enc, DecoderState(history, torch.zeros(src.size(0), 1))

    def decode_step(
        self, state: DecoderState, prev: torch.Tensor, enc: EncoderOut, normalize: bool = True
    ):
        # log-probabilities even when not asked to normalize: the argmax is the same
        self.calls += 1
        history = state.hidden.clone()  # (1, R, steps)
        rows = history.size(1)
        self.rows.append((rows, enc.values.size(0)))
        per = rows // enc.values.size(0)  # beam search: enc has one row a sentence
        step = int((history[0, 0] >= 0).sum())
        history[0, :, step] = prev
        log_probs, weights = [], []
        for r in range(rows):
            src = tuple(enc.values[r // per, enc.mask[r // per], 0].tolist())
            prefix = tuple(t for t in history[0, r, : step + 1].tolist() if t != BOS)
            log_probs.append(self.log_probs(src, prefix))
            weights.append(self.attention(src, prefix, enc.mask.size(1)))
        return torch.stack(log_probs), DecoderState(history, state.att_vec), torch.stack(weights)

    def select_state(self, state: DecoderState, rows: torch.Tensor) -> DecoderState:
        return select(state, rows)

    def select_encoded(self, enc: EncoderOut, sentences: torch.Tensor) -> EncoderOut:
        return select(enc, sentences)

    def sequence_log_prob(self, src: tuple[int, ...], tokens: tuple[int, ...]) -> float:
        lp = 0.0
        for t in range(len(tokens) + 1):
            nxt = tokens[t] if t < len(tokens) else EOS
            lp += float(self.log_probs(src, tokens[:t])[nxt])
        return lp


def _exhaustive(model: ScriptedModel, src: tuple[int, ...], opts: SearchOptions):
    """Every allowed output ranked by score: [(score, log_prob, tokens)], best first."""
    limit = int(max_lengths(torch.tensor([len(src) + 1]), opts)[0])
    ranked = []
    for n in range(opts.min_len, limit + 1):
        for tokens in itertools.product(model.words, repeat=n):
            lp = model.sequence_log_prob(src, tokens)
            if lp > NEG_INF:
                ranked.append((float(opts.normalize(torch.tensor(lp), n + 1)), lp, tokens))
    ranked.sort(key=lambda x: -x[0])
    return ranked


SOURCES = [[4], [5, 4, 4], [4, 5], [5, 5, 5, 4, 1]]


class TorchAsArrays:
    """A torch search model seen through numpy arrays, for the runtime's search: its states
    stay torch objects, which the search only passes back (it picks rows through the model)."""

    def __init__(self, model) -> None:
        self.model = model

    def encode(self, src, src_lengths):
        return self.model.encode(torch.from_numpy(src), torch.from_numpy(src_lengths))

    def decode_step(self, state, prev, enc):
        log_probs, state, weights = self.model.decode_step(state, torch.from_numpy(prev), enc)
        weights = None if weights is None else weights.detach().numpy()
        return log_probs.detach().numpy().copy(), state, weights

    def select_state(self, state, rows):
        return self.model.select_state(state, torch.from_numpy(rows))

    def select_encoded(self, enc, sentences):
        return self.model.select_encoded(enc, torch.from_numpy(sentences))


class Search:
    """greedy, beam search and search_ids of one implementation: "torch" or "runtime"."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self, fn: str, model, sources, opts):
        if self.name == "torch":
            src, src_lengths = source_tensor(sources)
            return {"greedy": greedy, "beam": beam_search}[fn](model, src, src_lengths, opts)
        src_a, lengths_a = array_search.source_array(sources)
        run = {"greedy": array_search.greedy, "beam": array_search.beam_search}[fn]
        return run(self.arrays(model), src_a, lengths_a, opts)

    def arrays(self, model):
        return model if isinstance(model, OnnxModel) else TorchAsArrays(model)

    def search_ids(self, model, sources, opts, batch_tokens: int = 4096):
        if self.name == "torch":
            return search_ids(model, sources, opts, batch_tokens=batch_tokens)
        return array_search.search_ids(self.arrays(model), sources, opts, batch_tokens)


@pytest.fixture(params=["torch", "runtime"])
def search(request) -> Search:
    return Search(request.param)


@pytest.mark.parametrize("length_penalty", PENALTIES)
@pytest.mark.parametrize("min_len", [0, 2])
def test_large_beam_equals_exhaustive_search(search, length_penalty, min_len) -> None:
    model = ScriptedModel(seed=1)
    # at most 3 output tokens: 40 sequences, so a beam of 40 loses nothing
    opts = SearchOptions(
        beam_size=40,
        nbest=40,
        length_penalty=length_penalty,
        max_len_ratio=0.0,
        max_len_offset=3,
        min_len=min_len,
        stopping="exact",
    )
    results = search("beam", model, SOURCES, opts)
    for src, hyps in zip(SOURCES, results):
        ranked = _exhaustive(model, tuple(src + [EOS]), opts)
        assert len(hyps) == len(ranked)
        best_score, best_lp, best_tokens = ranked[0]
        assert tuple(hyps[0].tokens) == best_tokens
        assert hyps[0].score == pytest.approx(best_score, abs=1e-5)
        assert hyps[0].log_prob == pytest.approx(best_lp, abs=1e-5)
        # the whole n-best list is the exhaustive ranking
        assert [h.score for h in hyps] == pytest.approx([r[0] for r in ranked], abs=1e-5)
        assert {tuple(h.tokens) for h in hyps} == {r[2] for r in ranked}


@pytest.mark.parametrize("length_penalty", PENALTIES)
@pytest.mark.parametrize("beam_size", [2, 3])
def test_early_stopping_keeps_the_best(search, length_penalty, beam_size) -> None:
    # one word besides EOS: one open hypothesis per step, so nothing is ever pruned by the
    # beam width and only the stopping rule decides; it must never stop too soon
    model = ScriptedModel(seed=2, words=(4,))
    opts = SearchOptions(
        beam_size=beam_size,
        nbest=beam_size,
        length_penalty=length_penalty,
        max_len_ratio=0.0,
        max_len_offset=12,
        stopping="exact",
    )
    sources = [[4, 5], [5], [1, 4, 4, 5]]
    model.calls = 0
    results = search("beam", model, sources, opts)
    for src, hyps in zip(sources, results):
        ranked = _exhaustive(model, tuple(src + [EOS]), opts)
        assert [tuple(h.tokens) for h in hyps] == [r[2] for r in ranked[:beam_size]]
        expected = [r[0] for r in ranked[:beam_size]]
        assert [h.score for h in hyps] == pytest.approx(expected, abs=1e-5)
    if length_penalty == 0:
        assert model.calls < 13  # raw log-probabilities: it stops before the max length


@pytest.mark.parametrize("beam_size", [2, 5])
def test_early_stopping_is_exact_without_length_penalty(search, beam_size) -> None:
    # without a length penalty an open hypothesis can only get worse, so "early" loses nothing
    model = ScriptedModel(seed=3)
    opts = dict(beam_size=beam_size, nbest=beam_size, length_penalty=0, max_len_offset=8)
    early = search("beam", model, SOURCES, SearchOptions(**opts, stopping="early"))
    exact = search("beam", model, SOURCES, SearchOptions(**opts, stopping="exact"))

    def tokens(results):
        return [[h.tokens for h in hyps] for hyps in results]

    assert tokens(early) == tokens(exact)


def test_beam_rows_one_a_sentence_at_first_then_k_over_one_encoder_row(search) -> None:
    model = ScriptedModel(seed=5)
    opts = SearchOptions(beam_size=3, max_len_ratio=0.0, max_len_offset=6)
    search("beam", model, SOURCES, opts)
    n = len(SOURCES)
    assert model.rows[0] == (n, n)  # the beams of a sentence start from one BOS state
    for rows, enc_rows in model.rows[1:]:
        assert rows == 3 * enc_rows  # K rows a sentence, its encoder outputs held once
    assert model.rows[1] == (3 * n, n)


def test_early_stopping_stops_sooner_with_a_length_penalty(search) -> None:
    model = ScriptedModel(seed=2, words=(4,))
    opts = dict(beam_size=2, length_penalty=1.0, max_len_ratio=0.0, max_len_offset=12)
    calls = {}
    for stopping in ("early", "exact"):
        model.calls = 0
        search("beam", model, [[4, 5]], SearchOptions(**opts, stopping=stopping))
        calls[stopping] = model.calls
    assert calls["early"] < calls["exact"]


@pytest.mark.parametrize("fn", ["greedy", "beam"])
@pytest.mark.parametrize("min_len", [0, 1, 3, 6])
def test_min_len_and_special_tokens(search, fn, min_len) -> None:
    model = ScriptedModel(seed=3)
    opts = SearchOptions(beam_size=4, nbest=4, min_len=min_len, max_len_offset=4)
    results = search(fn, model, SOURCES, opts)
    limits = max_lengths(torch.tensor([len(s) + 1 for s in SOURCES]), opts).tolist()
    for hyps, limit in zip(results, limits):
        assert hyps
        for h in hyps:
            assert min_len <= len(h.tokens) <= limit
            assert not {PAD, BOS, EOS} & set(h.tokens)


def test_greedy_takes_the_most_probable_token(search) -> None:
    model = ScriptedModel(seed=4)
    opts = SearchOptions(beam_size=1, max_len_offset=6, length_penalty=0)
    for src, hyps in zip(SOURCES, search("greedy", model, SOURCES, opts)):
        key, tokens = tuple(src + [EOS]), ()
        while True:
            lp = model.log_probs(key, tokens)
            lp[PAD] = lp[BOS] = NEG_INF
            if len(tokens) == 6:
                break
            nxt = int(lp.argmax())
            if nxt == EOS:
                break
            tokens += (nxt,)
        assert tuple(hyps[0].tokens) == tokens
        assert hyps[0].log_prob == pytest.approx(model.sequence_log_prob(key, tokens), abs=1e-5)


def test_scripted_beam_one_equals_greedy(search) -> None:
    # beam search with one beam may finish only its best candidate, as greedy does
    model = ScriptedModel(seed=7)
    rng = random.Random(7)
    sources = [[rng.choice(WORDS) for _ in range(rng.randint(1, 5))] for _ in range(40)]
    opts = SearchOptions(beam_size=1, length_penalty=0, max_len_offset=5)
    g = search("greedy", model, sources, opts)
    b = search("beam", model, sources, opts)
    assert [h[0].tokens for h in b] == [h[0].tokens for h in g]
    assert [h[0].log_prob for h in b] == pytest.approx([h[0].log_prob for h in g], abs=1e-5)


@pytest.mark.parametrize("fn", ["greedy", "beam"])
@pytest.mark.parametrize("length_penalty", PENALTIES)
def test_scripted_batch_equals_one_by_one(search, fn, length_penalty) -> None:
    # sentences finish at different steps and leave the batch; the rest must not notice
    model = ScriptedModel(seed=5)
    sources = [s for s in SOURCES for _ in range(2)] + [[5] * 9, [1]]
    random.Random(0).shuffle(sources)
    opts = SearchOptions(beam_size=3, nbest=3, length_penalty=length_penalty, max_len_offset=3)
    batched = search(fn, model, sources, opts)
    for src, hyps in zip(sources, batched):
        (alone,) = search(fn, model, [src], opts)
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        # exact: the scripted log-probabilities are a function of each row alone and search
        # only adds them elementwise, so no sum is blocked differently in another batch
        assert [h.score for h in hyps] == [h.score for h in alone]


@pytest.mark.parametrize("fn", ["greedy", "beam"])
def test_scripted_attention_belongs_to_the_hypothesis(search, fn) -> None:
    model = ScriptedModel(seed=6)
    opts = SearchOptions(beam_size=3, nbest=3, max_len_offset=4, return_attention=True)
    for src, hyps in zip(SOURCES, search(fn, model, SOURCES, opts)):
        key = tuple(src + [EOS])
        for h in hyps:
            expected = torch.stack(
                [
                    model.attention(key, tuple(h.tokens[:t]), len(key))
                    for t in range(len(h.tokens) + 1)
                ]
            )
            assert h.attention.shape == (len(h.tokens) + 1, len(key))
            assert torch.allclose(torch.as_tensor(h.attention), expected, atol=1e-6)


def test_return_attention_without_attention_gives_none(search) -> None:
    torch.manual_seed(0)
    config = config_from_dict({"model": {"attention": "none", "embed_dim": 8, "hidden_size": 8}})
    model = Seq2Seq(config.model, src_vocab=12, tgt_vocab=12).eval()
    for fn in ("greedy", "beam"):
        opts = SearchOptions(beam_size=2, nbest=2, max_len_offset=3, return_attention=True)
        for hyps in search(fn, model, [[4, 5, 6], [7]], opts):
            assert hyps and all(h.attention is None for h in hyps)


# ---- on a trained model -------------------------------------------------------------------


@dataclasses.dataclass
class Trained:
    search: Search
    model: object  # what the search runs: the torch model or its exported graphs
    torch: torch.nn.Module  # the torch model, which rescoring and forward need
    ids: list[list[int]]


@pytest.fixture(
    scope="module",
    params=["rnn-torch", "rnn-runtime", "transformer-torch", "transformer-runtime"],
)
def model_and_ids(request, toy_dir) -> Trained:
    """A trained model of each architecture, searched by torch or by the runtime (its
    exported graphs), and 200 toy test sentences as its source ids."""
    arch, implementation = request.param.split("-")
    ckpt = load_checkpoint(
        request.getfixturevalue("trained" if arch == "rnn" else "trained_transformer")
    )
    lines = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:200]
    ids = [seq for seq in ckpt.tokenizer.encode_src(lines) if seq]
    model: object = ckpt.model
    if implementation == "runtime":
        folder = request.getfixturevalue("exported" if arch == "rnn" else "exported_transformer")
        model = OnnxModel(folder, read_manifest(folder), threads=1)
    return Trained(Search(implementation), model, ckpt.model, ids)


def test_beam_one_equals_greedy(model_and_ids) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    g = t.search("greedy", model, ids, SearchOptions(beam_size=1))
    b = t.search("beam", model, ids, SearchOptions(beam_size=1, length_penalty=0))
    assert [h[0].tokens for h in b] == [h[0].tokens for h in g]
    assert [h[0].log_prob for h in b] == pytest.approx([h[0].log_prob for h in g], abs=1e-4)


def test_greedy_without_scores_takes_the_same_tokens(model_and_ids) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    scored = t.search("greedy", model, ids, SearchOptions(beam_size=1))
    unscored = t.search("greedy", model, ids, SearchOptions(beam_size=1, scores=False))
    assert [h[0].tokens for h in unscored] == [h[0].tokens for h in scored]
    assert all(math.isnan(h[0].log_prob) and math.isnan(h[0].score) for h in unscored)


def _mixed_inputs(ids: list[list[int]]) -> list[list[int]]:
    """64 test sentences, shuffled, among them much longer (three joined) and much shorter
    (one token) ones."""
    mixed = ids[:56] + [ids[i] + ids[i + 1] + ids[i + 2] for i in range(60, 72, 3)]
    mixed += [[tok] for tok in ids[80][:4]]
    random.Random(0).shuffle(mixed)
    return mixed


@pytest.mark.parametrize("beam_size", [1, 5])
def test_batch_size_does_not_change_results(model_and_ids, beam_size) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    sentences = _mixed_inputs(ids)
    opts = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 3))
    fn = "greedy" if beam_size == 1 else "beam"
    runs = []
    for size in (1, 7, 64):
        # another order for every batch size
        order = list(range(len(sentences)))
        random.Random(size).shuffle(order)
        shuffled = [sentences[i] for i in order]
        out = []
        for i in range(0, len(shuffled), size):
            out += t.search(fn, model, shuffled[i : i + size], opts)
        runs.append([out[order.index(i)] for i in range(len(sentences))])
    # search_ids sorts by length into token-budget batches: another grouping again
    runs.append(t.search.search_ids(model, sentences, opts, batch_tokens=300))
    reference = runs[0]
    for other in runs[1:]:
        for a, b in zip(reference, other):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
            # a log-probability sums 20+ float32 steps whose matmuls block differently per
            # batch size: 1e-5 or one part in a million of the sum, whichever is larger
            lps = [h.log_prob for h in b]
            assert [h.log_prob for h in a] == pytest.approx(lps, abs=1e-5, rel=1e-6)


@pytest.mark.parametrize("beam_size", [1, 5])
def test_log_prob_equals_teacher_forced_rescoring(model_and_ids, beam_size) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    sentences = ids[:60]
    fn = "greedy" if beam_size == 1 else "beam"
    opts = SearchOptions(beam_size=beam_size, nbest=beam_size)
    results = t.search(fn, model, sentences, opts)
    src_rows = [s for s, hyps in zip(sentences, results) for _ in hyps]
    outputs = [h.tokens for hyps in results for h in hyps]
    src, src_lengths = source_tensor(src_rows)
    rescored = score_tokens(t.torch, src, src_lengths, outputs)
    found = [h.log_prob for hyps in results for h in hyps]
    assert found == pytest.approx(rescored, abs=1e-4)


def test_beam_finds_more_probable_outputs_than_greedy(model_and_ids) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    g = t.search("greedy", model, ids, SearchOptions(beam_size=1, length_penalty=0))
    b = t.search("beam", model, ids, SearchOptions(beam_size=5, length_penalty=0))
    mean_g = sum(h[0].log_prob for h in g) / len(g)
    mean_b = sum(h[0].log_prob for h in b) / len(b)
    # where both find the same output, its log-probability still differs in float32 rounding
    # (beam search's matmuls have K rows a sentence, greedy's one): the tolerance of
    # test_batch_size_does_not_change_results, 1e-5 or one part in a million
    assert mean_b >= mean_g - max(1e-5, 1e-6 * abs(mean_g))


@pytest.mark.parametrize("length_penalty", PENALTIES)
def test_nbest_is_sorted_and_starts_with_the_one_best(model_and_ids, length_penalty) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    sentences = ids[:25]
    opts = SearchOptions(beam_size=5, length_penalty=length_penalty)
    one = t.search("beam", model, sentences, opts)
    many = t.search("beam", model, sentences, dataclasses.replace(opts, nbest=5))
    for a, hyps in zip(one, many):
        assert len(a) == 1 and 1 <= len(hyps) <= 5
        assert hyps[0].tokens == a[0].tokens and hyps[0].score == a[0].score
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)  # no duplicates
        for h in hyps:
            expected = opts.normalize(torch.tensor(h.log_prob), len(h.tokens) + 1)
            assert h.score == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 5])
def test_attention_is_that_of_the_returned_output(model_and_ids, beam_size) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    sentences = ids[:12] + [ids[12] + ids[13]]
    fn = "greedy" if beam_size == 1 else "beam"
    opts = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 3), return_attention=True)
    results = t.search(fn, model, sentences, opts)
    for src_ids, hyps in zip(sentences, results):
        src, src_lengths = source_tensor([src_ids])
        for h in hyps:
            assert h.attention.shape == (len(h.tokens) + 1, len(src_ids) + 1)
            attention = torch.as_tensor(h.attention)
            assert torch.allclose(attention.sum(-1), torch.ones(len(h.tokens) + 1), atol=1e-5)
            tgt_in = torch.tensor([[BOS] + h.tokens])
            with torch.inference_mode():
                _, att = t.torch(src, src_lengths, tgt_in, return_attention=True)
            assert torch.allclose(attention, att[0], atol=1e-4)


def test_search_ids_keeps_input_order(model_and_ids) -> None:
    t = model_and_ids
    model, ids = t.model, t.ids
    sentences = _mixed_inputs(ids)
    opts = SearchOptions(beam_size=1)
    by_batch = t.search.search_ids(model, sentences, opts, batch_tokens=200)
    alone = [t.search("greedy", model, [s], opts)[0] for s in sentences[:12]]
    assert [h[0].tokens for h in by_batch[:12]] == [h[0].tokens for h in alone]
    assert t.search.search_ids(model, [], opts) == []


def test_max_lengths_follow_the_options() -> None:
    opts = SearchOptions(max_len_ratio=1.5, max_len_offset=2, min_len=0)
    # source lengths include EOS: 1 token -> floor(1.5) + 2
    assert max_lengths(torch.tensor([2, 1, 11]), opts).tolist() == [3, 2, 17]
    # at least one token, and at least min_len
    no_room = SearchOptions(max_len_ratio=0, max_len_offset=0)
    assert max_lengths(torch.tensor([1]), no_room).tolist() == [1]
    long_min = SearchOptions(max_len_offset=0, min_len=5)
    assert max_lengths(torch.tensor([1]), long_min).tolist() == [5]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("beam_size", 0, "beam_size must be a whole number >= 1, got 0"),
        ("beam_size", 2.5, "beam_size must be"),
        ("nbest", 0, "nbest must be a whole number >= 1"),
        ("nbest", 6, r"nbest must be between 1 and the beam size \(5\), got 6"),
        ("length_penalty", float("nan"), "length_penalty must be a number >= 0"),
        ("length_penalty", float("inf"), "length_penalty must be a number >= 0"),
        ("length_penalty", "-inf", "length_penalty must be a number >= 0"),
        ("length_penalty", -1.0, "length_penalty must be a number >= 0"),
        ("length_penalty", "long", "length_penalty .* or avg, got 'long'"),
        # past these the penalty ((5 + length) / 6) ** alpha and the length limit overflow
        ("length_penalty", 500.0, "length_penalty must be at most 10, got 500"),
        ("length_penalty", "1e308", "length_penalty must be at most 10"),
        ("max_len_ratio", 1e308, "max_len_ratio must be at most 100"),
        ("max_len_ratio", float("nan"), "max_len_ratio must be a finite number >= 0"),
        ("max_len_ratio", float("inf"), "max_len_ratio must be a finite number >= 0"),
        ("max_len_ratio", -0.5, "max_len_ratio must be"),
        ("max_len_offset", -1, "max_len_offset must be"),
        ("min_len", -1, "min_len must be a whole number >= 0, got -1"),
        ("stopping", "late", "stopping must be early or exact, got 'late'"),
    ],
)
def test_search_options_check_themselves(name, value, message) -> None:
    with pytest.raises(NmtError, match=message):
        SearchOptions(**{name: value})
    with pytest.raises(NmtError, match=message):  # a changed copy is checked too
        dataclasses.replace(SearchOptions(), **{name: value})


def test_search_options_read_a_length_penalty_written_as_text() -> None:
    assert SearchOptions(length_penalty="0.6").length_penalty == 0.6
    assert SearchOptions(length_penalty="avg").length_penalty == "avg"
    assert SearchOptions(length_penalty=0).normalize(-6.0, 4) == -6.0


def test_normalize_follows_the_documented_penalties() -> None:
    lp = torch.tensor(-6.0)
    assert float(SearchOptions(length_penalty=0).normalize(lp, 4)) == -6.0
    assert float(SearchOptions(length_penalty="avg").normalize(lp, 4)) == -1.5
    gnmt = float(SearchOptions(length_penalty=1.0).normalize(lp, 4))
    assert gnmt == pytest.approx(-6.0 / ((5 + 4) / 6))
    assert not math.isnan(float(SearchOptions(length_penalty=0.6).normalize(lp, 1)))


@pytest.mark.parametrize("vocab", [1, 2, 7, 12, 97, 8000])
def test_block_size_divides_the_vocabulary_from_its_square_root_up(vocab) -> None:
    size = block_size(vocab)
    assert vocab % size == 0
    assert size * size >= vocab
    assert all(vocab % b for b in range(math.isqrt(vocab - 1) + 1, size))


@pytest.mark.parametrize("vocab", [1, 5, 31, 64, 8000])
def test_best_in_rows_equals_max_first_index(vocab) -> None:
    gen = torch.Generator().manual_seed(vocab)
    x = torch.randn(40, vocab, generator=gen)
    x[0] = 0.0  # all tied: the first index wins, as with max
    x[1] = float("-inf")
    x[2, -1] = x[2].max() + 1  # the best in the last block
    x[3, : vocab // 2] = float("-inf")
    x[4] = torch.randint(0, 3, (vocab,), generator=gen).float()  # ties across blocks
    best, idx = best_in_rows(x)
    ref_best, ref_idx = best_in_rows_reference(x)
    first = torch.tensor([int((row == row.max()).nonzero()[0]) for row in x])
    assert torch.equal(ref_idx, first)
    assert torch.equal(best, ref_best)
    assert torch.equal(idx, ref_idx)


def _candidate_inputs(vocab: int, width: int, n: int, ties: bool):
    gen = torch.Generator().manual_seed(vocab + width)
    log_probs = torch.randn(n * width, vocab, generator=gen).log_softmax(-1)
    log_probs[3] = float("-inf")  # a row at its max length, say: only -inf candidates
    log_probs[4, 1:] = float("-inf")
    beam_lp = -5 * torch.rand(n * width, generator=gen)
    if ties:  # few distinct values, equal across rows, blocks and sentences
        rounded = ((log_probs * 2).round() / 2).clamp(min=-3)
        log_probs = torch.where(log_probs > float("-inf"), rounded, log_probs)
        beam_lp = (beam_lp * 2).round() / 2
    return log_probs, beam_lp


@pytest.mark.parametrize(
    ("vocab", "width", "count"), [(8000, 5, 10), (31, 4, 8), (6, 3, 40), (9, 1, 4), (64, 2, 4)]
)
@pytest.mark.parametrize("ties", [False, True])
def test_top_candidates_equal_the_reference(vocab, width, count, ties) -> None:
    n = 30
    log_probs, beam_lp = _candidate_inputs(vocab, width, n, ties)
    top_lp, rows, tokens = top_candidates(log_probs, beam_lp, width, count)
    ref_lp, ref_rows, ref_tokens = top_candidates_reference(log_probs, beam_lp, width, count)
    # the same sums, best first (the same floats: each is one addition of the same two)
    assert torch.equal(top_lp, ref_lp)
    assert torch.equal(top_lp, beam_lp[rows] + log_probs[rows, tokens])
    assert ((rows // width) == torch.arange(n)[:, None]).all()  # candidates of the sentence
    # ties may come in another order, and -inf candidates be any: the same set of finite ones
    for i in range(n):
        finite = ref_lp[i] > float("-inf")
        got = set(zip(rows[i][finite].tolist(), tokens[i][finite].tolist()))
        want = set(zip(ref_rows[i][finite].tolist(), ref_tokens[i][finite].tolist()))
        if ties:  # only the candidates above the last tied value are certain
            last = ref_lp[i][finite].min() if finite.any() else None
            above = ref_lp[i] > last if last is not None else finite
            got_above = set(zip(rows[i][above].tolist(), tokens[i][above].tolist()))
            assert got_above == set(zip(ref_rows[i][above].tolist(), ref_tokens[i][above].tolist()))
            assert len(got) == len(want)
        else:
            assert got == want
