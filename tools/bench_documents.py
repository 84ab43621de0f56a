"""Benchmarks of document translation on Multi30k test2016 (de -> en): terms used,
placeholders verbatim, markup kept.

Markup: tags inserted into the source around phrases (bold, links, nested spans: up to three
per sentence, around 1 to 3 words each, seeded), translated with --markup html; the share of
outputs that are well-formed with every tag kept (target 100%), and BLEU of the output's text
without tags against the reference, minus BLEU of the untagged source's translation (target
within 0.5). For a Transformer, the decoder layer and head that place tags are chosen on the
validation set first (nmt.translation.alignment.rank_attentions).

    MULTI30K_DIR=../shared/data/multi30k .venv/bin/python tools/bench_documents.py \\
        --ckpt /work/cmp/m30k-transformer/best.pt --ckpt /work/cmp/m30k-rnn/best.pt

Terminology: a dictionary from the training data (each German word's most associated English
word, Dice >= 0.4 over 5 sentences or more); the glossary is every entry whose English word is
in a test reference but not in the unconstrained output of that sentence, and is then asked
of every sentence holding its German word: the share of those whose output holds the English
word (term use, target >= 99%), BLEU with the glossary minus without (target >= 0), decoding
time with / without (target <= 2x). Placeholders: one or two numbers, URLs or e-mail
addresses inserted into each source, the share that comes out verbatim (target 100%).

The last line: `term use: X.X%; tags kept: X.X%; BLEU delta: X.XX` (term use and tags kept:
the worst over the models; BLEU delta: the one farthest from 0 over models and sections).
"""

from __future__ import annotations

import argparse
import html
import os
import random
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from nmt.checkpoint import load_checkpoint
from nmt.metrics import score
from nmt.search_options import SearchOptions
from nmt.terms import Terms
from nmt.transformer import Transformer
from nmt.translation.alignment import rank_attentions
from nmt.translation.documents import DocumentOptions, translate_document
from nmt.translation.markup import is_well_formed, tags_of
from nmt.translation.translator import Translator

_TAGS = [("<b>", "</b>"), ('<a href="https://example.org/?q=1&amp;p=2">', "</a>")]


def tag_sentence(text: str, rng: random.Random) -> str:
    """The sentence as HTML (escaped) with up to three phrases of 1 to 3 words tagged: bold, a
    link, and two nested spans around the third."""
    words = [html.escape(w, quote=False) for w in text.split()]
    if len(words) < 2:
        return " ".join(words)
    cuts = sorted(rng.sample(range(len(words) + 1), min(6, len(words) + 1)))
    spans = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    spans = [(a, min(b, a + 3)) for a, b in spans if b > a][:3]
    for k, (a, b) in enumerate(reversed(spans)):
        if k == 0 and b - a >= 2:  # the last phrase: a span holding a span
            words[a] = f'<span class="outer"><span class="inner">{words[a]}</span>'
            words[b - 1] = f"{words[b - 1]}</span>"
            continue
        start, end = _TAGS[k % len(_TAGS)]
        words[a] = start + words[a]
        words[b - 1] = words[b - 1] + end
    return " ".join(words)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(markup: str) -> str:
    """The text of an HTML line, tags out, entities read."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return " ".join("".join(parser.parts).split())


def choose_attention(ckpt_path: Path, data: Path, lines: int) -> tuple[int, int | None]:
    """The Transformer's decoder layer and head that align best on the validation set."""
    ckpt = load_checkpoint(ckpt_path)
    src = (data / "val.de").read_text(encoding="utf-8").splitlines()[:lines]
    ref = (data / "val.en").read_text(encoding="utf-8").splitlines()[:lines]
    ranked = rank_attentions(ckpt.model.eval(), ckpt.tokenizer, src, ref)
    for share, layer, head in ranked[:3]:
        print(
            f"  layer {layer} head {'mean' if head is None else head}: {100 * share:.1f}% "
            "of anchor words aligned",
            file=sys.stderr,
        )
    return ranked[0][1], ranked[0][2]


