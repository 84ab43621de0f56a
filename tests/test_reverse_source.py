"""model.reverse_source: the RNN encoder reads the source backwards (EOS kept last), and the
rest of the model (attention, heatmaps, translations) sees the source in its written order."""

from __future__ import annotations

import pytest
import torch

from nmt import NmtError
from nmt.config import ModelConfig, config_from_dict
from nmt.model import Seq2Seq, reversed_order
from nmt.tokenizer import EOS, PAD


def test_reversed_order_keeps_eos_and_padding_and_round_trips():
    src = torch.tensor([[5, 6, 7, EOS, PAD], [8, EOS, PAD, PAD, PAD], [4, 5, 6, 7, EOS]])
    order = reversed_order(torch.tensor([4, 2, 5]), 5)
    flipped = src.gather(1, order)
    assert flipped.tolist() == [[7, 6, 5, EOS, PAD], [8, EOS, PAD, PAD, PAD], [7, 6, 5, 4, EOS]]
    assert torch.equal(flipped.gather(1, order), src)


def _models(cell: str = "gru") -> tuple[Seq2Seq, Seq2Seq]:
    sizes = dict(
        cell=cell, embed_dim=8, enc_hidden_size=6, hidden_size=10, dropout=0.0,
        bidirectional=False,
    )  # fmt: skip
    torch.manual_seed(0)
    plain = Seq2Seq(ModelConfig(**sizes), src_vocab=20, tgt_vocab=20).eval()
    backwards = Seq2Seq(ModelConfig(**sizes, reverse_source=True), src_vocab=20, tgt_vocab=20)
    backwards.load_state_dict(plain.state_dict())
    return plain, backwards.eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_reverse_source_is_the_plain_model_on_the_reversed_source(cell):
    plain, backwards = _models(cell)
    src = torch.tensor([[5, 6, 7, 9, EOS], [8, 11, EOS, PAD, PAD]])
    lengths = torch.tensor([5, 3])
    tgt_in = torch.tensor([[2, 12, 13], [2, 14, 15]])
    order = reversed_order(lengths, 5)
    logits, weights = backwards(src, lengths, tgt_in, return_attention=True)
    ref_logits, ref_weights = plain(src.gather(1, order), lengths, tgt_in, return_attention=True)
    # the same predictions: translations are of the original sentence, not of its mirror
    torch.testing.assert_close(logits, ref_logits)
    # attention column j is source token j as written (the heatmaps' columns)
    torch.testing.assert_close(weights, ref_weights.gather(2, order[:, None].expand_as(weights)))
    # and reversing does change what the model computes
    assert not torch.allclose(logits, plain(src, lengths, tgt_in)[0])


def test_reverse_source_is_an_rnn_option():
    with pytest.raises(NmtError, match="reverse_source"):
        config_from_dict({"model": {"arch": "transformer", "reverse_source": True}})
