"""The `nmt` command: parsing and printing only; the work is done by library functions.

Results go to stdout, logs and progress to stderr. A user error (`NmtError`) is one line on
stderr and exit code 2. Heavy imports (torch) happen inside the commands so `--help` is fast.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from nmt import NmtError
from nmt.heap import reuse_freed_memory

app = typer.Typer(
    name="nmt",
    help="Attention RNN neural machine translation: train, translate, score, inspect.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
data_app = typer.Typer(help="Built-in data.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Sentencepiece tokenizers.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
inspect_app = typer.Typer(
    help="Look inside a trained model: gradient flow, exposure bias.", no_args_is_help=True
)
app.add_typer(inspect_app, name="inspect")

err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from nmt import __version__

        print(f"nmt {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        int,
        # metavar "": a counter takes no value, so --help shows none
        typer.Option(
            "--verbose", "-v", count=True, metavar="", show_default=False, help="Debug logs."
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    for noisy in ("datasets", "huggingface_hub", "fsspec", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Commands that change the process beyond their own work (see `run`), and why:
# - translate: glibc's allocator keeps freed memory for the next decoder step instead of
#   mapping and faulting it in again (nmt/heap.py); a beam search step allocates tensors of
#   tens of megabytes. train and attention keep glibc's defaults: no measurement shows a gain.
_ALLOCATOR_COMMANDS = frozenset({"translate"})
# - these load torch and a model, whose many thousands of objects Python's shutdown would free
#   one by one, a noticeable part of a short command: they leave with os._exit instead.
#   Commands that never load torch (score, plot, data, tokenizer) leave the usual way.
_FAST_EXIT_COMMANDS = frozenset({"translate", "train", "attention"})


def _command_name(args: list[str]) -> str | None:
    """The command `args` name: the first that is not an option (the app's own options, -v
    and --help, take no value)."""
    return next((a for a in args if not a.startswith("-")), None)


def run() -> None:
    """The `nmt` command: tune the process for the commands that gain (see above), run the app,
    flush, and leave the commands of `_FAST_EXIT_COMMANDS` without the interpreter's teardown.

    Those commands have closed their files (outputs are renamed into place) and stopped their
    worker processes by the time they return, so os._exit loses nothing.
    Errors that escape a command take the usual way out, traceback included.
    """
    command = _command_name(sys.argv[1:])
    if command in _ALLOCATOR_COMMANDS:
        reuse_freed_memory()
    try:
        app(prog_name="nmt")
        code: int | str | None = 0
    except SystemExit as e:
        code = e.code
    if command not in _FAST_EXIT_COMMANDS:
        sys.exit(code)
    if isinstance(code, str):  # what sys.exit("message") would print
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe or stream (None when closed at start): nothing to deliver
        with suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code or 0)


@contextmanager
def user_errors():
    """NmtError -> one line on stderr, exit code 2; a closed pipe ends quietly."""
    try:
        yield
    except NmtError as e:
        from rich.markup import escape

        # the message quotes file names and values the user typed: never markup or emoji
        err.print(
            f"[red]error:[/red] {escape(str(e))}",
            markup=True,
            emoji=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None


def _at_least(option: str, value: int, low: int) -> None:
    # checked here rather than with typer's min=: one line on stderr like every other error
    if value < low:
        raise NmtError(f"{option} must be >= {low}, got {value}")


def _quiet(quiet: bool) -> None:
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)


# -- data ------------------------------------------------------------------------------
@data_app.command("toy")
def data_toy(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write train|valid|test.{en,pt} (.pt: Portuguese, not a checkpoint).",
        ),
    ],
    size: Annotated[
        int, typer.Option(help="Training pairs (valid/test get size/20, at least 50).")
    ] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Write the built-in English -> Portuguese corpus (no download).

    Files are named by language: .en English, .pt Portuguese (the language code, although
    checkpoints end in .pt too)."""
    from nmt.toy import write_corpus

    with user_errors():
        try:
            counts = write_corpus(out, size=size, seed=seed)
        except ValueError as e:
            raise NmtError(f"--size: {e}") from None
    err.print(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), soft_wrap=True)


