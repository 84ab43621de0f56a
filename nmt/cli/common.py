"""What every command shares: errors as one line on stderr, quiet logging."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

import typer
from rich.console import Console

from nmt import NmtError

err = Console(stderr=True)


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


def quiet_logging(quiet: bool) -> None:
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)
