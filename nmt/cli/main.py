"""The `nmt` command: parsing and printing only; the work is done by library functions.

Results go to stdout, logs and progress to stderr. A user error (`NmtError`) is one line on
stderr and exit code 2. Heavy imports (torch) happen inside the commands so `--help` is fast.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

from nmt.cli import attention as cli_attention
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
config_app = typer.Typer(help="Every config option, and checking a config.", no_args_is_help=True)
app.add_typer(config_app, name="config")
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


# what `pip install nmt[train]` adds to the runtime's dependencies (see pyproject.toml)
TRAIN_EXTRA = frozenset({"torch", "sacrebleu", "datasets", "matplotlib", "onnx", "onnxscript"})


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
    except ModuleNotFoundError as e:
        # a runtime-only install (pip install nmt) translates and serves exported folders;
        # training, checkpoints and figures need the `train` extra
        missing = (e.name or "").split(".")[0]
        if missing not in TRAIN_EXTRA:
            raise
        print(
            f"error: nmt {command or ''} needs {missing}, which a runtime-only install leaves "
            "out: pip install 'nmt[train]' (or translate a folder of nmt export --format onnx)",
            file=sys.stderr,
        )
        code = 2
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


def _paragraphs(doc: str | None) -> str:
    """A docstring as help text: the lines of each paragraph joined, so that rich wraps them
    to the terminal instead of breaking where the source did."""
    text = inspect.cleandoc(doc or "")
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _command(group: typer.Typer, function: Callable[..., Any], name: str | None = None) -> None:
    group.command(name, help=_paragraphs(function.__doc__))(function)


# the commands, module by module
_command(data_app, cli_data.data_toy, "toy")
_command(tokenizer_app, cli_data.tokenizer_train, "train")
_command(tokenizer_app, cli_data.tokenizer_encode, "encode")
_command(tokenizer_app, cli_data.tokenizer_decode, "decode")
_command(tokenizer_app, cli_data.tokenizer_vocab, "vocab")
_command(app, cli_train.prepare)
_command(app, cli_train.train)
_command(config_app, cli_train.config_show, "show")
_command(config_app, cli_train.config_check, "check")
_command(app, cli_translate.translate)
_command(app, cli_eval.score)
_command(app, cli_models.export)
_command(app, cli_models.average)
_command(app, cli_models.info)
_command(app, cli_models.serve)
_command(app, cli_attention.attention)
_command(app, cli_eval.plot)
_command(inspect_app, cli_eval.inspect_gradients, "gradients")
_command(inspect_app, cli_eval.inspect_exposure, "exposure")