# -- tokenizer -------------------------------------------------------------------------
@tokenizer_app.command("train")
def tokenizer_train(
    src: Annotated[Path, typer.Option(help="Source training text.")],
    tgt: Annotated[Path, typer.Option(help="Target training text.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the sentencepiece models.")],
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size (per model, >= 8).")] = 8000,
    model_type: Annotated[str, typer.Option(help="unigram or bpe.")] = "unigram",
    joint: Annotated[
        bool, typer.Option("--joint/--separate", help="One model for both sides.")
    ] = True,
) -> None:
    """Train sentencepiece (pad 0, unk 1, bos 2, eos 3) on parallel text."""
    from nmt.corpus import read_parallel
    from nmt.tokenizer import check_tokenizer_dir, train_tokenizer

    with user_errors():
        _at_least("--vocab-size", vocab_size, 8)
        if model_type not in ("unigram", "bpe"):
            raise NmtError(f"--model-type must be unigram or bpe, got {model_type!r}")
        check_tokenizer_dir(out)
        src_lines, tgt_lines = read_parallel(src, tgt)
        tok = train_tokenizer(src_lines, tgt_lines, vocab_size, model_type, joint)
        tok.save(out)
    err.print(
        f"wrote {out}: {'joint' if joint else 'separate'} {model_type}, "
        f"vocab {tok.src_vocab_size}/{tok.tgt_vocab_size}",
        soft_wrap=True,
    )


_SIDE = typer.Option(help="src or tgt model (the same one when joint).")
_SOURCE = typer.Argument(help="Tokenizer folder (nmt tokenizer train) or checkpoint.")
_LINES_PER_CHUNK = 1000  # stdin is processed in chunks: output flows, memory stays flat


def _map_stdin(fn) -> None:
    """fn(lines, first line number) -> lines, over stdin in chunks, to stdout."""
    from itertools import islice

    from nmt.corpus import decode_line

    first = 1
    while chunk := list(islice(sys.stdin.buffer, _LINES_PER_CHUNK)):
        lines = [decode_line(raw, f"<stdin>:{first + i}") for i, raw in enumerate(chunk)]
        sys.stdout.write("".join(line + "\n" for line in fn(lines, first)))
        first += len(chunk)


@tokenizer_app.command("encode")
def tokenizer_encode(
    source: Annotated[Path, _SOURCE],
    side: Annotated[str, _SIDE] = "src",
    ids: Annotated[bool, typer.Option("--ids", help="Ids instead of pieces.")] = False,
) -> None:
    """Text on stdin -> space-separated pieces (or ids) on stdout, line by line."""
    from nmt.checkpoint import load_tokenizer
    from nmt.tokenizer import encode_lines

    with user_errors():
        tok = load_tokenizer(source)
        _map_stdin(lambda lines, first: encode_lines(tok, lines, side, ids))


@tokenizer_app.command("decode")
def tokenizer_decode(
    source: Annotated[Path, _SOURCE],
    side: Annotated[str, _SIDE] = "tgt",
    ids: Annotated[bool, typer.Option("--ids", help="Ids instead of pieces.")] = False,
) -> None:
    """Space-separated pieces (or ids) on stdin -> text on stdout, line by line."""
    from nmt.checkpoint import load_tokenizer
    from nmt.tokenizer import decode_lines

    with user_errors():
        tok = load_tokenizer(source)
        _map_stdin(lambda lines, first: decode_lines(tok, lines, side, ids, first))


@tokenizer_app.command("vocab")
def tokenizer_vocab(
    source: Annotated[Path, _SOURCE],
    side: Annotated[str, _SIDE] = "src",
) -> None:
    """Every piece: id, piece and score, tab-separated."""
    from nmt.checkpoint import load_tokenizer
    from nmt.tokenizer import vocab_rows

    with user_errors():
        rows = vocab_rows(load_tokenizer(source), side)
        sys.stdout.write("".join(f"{i}\t{piece}\t{score:g}\n" for i, piece, score in rows))


