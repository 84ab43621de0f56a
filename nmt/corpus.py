"""Parallel text: line-aligned files or Hugging Face datasets, read strictly and filtered."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nmt import NmtError

log = logging.getLogger(__name__)

# the longest line read from a text file: a file without newlines (or a binary one) would
# otherwise be read whole into memory as one line
MAX_LINE_BYTES = 1 << 20


def raw_lines(stream: IO[bytes], name: str, truncate: bool = False) -> Iterator[bytes]:
    """The lines of a binary stream (line endings kept), none longer than MAX_LINE_BYTES: a
    longer one is an error naming it, or with `truncate` cut to that size with a warning."""
    n = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        n += 1
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        if not truncate:
            raise NmtError(
                f"{name}:{n}: line longer than {MAX_LINE_BYTES >> 20} MB (is it a text file?)"
            )
        while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass  # the rest of the line, read in bounded pieces and dropped
        log.warning("%s:%d: longer than %d MB, cut there", name, n, MAX_LINE_BYTES >> 20)
        yield _cut_at_character(raw[:MAX_LINE_BYTES]) + b"\n"


def _cut_at_character(raw: bytes) -> bytes:
    """`raw` without a UTF-8 character cut in two at its end."""
    end = len(raw)
    while end and raw[end - 1] & 0xC0 == 0x80:  # continuation bytes
        end -= 1
    if end and raw[end - 1] >= 0xC0:  # the lead byte of the character cut
        end -= 1
    return raw[:end]


def decode_line(raw: bytes, where: str, errors: str = "strict") -> str:
    """One line of bytes -> text without its line ending (LF or CRLF)."""
    try:
        text = raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise NmtError(f"{where}: not valid UTF-8 (byte {e.start}: {e.reason})") from None
    return text.rstrip("\n").removesuffix("\r")


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file; errors name the file and line."""
    p = Path(path)
    check_input(p)
    with p.open("rb") as f:
        return [decode_line(raw, f"{p}:{n}") for n, raw in enumerate(raw_lines(f, str(p)), 1)]


def check_input(path: Path) -> None:
    """An input file that can be read (FIFOs and /dev/stdin included), or one clear line."""
    if path.is_dir():
        raise NmtError(f"{path} is a directory, not a file")
    if not path.exists():
        raise NmtError(f"{path}: file does not exist")


def read_stream(stream: IO[bytes], name: str) -> list[str]:
    """All lines of a UTF-8 byte stream (stdin); errors name it `name`."""
    return [decode_line(raw, f"{name}:{n}") for n, raw in enumerate(raw_lines(stream, name), 1)]


def check_aligned(texts: dict[str, list[str]]) -> None:
    """Every text has lines, and as many as the first (named by the keys: file names)."""
    (first, lines), *others = texts.items()
    for name, text in texts.items():
        if not text:
            raise NmtError(f"{name} is empty")
    for name, text in others:
        if len(text) != len(lines):
            raise NmtError(
                f"{first} has {len(lines)} lines but {name} has {len(text)}: they must be "
                "line-aligned"
            )


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise NmtError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must be line-aligned"
        )
    return src, tgt


def read_dataset(
    spec: str, split: str, src_lang: str, tgt_lang: str
) -> tuple[list[str], list[str]]:
    """A Hugging Face dataset with a `translation` column: `hf:NAME[:CONFIG]` from the hub (or
    its cache when offline), or a folder written by `save_to_disk`.
    """
    import datasets

    datasets.logging.set_verbosity_error()
    if spec.startswith("hf:"):
        name, _, cfg = spec[3:].partition(":")
        try:
            ds = datasets.load_dataset(name, cfg or None, split=split)
        except (ConnectionError, OSError) as e:
            raise NmtError(
                f"dataset {spec}: cannot load it ({str(e).splitlines()[0]}); "
                "offline, give local files or a saved dataset folder"
            ) from None
        except ValueError as e:
            raise NmtError(f"dataset {spec}: {str(e).splitlines()[0]}") from None
    else:
        path = Path(spec)
        if not path.is_dir():
            raise NmtError(f"dataset {spec}: not a folder and not hf:NAME[:CONFIG]")
        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as e:
            raise NmtError(f"dataset {spec}: not a saved dataset ({e})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise NmtError(f"dataset {spec}: no split {split!r}; it has {', '.join(ds)}")
            ds = ds[split]
    if "translation" not in ds.column_names:
        raise NmtError(f"dataset {spec}: no translation column (columns: {ds.column_names})")
    rows = list(ds["translation"])
    if rows and (src_lang not in rows[0] or tgt_lang not in rows[0]):
        raise NmtError(
            f"dataset {spec}: translation has keys {sorted(rows[0])}; "
            f"set data.src_lang and data.tgt_lang to two of them"
        )
    return [r[src_lang] or "" for r in rows], [r[tgt_lang] or "" for r in rows]


@dataclass
class FilterStats:
    kept: int = 0
    empty: int = 0
    too_long: int = 0


def filter_pairs(
    src_ids: list[list[int]], tgt_ids: list[list[int]], max_len: int
) -> tuple[list[int], FilterStats]:
    """Indices of pairs with both sides non-empty and at most max_len tokens."""
    keep, stats = [], FilterStats()
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if not s or not t:
            stats.empty += 1
        elif len(s) > max_len or len(t) > max_len:
            stats.too_long += 1
        else:
            keep.append(i)
    stats.kept = len(keep)
    return keep, stats
