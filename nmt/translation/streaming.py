"""Streaming translation of files of any size: read in chunks, write each line as soon as
those before it are written, resume a killed run (see nmt.translation.partial for the partial file).

Line alignment is kept whatever the input: output line i translates input line i, an empty
line gives an empty line, an over-long line is truncated (with a warning), never dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from nmt import NmtError, require_whole
from nmt.data.corpus import decode_line, raw_lines
from nmt.runtime.base import Translation, TranslatorBase
from nmt.search_options import SearchOptions
from nmt.translation.alignment import alignment_of
from nmt.translation.documents import DocumentOptions, translate_lines
from nmt.translation.partial import (
    InputHash,
    OutputTarget,
    complete_lines,
    lock,
    open_partial,
    output_target,
    read_meta,
    remove_side_files,
    same_file,
    stream_size,
    write_meta,
)

log = logging.getLogger(__name__)


FORMATS = ("text", "jsonl")


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is read, batched and written; checked when made."""

    batch_tokens: int = 4096  # sentences x longest source in a batch
    fmt: str = "text"  # text: one line per translation (Moses-style n-best); jsonl: records
    errors: str = "strict"  # invalid UTF-8 input: strict (an error) or replace
    # lines read and translated at a time; lines are written as soon as those before them
    # are, so a killed run loses at most one chunk; larger chunks batch by length better
    chunk_lines: int = 1000
    with_attention: bool = False  # jsonl: tokens and attention in each record
    # lines as paragraphs (sentence splitting), markup, the confidence that flags a line
    document: DocumentOptions = DocumentOptions()

    def __post_init__(self) -> None:
        require_whole("batch_tokens", self.batch_tokens)
        require_whole("chunk_lines", self.chunk_lines)
        if self.fmt not in FORMATS:
            raise NmtError(f"must be text or jsonl, got {self.fmt!r}", option="fmt")
        if self.errors not in ("strict", "replace"):
            raise NmtError(f"must be strict or replace, got {self.errors!r}", option="errors")


def read_chunks(
    stream: IO[bytes],
    chunk_lines: int,
    errors: str = "strict",
    name: str = "<stdin>",
    skip: int = 0,
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) chunks of a binary stream, decoded as UTF-8 (see _chunks)."""
    raws = raw_lines(stream, name, truncate=True)
    for first, lines, _ in _chunks(raws, chunk_lines, errors, name, skip):
        yield first, lines


def _chunks(
    raws: Iterable[bytes], chunk_lines: int, errors: str, name: str, skip: int
) -> Iterator[tuple[int, list[str], list[bytes]]]:
    """(first line number, lines, their raw bytes) chunks of raw lines, decoded as UTF-8.

    Chunks always start at line 1 + k * chunk_lines; `skip` only drops the chunks before the
    one holding line skip + 1, so a resumed run batches (and scores) that chunk exactly as an
    uninterrupted run would. A line that is not UTF-8 (errors strict) raises once the lines
    before it are yielded: they are translated and kept.
    """
    chunk: list[str] = []
    chunk_raws: list[bytes] = []
    start = skip - skip % chunk_lines
    first = start + 1
    for n, raw in enumerate(raws, 1):
        if n <= start:
            continue
        try:
            line = decode_line(raw, f"{name}:{n}")
        except NmtError:
            if errors != "replace":
                if chunk:
                    yield first, chunk, chunk_raws
                raise
            log.warning("%s:%d: invalid UTF-8 replaced", name, n)
            line = decode_line(raw, f"{name}:{n}", errors="replace")
        chunk.append(line)
        chunk_raws.append(raw)
        if len(chunk) == chunk_lines:
            yield first, chunk, chunk_raws
            first, chunk, chunk_raws = n + 1, [], []
    if chunk:
        yield first, chunk, chunk_raws


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def _probs(log_probs: list[float] | None) -> list[float] | None:
    return None if log_probs is None else [round(math.exp(lp), 6) for lp in log_probs]


def translation_record(t: Translation, stream: StreamOptions) -> dict[str, Any]:
    """One translation as a jsonl record: the source, each hypothesis with its scores,
    confidence and token probabilities, the best one's word alignment (source word, target
    word), and, for a line of several sentences, each sentence's own record."""
    extra = stream.with_attention
    record: dict[str, Any] = {
        "source": t.source,
        "hypotheses": [
            {
                "text": h.text,
                "log_prob": _number(h.log_prob),
                "score": _number(h.score),
                "confidence": _number(h.confidence),
                "token_probs": _probs(h.token_log_probs),
            }
            | ({"tokens": h.tokens, "src_tokens": t.src_tokens} if extra else {})
            | ({"attention": h.attention} if extra else {})
            for h in t.hypotheses
        ],
    }
    pairs = alignment_of(t)
    if pairs is not None:
        record["alignment"] = [list(p) for p in pairs]
    threshold = stream.document.min_confidence
    if threshold is not None:
        record["low_confidence"] = is_low(t, threshold)
    sentences = getattr(t, "sentences", None)
    if sentences is not None:
        record["sentences"] = [
            {k: v for k, v in translation_record(s, stream).items() if k != "low_confidence"}
            for s in sentences
        ]
    return record


