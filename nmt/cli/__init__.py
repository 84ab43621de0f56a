"""The `nmt` command, one module a command family: `data` (the built-in corpus, tokenizers),
`train` (prepare, train), `translate`, `attention`, `evaluate` (score, plot,
inspect), `models` (export, average, info, serve); `main` joins them into one Typer app and
`common` holds what they share.

The CLI parses, calls library functions and prints; it may import anything in nmt, and
nothing in nmt imports it.
"""

from nmt.cli.main import app, run

__all__ = ["app", "run"]
