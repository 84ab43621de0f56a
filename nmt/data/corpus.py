"""Parallel text: line-aligned files or Hugging Face datasets, read strictly and filtered.

Large corpora are read as a stream of chunks (`iter_parallel`, `iter_dataset`): a chunk of
lines at a time, never the whole corpus.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from nmt import NmtError

log = logging.getLogger(__name__)

# the longest line read from a text file: a file without newlines (or a binary one) would
# otherwise be read whole into memory as one line
MAX_LINE_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark some editors start a file with


def raw_lines(stream: IO[bytes], name: str, truncate: bool = False) -> Iterator[bytes]:
    """The lines of a binary stream (line endings kept), none longer than MAX_LINE_BYTES: a
    longer one is an error naming it, or with `truncate` cut to that size with a warning.
    Each line is read in bounded memory, never whole first. A BOM starting the stream is
    left out (it is no text), and logged."""
    n = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        n += 1
        whole = len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n")
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
            log.info("%s: starts with a UTF-8 byte order mark (BOM): left out", name)
        if whole:
            yield raw
            continue
        if not truncate:
            raise NmtError(f"{name}:{n}: line longer than {_cap()} (is it a text file?)")
        while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass  # the rest of the line, read in bounded pieces and dropped
        log.warning("%s:%d: longer than %s, cut there", name, n, _cap())
        yield _cut_at_character(raw[:MAX_LINE_BYTES]) + b"\n"


def _cap() -> str:
    """MAX_LINE_BYTES as messages say it: "1 MB"."""
    mb, rest = divmod(MAX_LINE_BYTES, 1 << 20)
    return f"{mb} MB" if mb and not rest else f"{MAX_LINE_BYTES:,} bytes"


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
    # only a CR before the LF ends the line: a lone CR (the last line, without LF) is text
    return text[:-1].removesuffix("\r") if text.endswith("\n") else text


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


def open_dataset(spec: str, split: str) -> Any:
    """A split of a Hugging Face dataset with a `translation` column: `hf:NAME[:CONFIG]` from
    the hub (or its cache when offline), or a folder written by `save_to_disk`. It stays in
    its Arrow files (memory-mapped) until read.
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
    return ds


def iter_dataset(
    ds: Any, spec: str, src_lang: str, tgt_lang: str, chunk_lines: int = 20000
) -> Iterator[tuple[list[str], list[str], float]]:
    """(source lines, target lines, fraction of the dataset read) chunk by chunk, read from
    its Arrow files a batch of rows at a time."""
    total = max(len(ds), 1)
    done = 0
    for batch in ds.select_columns(["translation"]).iter(batch_size=chunk_lines):
        rows = batch["translation"]
        if done == 0 and rows and (src_lang not in rows[0] or tgt_lang not in rows[0]):
            raise NmtError(
                f"dataset {spec}: translation has keys {sorted(rows[0])}; "
                f"set data.src_lang and data.tgt_lang to two of them"
            )
        src, tgt = [r[src_lang] or "" for r in rows], [r[tgt_lang] or "" for r in rows]
        _check_lengths(src, tgt, spec, done)
        done += len(rows)
        yield src, tgt, done / total


def _check_lengths(src: list[str], tgt: list[str], spec: str, before: int) -> None:
    """Refuse a dataset row with a side over MAX_LINE_BYTES, as the file readers do."""
    for n, pair in enumerate(zip(src, tgt), before + 1):
        for line in pair:
            # a character is at most 4 bytes: only a long line is encoded to be measured
            long = len(line) * 4 > MAX_LINE_BYTES
            if long and len(line.encode(errors="replace")) > MAX_LINE_BYTES:
                raise NmtError(f"dataset {spec}: row {n}: longer than {_cap()}")


def read_dataset(
    spec: str, split: str, src_lang: str, tgt_lang: str
) -> tuple[list[str], list[str]]:
    """All pairs of a dataset split (`open_dataset`) as two lists of lines."""
    ds = open_dataset(spec, split)
    src: list[str] = []
    tgt: list[str] = []
    for s, t, _ in iter_dataset(ds, spec, src_lang, tgt_lang):
        src += s
        tgt += t
    return src, tgt