def is_low(t: Translation, threshold: float) -> bool:
    """Whether a translated line's confidence is below `threshold` (an empty line never is)."""
    return bool(t.hypotheses) and not t.hypotheses[0].confidence >= threshold


def format_translation(t: Translation, stream: StreamOptions) -> str:
    """The output line(s) of one translation, newline included."""
    if stream.fmt == "jsonl":
        return json.dumps(translation_record(t, stream), ensure_ascii=False) + "\n"
    if len(t.hypotheses) <= 1:
        return t.text.replace("\n", " ") + "\n"
    # n-best in text: one line per hypothesis, Moses style
    return "".join(f"{h.text} ||| {h.score:.4f}\n" for h in t.hypotheses)


@dataclass
class Written:
    """Lines just written, in order: what progress and resume records are made of."""

    first: int  # line number of the first
    translations: list[Translation]
    raw: list[bytes]  # their input lines as read (line endings included)

    @property
    def tokens(self) -> int:
        return sum(len(t.src_tokens) for t in self.translations)


def translate_stream(
    translator: TranslatorBase,
    source: IO[bytes],
    sink: IO[str],
    search: SearchOptions | None = None,
    stream: StreamOptions | None = None,
    *,
    name: str = "<stdin>",
    skip: int = 0,
    on_progress: Callable[[Written], None] | None = None,
) -> int:
    """Translate a stream, writing each line (and flushing) as soon as the lines before it
    are written; memory stays flat in the size of the input. Returns the lines written.

    `name` names the source in messages; the first `skip` lines are not written (resume);
    `on_progress(written)` is called after each write.
    """
    raws = raw_lines(source, name, truncate=True)
    return _translate_raw(translator, raws, sink, search, stream, name, skip, on_progress)


def _translate_raw(
    translator: TranslatorBase,
    raws: Iterable[bytes],
    sink: IO[str],
    search: SearchOptions | None,
    stream: StreamOptions | None,
    name: str,
    skip: int,
    on_progress: Callable[[Written], None] | None,
) -> int:
    search = search or SearchOptions()
    stream = stream or StreamOptions()
    if (stream.with_attention or stream.fmt == "jsonl" or stream.document.markup != "none") and (
        not search.return_attention
    ):
        # jsonl records carry word alignments, markup is put back by them: both read attention
        search = replace(search, return_attention=True)
    done = 0
    for first, lines, chunk_raws in _chunks(raws, stream.chunk_lines, stream.errors, name, skip):
        ready: dict[int, Translation] = {}
        # resuming inside this chunk: its lines up to `skip` are already written
        next_i = max(0, skip + 1 - first)
        for idxs, found in translate_lines(
            translator,
            lines,
            search,
            stream.document,
            batch_tokens=stream.batch_tokens,
            line_numbers=range(first, first + len(lines)),
        ):
            ready.update(zip(idxs, found))
            start = next_i
            while next_i in ready:
                next_i += 1
            if next_i == start:
                continue
            written = Written(
                first + start,
                [ready.pop(i) for i in range(start, next_i)],
                chunk_raws[start:next_i],
            )
            _write(sink, "".join(format_translation(t, stream) for t in written.translations))
            done += len(written.translations)
            if on_progress is not None:
                on_progress(written)
    return done


def _write(sink: IO[str], text: str) -> None:
    try:
        sink.write(text)
        sink.flush()
    except BrokenPipeError:
        raise  # the reader went away: the command ends quietly
    except OSError as e:
        name = getattr(sink, "name", "the output")
        raise NmtError(f"cannot write {name} ({e.strerror or e})") from None


def fingerprint(
    translator: TranslatorBase, search: SearchOptions, stream: StreamOptions, source: IO[bytes]
) -> dict[str, Any]:
    """What an output depends on, as OUT.partial.meta records it (see nmt.translation.partial). The
    batch and chunk sizes and the error mode are left out: they change no line's text."""
    return {
        "model": translator.fingerprint(),
        "options": asdict(search)
        | {"fmt": stream.fmt, "with_attention": stream.with_attention}
        | ({"document": asdict(stream.document)} if stream.document != DocumentOptions() else {}),
        "input": {"size": stream_size(source)},
    }


