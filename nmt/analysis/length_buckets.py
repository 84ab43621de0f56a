"""Scores by source length: the lines of a test set in buckets of source length (in
whitespace-separated words), and BLEU and chrF of each system in each bucket (Bahdanau et
al.'s BLEU-by-length figure).

Bucket k holds the sentences of k * width to (k + 1) * width - 1 words; with `last` the
sentences of `last` words or more share one final bucket (long sentences are few, and a
corpus score over a handful of them says little). Empty buckets are left out; every line is in
exactly one bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nmt.metrics import score

BY_LENGTH_METRICS = ("bleu", "chrf")


@dataclass
class Bucket:
    low: int  # fewest source words of the bucket
    high: int | None  # most source words; None: no upper bound (the final bucket of `last`)
    lines: list[int]  # 0-based line numbers of the test set
    # system name -> metric name (bleu, chrf) -> corpus score over the bucket's lines
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.low}+" if self.high is None else f"{self.low}-{self.high}"


def length_buckets(src_lines: list[str], width: int = 10, last: int = 0) -> list[Bucket]:
    """The non-empty buckets of source length (module docstring), shortest first."""
    if width < 1:
        raise ValueError(f"bucket width must be >= 1, got {width}")
    found: dict[int, list[int]] = {}
    top = last // width if last > 0 else None  # the index of the open-ended bucket
    for i, line in enumerate(src_lines):
        k = len(line.split()) // width
        found.setdefault(k if top is None else min(k, top), []).append(i)
    return [
        Bucket(k * width, None if k == top else (k + 1) * width - 1, found[k])
        for k in sorted(found)
    ]


def score_by_length(
    src_lines: list[str],
    hyps: dict[str, list[str]],
    refs: list[list[str]],
    *,
    width: int = 10,
    last: int = 0,
) -> list[Bucket]:
    """BLEU and chrF of each system (name -> hypotheses, line-aligned with `src_lines`) over
    each source-length bucket, against reference streams `refs`."""
    buckets = length_buckets(src_lines, width, last)
    for bucket in buckets:
        bucket_refs = [[stream[i] for i in bucket.lines] for stream in refs]
        for name, lines in hyps.items():
            results = score([lines[i] for i in bucket.lines], bucket_refs, BY_LENGTH_METRICS)
            bucket.scores[name] = {m: s.score for m, s in zip(BY_LENGTH_METRICS, results)}
    return buckets
