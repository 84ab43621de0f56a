"""Lexically constrained beam search (nmt/constraints.py) on a trained model: every output
holds its constraints, none is the plain beam search, a batch equals one sentence at a time."""

from __future__ import annotations

import random

import pytest
import torch

from nmt.batching import source_tensor
from nmt.checkpoint import load_checkpoint
from nmt.constraints import bank_sizes, constrained_beam_search
from nmt.search import SearchOptions, beam_search
from nmt.terms import word_pieces


@pytest.fixture(scope="module")
def model_and_sentences(trained, toy_dir):
    ckpt = load_checkpoint(trained)
    sentences = (toy_dir / "test.en").read_text().splitlines()[:12]
    return ckpt, ckpt.tokenizer.encode_src(sentences)


def _constraints(tokenizer, n_sentences: int) -> list[list[list[int]]]:
    """0 to 3 constraints a sentence, one to three pieces each, drawn from real words."""
    words = ["gato", "chave", "2017", "livros amarelos", "feliz", "cavalo", "doze"]
    rng = random.Random(3)
    return [tokenizer.encode_tgt(rng.sample(words, rng.randint(0, 3))) for _ in range(n_sentences)]


def _contains(tokens: list[int], phrase: list[int]) -> bool:
    return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens)))


@pytest.mark.parametrize("beam_size", [1, 5])
def test_every_output_holds_its_constraints(model_and_sentences, beam_size):
    ckpt, ids = model_and_sentences
    constraints = _constraints(ckpt.tokenizer, len(ids))
    src, lengths = source_tensor(ids)
    found = constrained_beam_search(
        ckpt.model, src, lengths, SearchOptions(beam_size=beam_size, nbest=1), constraints
    )
    for hyps, cs in zip(found, constraints):
        assert all(_contains(hyps[0].tokens, c) for c in cs), (hyps[0].tokens, cs)
        lp = hyps[0].token_log_probs
        assert lp is not None and sum(lp) == pytest.approx(hyps[0].log_prob, abs=1e-4)


def test_a_batch_gives_the_outputs_of_one_sentence_at_a_time(model_and_sentences):
    ckpt, ids = model_and_sentences
    constraints = _constraints(ckpt.tokenizer, len(ids))
    glue = torch.tensor(word_pieces(ckpt.tokenizer))
    opts = SearchOptions(beam_size=5, nbest=2)
    src, lengths = source_tensor(ids)
    batch = constrained_beam_search(ckpt.model, src, lengths, opts, constraints, glue, beam=5)
    for seq, cs, hyps in zip(ids, constraints, batch):
        one = constrained_beam_search(ckpt.model, *source_tensor([seq]), opts, [cs], glue, beam=5)[
            0
        ]
        assert [h.tokens for h in one] == [h.tokens for h in hyps]
        assert [h.score for h in one] == pytest.approx([h.score for h in hyps], abs=1e-5)


def test_without_constraints_it_is_the_plain_beam_search(model_and_sentences):
    ckpt, ids = model_and_sentences
    src, lengths = source_tensor(ids)
    opts = SearchOptions(beam_size=5, nbest=3)
    plain = beam_search(ckpt.model, src, lengths, opts)
    found = constrained_beam_search(ckpt.model, src, lengths, opts, [[] for _ in ids])
    assert [[h.tokens for h in hs] for hs in found] == [[h.tokens for h in hs] for hs in plain]


def test_no_piece_continues_the_word_of_a_met_constraint(model_and_sentences):
    ckpt, ids = model_and_sentences
    tok = ckpt.tokenizer
    glue = word_pieces(tok)
    constraints = [[tok.encode_tgt(["gat"])[0]] for _ in ids]  # "gato" would continue it
    src, lengths = source_tensor(ids)
    found = constrained_beam_search(
        ckpt.model, src, lengths, SearchOptions(beam_size=5), constraints, torch.tensor(glue)
    )
    for hyps, (c,) in zip(found, constraints):
        tokens = hyps[0].tokens
        ends = [i + len(c) for i in range(len(tokens)) if tokens[i : i + len(c)] == c]
        assert ends and all(e == len(tokens) or not glue[tokens[e]] for e in ends)


def test_bank_sizes_fill_the_beam_from_the_banks_that_have_candidates():
    assert bank_sizes(5, [9, 9]) == [2, 3]
    assert bank_sizes(5, [9, 1]) == [4, 1]
    assert bank_sizes(4, [0, 9, 9]) == [0, 1, 3]
    assert bank_sizes(2, [9, 0, 0, 0]) == [2, 0, 0, 0]
    assert sum(bank_sizes(7, [3, 0, 2, 5])) == 7
