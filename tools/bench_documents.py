"""Benchmarks of document translation on Multi30k test2016 (de -> en): markup kept.

Markup: tags inserted into the source around phrases (bold, links, nested spans: up to three
per sentence, around 1 to 3 words each, seeded), translated with --markup html; the share of
outputs that are well-formed with every tag kept (target 100%), and BLEU of the output's text
without tags against the reference, minus BLEU of the untagged source's translation (target
within 0.5). For a Transformer, the decoder layer and head that place tags are chosen on the
validation set first (nmt.translation.alignment.rank_attentions).

    MULTI30K_DIR=../shared/data/multi30k .venv/bin/python tools/bench_documents.py \\
        --ckpt /work/cmp/m30k-transformer/best.pt --ckpt /work/cmp/m30k-rnn/best.pt

The last line: `term use: X.X%; tags kept: X.X%; BLEU delta: X.XX` (term use: n/a until the
terminology section measures it; tags kept and the BLEU delta: the worst over the models).
"""

from __future__ import annotations

import argparse
import html
import os
import random
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from nmt.checkpoint import load_checkpoint
from nmt.metrics import score
from nmt.search_options import SearchOptions
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MULTI30K_DIR", ".")))
    parser.add_argument("--lines", type=int, default=1000, help="test2016 lines (all: 1000)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--val-lines", type=int, default=200, help="to choose the attention")
    args = parser.parse_args()
    kept, deltas = [], []
    for ckpt in args.ckpt:
        share, delta = markup_section(ckpt, args.data, args.lines, args.beam_size, args.val_lines)
        kept.append(share)
        deltas.append(delta)
    worst = max(deltas, key=abs)
    print(f"term use: n/a; tags kept: {min(kept):.1f}%; BLEU delta: {worst:.2f}")


if __name__ == "__main__":
    main()
