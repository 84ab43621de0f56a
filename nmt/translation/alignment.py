"""Word alignments from attention: which source word each target word was translated from.

Sentencepiece marks the first piece of a word with "▁", so pieces group into the words that
whitespace separates in the text. A target word's attention is the sum of its pieces' rows,
spread over source words by summing the columns of each word's pieces; it aligns to the source
word that gets the most. The attention of a decoder step is read when it predicts that piece:
for an RNN (and a Transformer's well-aligning layers) the source piece it translates.
"""

from __future__ import annotations

from collections.abc import Sequence

WORD_START = "\u2581"  # sentencepiece's word boundary
EOS_PIECE = "</s>"
_PUNCTUATION = ".,;:!?\"'()[]-"


def word_index(pieces: Sequence[str]) -> list[int]:
    """The word each piece belongs to (0, 1, ...); -1 for EOS. A leading piece without "▁"
    still opens word 0."""
    words, current = [], -1
    for p in pieces:
        if p == EOS_PIECE:
            words.append(-1)
            continue
        if p.startswith(WORD_START) or current < 0:
            # a bare "▁" piece (a space before punctuation) opens a word too
            current += 1
        words.append(current)
    return words


def word_alignment(
    src_pieces: Sequence[str],
    tgt_pieces: Sequence[str],
    attention: Sequence[Sequence[float]],
    union: bool = False,
) -> list[tuple[int, int]]:
    """(source word, target word) pairs, one for each target word, by target word: from
    attention (len(tgt_pieces), len(src_pieces)), pieces with their EOS. `union`: also one
    for each source word (the target word attending to it most), so that every source word
    has a target word (what markup needs: a tag around a word the model left unattended
    would otherwise come back empty)."""
    src_words, tgt_words = word_index(src_pieces), word_index(tgt_pieces)
    n_src, n_tgt = max(src_words, default=-1) + 1, max(tgt_words, default=-1) + 1
    if not n_src or not n_tgt:
        return []
    mass = [[0.0] * n_src for _ in range(n_tgt)]  # (target words, source words)
    for row, j in zip(attention, tgt_words):
        if j < 0:
            continue
        for weight, i in zip(row, src_words):
            if i >= 0:
                mass[j][i] += weight
    pairs = {(max(range(n_src), key=lambda i: mass[j][i]), j) for j in range(n_tgt)}
    if union:
        pairs |= {(i, max(range(n_tgt), key=lambda j: mass[j][i])) for i in range(n_src)}
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def alignment_of(translation, union: bool = False) -> list[tuple[int, int]] | None:
    """The word alignment of a translation's best hypothesis; a line of several sentences
    (documents.DocumentTranslation) in the line's word numbers. None without attention."""
    sentences = getattr(translation, "sentences", None)
    if sentences is not None and translation.hypotheses:
        pairs: list[tuple[int, int]] = []
        for t, (src_at, tgt_at) in zip(sentences, translation.word_offsets):
            found = alignment_of(t, union)
            if found is None:
                return None
            pairs += [(i + src_at, j + tgt_at) for i, j in found]
        return pairs
    if not translation.hypotheses:
        return []
    best = translation.hypotheses[0]
    if best.attention is None:
        return None
    return word_alignment(translation.src_tokens, best.tokens, best.attention, union)


def anchor_links(src_pieces: Sequence[str], tgt_pieces: Sequence[str]) -> list[tuple[int, int]]:
    """(source word, target word) links a sentence pair gives for free: words written the
    same on both sides, once on each (names, numbers, punctuation, shared words)."""

    def words(pieces: Sequence[str]) -> list[str]:
        found: list[str] = []
        for p, w in zip(pieces, word_index(pieces)):
            if w < 0:
                continue
            if w == len(found):
                found.append("")
            found[w] += p.replace(WORD_START, "")
        # "Frisbee." and "frisbee," are one word to match
        return [w.strip(_PUNCTUATION).lower() for w in found]

    src, tgt = words(src_pieces), words(tgt_pieces)
    return [
        (src.index(w), j)
        for j, w in enumerate(tgt)
        if w and src.count(w) == 1 and tgt.count(w) == 1
    ]


def rank_attentions(
    model, tokenizer, sources: Sequence[str], references: Sequence[str], batch: int = 64
) -> list[tuple[float, int, int | None]]:
    """A Transformer's cross-attentions, ranked by how well they align on data: (share of
    anchor links found, layer, head or None for the mean over heads), best first. Each
    reference is read teacher-forced, and a target word's alignment (word_alignment) must
    point at its anchor (anchor_links); layers and heads differ much (a head may follow the
    previous word, the first layer the position), and which one aligns best is learned."""
    import torch

    from nmt.batching import pad, source_tensor
    from nmt.tokenizer import BOS

    pairs = [
        (s, t)
        for s, t in zip(tokenizer.encode_src(list(sources)), tokenizer.encode_tgt(list(references)))
        if s and t
    ]
    before = (model.attention_layer, model.attention_head)
    choices = [
        (layer, head)
        for layer in range(len(model.decoder_layers))
        for head in [None, *range(model.config.heads)]
    ]
    found = dict.fromkeys(choices, 0)
    total = 0
    try:
        for at in range(0, len(pairs), batch):
            chunk = pairs[at : at + batch]
            src, lengths = source_tensor([s for s, _ in chunk])
            tgt_in, _ = pad([t for _, t in chunk], prefix=BOS)
            pieces = [
                (tokenizer.src_pieces(s) + [EOS_PIECE], tokenizer.tgt_pieces(t) + [EOS_PIECE])
                for s, t in chunk
            ]
            anchors = [anchor_links(sp, tp) for sp, tp in pieces]
            total += sum(map(len, anchors))
            for layer, head in choices:
                model.choose_attention(layer, head)
                with torch.inference_mode():
                    _, attention = model(src, lengths, tgt_in, return_attention=True)  # (B, T, S)
                for b, ((sp, tp), links) in enumerate(zip(pieces, anchors)):
                    if not links:
                        continue
                    rows = attention[b, : len(tp), : len(sp)].tolist()
                    aligned = dict((j, i) for i, j in word_alignment(sp, tp, rows))
                    found[layer, head] += sum(aligned.get(j) == i for i, j in links)
    finally:
        model.choose_attention(*before)
    ranked = [(found[c] / max(total, 1), c[0], c[1]) for c in choices]
    return sorted(ranked, key=lambda x: -x[0])