# -- prepare ---------------------------------------------------------------------------
@app.command()
def prepare(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config (sections data, model, train)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override an option: section.key=value (repeatable)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
) -> None:
    """Tokenize the training data into its cache (data.cache_dir, else RUN_DIR/cache), and
    train the tokenizer first if the config names none; `nmt train` does it when missing."""
    from nmt.config import load_config
    from nmt.prepare import prepare_data

    _quiet(quiet)
    with user_errors():
        cfg = load_config(config, overrides or [])
        with _prepare_progress(quiet) as on_progress:
            data, _ = prepare_data(cfg, on_progress=on_progress)
    cache = data.train_ids
    summary = {"cache": None, "pairs": len(data.train_src)}
    if cache is not None:
        summary = {"cache": str(cache.path), "pairs": len(cache), "filter": cache.meta["stats"]}
    print(json.dumps(summary))


@contextmanager
def _prepare_progress(quiet: bool):
    """A progress bar on a terminal; elsewhere (or quiet) None: the library logs lines."""
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("tokenizing"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.fields[pairs]:,} pairs"),
        TimeElapsedColumn(),
        console=err,
    )
    task = progress.add_task("prepare", total=1.0, pairs=0)

    def on_progress(pairs: int, fraction: float) -> None:
        progress.update(task, completed=fraction, pairs=pairs)

    with progress:
        yield on_progress


# -- train -----------------------------------------------------------------------------
@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config (sections data, model, train)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override an option: section.key=value (repeatable)."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue from a checkpoint (usually RUN_DIR/last.pt) with its model, data "
            "and training options; options given again may change only limits, logging, "
            "validation, threads and device."
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start over in a run dir that holds a run: removes its best.pt, last.pt, "
            "log.jsonl and the tokenizer/ it trained.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
) -> None:
    """Train a model. Every option is listed in README.md; `--set` overrides the file."""
    from nmt.checkpoint import saved_config
    from nmt.config import config_from_dict, load_raw, resume_config
    from nmt.train import train as run_training

    _quiet(quiet)
    with user_errors():
        given = load_raw(config, overrides or [])
        if resume is None:
            cfg = config_from_dict(given)
        else:
            # the checkpoint's config, with what may change mid-run; a file that is no
            # checkpoint is refused before the run dir, tokenizer and logs are touched
            cfg = resume_config(saved_config(resume), given, str(resume))
        with _train_progress(quiet) as (on_log, on_progress):
            result = run_training(
                cfg, resume=resume, on_log=on_log, overwrite=overwrite, on_progress=on_progress
            )
    # torchrun starts one process a rank (RANK): the result is printed once
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))


_PLAIN_EVERY_S = 30.0  # off a terminal, a progress line this often


def _eta(seconds: float | None) -> str:
    from nmt.progress import format_duration

    return "" if seconds is None else f"ETA {format_duration(seconds)}"


@contextmanager
def _train_progress(quiet: bool):
    """(on_log, on_progress) for the trainer: on a terminal a live bar updated every step;
    otherwise a plain line every _PLAIN_EVERY_S seconds; validation results either way."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    live = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("step {task.fields[step]}  epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=err,
        disable=not live,
    )
    task = progress.add_task("train", total=None, step=0, epoch="", status="", eta="")
    last = {"loss": "", "printed": time.monotonic()}

    def on_progress(p) -> None:
        if quiet:
            return
        epoch = f"{p.epoch} ({p.batch}/{p.batches})"
        status = "validating" if p.phase == "valid" else f"{p.tokens_per_s:,.0f} tok/s"
        status += f"  {last['loss']}" if last["loss"] else ""
        if live:
            done = p.elapsed / (p.elapsed + p.eta) if p.eta is not None else None
            progress.update(
                task, total=1.0 if done is not None else None, completed=done or 0,
                step=p.step, epoch=epoch, status=status, eta=_eta(p.eta),
            )  # fmt: skip
            return
        now = time.monotonic()
        if now - last["printed"] >= _PLAIN_EVERY_S:
            last["printed"] = now
            line = f"step {p.step}, epoch {epoch}: {status}  {_eta(p.eta)}".rstrip()
            err.print(line, highlight=False, soft_wrap=True, markup=False)

    def on_log(record: dict) -> None:
        if quiet:
            return
        if record["kind"] == "train":
            last["loss"] = f"loss {record['loss']:.3f}  lr {record['lr']:.2e}"
        elif record["kind"] == "valid":
            if live:  # "validating" is over
                progress.update(task, status=f"validated: BLEU {record['bleu']:.2f}")
            err.print(
                f"step {record['step']}: valid loss {record['valid_loss']:.3f} "
                f"ppl {record['valid_ppl']:.2f} BLEU {record['bleu']:.2f} "
                f"chrF {record['chrf']:.2f}",
                highlight=False,
                soft_wrap=True,
            )

    with progress:
        yield on_log, on_progress


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
}


@contextmanager
def _as_flags(flags: dict[str, str]):
    """The library's messages about its options (they start with the option's name) name
    the command's flags instead; others (about files, say) are left as they are."""
    import re

    try:
        yield
    except NmtError as e:
        names = "|".join(flags)
        message = str(e)
        if not re.match(rf"({names}) ", message):
            raise
        # a name standing alone, not part of a path or a longer word
        message = re.sub(rf"(?<![\w./-])({names})(?![\w./-])", lambda m: flags[m[1]], message)
        raise NmtError(message) from None


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


