"""The `nmt` command: parsing and printing only; the work is done by library functions.

Results go to stdout, logs and progress to stderr. A user error (`NmtError`) is one line on
stderr and exit code 2. Heavy imports (torch) happen inside the commands so `--help` is fast.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import suppress
from typing import Annotated

import typer
from rich.logging import RichHandler

from nmt.cli import data as cli_data
from nmt.cli import evaluate as cli_eval
from nmt.cli import models as cli_models
from nmt.cli import train as cli_train
from nmt.cli import translate as cli_translate
from nmt.cli.common import err
from nmt.cli.heap import reuse_freed_memory

app = typer.Typer(
    name="nmt",
    help="Neural machine translation with attention RNNs and Transformers: train, translate,"
    " serve, score, inspect.",
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
#   mapping and faulting it in again (nmt/cli/heap.py); a beam search step allocates tensors of
#   tens of megabytes. train and attention keep glibc's defaults: no measurement shows a gain.
_ALLOCATOR_COMMANDS = frozenset({"translate"})
# - these load torch and a model, whose many thousands of objects Python's shutdown would free
#   one by one, a noticeable part of a short command: they leave with os._exit instead.
#   Commands that never load torch (score, plot, data, tokenizer) leave the usual way.
_FAST_EXIT_COMMANDS = frozenset({"translate", "train", "attention", "inspect"})


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


# the commands, module by module
data_app.command("toy")(cli_data.data_toy)
tokenizer_app.command("train")(cli_data.tokenizer_train)
tokenizer_app.command("encode")(cli_data.tokenizer_encode)
tokenizer_app.command("decode")(cli_data.tokenizer_decode)
tokenizer_app.command("vocab")(cli_data.tokenizer_vocab)
app.command()(cli_train.prepare)
app.command()(cli_train.train)
app.command()(cli_translate.translate)
app.command()(cli_eval.score)
app.command()(cli_models.export)
app.command()(cli_models.average)
app.command()(cli_models.info)
app.command()(cli_models.serve)
app.command()(cli_translate.attention)
app.command()(cli_eval.plot)
inspect_app.command("gradients")(cli_eval.inspect_gradients)
inspect_app.command("exposure")(cli_eval.inspect_exposure)