def markup_section(ckpt: Path, data: Path, limit: int, beam: int, val_lines: int):
    """(share of outputs well-formed with every tag kept, BLEU delta) of one model."""
    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:limit]
    ref = (data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:limit]
    layer, head = -1, None
    if isinstance(load_checkpoint(ckpt).model, Transformer):
        layer, head = choose_attention(ckpt, data, val_lines)
    translator = Translator(ckpt, attention_layer=layer, attention_head=head)
    rng = random.Random(12345)
    tagged = [tag_sentence(s, rng) for s in src]
    options = SearchOptions(beam_size=beam)
    start = time.perf_counter()
    plain = [t.text for t in translator.translate(src, options)]
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    found = translate_document(translator, tagged, options, DocumentOptions(markup="html"))
    tagged_s = time.perf_counter() - start
    kept = sum(
        is_well_formed(t.text, "html")
        and sorted(tags_of(t.text, "html")) == sorted(tags_of(line, "html"))
        for line, t in zip(tagged, found)
    )
    untagged_bleu = score(plain, ref, ("bleu",))[0].score
    tagged_bleu = score([plain_text(t.text) for t in found], ref, ("bleu",))[0].score
    where = f"layer {layer}, head {'mean' if head is None else head}"
    print(
        f"{ckpt}: {len(src)} sentences, {sum(len(tags_of(x, 'html')) for x in tagged)} tags "
        f"({where}); well-formed with every tag kept: {100 * kept / len(src):.1f}%; BLEU "
        f"untagged {untagged_bleu:.2f}, tagged (text without tags) {tagged_bleu:.2f}; "
        f"{plain_s:.1f} s untagged, {tagged_s:.1f} s tagged",
        file=sys.stderr,
    )
    return 100 * kept / len(src), tagged_bleu - untagged_bleu


# -- terminology -------------------------------------------------------------------------
_EN_STOP = {
    "a", "an", "the", "is", "are", "was", "were", "be", "of", "in", "on", "at", "to", "and",
    "or", "with", "by", "for", "from", "as", "his", "her", "their", "its", "it", "he", "she",
    "they", "this", "that", "while", "near", "into", "out", "up", "down",
}  # fmt: skip


def dictionary(data: Path, min_count: int = 5, min_dice: float = 0.4) -> dict[str, str]:
    """Each German word of the training data (as written) -> the English word (lowercase)
    most associated with it by the Dice coefficient of their sentence co-occurrences, when
    that is at least `min_dice` over `min_count` sentences or more."""
    from collections import Counter

    src = (data / "train.de").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.en").read_text(encoding="utf-8").splitlines()
    de_n: Counter[str] = Counter()
    en_n: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    for s, t in zip(src, tgt):
        de = {w for w in re.findall(r"\w+", s) if len(w) > 2}
        en = {w for w in re.findall(r"\w+", t.lower()) if len(w) > 2 and w not in _EN_STOP}
        de_n.update(de)
        en_n.update(en)
        both.update((d, e) for d in de for e in en)
    best: dict[str, tuple[float, str]] = {}
    for (d, e), n in both.items():
        if n >= min_count:
            dice = 2 * n / (de_n[d] + en_n[e])
            if dice >= min_dice and dice > best.get(d, (0.0, ""))[0]:
                best[d] = (dice, e)
    return {d: e for d, (_, e) in best.items()}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text))