@app.command()
def translate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt).")],
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
    min_len: Annotated[int, typer.Option(help="No EOS before this many tokens.")] = 0,
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
        typer.Option(help="Another checkpoint to average with CHECKPOINT (repeatable)."),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Ensemble weights, one a model, e.g. 0.5,0.3,0.2.")
    ] = None,
    layer: Annotated[int, typer.Option(help=_LAYER_HELP)] = -1,
    head: Annotated[str, typer.Option(help=_HEAD_HELP)] = "mean",
) -> None:
    """Translate a file or stdin, one output line per input line, in input order."""
    # long: one parameter per option, each passed on once to the library's typed options
    _quiet(quiet)
    with user_errors(), _as_flags(_TRANSLATE_FLAGS):
        from dataclasses import replace

        from nmt.search import SearchOptions
        from nmt.translate import StreamOptions, Translator

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
            scores=fmt != "text" or nbest > 1,  # text shows scores only in n-best lists
        )
        from nmt.outfile import check_streams

        interactive = check_streams(input, output, resume, attention_dir)
        stream = StreamOptions(
            batch_tokens=batch_tokens,
            fmt=fmt,
            errors=errors,
            with_attention=attention,
            chunk_lines=1 if interactive else StreamOptions.chunk_lines,
        )
        translator = Translator(
            [checkpoint, *(ensemble or [])],
            device=device,
            quantize=quantize,
            threads=threads,
            workers=_workers(workers),
            weights=_weights(weights),
            attention_layer=layer,
            attention_head=_head(head),
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
    from nmt.outfile import stream_size
    from nmt.translate import translate_file, translate_stream

    name = str(input) if input else "<stdin>"
    with _translate_progress(quiet, stream_size(source)) as on_progress:

        def written(w) -> None:
            on_progress(w)
            if attention_dir is not None:
                _save_maps(w.translations, w.first, attention_dir)

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


# lines of a chunk per worker process
_LINES_PER_WORKER = 250
# off a terminal, a progress line at most this often (seconds)
_PROGRESS_LOG_S = 30.0


@contextmanager
def _translate_progress(quiet: bool, total_bytes: int | None):
    """on_progress(written): a live bar on a terminal (with an ETA when the input's size is
    known: bytes read of the file's size), a plain line every _PROGRESS_LOG_S off one."""
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
    from nmt.heatmaps import save_attention_maps

    save_attention_maps(results, out_dir, "png", first_line=first)


# -- score -----------------------------------------------------------------------------
@app.command()
def score(
    ref: Annotated[
        list[Path],
        typer.Option(help="References, line-aligned with the hypotheses (repeat for several)."),
    ],
    hyp: Annotated[
        list[str],
        typer.Option(
            help="Hypotheses, one per line; stdin when omitted or -. Repeat with --by-length."
        ),
    ] = ["-"],  # noqa: B006 (typer reads the default, nothing mutates it)
    metrics: Annotated[
        str, typer.Option(help="Comma-separated: bleu, chrf, ter.")
    ] = "bleu,chrf,ter",
    baseline: Annotated[
        Path | None,
        typer.Option(help="Baseline hypotheses: test whether --hyp differs significantly."),
    ] = None,
    paired: Annotated[
        str,
        typer.Option(help="With --baseline: bs (paired bootstrap) or ar (approx. randomization)."),
    ] = "bs",
    paired_n: Annotated[
        int, typer.Option(help="Resamples (bs) or trials (ar); 0: sacreBLEU's 1000 / 10000.")
    ] = 0,
    by_length: Annotated[
        Path | None,
        typer.Option(
            help="Source file: BLEU and chrF per bucket of source length (words), per --hyp."
        ),
    ] = None,
    bucket_width: Annotated[int, typer.Option(help="With --by-length: words a bucket.")] = 10,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="With --by-length: image of the buckets.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """sacreBLEU BLEU, chrF and TER of detokenized text, with signatures; significance too."""
    if by_length is not None:
        _score_by_length(by_length, hyp, ref, bucket_width, plot_out, as_json, baseline)
        return
    from nmt.corpus import check_aligned, read_lines, read_stream
    from nmt.metrics import METRICS, as_dicts, paired_test
    from nmt.metrics import score as corpus_score

    # sacreBLEU logs each step of a paired test at INFO
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)
    with user_errors():
        names = tuple(m.strip().lower() for m in metrics.split(",") if m.strip())
        if not names or set(names) - set(METRICS):
            raise NmtError(
                f"--metrics takes {','.join(METRICS)} (comma-separated), got {metrics!r}"
            )
        if paired not in ("bs", "ar"):
            raise NmtError(f"--paired must be bs or ar, got {paired!r}")
        _at_least("--paired-n", paired_n, 0)
        if len(hyp) > 1 or plot_out is not None:
            raise NmtError("several --hyp and --plot need --by-length SRC")
        # file name -> lines, hypotheses first: errors name the file
        hyp = hyp[0]
        hyp_name = "<stdin>" if hyp == "-" else hyp
        texts = {
            hyp_name: read_stream(sys.stdin.buffer, hyp_name) if hyp == "-" else read_lines(hyp)
        }
        if baseline is not None:
            texts[str(baseline)] = read_lines(baseline)
        texts.update((str(r), read_lines(r)) for r in ref)
        check_aligned(texts)
        hyps, refs = texts[hyp_name], [texts[str(r)] for r in ref]
        if baseline is None:
            results = corpus_score(hyps, refs, names)
        else:
            results = paired_test(texts[str(baseline)], hyps, refs, names, paired, paired_n)
    if as_json:
        print(json.dumps(as_dicts(results), indent=2))
    elif baseline is None:
        for s in results:
            print(f"{s.name}|{s.signature} = {s.text.split(' = ', 1)[1]}")
    else:
        for p in results:
            base = _with_ci(p.baseline, p.baseline_mean, p.baseline_ci)
            new = _with_ci(p.system, p.system_mean, p.system_ci)
            print(f"{p.name}|{p.signature} = baseline {base}, system {new}, p = {p.p_value:.4f}")


def _score_by_length(
    src: Path,
    hyps: list[str],
    refs: list[Path],
    width: int,
    plot_out: Path | None,
    as_json: bool,
    baseline: Path | None,
) -> None:
    from dataclasses import asdict

    from nmt.buckets import score_by_length
    from nmt.corpus import check_aligned, read_lines
    from nmt.figures import plot_by_length

    with user_errors():
        _at_least("--bucket-width", width, 1)
        if baseline is not None:
            raise NmtError("--baseline and --by-length: give the baseline as one more --hyp")
        if "-" in hyps:
            raise NmtError("--by-length reads --hyp from files (no stdin)")
        texts = {str(p): read_lines(p) for p in [src, *hyps, *refs]}
        check_aligned(texts)
        if not texts[str(src)]:
            raise NmtError(f"--by-length {src} is empty")
        # files named alike in run folders (a/test.hyp, b/test.hyp): their folders tell them apart
        names = [Path(h).name for h in hyps]
        if len(set(names)) < len(names):
            names = [f"{Path(h).parent.name}/{Path(h).name}" for h in hyps]
        if len(set(names)) < len(names):
            names = hyps
        systems = {name: texts[h] for name, h in zip(names, hyps)}
        refs_lines = [texts[str(r)] for r in refs]
        buckets = score_by_length(texts[str(src)], systems, refs_lines, width=width)
        rows = [{"label": b.label, "count": len(b.lines), **asdict(b)} for b in buckets]
        if plot_out is not None:
            plot_by_length(rows, plot_out)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "lines"} for r in rows], indent=2))
        return
    heads = [f"{name} {m}" for name in rows[0]["scores"] for m in ("BLEU", "chrF")]
    print("\t".join(["words", "lines", *heads]))
    for r in rows:
        cells = [f"{v:.2f}" for s in r["scores"].values() for v in s.values()]
        print("\t".join([r["label"], str(r["count"]), *cells]))


def _with_ci(score: float, mean: float | None, ci: float | None) -> str:
    # sacreBLEU's notation: the bootstrap mean and the half width of its 95% interval
    return f"{score:.2f}" if mean is None else f"{score:.2f} (μ = {mean:.2f} ± {ci:.2f})"


# -- export and info -------------------------------------------------------------------
@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (best.pt, last.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export file to write.")],
    dtype: Annotated[
        str, typer.Option(help="float32, float16 or bfloat16 (loaded back as float32).")
    ] = "float32",
    quantize: Annotated[
        str, typer.Option(help="none (int8: use translate --quantize int8).")
    ] = "none",
) -> None:
    """Weights, config and tokenizer only: what translate and attention need, without the
    optimizer state (train --resume refuses it)."""
    from nmt.export import export_checkpoint

    with user_errors():
        result = export_checkpoint(checkpoint, out, dtype=dtype, quantize=quantize)
    err.print(
        f"wrote {result.path}: {result.size_bytes / 1e6:.1f} MB ({result.dtype}), "
        f"from {result.source_size_bytes / 1e6:.1f} MB",
        soft_wrap=True,
        highlight=False,
    )


@app.command()
def average(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(help="Checkpoint files, or one run folder with --last N or --best N."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Averaged checkpoint to write.")],
    last: Annotated[
        int, typer.Option(help="With a run folder: its N checkpoints of the highest steps.")
    ] = 0,
    best: Annotated[
        int, typer.Option(help="With a run folder: its N best (train.keep_best N or more).")
    ] = 0,
) -> None:
    """The mean of the weights of checkpoints of one model config and tokenizer, written as
    an export (translate reads it; train --resume does not)."""
    from nmt.average import average_checkpoints, best_checkpoints, last_checkpoints

    with user_errors():
        if last and best:
            raise NmtError("--last and --best exclude each other: choose one")
        folders = [p for p in checkpoints if p.is_dir()]
        if folders:
            if len(checkpoints) != 1 or not (last or best):
                raise NmtError(f"{folders[0]} is a folder: pass it alone with --last or --best N")
            folder = folders[0]
            checkpoints = last_checkpoints(folder, last) if last else best_checkpoints(folder, best)
        elif last or best:
            raise NmtError("--last and --best need one run folder instead of checkpoint files")
        result = average_checkpoints(checkpoints, out)
    steps = ", ".join("?" if s is None else str(s) for s in result.steps)
    err.print(
        f"wrote {result.path}: the mean of {len(result.inputs)} checkpoints (steps {steps})",
        soft_wrap=True,
        highlight=False,
    )


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or export file.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Kind, architecture, parameters, vocabularies, training progress and versions."""
    from nmt.export import checkpoint_info

    with user_errors():
        found = checkpoint_info(checkpoint)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    best = found["best"]
    lines = {
        "kind": found["kind"],
        "size": f"{found['size_bytes'] / 1e6:.1f} MB",
        "parameters": f"{found['parameters']:,}",
        "weights": found["dtype"],
        "vocabulary": f"src {found['src_vocab']}, tgt {found['tgt_vocab']}"
        + (" (joint)" if found["joint_tokenizer"] else ""),
        "step": found["step"],
        "epoch": found["epoch"],
        "best": f"{best:.4g} ({found['metric']})" if best is not None else "-",
        "model": ", ".join(f"{k}={v}" for k, v in found["model"].items()),
        "versions": ", ".join(f"{k} {v}" for k, v in found["versions"].items()),
    }
    for key, value in lines.items():
        print(f"{key + ':':12}{'-' if value is None else value}")


@app.command()
def serve(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or export file.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="CPU processes translating batches side by side.")
    ] = 1,
    threads: Annotated[int, typer.Option(help="CPU threads (0: torch default).")] = 0,
    quantize: Annotated[str, typer.Option(help="none or int8 (CPU).")] = "none",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    max_batch_tokens: Annotated[
        int, typer.Option(help="Sentences x longest source in a batch of merged requests.")
    ] = 4096,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request may wait for its batch to fill.")
    ] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1_000_000,
    max_sentences: Annotated[int, typer.Option(help="Sentences a request.")] = 64,
    max_chars: Annotated[int, typer.Option(help="Characters a sentence.")] = 2000,
    max_beam: Annotated[int, typer.Option(help="Largest beam_size a request may ask.")] = 16,
    max_nbest: Annotated[int, typer.Option(help="Largest nbest a request may ask.")] = 16,
    max_concurrent: Annotated[
        int, typer.Option(help="/translate requests in flight; more get 503.")
    ] = 128,
) -> None:
    """Serve a model over HTTP: POST /translate, GET /health, /info, /docs, and a page at /."""
    # long: one parameter per option, each passed on once to the library's typed options
    with user_errors():
        from nmt.batcher import BatchOptions
        from nmt.serve import Limits, serve

        limits = Limits(
            max_body_bytes=max_body_bytes,
            max_sentences=max_sentences,
            max_chars=max_chars,
            max_beam=max_beam,
            max_nbest=max_nbest,
            max_concurrent=max_concurrent,
        )
        batching = BatchOptions(max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms)
        serve(
            checkpoint,
            host=host,
            port=port,
            device=device,
            quantize=quantize,
            threads=threads,
            workers=workers,
            limits=limits,
            batching=batching,
        )


