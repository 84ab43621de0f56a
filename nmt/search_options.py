"""What a search is asked for and what it returns, without torch: the options (checked when
made), the hypotheses, the length limit and the length penalty.

The torch search (nmt/search.py) and the runtime's numpy search (nmt/runtime/search.py) both
read these, so that the two agree on every rule they share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nmt import NmtError, require_finite, require_whole
from nmt.terms import Terms

NEG_INF = float("-inf")
# the widest beam searched: memory grows with K, and wider beams rarely find better outputs
MAX_BEAM = 1000
# far beyond any useful setting (GNMT alpha is about 0.6 to 2; outputs are a few times the
# source), and small enough that the penalty ((5 + length) / 6) ** alpha and the length limit
# stay finite numbers
MAX_LENGTH_PENALTY = 10.0
MAX_LEN_RATIO = 100.0


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, without BOS and EOS
    log_prob: float  # model log-probability of tokens + EOS (NaN: searched without scores)
    score: float  # log_prob after length normalization (what beam search ranks by)
    # (len(tokens) + 1, source length incl. EOS): a torch tensor or a numpy array
    attention: Any = None
    # (len(tokens) + 1,) the log-probability of each token and of the EOS, summing to
    # log_prob (None: searched without scores); confidence and per-token probabilities
    token_log_probs: list[float] | None = None


@dataclass(frozen=True)
class SearchOptions:
    """How to search; checked when made, so a bad value fails before any work is done."""

    beam_size: int = 5
    nbest: int = 1
    # GNMT alpha (0: raw log-probability) or "avg" per token; a number may come as text
    length_penalty: float | str = 1.0
    max_len_ratio: float = 1.5  # max output tokens = ratio * source tokens + offset
    max_len_offset: int = 10
    # EOS is not allowed before this many tokens (0: the textbook search, which may end at the
    # first step); a Translator searches with 1 at least: no translation of a non-empty
    # sentence is empty
    min_len: int = 0
    # when a sentence's beam search is done, given K finished hypotheses (see beam_search)
    stopping: str = "early"  # or "exact"
    return_attention: bool = False
    # False: greedy search takes its argmax over the logits and skips the log-softmax (an exp
    # over V pieces a row); log_prob and score are NaN
    scores: bool = True
    # glossary terms and verbatim spans every output must hold (nmt/terms.py): the sentences
    # with any are searched by the constrained beam search (nmt/constraints.py)
    terms: Terms | None = None

    def __post_init__(self) -> None:
        require_whole("beam_size", self.beam_size)
        if self.beam_size > MAX_BEAM:
            raise NmtError(f"must be at most {MAX_BEAM}, got {self.beam_size}", option="beam_size")
        require_whole("nbest", self.nbest)
        if self.nbest > self.beam_size:
            raise NmtError(
                f"must be between 1 and the beam size ({self.beam_size}), got {self.nbest}",
                option="nbest",
            )
        if self.length_penalty != "avg":
            alpha = require_finite(
                "length_penalty", self.length_penalty, "a number >= 0 (GNMT alpha) or avg"
            )
            if alpha > MAX_LENGTH_PENALTY:
                raise NmtError(
                    f"must be at most {MAX_LENGTH_PENALTY:g}, got {alpha:g}",
                    option="length_penalty",
                )
            object.__setattr__(self, "length_penalty", alpha)
        require_finite("max_len_ratio", self.max_len_ratio)
        if self.max_len_ratio > MAX_LEN_RATIO:
            raise NmtError(
                f"must be at most {MAX_LEN_RATIO:g}, got {self.max_len_ratio:g}",
                option="max_len_ratio",
            )
        require_whole("max_len_offset", self.max_len_offset, 0)
        require_whole("min_len", self.min_len, 0)
        if self.stopping not in ("early", "exact"):
            raise NmtError(f"must be early or exact, got {self.stopping!r}", option="stopping")

    def normalize(self, log_prob, length):
        """Length-normalized score of a float or a tensor; `length` counts the EOS."""
        if self.length_penalty == "avg":
            return log_prob / length
        if not self.length_penalty:
            return log_prob
        return log_prob / ((5.0 + length) / 6.0) ** float(self.length_penalty)


def max_length(src_length: int, opts: SearchOptions) -> int:
    """A source of `src_length` tokens incl. EOS -> the most output tokens (EOS excluded),
    at least min_len and at least 1."""
    limit = math.floor((src_length - 1) * opts.max_len_ratio) + opts.max_len_offset
    return max(limit, opts.min_len, 1)
