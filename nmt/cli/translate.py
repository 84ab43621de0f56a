"""`nmt translate`: using a model (`nmt attention` is nmt/cli/attention.py)."""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from nmt import NmtError
from nmt.cli.common import err, quiet_logging, user_errors

# -- translate -------------------------------------------------------------------------
# the library's names of translate's options -> their flags, for the library's messages
_TRANSLATE_FLAGS = {
    "beam_size": "--beam-size",
    "nbest": "--nbest",
    "length_penalty": "--length-penalty",
    "max_len_ratio": "--max-len-ratio",
    "max_len_offset": "--max-len-offset",
    "min_len": "--min-len",
    "stopping": "--stopping",
    "batch_tokens": "--batch-tokens",
    "fmt": "--format",
    "errors": "--errors",
    "resume": "--resume",
    "quantize": "--quantize",
    "threads": "--threads",
    "workers": "--workers",
    "weights": "--weights",
    "attention_layer": "--layer",
    "attention_head": "--head",
    "device": "--device",
    "markup": "--markup",
    "language": "--language",
    "min_confidence": "--min-confidence",
    "glossary": "--glossary",
    "keep": "--keep",
    "terms": "--glossary",
}


@contextmanager
def _as_flags(flags: dict[str, str]):
    """An error about one of the library's options names the command's flag instead; others
    (about files, say) are left as they are."""
    try:
        yield
    except NmtError as e:
        if e.option not in flags:
            raise
        raise NmtError(e.detail, option=flags[e.option]) from None


_LAYER_HELP = "Transformer: decoder layer whose cross-attention is shown (-1: the last)."


_HEAD_HELP = "Transformer: attention head shown (0, 1, ...), or mean over heads."


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise NmtError(f"--weights must be numbers separated by commas, got {text!r}") from None


def _head(text: str) -> int | None:
    if text == "mean":
        return None
    try:
        return int(text)
    except ValueError:
        raise NmtError(f"--head must be a head number or mean, got {text!r}") from None