# -- attention and plots ---------------------------------------------------------------
def _line_range(spec: str) -> tuple[int, int]:
    try:
        a, _, b = spec.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise NmtError(f"--lines must look like 1-20 or 7, got {spec!r}") from None
    if first < 1 or last < first:
        raise NmtError(f"--lines {spec}: need 1 <= first <= last")
    return first, last


@app.command()
def attention(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the heatmaps.")],
    text: Annotated[str | None, typer.Option(help="One sentence to translate.")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Input file.")] = None,
    lines: Annotated[
        str | None, typer.Option(help="Lines of --input, e.g. 1-20 (default: 1-20).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png, svg, pdf, html, npz or json.")] = "png",
    beam_size: Annotated[int, typer.Option("--beam-size", "-b", help="Beam size (1: greedy).")] = 5,
    words: Annotated[bool, typer.Option(help="Merge subword pieces into words.")] = False,
    layer: Annotated[int, typer.Option(help=_LAYER_HELP)] = -1,
    head: Annotated[str, typer.Option(help=_HEAD_HELP)] = "mean",
) -> None:
    """Translate and write one attention heatmap per sentence."""
    with user_errors(), _as_flags(_TRANSLATE_FLAGS):
        from nmt.corpus import read_lines
        from nmt.heatmaps import FORMATS, save_attention_maps
        from nmt.outfile import check_dir
        from nmt.translate import Translator

        if fmt not in FORMATS:
            raise NmtError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if (text is None) == (input is None):
            raise NmtError("give exactly one of --text and --input")
        if text is not None:
            first, sentences = 1, [text]
        else:
            first, last = _line_range(lines or "1-20")
            all_lines = read_lines(input)
            sentences = all_lines[first - 1 : last]
            if not sentences:
                raise NmtError(f"{input} has no lines in --lines {lines or '1-20'}")
            if lines is not None and last > len(all_lines):
                shown = f"{first}-{len(all_lines)}"
                log = logging.getLogger(__name__)
                log.warning(
                    "--lines %s: %s has %d lines, plotting %s", lines, input, len(all_lines), shown
                )
        check_dir(out, "-o")  # before the model is loaded and run
        translator = Translator(checkpoint, attention_layer=layer, attention_head=_head(head))
        if translator.config.model.attention == "none":
            raise NmtError(
                f"{checkpoint} was trained with attention none: there is no attention to plot"
            )
        results = translator.translate(sentences, beam_size=beam_size, return_attention=True)
        paths = save_attention_maps(results, out, fmt, first_line=first, words=words)
    for p in paths:
        print(p)


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders holding log.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file (png, svg or pdf).")] = Path(
        "curves.png"
    ),
    x: Annotated[str, typer.Option("--x", help="step or time.")] = "step",
) -> None:
    """Training curves (loss, validation loss, BLEU, chrF, learning rate) of one or more runs."""
    from nmt.curves import plot_curves

    with user_errors():
        try:
            path = plot_curves(run_dirs, out, x)
        except ValueError as e:
            raise NmtError(str(e)) from None
    print(path)


