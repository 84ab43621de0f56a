"""Terminology and placeholders: what must come out of a translation as given.

A glossary (TSV: source term, target term) asks that a term found in a sentence be
translated so; a target left empty asks that the term be kept as it is. Placeholders keep
numbers, URLs, e-mail addresses, code spans (`like this`) and the user's patterns verbatim.

Both become constraints of the search (nmt/constraints.py: token sequences every output must
contain), so they hold whatever the model prefers:
- a glossary term whose target the target tokenizer writes back exactly is a constraint on
  its own tokens; the source keeps the term;
- a verbatim span (a placeholder, a kept term) that the tokenizer cannot write back exactly
  (a URL, characters outside its vocabulary), or that the model could not be trusted to
  copy, is replaced in the source by a carrier, a number absent from the sentence that the
  model copies; the carrier is a constraint, and the span is put back in its place after the
  search (by token positions, not by searching the text). Numbers that the tokenizer writes
  back exactly are their own carriers.

Without torch: the runtime's translators import it too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from nmt import NmtError
from nmt.tokenizer import UNK, Tokenizer

# what --placeholders keeps verbatim, in this order of precedence where they overlap
PATTERNS = {
    "code": r"`[^`\n]+`",
    "url": r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
    "email": r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "number": r"(?<![\w.,])[-+]?\d+(?:[.,:]\d+)*(?!\w)",
}
CARRIERS = tuple(str(n) for n in range(2, 1000))  # tried in order, the first that fits


@dataclass(frozen=True)
class Terms:
    """What must come out as given: `glossary` (source term, target term; "" keeps the
    term), `keep` (regular expressions of spans kept verbatim), `placeholders` (numbers,
    URLs, e-mail addresses and code spans kept verbatim). Plain data (compared and recorded
    by `--resume`); the patterns are checked when made."""

    glossary: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()
    placeholders: bool = False

    def __post_init__(self) -> None:
        for pattern in self.keep:
            try:
                if re.compile(pattern).search(""):
                    raise NmtError(f"{pattern!r} matches the empty text", option="keep")
            except re.error as e:
                raise NmtError(
                    f"{pattern!r} is no regular expression ({e})", option="keep"
                ) from None
        for source, _ in self.glossary:
            if not source.strip():
                raise NmtError("a glossary entry has an empty source term", option="glossary")

    def __bool__(self) -> bool:
        return bool(self.glossary or self.keep or self.placeholders)


def read_glossary(path: str | Path) -> tuple[tuple[str, str], ...]:
    """A glossary file: UTF-8, one entry a line, source term TAB target term (the target
    may be empty: the term is kept); blank lines are skipped. A bad line is an error naming
    file:line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise NmtError(f"glossary {p}: {e.strerror or e}") from None
    entries = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as e:
            raise NmtError(f"{p}:{n}: not valid UTF-8 (byte {e.start + 1})") from None
        if not text.strip():
            continue
        columns = text.split("\t")
        if len(columns) != 2:
            raise NmtError(
                f"{p}:{n}: {len(columns)} columns, expected 2 (source term TAB target term)"
            )
        source, target = columns[0].strip(), columns[1].strip()
        if not source:
            raise NmtError(f"{p}:{n}: the source term is empty")
        entries.append((source, target))
    return tuple(entries)


@dataclass
class Prepared:
    """A sentence made ready for the constrained search."""

    source: str  # what the model reads: verbatim spans replaced by their carriers
    constraints: list[list[int]] = field(default_factory=list)  # target ids outputs contain
    # (carrier's target ids, the text put back in its place) in the order of the source
    restore: list[tuple[list[int], str]] = field(default_factory=list)


@dataclass
class _Span:
    start: int
    end: int
    target: str | None  # a glossary term's target; None: kept verbatim
    # may be its own carrier when the tokenizer writes it back (numbers and kept terms: the
    # model copies them as they are; a URL or a code span it would mangle)
    own: bool = False