def read_chunks(path: str | Path, chunk_lines: int = 20000) -> Iterator[tuple[list[str], int]]:
    """The lines of a UTF-8 text file, `chunk_lines` at a time, each chunk with the bytes it
    took; the same lines as `read_lines`, errors naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise NmtError(f"{p}: file does not exist")
    with p.open("rb") as f:
        first = 1
        lines = raw_lines(f, str(p))  # bounded: a line over MAX_LINE_BYTES is an error
        while raw := list(itertools.islice(lines, chunk_lines)):
            yield _decode_chunk(raw, p, first), sum(map(len, raw))
            first += len(raw)


def _decode_chunk(raw: list[bytes], path: Path, first: int) -> list[str]:
    """Lines of bytes -> text as `decode_line` makes each, decoded in one call."""
    try:
        text = b"".join(raw).decode("utf-8")
    except UnicodeDecodeError:
        # line by line, to name the line at fault
        return [decode_line(r, f"{path}:{n}") for n, r in enumerate(raw, first)]
    # every line but maybe the last ends with LF: one CR before each LF goes with it
    lines = text.replace("\r\n", "\n").split("\n")
    if raw[-1].endswith(b"\n"):
        lines.pop()  # the empty text after the final LF
    return lines  # a lone CR ending the last line (no LF) is text, as decode_line keeps it


def iter_parallel(
    src_path: str | Path, tgt_path: str | Path, chunk_lines: int = 20000
) -> Iterator[tuple[list[str], list[str], float]]:
    """(source lines, target lines, fraction of the source file read) chunk by chunk, from
    two line-aligned files read side by side."""
    total = max(Path(src_path).stat().st_size if Path(src_path).is_file() else 0, 1)
    tgt_chunks = read_chunks(tgt_path, chunk_lines)
    done = 0
    for src, size in read_chunks(src_path, chunk_lines):
        tgt, _ = next(tgt_chunks, ([], 0))
        if len(src) != len(tgt):
            _misaligned(src_path, tgt_path)
        done += size
        yield src, tgt, done / total
    if next(tgt_chunks, None) is not None:
        _misaligned(src_path, tgt_path)


def _misaligned(src_path: str | Path, tgt_path: str | Path) -> None:
    n_src, n_tgt = (sum(len(c) for c, _ in read_chunks(p)) for p in (src_path, tgt_path))
    raise NmtError(
        f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt}: "
        "parallel files must be line-aligned"
    )


@dataclass(frozen=True)
class PairFilter:
    """Which training pairs are dropped (data.max_len, max_len_ratio, drop_identical,
    drop_duplicates); a pair with an empty side always is."""

    max_len: int = 100  # tokens, either side
    max_len_ratio: float = 0.0  # longer side / shorter side, in tokens (0: off)
    drop_identical: bool = False  # source and target the same text (spaces around aside)
    drop_duplicates: bool = False  # a pair seen before (the first is kept)


@dataclass
class FilterStats:
    """Pairs read, kept, and dropped, each under the first rule that drops it."""

    read: int = 0
    kept: int = 0
    empty: int = 0
    too_long: int = 0
    ratio: int = 0
    identical: int = 0
    duplicate: int = 0


class SeenPairs:
    """The pairs kept so far, as 64-bit hashes (8 bytes a pair), to find repeated ones.

    The hashes sit in sorted arrays of doubling sizes, merged as they grow (a log-structured
    merge), so that adding a chunk never copies all that came before.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def first_seen(self, src: Sequence[str], tgt: Sequence[str]) -> np.ndarray:
        """(N,) bool: True for the pairs seen neither before nor earlier in this chunk."""
        hashes = np.fromiter(map(hash, zip(src, tgt)), dtype=np.int64, count=len(src))
        new = np.zeros(len(hashes), dtype=bool)
        new[np.unique(hashes, return_index=True)[1]] = True
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            new &= run[at] != hashes
        run = np.sort(hashes[new])
        if not len(run):
            return new
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = np.sort(np.concatenate([self.runs.pop(), run]), kind="stable")
        self.runs.append(run)
        return new


def filter_pairs(
    src_ids: Sequence[Sequence[int]],
    tgt_ids: Sequence[Sequence[int]],
    rules: PairFilter,
    *,
    texts: tuple[Sequence[str], Sequence[str]] | None = None,
    seen: SeenPairs | None = None,
    stats: FilterStats | None = None,
) -> tuple[list[int], FilterStats]:
    """Indices of the pairs `rules` keep, and `stats` (a new one if None) with them counted.

    The text rules (drop_identical, drop_duplicates) need the pairs' `texts`; repeated pairs
    are found across calls through `seen`.
    """
    n = len(src_ids)
    src_len = np.fromiter(map(len, src_ids), dtype=np.int64, count=n)
    tgt_len = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=n)
    alive, stats = filter_lengths(src_len, tgt_len, rules, texts=texts, seen=seen, stats=stats)
    keep = np.flatnonzero(alive).tolist()
    return keep, stats


def filter_lengths(
    src_len: np.ndarray,
    tgt_len: np.ndarray,
    rules: PairFilter,
    *,
    texts: tuple[Sequence[str], Sequence[str]] | None = None,
    seen: SeenPairs | None = None,
    stats: FilterStats | None = None,
) -> tuple[np.ndarray, FilterStats]:
    """`filter_pairs` from the pairs' token counts (N,) per side: (N,) bool, True where a pair
    is kept, and the stats."""
    stats = stats if stats is not None else FilterStats()
    n = len(src_len)
    alive = np.ones(n, dtype=bool)

    def drop(bad: np.ndarray) -> int:
        bad &= alive
        alive[bad] = False
        return int(bad.sum())

    stats.read += n
    stats.empty += drop((src_len == 0) | (tgt_len == 0))
    stats.too_long += drop((src_len > rules.max_len) | (tgt_len > rules.max_len))
    if rules.max_len_ratio > 0:
        longer, shorter = np.maximum(src_len, tgt_len), np.minimum(src_len, tgt_len)
        stats.ratio += drop(longer > rules.max_len_ratio * shorter)
    if rules.drop_identical or rules.drop_duplicates:
        if texts is None:
            raise ValueError("filter_pairs: drop_identical and drop_duplicates need the texts")
        src_text, tgt_text = texts
    if rules.drop_identical:
        same = (s.strip() == t.strip() for s, t in zip(src_text, tgt_text))
        stats.identical += drop(np.fromiter(same, dtype=bool, count=n))
    if rules.drop_duplicates:
        live = np.flatnonzero(alive)
        first = (seen or SeenPairs()).first_seen(
            [src_text[int(i)] for i in live], [tgt_text[int(i)] for i in live]
        )
        repeated = np.zeros(n, dtype=bool)
        repeated[live[~first]] = True
        stats.duplicate += drop(repeated)
    stats.kept += int(alive.sum())
    return alive, stats
