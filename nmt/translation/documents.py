"""Documents, not sentences: a line of input may be a paragraph of several sentences (and, with
markup, text between tags). Each line is cut into the units a model translates (sentences,
found by pysbd), the units of many lines are translated together, and each line is rebuilt
from its units' translations with the whitespace between them kept: still one output line per
input line, an empty line giving an empty line.

A model trained on sentences translates a paragraph badly: it stops after the first sentence
or two and drops the rest, so a paragraph must reach it one sentence at a time.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from nmt import NmtError
from nmt.runtime.base import Output, Translation, TranslatorBase
from nmt.search_options import SearchOptions

MARKUPS = ("none", "html", "xml")


@dataclass(frozen=True)
class DocumentOptions:
    """How lines become the units a model translates; checked when made."""

    split_sentences: bool = False  # cut each line into sentences (pysbd), rebuilt after
    language: str = "en"  # the source language's rules for pysbd (abbreviations, ...)
    markup: str = "none"  # html or xml: tags kept out of the model and put back (markup.py)
    # a line whose confidence (mean log-probability of its pieces) is below this is flagged
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.markup not in MARKUPS:
            raise NmtError(
                f"must be one of {', '.join(MARKUPS)}, got {self.markup!r}", option="markup"
            )
        if self.split_sentences:
            languages = splitter_languages()
            if self.language not in languages:
                raise NmtError(
                    f"sentence splitting knows {', '.join(languages)}; got {self.language!r}",
                    option="language",
                )
        if self.min_confidence is not None and not (
            isinstance(self.min_confidence, (int, float)) and math.isfinite(self.min_confidence)
        ):
            raise NmtError(
                f"must be a finite number (a mean log-probability, <= 0), got "
                f"{self.min_confidence!r}",
                option="min_confidence",
            )

    @property
    def plain(self) -> bool:
        """True when every line is translated as one sentence, as without these options."""
        return not self.split_sentences and self.markup == "none"


def splitter_languages() -> list[str]:
    """The language codes pysbd has rules for."""
    from pysbd.languages import LANGUAGE_CODES

    return sorted(LANGUAGE_CODES)


def language_of(config: object) -> str:
    """The source language a model's config names (data.src_lang) if pysbd knows it, else en:
    most configs name files, not languages."""
    lang = getattr(getattr(config, "data", None), "src_lang", "")
    return lang if isinstance(lang, str) and lang in splitter_languages() else "en"


@functools.lru_cache(maxsize=8)
def _segmenter(language: str):
    import pysbd

    # clean=False: the sentences are the text's own characters, so they can be found in it
    return pysbd.Segmenter(language=language, clean=False)


def split_sentences(text: str, language: str = "en") -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, in order, without the
    whitespace around them; the text between spans is whitespace only. Empty for blank text."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for sentence in _segmenter(language).segment(text):
        core = sentence.strip()
        if not core:
            continue
        start = text.find(core, pos)
        if start < 0:  # pysbd changed the text after all: the rest is one sentence
            break
        spans.append((start, start + len(core)))
        pos = start + len(core)
    rest = text[pos:].strip()
    if rest:  # what the splitter left out (or could not be found) is translated too
        start = text.index(rest, pos)
        spans.append((start, start + len(rest)))
    return spans


@dataclass
class DocumentTranslation(Translation):
    """A line translated as several units: `sentences` holds each unit's translation, in order;
    `hypotheses` one Output, their texts joined by the input's whitespace."""

    sentences: list[Translation] = field(default_factory=list)
    # source word offset and target word offset of each unit within the line
    word_offsets: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Prepared:
    """One input line cut into units: line = gaps[0] + units[0] + gaps[1] + ... + gaps[-1];
    with markup, `pieces` (markup.layout) instead of gaps, and units the sentences of its
    segments in order."""

    source: str
    units: list[str]
    gaps: list[str]  # len(units) + 1 pieces of whitespace
    pieces: list[tuple[str, Any]] | None = None
    # markup: the units of each segment, and each unit's first word within its segment
    counts: list[int] = field(default_factory=list)
    word_starts: list[int] = field(default_factory=list)


_WORD = re.compile(r"\S+")


def _unit_spans(text: str, options: DocumentOptions) -> list[tuple[int, int]]:
    if options.split_sentences:
        return split_sentences(text, options.language)
    core = text.strip()
    return [(text.index(core), text.index(core) + len(core))] if core else []


def prepare(line: str, options: DocumentOptions, where: str = "") -> Prepared:
    """The units of one line, as `options` cut it; `where` names the line in errors."""
    if options.markup != "none":
        from nmt.translation.markup import Segment, layout, parse

        pieces = layout(parse(line, options.markup, where))
        prepared = Prepared(line, [], [], pieces)
        for _, part in pieces:
            if isinstance(part, Segment):
                spans = _unit_spans(part.text, options)
                prepared.units += [part.text[a:b] for a, b in spans]
                prepared.word_starts += [len(_WORD.findall(part.text[:a])) for a, _ in spans]
                prepared.counts.append(len(spans))
        return prepared
    if not options.split_sentences:
        core = line.strip()
        if not core:
            return Prepared(line, [], [line])
        start = line.index(core)
        return Prepared(line, [core], [line[:start], line[start + len(core) :]])
    spans = split_sentences(line, options.language)
    units = [line[a:b] for a, b in spans]
    ends = [0] + [b for _, b in spans]
    starts = [a for a, _ in spans] + [len(line)]
    return Prepared(line, units, [line[e:s] for e, s in zip(ends, starts)])