@functools.lru_cache(maxsize=64)
def _glossary_pattern(
    glossary: tuple[tuple[str, str], ...],
) -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern for every source term (the longest first, so that of two starting at
    one place the longer wins; compiled once: a pattern a term recompiled hundreds of terms
    for every sentence, past the re module's cache), and each term's target (the first
    entry of a term repeated)."""
    targets: dict[str, str] = {}
    for source, target in glossary:
        targets.setdefault(source, target)
    terms = sorted(targets, key=lambda t: (-len(t), t))
    alternatives = "|".join(re.escape(t) for t in terms)
    return re.compile(r"(?<!\w)(?:" + alternatives + r")(?!\w)"), targets


def _spans(sentence: str, terms: Terms) -> list[_Span]:
    """The spans of `sentence` that terms cover, without overlaps: the earliest first, the
    longest of those that start together."""
    found: list[_Span] = []
    if terms.glossary:
        glossary, targets = _glossary_pattern(terms.glossary)
        for m in glossary.finditer(sentence):
            target = targets[m[0]]
            found.append(_Span(m.start(), m.end(), target or None, own=not target))
    for pattern in terms.keep:
        found += [_Span(m.start(), m.end(), None) for m in re.finditer(pattern, sentence) if m[0]]
    if terms.placeholders:
        for name, pattern in PATTERNS.items():
            found += [
                _Span(m.start(), m.end(), None, own=name == "number")
                for m in re.finditer(pattern, sentence)
            ]
    found.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[_Span] = []
    for span in found:
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


@functools.lru_cache(maxsize=4096)
def _round_trip(tokenizer: Tokenizer, text: str) -> list[int] | None:
    """The target ids of `text` when the target tokenizer writes them back as exactly
    `text`, else None."""
    ids = tokenizer.encode_tgt([text])[0]
    if not ids or UNK in ids or tokenizer.decode_tgt([ids])[0] != text:
        return None
    return ids


def prepare(sentence: str, terms: Terms, tokenizer: Tokenizer) -> Prepared:
    """The source the model reads, the constraints of its output and what goes back."""
    spans = _spans(sentence, terms)
    out = Prepared(sentence)
    if not spans:
        return out
    # carriers must not be numbers the text holds (digits next to other text included)
    taken = set(re.findall(r"\d+", sentence))
    parts, at = [], 0
    for span in spans:
        text = sentence[span.start : span.end]
        parts.append(sentence[at : span.start])
        at = span.end
        if span.target is not None:
            ids = _round_trip(tokenizer, span.target)
            if ids is not None:
                if ids not in out.constraints:  # a term met twice is asked for once
                    out.constraints.append(ids)
                parts.append(text)
                continue
        ids = _round_trip(tokenizer, text) if span.own else None
        if ids is not None:
            out.constraints.append(ids)
            parts.append(text)
            continue
        carrier = next(
            c for c in CARRIERS if c not in taken and _round_trip(tokenizer, c) is not None
        )
        taken.add(carrier)
        carrier_ids = _round_trip(tokenizer, carrier)
        assert carrier_ids is not None  # checked in the line above
        out.constraints.append(carrier_ids)
        out.restore.append((carrier_ids, span.target or text))
        parts.append(carrier)
    out.source = "".join(parts) + sentence[at:]
    return out


def restore(tokens: list[int], prepared: Prepared, tokenizer: Tokenizer) -> str | None:
    """The output text of `tokens` with each carrier replaced by its span (None: nothing to
    put back, decode as usual). Carriers are found by their token ids, the first occurrence
    not yet claimed; the text between them is decoded as the tokenizer would."""
    if not prepared.restore:
        return None
    claimed: list[tuple[int, int, str]] = []  # (start, end, text) in token positions
    for ids, text in prepared.restore:
        for i in range(len(tokens) - len(ids) + 1):
            if tokens[i : i + len(ids)] == ids and not any(
                i < e and s < i + len(ids) for s, e, _ in claimed
            ):
                claimed.append((i, i + len(ids), text))
                break
    claimed.sort()
    pieces = tokenizer.tgt_pieces(tokens)
    segments: list[tuple[bool, str]] = []  # (starts a word, text)
    at = 0
    for start, end, text in claimed + [(len(tokens), len(tokens), "")]:
        if start > at:
            segment = tokens[at:start]
            segments.append((pieces[at].startswith("\u2581"), tokenizer.decode_tgt([segment])[0]))
        if end > start:
            segments.append((pieces[start].startswith("\u2581"), text))
        at = end
    out = ""
    for word_start, text in segments:
        out += (" " if word_start and out else "") + text
    return out


def word_pieces(tokenizer: Tokenizer) -> list[bool]:
    """(V,) True for the target pieces that continue a word (no word-start mark, a letter
    or digit first): none may follow a constraint, or a term would grow a suffix ("dog"
    into "dogs") and a carrier would glue to the next word."""
    pieces = tokenizer.tgt_pieces(list(range(tokenizer.tgt_vocab_size)))
    return [not p.startswith("\u2581") and p[:1].isalnum() for p in pieces]
