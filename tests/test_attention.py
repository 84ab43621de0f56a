"""Tests for nmt.attention: dot, general and Bahdanau attention over padded sources."""

from __future__ import annotations

import pytest
import torch

from nmt.attention import Attention, bahdanau_reference
from nmt.batching import padding_mask

KINDS = ["dot", "general", "bahdanau"]
B, S, D = 4, 7, 6


def _setup(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    query_size = D if kind == "dot" else 5  # dot needs query and key of one size
    att = Attention(kind=kind, query_size=query_size, key_size=D)
    values = torch.randn(B, S, D)  # (B, S, D)
    lengths = torch.tensor([7, 3, 1, 5])
    mask = padding_mask(lengths, S)  # (B, S)
    query = torch.randn(B, query_size) * 3  # large enough for peaked weights
    return att, query, values, mask


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_normalisation(kind: str) -> None:
    att, query, values, mask = _setup(kind)
    keys = att.project_keys(values)
    assert keys.shape[:2] == (B, S)
    context, weights = att(query, keys, values, mask)
    assert context.shape == (B, D)
    assert weights.shape == (B, S)
    assert torch.allclose(weights.sum(-1), torch.ones(B), atol=1e-6)
    assert (weights >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_padding_gets_exactly_zero_weight(kind: str) -> None:
    att, query, values, mask = _setup(kind)
    _, weights = att(query, att.project_keys(values), values, mask)
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()
    assert weights[2, 0] == 1  # a one-token source takes all the weight


@pytest.mark.parametrize("kind", KINDS)
def test_context_is_weighted_sum_of_values(kind: str) -> None:
    att, query, values, mask = _setup(kind)
    context, weights = att(query, att.project_keys(values), values, mask)
    expected = torch.einsum("bs,bsd->bd", weights, values)
    assert torch.allclose(context, expected, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_does_not_matter(kind: str) -> None:
    att, query, values, mask = _setup(kind)
    noisy = values.masked_fill(~mask[:, :, None], 1e3)
    context, weights = att(query, att.project_keys(values), values, mask)
    context2, weights2 = att(query, att.project_keys(noisy), noisy, mask)
    assert torch.equal(weights, weights2)
    assert torch.allclose(context, context2, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_sentence_alone_equals_sentence_in_padded_batch(kind: str) -> None:
    att, query, values, mask = _setup(kind)
    context, weights = att(query, att.project_keys(values), values, mask)
    n = int(mask[1].sum())
    one = values[1:2, :n]
    c1, w1 = att(query[1:2], att.project_keys(one), one, torch.ones(1, n, dtype=torch.bool))
    assert torch.allclose(w1[0], weights[1, :n], atol=1e-6)
    assert torch.allclose(c1[0], context[1], atol=1e-6)


def test_scores_follow_each_definition() -> None:
    # the weights are the softmax of the documented score functions
    for kind in KINDS:
        att, query, values, mask = _setup(kind)
        _, weights = att(query, att.project_keys(values), values, mask)
        if kind == "dot":
            scores = torch.einsum("bsd,bd->bs", values, query)
        elif kind == "general":
            scores = torch.einsum("bsh,bh->bs", att.key_proj(values), query)
        else:
            hidden = torch.tanh(att.key_proj(values) + att.query_proj(query)[:, None])
            scores = att.energy(hidden).squeeze(-1)
        expected = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        assert torch.allclose(weights, expected, atol=1e-6), kind


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown attention"):
        Attention(kind="cosine", query_size=4, key_size=4)


@pytest.mark.parametrize("kind", KINDS)
def test_several_queries_a_sentence_equal_copies_of_its_keys(kind: str) -> None:
    # beam search keeps one row of keys a sentence for its K beam rows
    att, _, values, mask = _setup(kind)
    k = 3
    query = torch.randn(B * k, D if kind == "dot" else 5)
    keys = att.project_keys(values)
    context, weights = att(query, keys, values, mask)
    rows = torch.arange(B).repeat_interleave(k)
    want_context, want_weights = att(query, keys[rows], values[rows], mask[rows])
    assert context.shape == (B * k, D) and weights.shape == (B * k, S)
    assert torch.allclose(context, want_context, atol=1e-6)
    assert torch.allclose(weights, want_weights, atol=1e-6)
    assert (weights[~mask[rows]] == 0).all()


@pytest.mark.parametrize("k", [1, 3])
def test_bahdanau_fast_path_equals_the_textbook_form(k: int) -> None:
    # forward scores through a sigmoid of doubled keys; the reference is v^T tanh(W_k k + W_q q)
    att, _, values, mask = _setup("bahdanau")
    query = torch.randn(B * k, 5) * 3  # (B * K, H)
    context, weights = att(query, att.project_keys(values), values, mask)
    rows = torch.arange(B).repeat_interleave(k)
    want_context, want_weights = bahdanau_reference(att, query, values[rows], mask[rows])
    # float32 through two different formulas: equal to rounding
    assert torch.allclose(weights, want_weights, rtol=1e-5, atol=1e-6)
    assert torch.allclose(context, want_context, rtol=1e-5, atol=1e-5)
    assert (want_weights[~mask[rows]] == 0).all()


@pytest.mark.parametrize("kind", ["dot", "general", "bahdanau"])
def test_mismatched_shapes_fail_at_the_boundary_naming_them(kind) -> None:
    att = Attention(kind=kind, query_size=8, key_size=8)
    enc = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    keys = att.project_keys(enc)
    with pytest.raises(AssertionError, match=r"must start with the mask's"):
        att(torch.randn(2, 8), keys, enc[:, :4], mask)  # values one position short
    with pytest.raises(AssertionError, match="not K per sentence"):
        att(torch.randn(3, 8), keys, enc, mask)  # 3 query rows for 2 sentences


def test_transformer_attention_checks_its_inputs() -> None:
    from nmt.transformer import attention

    q, k = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 5, 8)
    with pytest.raises(AssertionError, match="differ in batch, heads or head size"):
        attention(q, torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8))
    with pytest.raises(AssertionError, match="expected"):
        attention(q, k, torch.randn(2, 4, 6, 8))