def _rebuild_markup(prepared: Prepared, found: list[Translation]) -> str:
    """The line's markup with each segment's translation in place of its text."""
    from nmt.translation.alignment import alignment_of
    from nmt.translation.markup import render

    assert prepared.pieces is not None
    out: list[str] = []
    units = iter(zip(found, prepared.word_starts))
    counts = iter(prepared.counts)
    for kind, part in prepared.pieces:
        if kind == "raw":
            out.append(part.source())
        elif kind == "open":
            out.append(part.start)
        elif kind == "close":
            out.append(part.end)
        else:
            texts: list[str] = []
            pairs: list[tuple[int, int]] = []
            for _ in range(next(counts)):
                t, src_at = next(units)
                tgt_at = sum(len(x.split()) for x in texts)
                pairs += [(i + src_at, j + tgt_at) for i, j in alignment_of(t, union=True) or []]
                texts.append(t.text)
            out.append(render(part, " ".join(texts), pairs))
    return "".join(out)


def assemble(prepared: Prepared, found: list[Translation]) -> Translation:
    """One line's translation from its units' translations (found[i] translates units[i])."""
    if prepared.pieces is not None and not prepared.units:  # markup without text
        text = _rebuild_markup(prepared, found)
        return DocumentTranslation(prepared.source, [], [Output(text, 0.0, 0.0)] if text else [])
    if not prepared.units:
        return DocumentTranslation(prepared.source, [], [])
    best = [t.hypotheses[0] if t.hypotheses else Output("", math.nan, math.nan) for t in found]
    if prepared.pieces is not None:
        parts = [_rebuild_markup(prepared, found)]
    else:
        parts = [prepared.gaps[0]]
        for out, gap in zip(best, prepared.gaps[1:]):
            parts += [out.text, gap]
    tokens = [p for out in best for p in out.tokens]
    log_prob = sum(out.log_prob for out in best)
    lps = [out.token_log_probs for out in best]
    offsets, src_words, tgt_words = [], 0, 0
    for unit, out in zip(prepared.units, best):
        offsets.append((src_words, tgt_words))
        src_words += len(unit.split())
        tgt_words += len(out.text.split())
    line = Output(
        text="".join(parts),
        log_prob=round(log_prob, 6),
        score=round(sum(out.score for out in best), 6),
        tokens=tokens,
        token_log_probs=None if any(x is None for x in lps) else [v for x in lps for v in x or []],
        # the mean log-probability of all the line's pieces: a long sentence weighs more
        confidence=round(log_prob / max(len(tokens), 1), 6),
    )
    src_tokens = [p for t in found for p in t.src_tokens]
    return DocumentTranslation(prepared.source, src_tokens, [line], list(found), offsets)


def translate_lines(
    translator: TranslatorBase,
    lines: list[str],
    search: SearchOptions,
    document: DocumentOptions,
    *,
    batch_tokens: int = 4096,
    line_numbers: Iterable[int] | None = None,
) -> Iterator[tuple[list[int], list[Translation]]]:
    """translator.translate_batches for lines that `document` cuts into units: (indices into
    `lines`, their translations), all lines of the call at once. Plain options go straight
    to translate_batches."""
    if document.plain:
        yield from translator.translate_batches(
            lines, search, batch_tokens=batch_tokens, line_numbers=line_numbers
        )
        return
    if document.markup != "none" and not search.return_attention:
        search = replace(search, return_attention=True)  # tags are put back by it
    numbers = list(line_numbers) if line_numbers is not None else range(1, len(lines) + 1)
    prepared = [prepare(line, document, f"line {n}") for n, line in zip(numbers, lines)]
    units = [u for p in prepared for u in p.units]
    unit_numbers = [n for n, p in zip(numbers, prepared) for _ in p.units]
    found = translator.translate(
        units, search, batch_tokens=batch_tokens, line_numbers=unit_numbers
    )
    results: list[Translation] = []
    at = 0
    for p in prepared:
        results.append(assemble(p, found[at : at + len(p.units)]))
        at += len(p.units)
    yield list(range(len(lines))), results


def translate_document(
    translator: TranslatorBase,
    lines: list[str],
    search: SearchOptions | None = None,
    document: DocumentOptions | None = None,
    *,
    batch_tokens: int = 4096,
) -> list[Translation]:
    """Lines (paragraphs) in, one Translation a line out, in order: the in-memory form of
    `nmt translate --split-sentences` (and `--markup`)."""
    results: list[Translation] = [Translation(line, [], []) for line in lines]
    for idxs, found in translate_lines(
        translator,
        lines,
        search or SearchOptions(),
        document or DocumentOptions(split_sentences=True),
        batch_tokens=batch_tokens,
    ):
        for i, t in zip(idxs, found):
            results[i] = t
    return results
