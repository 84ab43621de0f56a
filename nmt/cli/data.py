"""`nmt data` and `nmt tokenizer`: the built-in corpus and sentencepiece tokenizers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nmt import NmtError, require_whole
from nmt.cli.common import err, user_errors


# -- data ------------------------------------------------------------------------------
def data_toy(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write train|valid|test.{en,pt} (.pt: Portuguese, not a checkpoint).",
        ),
    ] = None,
    describe: Annotated[
        bool, typer.Option("--describe", help="Print what the grammar can say, and exit.")
    ] = False,
    size: Annotated[
        int, typer.Option(help="Training pairs (valid/test get size/20, at least 50).")
    ] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Write the built-in English -> Portuguese corpus (no download).

    Files are named by language: .en English, .pt Portuguese (the language code, although
    checkpoints end in .pt too)."""
    from nmt.data import toy

    if describe:
        print(toy.describe())
        return
    with user_errors():
        if out is None:
            raise NmtError("give --out FOLDER (or --describe)")
        try:
            counts = toy.write_corpus(out, size=size, seed=seed)
        except ValueError as e:
            raise NmtError(f"--size: {e}") from None
    err.print(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), soft_wrap=True)


# -- tokenizer -------------------------------------------------------------------------
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
    from nmt.data.corpus import read_parallel
    from nmt.tokenizer import check_tokenizer_dir, train_tokenizer

    with user_errors():
        require_whole("--vocab-size", vocab_size, 8)
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

    from nmt.data.corpus import decode_line, raw_lines

    first = 1
    raws = raw_lines(sys.stdin.buffer, "<stdin>")  # a line over the cap is an error
    while chunk := list(islice(raws, _LINES_PER_CHUNK)):
        lines = [decode_line(raw, f"<stdin>:{first + i}") for i, raw in enumerate(chunk)]
        sys.stdout.write("".join(line + "\n" for line in fn(lines, first)))
        first += len(chunk)


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
