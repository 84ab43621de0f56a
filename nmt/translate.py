"""Translation: the in-memory `Translator` and streaming translation of files of any size.

Line alignment is kept whatever the input: output line i translates input line i, an empty
line gives an empty line, an over-long line is truncated (with a warning), never dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import torch

from nmt import NmtError
from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.corpus import decode_line
from nmt.ensemble import Ensemble, ensemble_weights
from nmt.quantize import quantize_int8
from nmt.search import Hypothesis, SearchOptions, search_ids
from nmt.transformer import Transformer
from nmt.workers import WorkerPool

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


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise NmtError(f"{name} must be a whole number >= {low}, got {value!r}")


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
            f"attention_layer and attention_head choose among a Transformer's attentions; "
            f"{path} is an RNN, which has one"
        )


class Translator:
    """A model loaded from a checkpoint file, or an ensemble of several, ready to translate
    lists of sentences.

    `checkpoint`: one file, or a list of files whose models are searched as an ensemble
    (nmt.ensemble: per-step log-probabilities averaged with `weights`, equal by default);
    they must share one tokenizer, and the attention shown is the first model's.
    `attention_layer` and `attention_head` (None: the mean over heads) choose which of a
    Transformer's cross-attentions the attention output shows (the first model's).
    `threads` > 0: torch's CPU threads while it translates (restored after each call), or
    of each worker process with `workers` > 1 (0 meaning 1 there).
    """

    def __init__(
        self,
        checkpoint: str | Path | Sequence[str | Path],
        device: str = "cpu",
        quantize: str | None = None,
        threads: int = 0,
        workers: int = 1,
        *,
        weights: Sequence[float] | None = None,
        attention_layer: int = -1,
        attention_head: int | None = None,
    ) -> None:
        self._pool: WorkerPool | None = None  # worker processes, started at the first call
        _at_least("workers", workers, 1)
        _at_least("threads", threads, 0)
        if workers > 1 and device != "cpu":
            raise NmtError("workers above 1 run on the CPU only")
        if quantize not in (None, "none", "int8"):
            raise NmtError(f"quantize must be one of none, int8, got {quantize!r}")
        if quantize == "int8" and device != "cpu":
            raise NmtError("quantize int8 runs on the CPU only")
        paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
        if not paths:
            raise NmtError("give at least one checkpoint")
        mix = ensemble_weights(weights, len(paths))  # checked before anything loads
        self.workers, self.threads = workers, threads
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
        beam_size: int = 5,
        nbest: int = 1,
        length_penalty: float | str = 1.0,
        max_len_ratio: float = 1.5,
        max_len_offset: int = 10,
        min_len: int = 0,
        stopping: str = "early",
        return_attention: bool = False,
        scores: bool = True,
        batch_tokens: int = 4096,
        line_numbers: Iterable[int] | None = None,
    ) -> list[Translation]:
        """Translate in memory, searching with `options`, or with the SearchOptions that the
        keywords from `beam_size` to `scores` make (see SearchOptions) when it is None.

        `batch_tokens` bounds sentences x longest source in a batch; `line_numbers` name the
        sentences in warnings (1, 2, ... by default).
        """
        keywords = SearchOptions(
            beam_size=beam_size,
            nbest=nbest,
            length_penalty=length_penalty,
            max_len_ratio=max_len_ratio,
            max_len_offset=max_len_offset,
            min_len=min_len,
            stopping=stopping,
            return_attention=return_attention,
            scores=scores,
        )
        if options is None:
            options = keywords
        elif keywords != SearchOptions():
            raise TypeError("give either options or search keywords, not both")
        _at_least("batch_tokens", batch_tokens, 1)
        ids = self._source_ids(sentences, line_numbers)
        todo = [i for i, seq in enumerate(ids) if seq]
        found = self._search([ids[i] for i in todo], options, batch_tokens)
        # one detokenizer call for all hypotheses: each sentencepiece batch call has a fixed
        # cost, which a call per sentence paid on every line
        texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in found for h in hyps]))
        results = [Translation(s, [], []) for s in sentences]
        for i, hyps in zip(todo, found):
            results[i] = Translation(
                sentences[i],
                self.tokenizer.src_pieces(ids[i]) + ["</s>"],
                [self._output(h, next(texts), options.return_attention) for h in hyps],
            )
        return results

    def _source_ids(
        self, sentences: list[str], line_numbers: Iterable[int] | None
    ) -> list[list[int]]:
        """Source ids of each sentence, truncated (with a warning) to the model's max length."""
        ids = self.tokenizer.encode_src(sentences)
        numbers = list(line_numbers) if line_numbers is not None else range(1, len(ids) + 1)
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
    ) -> list[list[Hypothesis]]:
        """Hypotheses of each id sequence, searched here or by the worker processes."""
        if self.workers == 1:
            with _threads(self.threads):
                return search_ids(self.model, src_ids, options, batch_tokens)
        if self._pool is None:
            self._pool = WorkerPool(self.model, self.workers, self.threads or 1)
        batch_tokens = self._pool.batch_tokens(src_ids, batch_tokens)
        return search_ids(self.model, src_ids, options, batch_tokens, self._pool.map_batches)

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


