"""Translation: the in-memory `Translator`; streaming translation of files is in
nmt/translation/streaming.py.

Line alignment is kept whatever the input: output line i translates input line i, an empty
line gives an empty line, an over-long line is truncated (with a warning), never dropped.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from nmt import NmtError, require_whole
from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.config import MAX_THREADS
from nmt.distributed import pick_device
from nmt.procs import available_cores
from nmt.search import Hypothesis, SearchModel, SearchOptions, search_id_batches
from nmt.transformer import Transformer
from nmt.translation.ensemble import Ensemble, ensemble_weights
from nmt.translation.quantize import quantize_int8
from nmt.translation.workers import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class Output:
    text: str
    log_prob: float
    score: float
    tokens: list[str] = field(default_factory=list)  # target pieces
    attention: list[list[float]] | None = None  # (len(tokens) + 1, len(src_tokens) + 1), EOS incl.


@dataclass
class Translation:
    source: str
    src_tokens: list[str]
    hypotheses: list[Output]

    @property
    def text(self) -> str:
        return self.hypotheses[0].text if self.hypotheses else ""


# with workers "auto", a call with fewer source tokens than this is searched in this
# process: starting the worker processes costs more than they save on it
POOL_MIN_TOKENS = 2000


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to `threads` (0: left as they are), restored afterwards."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _same_tokenizer(
    first: Checkpoint, other: Checkpoint, first_path: str | Path, other_path: str | Path
) -> None:
    """Refuse an ensemble member whose tokenizer (either side) differs from the first's."""
    a, b = first.tokenizer.to_state(), other.tokenizer.to_state()
    for side in ("tgt", "src"):
        if a.get(side, a["src"]) != b.get(side, b["src"]):
            kind = "target" if side == "tgt" else "source"
            raise NmtError(
                f"checkpoints {first_path} and {other_path} have different {kind} tokenizers: "
                "an ensemble's models must share one tokenizer"
            )


def _choose_attention(
    model: torch.nn.Module, path: str | Path, layer: int, head: int | None
) -> None:
    """Set the Transformer's heatmap layer and head; an RNN has one attention to show."""
    if isinstance(model, Transformer):
        model.choose_attention(layer, head)
    elif layer != -1 or head is not None:
        raise NmtError(
            f"chooses among a Transformer's attentions; {path} is an RNN, which has one",
            option="attention_layer" if layer != -1 else "attention_head",
        )


