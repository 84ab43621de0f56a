"""Word alignments from attention, and a Transformer's attentions ranked on data."""

from __future__ import annotations

from nmt.checkpoint import load_checkpoint
from nmt.translation.alignment import anchor_links, rank_attentions, word_index


def test_pieces_group_into_words_as_whitespace_does() -> None:
    assert word_index(["▁The", "▁cat", "s", ".", "</s>"]) == [0, 1, 1, 1, -1]
    assert word_index(["s", "▁a"]) == [0, 1]  # a first piece without ▁ still opens a word


def test_anchor_links_are_words_written_once_on_each_side() -> None:
    src = ["▁Anna", "▁sieht", "▁3", "▁Hunde", ".", "</s>"]
    tgt = ["▁anna", "▁sees", "▁3", "▁dogs", ".", "</s>"]
    assert anchor_links(src, tgt) == [(0, 0), (2, 2)]
    assert anchor_links(["▁a", "▁a"], ["▁a"]) == []  # twice in the source: no link


def test_rank_attentions_covers_every_layer_and_head_and_leaves_the_choice(
    trained_transformer, toy_dir
) -> None:
    ckpt = load_checkpoint(trained_transformer)
    model = ckpt.model.eval()
    src = (toy_dir / "valid.en").read_text(encoding="utf-8").splitlines()[:24]
    ref = (toy_dir / "valid.pt").read_text(encoding="utf-8").splitlines()[:24]
    ranked = rank_attentions(model, ckpt.tokenizer, src, ref, batch=8)
    layers, heads = len(model.decoder_layers), model.config.heads
    assert len(ranked) == layers * (heads + 1)
    assert {(layer, head) for _, layer, head in ranked} == {
        (layer, head) for layer in range(layers) for head in [None, *range(heads)]
    }
    shares = [share for share, _, _ in ranked]
    assert shares == sorted(shares, reverse=True) and all(0 <= s <= 1 for s in shares)
    assert (model.attention_layer, model.attention_head) == (-1, None)


def test_union_gives_every_source_word_a_target_word() -> None:
    from nmt.translation.alignment import word_alignment

    src = ["▁a", "▁b", "▁c", "</s>"]
    tgt = ["▁x", "▁y", "</s>"]
    attention = [[0.7, 0.2, 0.1, 0], [0.6, 0.1, 0.3, 0], [0, 0, 0, 1]]
    assert word_alignment(src, tgt, attention) == [(0, 0), (0, 1)]
    # b is attended most by x, c by y: links only the union has
    assert word_alignment(src, tgt, attention, union=True) == [(0, 0), (1, 0), (0, 1), (2, 1)]
