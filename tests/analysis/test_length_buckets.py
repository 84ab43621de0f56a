"""Scores by source length: buckets of source words, BLEU and chrF per bucket and system."""

from __future__ import annotations

import random

import pytest

from nmt.analysis.length_buckets import length_buckets, score_by_length
from nmt.metrics import score


@pytest.mark.parametrize("width,last", [(10, 0), (3, 0), (5, 20), (1, 4)])
def test_every_sentence_is_in_exactly_one_bucket_of_its_length(width, last):
    rng = random.Random(width + last)
    lines = [" ".join(["w"] * rng.randint(0, 45)) for _ in range(300)]
    buckets = length_buckets(lines, width, last)
    assert sorted(i for b in buckets for i in b.lines) == list(range(300))
    for b in buckets:
        assert b.lines
        for i in b.lines:
            n = len(lines[i].split())
            assert b.low <= n and (b.high is None or n <= b.high)
    lows = [b.low for b in buckets]
    assert lows == sorted(set(lows))
    if last:
        assert buckets[-1].high is None and buckets[-1].label.endswith("+")


def test_bucket_scores_are_corpus_scores_of_the_bucket_lines():
    src = ["a b", "a b c d e f g h i j k l", "x", "p q r s t u v w y z a b c"]
    refs = ["the cat sat", "a dog runs in the park today", "hello", "two men are walking"]
    hyps = {"one": ["the cat sat", "a dog runs", "hi", "two men walk"], "two": refs}
    buckets = score_by_length(src, hyps, [refs], width=10)
    assert [b.label for b in buckets] == ["0-9", "10-19"]
    short = buckets[0]
    assert short.lines == [0, 2]
    bleu, chrf = score(["the cat sat", "hi"], [["the cat sat", "hello"]], ("bleu", "chrf"))
    assert short.scores["one"] == {"bleu": bleu.score, "chrf": chrf.score}
    assert short.scores["two"]["chrf"] == 100.0