class Translator:
    """A model loaded from a checkpoint file, or an ensemble of several, ready to translate
    lists of sentences.

    `checkpoint`: one file, or a list of files whose models are searched as an ensemble
    (nmt/translation/ensemble.py: per-step log-probabilities averaged with `weights`, equal
    by default);
    they must share one tokenizer, and the attention shown is the first model's.
    `attention_layer` and `attention_head` (None: the mean over heads) choose which of a
    Transformer's cross-attentions the attention output shows (the first model's).
    `threads` > 0: torch's CPU threads while it translates (restored after each call), or
    of each worker process with `workers` > 1 (0 meaning 1 there). `workers` "auto": one
    worker process per available core on the CPU (one process on a GPU), used for calls of
    POOL_MIN_TOKENS source tokens or more. `device` "auto": CUDA when available.
    """

    def __init__(
        self,
        checkpoint: str | Path | Sequence[str | Path],
        device: str = "auto",
        quantize: str | None = None,
        threads: int = 0,
        workers: int | str = 1,
        *,
        weights: Sequence[float] | None = None,
        attention_layer: int = -1,
        attention_head: int | None = None,
    ) -> None:
        self._pool: WorkerPool | None = None  # worker processes, started at the first call
        self.auto_workers = workers == "auto"
        if not self.auto_workers:
            require_whole("workers", workers)
        require_whole("threads", threads, 0)
        # thousands of threads crash OpenMP (libgomp) in native code, past any Python error
        for option, value in (("threads", threads), ("workers", workers)):
            if isinstance(value, int) and value > MAX_THREADS:
                raise NmtError(f"must be at most {MAX_THREADS}, got {value}", option=option)
        if quantize not in (None, "none", "int8"):
            raise NmtError(f"must be one of none, int8, got {quantize!r}", option="quantize")
        paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
        if not paths:
            raise NmtError("give at least one checkpoint")
        mix = ensemble_weights(weights, len(paths))  # checked before anything loads
        if quantize == "int8" or (isinstance(workers, int) and workers > 1):
            if device not in ("auto", "cpu"):
                if quantize == "int8":
                    raise NmtError("int8 runs on the CPU only", option="quantize")
                raise NmtError("above 1 run on the CPU only", option="workers")
            device = "cpu"
        device = pick_device(device)
        if self.auto_workers:
            workers = available_cores() if device == "cpu" else 1
        assert isinstance(workers, int)  # "auto" is replaced, anything else passed require_whole
        self.workers, self.threads, self.device, self.quantize = workers, threads, device, quantize
        self.checkpoints = [Path(p) for p in paths]
        self.weights, self.attention = mix, (attention_layer, attention_head)
        with _threads(threads):
            ckpts = [load_checkpoint(p, device, mmap=True) for p in paths]
            for path, ckpt in zip(paths[1:], ckpts[1:]):
                _same_tokenizer(ckpts[0], ckpt, paths[0], path)
            _choose_attention(ckpts[0].model, paths[0], attention_layer, attention_head)
            models = [ckpt.model for ckpt in ckpts]
            if quantize == "int8":
                models = [quantize_int8(m, copy=False) for m in models]
        self.config, self.tokenizer = ckpts[0].config, ckpts[0].tokenizer
        self.model = models[0] if len(models) == 1 else Ensemble(models, mix)
        # every member reads the source: it is cut to the shortest limit among them
        self.max_src_len = min(ckpt.config.data.max_len for ckpt in ckpts)

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
        ids = self._source_ids(sentences, line_numbers)
        todo = [i for i, seq in enumerate(ids) if seq]
        empty = [i for i, seq in enumerate(ids) if not seq]
        if empty:
            yield empty, [Translation(sentences[i], [], []) for i in empty]
        # at least one token: an undertrained model's EOS may score best at the first step, and
        # an empty output for a non-empty sentence is never a translation (fairseq's minimum
        # length is 1 too); searched so, beam 1 is still greedy and a batch still changes nothing
        searched = replace(options, min_len=max(options.min_len, 1))
        for batch, found in self._search([ids[i] for i in todo], searched, batch_tokens):
            idxs = [todo[b] for b in batch]
            # one detokenizer call per batch: each sentencepiece call has a fixed cost, which
            # a call per sentence paid on every line
            texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in found for h in hyps]))
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

    def _check_min_len(self, options: SearchOptions) -> None:
        """min_len above every output's max length would override the length limit."""
        # at least 1, as search allows one token whatever the limits (nmt.search.max_lengths)
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

    def _search(
        self, src_ids: list[list[int]], options: SearchOptions, batch_tokens: int
    ) -> Iterator[tuple[list[int], list[list[Hypothesis]]]]:
        """(indices into src_ids, hypotheses) batch by batch, searched here or by the
        worker processes."""
        tokens = sum(len(seq) + 1 for seq in src_ids)
        if self.workers == 1 or (self.auto_workers and tokens < POOL_MIN_TOKENS):
            with _threads(self.threads):
                yield from search_id_batches(
                    cast(SearchModel, self.model), src_ids, options, batch_tokens
                )
            return
        if self._pool is None:
            self._pool = WorkerPool(self.model, self.workers, self.threads or 1)
        batch_tokens = self._pool.batch_tokens(src_ids, batch_tokens)
        yield from search_id_batches(
            cast(SearchModel, self.model), src_ids, options, batch_tokens, self._pool.map_batches
        )

    def fingerprint(self) -> dict[str, Any]:
        """What the outputs depend on besides the search options: the checkpoint file (by
        size and modification time: hashing it would read it whole), device, quantization."""
        files = [{"size": st.st_size, "mtime_ns": st.st_mtime_ns} for st in self._stats()]
        record: dict[str, Any] = {**files[0], "device": self.device}
        record["quantize"] = self.quantize or "none"
        if len(files) > 1:  # an ensemble: every member and the weights of their mix
            record.update(members=files, weights=list(self.weights))
        if self.attention != (-1, None):
            record["attention"] = list(self.attention)
        return record

    def _stats(self) -> list[os.stat_result]:
        return [p.stat() for p in self.checkpoints]

    def close(self) -> None:
        """Stop the worker processes (also done when the Translator is garbage-collected)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _output(self, hyp: Hypothesis, text: str, with_attention: bool) -> Output:
        return Output(
            text=text,
            log_prob=round(hyp.log_prob, 6),
            score=round(hyp.score, 6),
            tokens=self.tokenizer.tgt_pieces(hyp.tokens) + ["</s>"],
            attention=hyp.attention.tolist()
            if with_attention and hyp.attention is not None
            else None,
        )