def terminology_section(ckpt: Path, data: Path, limit: int, beam: int) -> tuple[float, float]:
    """(term use %, BLEU with the glossary minus BLEU without) of one model. The glossary:
    the dictionary's entries (German word -> English word) whose English word is in a test
    reference but not in the unconstrained output of that sentence; every sentence holding
    a glossary term then asks for its target (the hard cases counted apart)."""
    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:limit]
    ref = (data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:limit]
    translator = Translator(ckpt)
    options = SearchOptions(beam_size=beam)
    start = time.perf_counter()
    plain = [t.text for t in translator.translate(src, options)]
    plain_s = time.perf_counter() - start
    best = dictionary(data)
    hard = [
        (i, d, best[d])
        for i, (s, r, h) in enumerate(zip(src, ref, plain))
        for d in sorted(_words(s))
        if d in best and best[d] in _words(r.lower()) and best[d] not in _words(h.lower())
    ]
    glossary = tuple(sorted({(d, e) for _, d, e in hard}))
    terms = SearchOptions(beam_size=beam, terms=Terms(glossary=glossary))
    start = time.perf_counter()
    found = [t.text for t in translator.translate(src, terms)]
    terms_s = time.perf_counter() - start
    asked = [(i, d, e) for i, s in enumerate(src) for d, e in glossary if d in _words(s)]
    used = sum(e in _words(found[i]) for i, _, e in asked)
    hard_used = sum(e in _words(found[i]) for i, _, e in hard)
    bleu_plain = score(plain, ref, ("bleu",))[0].score
    bleu_terms = score(found, ref, ("bleu",))[0].score
    print(
        f"{ckpt}: glossary of {len(glossary)} terms; {len(hard)} hard constraints (the "
        "reference's word, not in the output without glossary): "
        f"{100 * hard_used / len(hard):.1f}% used; all {len(asked)} terms found in sources: "
        f"{100 * used / len(asked):.1f}% used; "
        f"BLEU {bleu_plain:.2f} -> {bleu_terms:.2f}; {plain_s:.1f} s -> {terms_s:.1f} s "
        f"({terms_s / plain_s:.2f}x)",
        file=sys.stderr,
    )
    return 100 * used / len(asked), bleu_terms - bleu_plain


# -- placeholders ------------------------------------------------------------------------
_SPANS = ["17", "3.5", "1,250", "2019", "https://example.com/p/123", "www.test-site.org/a_b",
          "anna.schmidt@example.de", "info@nmt-project.org", "10:30", "42"]  # fmt: skip


def placeholder_section(ckpt: Path, data: Path, limit: int, beam: int) -> float:
    """% of numbers, URLs and e-mail addresses inserted into test2016 sources (one or two a
    sentence, at random word positions, seeded) that come out verbatim with --placeholders."""
    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:limit]
    rng = random.Random(7)
    inserted, sentences = [], []
    for line in src:
        words, spans = line.split(), rng.sample(_SPANS, rng.randint(1, 2))
        for span in spans:
            words.insert(rng.randint(0, len(words)), span)
        inserted.append(spans)
        sentences.append(" ".join(words))
    options = SearchOptions(beam_size=beam, terms=Terms(placeholders=True))
    found = [t.text for t in Translator(ckpt).translate(sentences, options)]
    total = sum(len(spans) for spans in inserted)
    kept = sum(
        sum(out.count(span) >= sentence.count(span) for span in set(spans))
        + (len(spans) - len(set(spans)))
        for sentence, spans, out in zip(sentences, inserted, found)
    )
    print(f"{ckpt}: {total} numbers, URLs and e-mails inserted, {100 * kept / total:.1f}% "
          "verbatim", file=sys.stderr)  # fmt: skip
    return 100 * kept / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MULTI30K_DIR", ".")))
    parser.add_argument("--lines", type=int, default=1000, help="test2016 lines (all: 1000)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--val-lines", type=int, default=200, help="to choose the attention")
    args = parser.parse_args()
    kept, deltas, uses, verbatim = [], [], [], []
    for ckpt in args.ckpt:
        use, delta = terminology_section(ckpt, args.data, args.lines, args.beam_size)
        uses.append(use)
        deltas.append(delta)
        verbatim.append(placeholder_section(ckpt, args.data, args.lines, args.beam_size))
        share, delta = markup_section(ckpt, args.data, args.lines, args.beam_size, args.val_lines)
        kept.append(share)
        deltas.append(delta)
    print(f"placeholders verbatim: {min(verbatim):.1f}%", file=sys.stderr)
    worst = max(deltas, key=abs)
    print(f"term use: {min(uses):.1f}%; tags kept: {min(kept):.1f}%; BLEU delta: {worst:.2f}")


if __name__ == "__main__":
    main()