FORMATS = ("text", "jsonl")


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is read, batched and written; checked when made."""

    batch_tokens: int = 4096  # sentences x longest source in a batch
    fmt: str = "text"  # text: one line per translation (Moses-style n-best); jsonl: records
    errors: str = "strict"  # invalid UTF-8 input: strict (an error) or replace
    chunk_lines: int = 10_000  # lines read, translated and written at a time
    with_attention: bool = False  # jsonl: tokens and attention in each record

    def __post_init__(self) -> None:
        _at_least("batch_tokens", self.batch_tokens, 1)
        _at_least("chunk_lines", self.chunk_lines, 1)
        if self.fmt not in FORMATS:
            raise NmtError(f"fmt must be text or jsonl, got {self.fmt!r}")
        if self.errors not in ("strict", "replace"):
            raise NmtError(f"errors must be strict or replace, got {self.errors!r}")


def read_chunks(
    stream: IO[bytes],
    chunk_lines: int,
    errors: str = "strict",
    name: str = "<stdin>",
    skip: int = 0,
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) chunks of a binary stream, decoded as UTF-8.

    Chunks always start at line 1 + k * chunk_lines; `skip` only drops the chunks before the
    one holding line skip + 1, so a resumed run batches (and scores) that chunk exactly as an
    uninterrupted run would.
    """
    chunk: list[str] = []
    start = skip - skip % chunk_lines
    first = start + 1
    for n, raw in enumerate(stream, 1):
        if n <= start:
            continue
        try:
            line = decode_line(raw, f"{name}:{n}")
        except NmtError:
            if errors != "replace":
                raise
            log.warning("%s:%d: invalid UTF-8 replaced", name, n)
            line = decode_line(raw, f"{name}:{n}", errors="replace")
        chunk.append(line)
        if len(chunk) == chunk_lines:
            yield first, chunk
            first, chunk = n + 1, []
    if chunk:
        yield first, chunk


def format_translation(t: Translation, stream: StreamOptions) -> str:
    """The output line(s) of one translation, newline included."""
    if stream.fmt == "jsonl":
        extra = stream.with_attention
        record = {
            "source": t.source,
            "hypotheses": [
                {"text": h.text, "log_prob": h.log_prob, "score": h.score}
                | ({"tokens": h.tokens, "src_tokens": t.src_tokens} if extra else {})
                | ({"attention": h.attention} if extra else {})
                for h in t.hypotheses
            ],
        }
        return json.dumps(record, ensure_ascii=False) + "\n"
    if len(t.hypotheses) <= 1:
        return t.text.replace("\n", " ") + "\n"
    # n-best in text: one line per hypothesis, Moses style
    return "".join(f"{h.text} ||| {h.score:.4f}\n" for h in t.hypotheses)


def count_lines(path: Path) -> int:
    """Complete lines in a partial output; a trailing partial line is cut off."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1  # bytes up to the last newline
    if complete != len(data):
        with path.open("r+b") as f:
            f.truncate(complete)
    return data[:complete].count(b"\n")


def translate_stream(
    translator: Translator,
    source: IO[bytes],
    sink: IO[str],
    search: SearchOptions | None = None,
    stream: StreamOptions | None = None,
    *,
    name: str = "<stdin>",
    skip: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[list[Translation], int], None] | None = None,
) -> int:
    """Translate a stream chunk by chunk, writing results in input order; memory stays flat
    in the size of the input. Returns the number of lines translated.

    `name` names the source in messages; the first `skip` lines are not written (resume);
    `on_progress(lines, source tokens)` and `on_chunk(translations, first line number)` are
    called after each chunk is written.
    """
    search = search or SearchOptions()
    stream = stream or StreamOptions()
    if stream.with_attention and not search.return_attention:
        search = replace(search, return_attention=True)  # the records carry it
    done = 0
    for first, lines in read_chunks(source, stream.chunk_lines, stream.errors, name, skip):
        results = translator.translate(
            lines,
            search,
            batch_tokens=stream.batch_tokens,
            line_numbers=range(first, first + len(lines)),
        )
        if first <= skip:  # resuming inside this chunk: its first lines are already written
            results, lines = results[skip - first + 1 :], lines[skip - first + 1 :]
            first = skip + 1
        sink.write("".join(format_translation(t, stream) for t in results))
        sink.flush()
        if on_chunk is not None:
            on_chunk(results, first)
        done += len(lines)
        if on_progress is not None:
            on_progress(len(lines), sum(len(t.src_tokens) for t in results))
    return done


def translate_file(
    translator: Translator,
    source: IO[bytes],
    output: Path,
    search: SearchOptions | None = None,
    stream: StreamOptions | None = None,
    *,
    resume: bool = False,
    name: str = "<stdin>",
    on_progress: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[list[Translation], int], None] | None = None,
) -> int:
    """Translate into OUTPUT through OUTPUT.partial, renamed when complete; with `resume`, a
    partial file left by a killed run is continued after its last complete line. The other
    arguments are translate_stream's."""
    search = search or SearchOptions()
    stream = stream or StreamOptions()
    partial = output.with_name(output.name + ".partial")
    skip = 0
    if resume:
        if stream.fmt == "text" and search.nbest > 1:
            raise NmtError("resume works with one output line per input line (nbest 1)")
        skip = count_lines(partial)
        if skip:
            log.info("resuming %s after line %d", output, skip)
    elif partial.exists():
        partial.unlink()
    try:
        sink = partial.open("a" if skip else "w", encoding="utf-8", newline="\n")
    except OSError as e:
        raise NmtError(f"cannot write {partial} ({e.strerror or e})") from None
    try:
        with sink:
            n = translate_stream(
                translator,
                source,
                sink,
                search,
                stream,
                name=name,
                skip=skip,
                on_progress=on_progress,
                on_chunk=on_chunk,
            )
            sink.flush()
            os.fsync(sink.fileno())
    except NmtError:
        # bad input or options: nothing half-written is left (a resumed partial is kept)
        if not skip:
            partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return skip + n
