"""The text side of every translator: sentences to source ids, batches searched in order,
hypotheses to outputs. A translator (torch checkpoints in nmt/translation/translator.py, an
exported folder in nmt/runtime/translator.py) adds only its search.

Line alignment is kept whatever the input: output line i translates input line i, an empty
line gives an empty line, an over-long line is truncated (with a warning), never dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from nmt import NmtError, require_whole
from nmt.config import MAX_THREADS, Config
from nmt.search_options import Hypothesis, SearchOptions
from nmt.terms import prepare, restore
from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Output:
    text: str
    log_prob: float
    score: float
    tokens: list[str] = field(default_factory=list)  # target pieces
    attention: list[list[float]] | None = None  # (len(tokens) + 1, len(src_tokens) + 1), EOS incl.
    # (len(tokens),) the log-probability of each target piece, EOS included (None: no scores)
    token_log_probs: list[float] | None = None
    # log_prob / len(tokens): the mean log-probability of a piece (length-normalized, EOS
    # incl.; exp of it is the geometric mean of the pieces' probabilities); NaN: no scores
    confidence: float = math.nan


@dataclass
class Translation:
    source: str
    src_tokens: list[str]
    hypotheses: list[Output]

    @property
    def text(self) -> str:
        return self.hypotheses[0].text if self.hypotheses else ""


def check_threads(threads: int, workers: int | str) -> bool:
    """Check the threads and workers a translator is given; True for workers "auto".
    Thousands of threads crash OpenMP (libgomp) in native code, past any Python error."""
    auto = workers == "auto"
    if not auto:
        require_whole("workers", workers)
    require_whole("threads", threads, 0)
    for option, value in (("threads", threads), ("workers", workers)):
        if isinstance(value, int) and value > MAX_THREADS:
            raise NmtError(f"must be at most {MAX_THREADS}, got {value}", option=option)
    return auto


class TranslatorBase:
    """Sentences in, `Translation`s out, in the order given. A subclass sets `tokenizer` and
    `max_src_len` (the source tokens the model reads: longer sentences are cut) and
    `config`, and implements `_search` and `fingerprint`."""

    tokenizer: Tokenizer
    max_src_len: int
    config: Config  # the training config of the (first) model
    workers: int = 1  # processes searching batches side by side

    def translate(
        self,
        sentences: list[str],
        options: SearchOptions | None = None,
        *,
        batch_tokens: int = 4096,
        line_numbers: Iterable[int] | None = None,
    ) -> list[Translation]:
        """Translate in memory, searching with `options` (SearchOptions() when None).

        `batch_tokens` bounds sentences x longest source in a batch; `line_numbers` name the
        sentences in warnings (1, 2, ... by default).
        """
        options = options or SearchOptions()
        results = [Translation(s, [], []) for s in sentences]
        for idxs, found in self.translate_batches(
            sentences, options, batch_tokens=batch_tokens, line_numbers=line_numbers
        ):
            for i, t in zip(idxs, found):
                results[i] = t
        return results

    def translate_batches(
        self,
        sentences: list[str],
        options: SearchOptions,
        *,
        batch_tokens: int = 4096,
        line_numbers: Iterable[int] | None = None,
    ) -> Iterator[tuple[list[int], list[Translation]]]:
        """translate() batch by batch: (indices into `sentences`, their translations) as
        each batch is done, the sentences without tokens first."""
        require_whole("batch_tokens", batch_tokens)
        self._check_min_len(options)
        # glossary terms and verbatim spans: the source the model reads, its constraints
        prepared = None
        if options.terms:
            prepared = [prepare(s, options.terms, self.tokenizer) for s in sentences]
        model_text = sentences if prepared is None else [p.source for p in prepared]
        ids = self._source_ids(model_text, line_numbers)
        todo = [i for i, seq in enumerate(ids) if seq]
        empty = [i for i, seq in enumerate(ids) if not seq]
        if empty:
            yield empty, [Translation(sentences[i], [], []) for i in empty]
        # at least one token: an undertrained model's EOS may score best at the first step, and
        # an empty output for a non-empty sentence is never a translation (fairseq's minimum
        # length is 1 too); searched so, beam 1 is still greedy and a batch still changes nothing
        searched = replace(options, min_len=max(options.min_len, 1))
        if prepared is None:
            batches = self._search([ids[i] for i in todo], searched, batch_tokens)
        else:
            batches = self._search_constrained(
                [ids[i] for i in todo], [prepared[i].constraints for i in todo], searched,
                batch_tokens,
            )  # fmt: skip
        for batch, found in batches:
            idxs = [todo[b] for b in batch]
            # one detokenizer call per batch: each sentencepiece call has a fixed cost, which
            # a call per sentence paid on every line
            texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in found for h in hyps]))
            if prepared is not None:  # carriers replaced by the spans they stand for
                texts = iter(
                    [
                        restore(h.tokens, prepared[i], self.tokenizer) or text
                        for i, hyps in zip(idxs, found)
                        for h, text in zip(hyps, [next(texts) for _ in hyps])
                    ]
                )
            yield (
                idxs,
                [
                    Translation(
                        sentences[i],
                        self.tokenizer.src_pieces(ids[i]) + ["</s>"],
                        [self._output(h, next(texts), options.return_attention) for h in hyps],
                    )
                    for i, hyps in zip(idxs, found)
                ],
            )

    def _search(
        self, src_ids: list[list[int]], options: SearchOptions, batch_tokens: int
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        """(indices into src_ids, hypotheses) batch by batch."""
        raise NotImplementedError

    def _search_constrained(
        self,
        src_ids: list[list[int]],
        constraints: list[list[list[int]]],
        options: SearchOptions,
        batch_tokens: int,
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        """_search whose outputs contain each sentence's constraints (token sequences)."""
        raise NmtError(
            "glossaries, --keep and --placeholders need the constrained search of a torch "
            "checkpoint; an exported folder has none: translate the checkpoint",
            option="terms",
        )

    def fingerprint(self) -> dict[str, Any]:
        """What the outputs depend on besides the search options (`--resume` compares it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the translator holds (worker processes)."""

    def _check_min_len(self, options: SearchOptions) -> None:
        """min_len above every output's max length would override the length limit."""
        # at least 1, as search allows one token whatever the limits (search_options.max_length)
        longest = max(
            1, math.floor(self.max_src_len * options.max_len_ratio) + options.max_len_offset
        )
        if options.min_len > longest:
            raise NmtError(
                f"{options.min_len} is above the longest output allowed ({longest}: the "
                f"length ratio x the model's {self.max_src_len} source tokens + the offset)",
                option="min_len",
            )

    def _source_ids(
        self, sentences: list[str], line_numbers: Iterable[int] | None
    ) -> list[list[int]]:
        """Source ids of each sentence, truncated (with a warning) to the model's max length."""
        numbers = list(line_numbers) if line_numbers is not None else range(1, len(sentences) + 1)
        try:
            ids = self.tokenizer.encode_src(sentences)
        except (TypeError, UnicodeEncodeError):
            for n, text in zip(numbers, sentences):
                if not isinstance(text, str):
                    raise NmtError(f"sentence {n}: not text ({type(text).__name__})") from None
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise NmtError(
                        f"sentence {n}: not valid Unicode (a lone surrogate at character "
                        f"{e.start + 1})"
                    ) from None
            raise
        for n, seq in zip(numbers, ids):
            if len(seq) > self.max_src_len:
                log.warning(
                    "line %d: %d tokens, truncated to the model's %d",
                    n,
                    len(seq),
                    self.max_src_len,
                )
                del seq[self.max_src_len :]
        return ids

    def _output(self, hyp: Hypothesis, text: str, with_attention: bool) -> Output:
        lps = hyp.token_log_probs
        return Output(
            text=text,
            log_prob=round(hyp.log_prob, 6),
            score=round(hyp.score, 6),
            tokens=self.tokenizer.tgt_pieces(hyp.tokens) + ["</s>"],
            attention=hyp.attention.tolist()
            if with_attention and hyp.attention is not None
            else None,
            token_log_probs=[round(float(lp), 6) for lp in lps] if lps is not None else None,
            confidence=round(hyp.log_prob / (len(hyp.tokens) + 1), 6),
        )
