"""Tests for nmt.batching: token-budget plans, padded batches and masks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt.batching import make_batch, padding_mask, plan_batches
from nmt.tokenizer import BOS, EOS, PAD


def _lengths(n: int, seed: int, low: int = 0, high: int = 60) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)], [rng.randint(low, high) for _ in range(n)]


def _cost(batch: list[int], src_lens: list[int], tgt_lens: list[int]) -> int:
    """Tokens of a batch counted with padding: sentences x (longest src+EOS + longest tgt+1)."""
    longest_src = max(src_lens[i] for i in batch) + 1
    longest_tgt = max(tgt_lens[i] for i in batch) + 1
    return len(batch) * (longest_src + longest_tgt)


@settings(max_examples=60, deadline=None)
@given(
    lens=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80)), max_size=60),
    batch_tokens=st.integers(1, 600),
    seed=st.one_of(st.none(), st.integers(0, 2**31)),
)
def test_plan_respects_budget_and_covers_every_index_once(lens, batch_tokens, seed) -> None:
    src_lens = [s for s, _ in lens]
    tgt_lens = [t for _, t in lens]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    batches = plan_batches(src_lens, tgt_lens, batch_tokens, gen)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lens)))
    for b in batches:
        assert b, "no empty batches"
        assert len(b) == 1 or _cost(b, src_lens, tgt_lens) <= batch_tokens


def test_oversized_sentence_gets_a_batch_of_its_own() -> None:
    src_lens, tgt_lens = [3, 500, 4, 2], [3, 400, 5, 2]
    batches = plan_batches(src_lens, tgt_lens, 100)
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]


def test_plan_groups_similar_lengths() -> None:
    # without a generator the plan is sorted by target length (the decoder steps through
    # every padded target position), so each batch is a run of target lengths
    src_lens, tgt_lens = _lengths(200, seed=1)
    batches = plan_batches(src_lens, tgt_lens, 400)
    spans = [(min(tgt_lens[i] for i in b), max(tgt_lens[i] for i in b)) for b in batches]
    for (_, hi), (lo, _) in zip(spans, spans[1:]):
        assert hi <= lo


def test_plan_is_deterministic_per_seed() -> None:
    src_lens, tgt_lens = _lengths(300, seed=2, high=20)

    def plan(seed: int) -> list[list[int]]:
        return plan_batches(src_lens, tgt_lens, 200, torch.Generator().manual_seed(seed))

    assert plan(5) == plan(5)
    assert plan(5) != plan(6)
    assert plan_batches(src_lens, tgt_lens, 200) == plan_batches(src_lens, tgt_lens, 200)


def test_plan_of_nothing_is_empty() -> None:
    assert plan_batches([], [], 100) == []


def test_make_batch_shapes_and_special_tokens() -> None:
    src = [[5, 6, 7], [8], []]
    tgt = [[9, 10], [11, 12, 13, 14], [15]]
    batch = make_batch(src, tgt)
    assert batch.src.shape == (3, 4)  # longest source + EOS
    assert batch.tgt_in.shape == batch.tgt_out.shape == (3, 5)  # longest target + 1
    assert batch.src_lengths.tolist() == [4, 2, 1]
    assert batch.src_lengths.dtype == torch.long and batch.src_lengths.device.type == "cpu"
    assert batch.n_tokens == 2 + 1 + 4 + 1 + 1 + 1
    assert batch.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD], [EOS, PAD, PAD, PAD]]
    assert batch.tgt_in.tolist() == [
        [BOS, 9, 10, PAD, PAD],
        [BOS, 11, 12, 13, 14],
        [BOS, 15, PAD, PAD, PAD],
    ]
    assert batch.tgt_out.tolist() == [
        [9, 10, EOS, PAD, PAD],
        [11, 12, 13, 14, EOS],
        [15, EOS, PAD, PAD, PAD],
    ]
    # decoder input and output are the same sequence shifted by one, padded alike
    assert ((batch.tgt_in == PAD) == (batch.tgt_out == PAD)).all()
    for row_in, row_out, n in zip(batch.tgt_in, batch.tgt_out, (3, 5, 2)):
        assert torch.equal(row_in[1:n], row_out[: n - 1])


@pytest.mark.parametrize("max_len", [5, 7])
def test_padding_mask(max_len: int) -> None:
    lengths = torch.tensor([5, 1, 3])
    mask = padding_mask(lengths, max_len)
    assert mask.dtype == torch.bool and mask.shape == (3, max_len)
    assert mask.sum(1).tolist() == [5, 1, 3]
    for row, n in zip(mask.tolist(), lengths.tolist()):
        assert row == [True] * n + [False] * (max_len - n)


def test_padding_mask_matches_batch_padding() -> None:
    batch = make_batch([[4, 5, 6], [7]], [[8], [9]])
    mask = padding_mask(batch.src_lengths, batch.src.size(1))
    assert torch.equal(mask, batch.src != PAD)


def test_an_epoch_plan_of_arrays_is_the_plan_of_lists_in_a_few_bytes_a_pair():
    from nmt.batching import plan_epoch

    gen = torch.Generator().manual_seed(3)
    src = torch.randint(0, 60, (20000,), generator=gen).numpy().astype(np.uint16)
    tgt = torch.randint(0, 60, (20000,), generator=gen).numpy().astype(np.uint16)
    plan = plan_epoch(src, tgt, 900, torch.Generator().manual_seed(5))
    as_lists = plan_batches(src.tolist(), tgt.tolist(), 900, torch.Generator().manual_seed(5))
    assert [plan.batch(k) for k in range(len(plan))] == as_lists
    held = plan.order.nbytes + plan.starts.nbytes + plan.ends.nbytes
    assert held <= 4 * len(src) + 16 * len(plan)


def test_a_large_corpus_is_sorted_one_length_at_a_time_to_the_same_plan(monkeypatch):
    import nmt.batching
    from nmt.batching import plan_epoch

    gen = torch.Generator().manual_seed(4)
    src = torch.randint(0, 60, (20000,), generator=gen).numpy().astype(np.uint16)
    tgt = torch.randint(0, 60, (20000,), generator=gen).numpy().astype(np.uint16)
    whole = plan_epoch(src, tgt, 900, torch.Generator().manual_seed(6))
    monkeypatch.setattr(nmt.batching, "BUCKET_SORT_FROM", 1000)
    spy = []
    real = nmt.batching._sort_by_buckets
    monkeypatch.setattr(nmt.batching, "_sort_by_buckets", lambda *a: spy.append(1) or real(*a))
    by_length = plan_epoch(src, tgt, 900, torch.Generator().manual_seed(6))
    assert spy and np.array_equal(whole.order, by_length.order)
    assert np.array_equal(whole.starts, by_length.starts)