# -- inspect ---------------------------------------------------------------------------
def _inspect_files(src: Path, tgt: Path, lines: int) -> None:
    _at_least("--lines", lines, 1)
    for p in (src, tgt):
        if not p.is_file():
            raise NmtError(f"{p} does not exist")


@inspect_app.command("gradients")
def inspect_gradients(
    checkpoint: Annotated[Path, typer.Argument(help="RNN checkpoint file (.pt).")],
    src: Annotated[Path, typer.Option(help="Source sentences, one per line.")],
    tgt: Annotated[Path, typer.Option(help="Reference translations, line-aligned.")],
    lines: Annotated[int, typer.Option(help="Sentence pairs used (the first N).")] = 100,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Image (png, svg, pdf).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Norm of the loss gradient w.r.t. each encoder hidden state, by source position,
    averaged over sentences (nmt/gradflow.py says exactly what is measured)."""
    from dataclasses import asdict

    from nmt.figures import plot_gradient_flow
    from nmt.gradflow import gradient_flow_of_files

    with user_errors():
        _inspect_files(src, tgt, lines)
        flow = asdict(gradient_flow_of_files(checkpoint, src, tgt, lines))
        if out is not None:
            plot_gradient_flow(flow, out)
    if as_json:
        print(json.dumps(flow, indent=2))
        return
    dirs = list(flow["by_position"])
    print("\t".join(["position", "sentences", *dirs]))
    for i, n in enumerate(flow["counts"]):
        print("\t".join([str(i), str(n), *(f"{flow['by_position'][d][i]:.4g}" for d in dirs)]))


@inspect_app.command("exposure")
def inspect_exposure(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt).")],
    src: Annotated[Path, typer.Option(help="Source sentences, one per line.")],
    tgt: Annotated[Path, typer.Option(help="Reference translations, line-aligned.")],
    lines: Annotated[int, typer.Option(help="Sentence pairs used (the first N).")] = 100,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Image (png, svg, pdf).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Per target position: the loss and accuracy of the reference token under teacher
    forcing and when the model reads its own greedy output (nmt/exposure.py defines them)."""
    from dataclasses import asdict

    from nmt.exposure import exposure_of_files
    from nmt.figures import plot_exposure

    with user_errors():
        _inspect_files(src, tgt, lines)
        result = asdict(exposure_of_files(checkpoint, src, tgt, lines))
        if out is not None:
            plot_exposure(result, out)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"greedy BLEU {result['bleu']:.2f} over {result['sentences']} sentences")
    print("position\tsentences\tteacher_loss\tfree_loss\tteacher_acc\tfree_acc")
    for i, n in enumerate(result["counts"]):
        free = result["free_loss"][i]
        cells = [result["teacher_loss"][i], free, result["teacher_accuracy"][i],
                 result["free_accuracy"][i]]  # fmt: skip
        print("\t".join([str(i), str(n), *("-" if c is None else f"{c:.3f}" for c in cells)]))