def translate(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint file (.pt), or a folder of nmt export --format onnx.")
    ],
    input: Annotated[Path | None, typer.Argument(help="Input file; stdin when omitted.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file; stdout when omitted.")
    ] = None,
    beam_size: Annotated[int, typer.Option("--beam-size", "-b", help="Beam size (1: greedy).")] = 5,
    nbest: Annotated[int, typer.Option(help="Hypotheses per sentence (<= beam size).")] = 1,
    length_penalty: Annotated[
        str, typer.Option(help="GNMT alpha (0: none) or avg (per token).")
    ] = "1.0",
    max_len_ratio: Annotated[
        float, typer.Option(help="Max output = ratio * source tokens + offset.")
    ] = 1.5,
    max_len_offset: Annotated[int, typer.Option(help="See --max-len-ratio.")] = 10,
    min_len: Annotated[
        int, typer.Option(help="No EOS before this many tokens (1 at least for a non-empty line).")
    ] = 0,
    stopping: Annotated[
        str,
        typer.Option(
            help="Beam done at K finished that the best open one does not beat if it ended "
            "now (early), or at any length up to the max (exact: slower, provably best)."
        ),
    ] = "early",
    batch_tokens: Annotated[int, typer.Option(help="Source tokens per batch.")] = 4096,
    fmt: Annotated[str, typer.Option("--format", help="text or jsonl.")] = "text",
    with_attention: Annotated[bool, typer.Option(help="jsonl: add tokens and attention.")] = False,
    attention_dir: Annotated[
        Path | None, typer.Option(help="Also write attention heatmaps (png) here.")
    ] = None,
    errors: Annotated[
        str, typer.Option(help="Invalid UTF-8 input: strict (error) or replace.")
    ] = "strict",
    resume: Annotated[
        bool, typer.Option(help="Continue a killed run into the same -o file.")
    ] = False,
    quantize: Annotated[str, typer.Option(help="none or int8 (CPU).")] = "none",
    threads: Annotated[
        int, typer.Option(help="CPU threads (0: torch default; 1 a worker with --workers).")
    ] = 0,
    workers: Annotated[
        str,
        typer.Option(
            help="CPU processes translating batches side by side; auto: one per core "
            "(one thread each), a single process for small inputs and on a GPU."
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto (cuda if available), cpu, cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    ensemble: Annotated[
        list[Path] | None,
        typer.Option(
            help="Another checkpoint (or export) to average with CHECKPOINT (repeatable)."
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Ensemble weights, one a model, e.g. 0.5,0.3,0.2.")
    ] = None,
    layer: Annotated[int, typer.Option(help=_LAYER_HELP)] = -1,
    head: Annotated[str, typer.Option(help=_HEAD_HELP)] = "mean",
    split_sentences: Annotated[
        bool,
        typer.Option(
            help="Lines are paragraphs: each sentence translated on its own, the line rebuilt."
        ),
    ] = False,
    language: Annotated[
        str,
        typer.Option(
            help="Source language of --split-sentences (de, en, fr, ...); auto: the "
            "model's data.src_lang if the splitter knows it, else en."
        ),
    ] = "auto",
    markup: Annotated[
        str, typer.Option(help="none, html or xml: tags kept out of the model and put back.")
    ] = "none",
    min_confidence: Annotated[
        float | None,
        typer.Option(
            help="Flag lines whose mean piece log-probability is below this (jsonl "
            "low_confidence; a count on stderr)."
        ),
    ] = None,
    glossary: Annotated[
        Path | None,
        typer.Option(
            help="TSV of source term TAB target term (empty target: keep the term): each "
            "term found in a line is in its output (constrained beam search)."
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            help="Regular expression of spans kept verbatim (repeatable).", metavar="REGEX"
        ),
    ] = None,
    placeholders: Annotated[
        bool,
        typer.Option(help="Keep numbers, URLs, e-mail addresses and `code spans` verbatim."),
    ] = False,
) -> None:
    """Translate a file or stdin, one output line per input line, in input order."""
    # long: one parameter per option, each passed on once to the library's typed options
    quiet_logging(quiet)
    with user_errors(), _as_flags(_TRANSLATE_FLAGS):
        from dataclasses import replace

        from nmt.search_options import SearchOptions
        from nmt.translation.loading import open_translator
        from nmt.translation.streaming import StreamOptions

        # jsonl records carry the attention whenever it is computed, heatmaps included
        attention = with_attention or attention_dir is not None
        if with_attention and fmt == "text":
            raise NmtError("--with-attention adds to jsonl records: give --format jsonl too")
        search = SearchOptions(
            beam_size=beam_size,
            nbest=nbest,
            length_penalty=length_penalty,
            max_len_ratio=max_len_ratio,
            max_len_offset=max_len_offset,
            min_len=min_len,
            stopping=stopping,
            return_attention=attention,
            # text shows scores only in n-best lists; confidence is made of them
            scores=fmt != "text" or nbest > 1 or min_confidence is not None,
            terms=_terms(glossary, keep, placeholders),
        )
        from nmt.translation.partial import check_streams

        interactive = check_streams(input, output, resume, attention_dir)
        document = _document_options(split_sentences, language, markup, min_confidence)
        translator = open_translator(
            [checkpoint, *(ensemble or [])],
            device=device,
            quantize=quantize,
            threads=threads,
            workers=_workers(workers),
            weights=_weights(weights),
            attention_layer=layer,
            attention_head=_head(head),
        )
        if language == "auto" and split_sentences:  # pysbd's rules load only when used
            from nmt.translation.documents import language_of

            document = replace(document, language=language_of(translator.config))
        stream = StreamOptions(
            batch_tokens=batch_tokens,
            fmt=fmt,
            errors=errors,
            with_attention=attention,
            chunk_lines=1 if interactive else StreamOptions.chunk_lines,
            document=document,
        )
        if not interactive and translator.workers > 1:
            # each worker takes several batches of a chunk: with many, 1,000 lines would make
            # batches too small to use a core well
            chunk = max(stream.chunk_lines, _LINES_PER_WORKER * translator.workers)
            stream = replace(stream, chunk_lines=chunk)
        # torch, the model and everything loaded so far live as long as the process: kept out
        # of the cyclic garbage collector, whose full passes over their 170k objects took
        # 0.07 s each, one per 1,000 sentences translated here
        gc.freeze()
        if interactive:
            err.print("Type a sentence and press Enter; Ctrl-D ends.", highlight=False)
        source = input.open("rb") if input else sys.stdin.buffer
        try:
            quiet = quiet or interactive  # no bar between typed lines
            _translate_source(
                translator, source, output, search, stream, resume, input, attention_dir, quiet
            )
        finally:
            translator.close()
            if input:
                source.close()


def _terms(glossary: Path | None, keep: list[str] | None, placeholders: bool):
    """The Terms of --glossary, --keep and --placeholders; None without them."""
    from nmt.terms import Terms, read_glossary

    if glossary is None and not keep and not placeholders:
        return None
    entries = read_glossary(glossary) if glossary is not None else ()
    return Terms(glossary=entries, keep=tuple(keep or ()), placeholders=placeholders)


def _document_options(
    split_sentences: bool, language: str, markup: str, min_confidence: float | None
):
    """The DocumentOptions of the flags, checked before the model loads (auto: en for now,
    the model's language once it is loaded)."""
    from nmt.translation.documents import DocumentOptions

    return DocumentOptions(
        split_sentences=split_sentences,
        language="en" if language == "auto" else language,
        markup=markup,
        min_confidence=min_confidence,
    )


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise NmtError(f"--workers must be auto or a whole number >= 1, got {value!r}") from None


def _translate_source(
    translator,
    source,
    output: Path | None,
    search,
    stream,
    resume: bool,
    input: Path | None,
    attention_dir: Path | None,
    quiet: bool,
) -> None:
    from nmt.translation.partial import stream_size
    from nmt.translation.streaming import is_low, translate_file, translate_stream

    name = str(input) if input else "<stdin>"
    threshold = stream.document.min_confidence
    low, lines = 0, 0
    with _translate_progress(quiet, stream_size(source)) as on_progress:

        def written(w) -> None:
            nonlocal low, lines
            on_progress(w)
            if attention_dir is not None:
                _save_maps(w.translations, w.first, attention_dir)
            if threshold is not None:
                lines += sum(1 for t in w.translations if t.hypotheses)
                low += sum(is_low(t, threshold) for t in w.translations)

        if output is None:
            translate_stream(
                translator, source, sys.stdout, search, stream, name=name, on_progress=written
            )
        else:
            translate_file(
                translator,
                source,
                output,
                search,
                stream,
                resume=resume,
                name=name,
                on_progress=written,
            )
    if threshold is not None and low:
        err.print(
            f"warning: {low} of {lines} translated lines have a confidence below "
            f"--min-confidence {threshold:g}",
            highlight=False,
        )


# lines of a chunk per worker process
_LINES_PER_WORKER = 250


# off a terminal, a progress line at most this often (seconds)
_PROGRESS_LOG_S = 30.0


@contextmanager
def _translate_progress(quiet: bool, total_bytes: int | None):
    """on_progress(written): a live bar on a terminal (with an ETA when the input's size is
    known: bytes read of the file's size), a plain line every _PROGRESS_LOG_S off one."""
    if quiet:  # nothing to show: rich's progress machinery is not even imported
        yield lambda written: None
        return
    import time

    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    live = err.is_terminal and not quiet
    progress = Progress(
        TextColumn("{task.fields[sentences]:,} sentences"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not live,
    )
    task = progress.add_task("translate", total=total_bytes, sentences=0, tokens=0, rate="")
    start = last_line = time.monotonic()

    def on_progress(written) -> None:
        nonlocal last_line
        t = progress.tasks[task]
        sentences = t.fields["sentences"] + len(written.translations)
        tokens = t.fields["tokens"] + written.tokens
        now = time.monotonic()
        elapsed = max(now - start, 1e-9)
        rate = f"{sentences / elapsed:,.1f} sent/s  {tokens / elapsed:,.0f} tok/s"
        nbytes = sum(map(len, written.raw))
        progress.update(task, advance=nbytes, sentences=sentences, tokens=tokens, rate=rate)
        if not live and not quiet and now - last_line >= _PROGRESS_LOG_S:
            last_line = now
            share = f" ({100 * t.completed / total_bytes:.0f}%)" if total_bytes else ""
            err.print(f"{sentences:,} sentences{share}, {rate}", highlight=False, soft_wrap=True)

    with progress:
        yield on_progress


def _save_maps(results, first: int, out_dir: Path) -> None:
    from nmt.analysis.heatmaps import save_attention_maps

    save_attention_maps(results, out_dir, "png", first_line=first)
