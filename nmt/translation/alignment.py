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
    src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Sequence[Sequence[float]]
) -> list[tuple[int, int]]:
    """(source word, target word) pairs, one for each target word, by target word: from
    attention (len(tgt_pieces), len(src_pieces)), pieces with their EOS."""
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
    return [(max(range(n_src), key=lambda i: mass[j][i]), j) for j in range(n_tgt)]


def alignment_of(translation) -> list[tuple[int, int]] | None:
    """The word alignment of a translation's best hypothesis; a line of several sentences
    (documents.DocumentTranslation) in the line's word numbers. None without attention."""
    sentences = getattr(translation, "sentences", None)
    if sentences is not None and translation.hypotheses:
        pairs: list[tuple[int, int]] = []
        for t, (src_at, tgt_at) in zip(sentences, translation.word_offsets):
            found = alignment_of(t)
            if found is None:
                return None
            pairs += [(i + src_at, j + tgt_at) for i, j in found]
        return pairs
    if not translation.hypotheses:
        return []
    best = translation.hypotheses[0]
    if best.attention is None:
        return None
    return word_alignment(translation.src_tokens, best.tokens, best.attention)