def translate_file(
    translator: TranslatorBase,
    source: IO[bytes],
    output: Path,
    search: SearchOptions | None = None,
    stream: StreamOptions | None = None,
    *,
    resume: bool = False,
    name: str = "<stdin>",
    on_progress: Callable[[Written], None] | None = None,
) -> int:
    """Translate into OUTPUT through a locked OUTPUT.partial, renamed when complete; with
    `resume`, a partial file left by a killed run of the same input, model and options is
    continued after its last complete line. Devices and FIFOs are written in place (see
    nmt.translation.partial). The other arguments are translate_stream's."""
    search = search or SearchOptions()
    stream = stream or StreamOptions()
    target = output_target(output)
    if same_file(source, target.path):
        raise NmtError(f"the output {output} is the input file: choose another output")
    if resume and stream.fmt == "text" and search.nbest > 1:
        raise NmtError("resume works with one output line per input line (nbest 1)")
    if target.direct:
        if resume:
            raise NmtError(f"resume needs a regular file as output; {output} is not one")
        try:
            sink = target.path.open("w", encoding="utf-8", newline="\n")
        except OSError as e:
            raise NmtError(f"cannot write {output} ({e.strerror or e})") from None
        try:
            return translate_stream(
                translator, source, sink, search, stream, name=name, on_progress=on_progress
            )
        finally:
            # after a failed write the buffer still holds its text, which close() would try
            # to write again: that second failure says nothing new
            with contextlib.suppress(OSError):
                sink.close()
    with open_partial(target) as partial:  # never through a link planted at its name
        lock(partial, target.partial)
        n = _translate_locked(
            translator, source, partial, target, search, stream, resume, name, on_progress
        )
        os.fsync(partial.fileno())
        os.replace(target.partial, target.path)
    remove_side_files(target)
    return n


def _translate_locked(
    translator: TranslatorBase,
    source: IO[bytes],
    sink: IO[str],
    target: OutputTarget,
    search: SearchOptions,
    stream: StreamOptions,
    resume: bool,
    name: str,
    on_progress: Callable[[Written], None] | None,
) -> int:
    """translate_file's work once target.partial is open (for appending) and locked."""
    record = fingerprint(translator, search, stream, source)
    skip = complete_lines(sink) if resume else 0
    expect = read_meta(target, record) if skip else (0, InputHash().hexdigest())
    if not resume:
        sink.truncate(0)
    consumed = InputHash()
    raws = _checked_prefix(raw_lines(source, name, truncate=True), skip, expect, consumed, target)
    if skip:
        log.info("resuming %s after line %d", target.path, skip)
    else:  # a resumed run keeps the old record until it has written lines of its own
        write_meta(target, record, consumed)

    def written(w: Written) -> None:
        consumed.add(w.raw)  # lines up to `skip` were added as they were read
        write_meta(target, record, consumed)
        if on_progress is not None:
            on_progress(w)

    try:
        n = _translate_raw(translator, raws, sink, search, stream, name, skip, written)
    except PartialMismatch:
        raise
    except NmtError as e:
        if consumed.lines == 0:  # nothing translated: nothing to resume
            sink.truncate(0)
            target.partial.unlink(missing_ok=True)
            remove_side_files(target)
            raise
        how = "--resume --errors replace" if "UTF-8" in str(e) else "--resume"
        raise NmtError(
            f"{e}; the {consumed.lines} lines before are kept in {target.partial} ({how} continues)"
        ) from None
    return skip + n


class PartialMismatch(NmtError):
    """A partial output that the input being resumed cannot have produced."""


def _checked_prefix(
    raws: Iterable[bytes],
    skip: int,
    expect: tuple[int, str],
    consumed: InputHash,
    target: OutputTarget,
) -> Iterator[bytes]:
    """`raws`, checked against the partial file's record as they pass: the first expect[0]
    lines must hash to expect[1], and the input must have `skip` lines at least. The first
    `skip` lines are added to `consumed`."""
    lines, digest = expect
    check = InputHash()
    n = 0
    for n, raw in enumerate(raws, 1):
        if n <= lines:
            check.add([raw])
            if n == lines and check.hexdigest() != digest:
                raise PartialMismatch(
                    f"{target.partial} was translated from another input (its first {lines} "
                    "lines differ); run without --resume to start over"
                )
        if n <= skip:
            consumed.add([raw])
        yield raw
    if n < max(skip, lines):
        raise PartialMismatch(
            f"{target.partial} has {skip} lines but the input only {n}: it was translated "
            "from another input; run without --resume to start over"
        )
