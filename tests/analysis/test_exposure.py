"""Teacher forcing against free running, per target position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.analysis.exposure import _positions
from nmt.batching import make_batch
from nmt.config import ModelConfig
from nmt.model import Seq2Seq
from nmt.search import SearchOptions, search_ids
from nmt.tokenizer import BOS, EOS, PAD
from nmt.transformer import Transformer

SRC = [[4, 5, 6], [7, 8, 9, 10, 11]]
TGT = [[5, 6, 7, 8], [9, 10]]


def _model() -> Seq2Seq:
    torch.manual_seed(3)
    config = ModelConfig(embed_dim=8, enc_hidden_size=6, hidden_size=10, dropout=0.0)
    return Seq2Seq(config, src_vocab=14, tgt_vocab=14).eval()


def _transformer() -> Transformer:
    torch.manual_seed(3)
    config = ModelConfig(
        arch="transformer", d_model=16, heads=2, ff_size=32, enc_layers=1, dec_layers=1,
        dropout=0.0,
    )  # fmt: skip
    return Transformer(config, src_vocab=14, tgt_vocab=14).eval()


@pytest.mark.parametrize("make", [_model, _transformer])
def test_teacher_forcing_scores_the_reference_as_training_does(make):
    model = make()
    batch = make_batch(SRC, TGT)
    with torch.inference_mode():
        loss, correct, real, _ = _positions(model, SRC, TGT, free=False)
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    expected = F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, reduction="none")
    torch.testing.assert_close(loss[real], expected[real], rtol=1e-4, atol=1e-5)
    # the argmax over what greedy search may output: never PAD or BOS
    logits = logits.clone()
    logits[..., [PAD, BOS]] = float("-inf")
    assert torch.equal(correct[real], (logits.argmax(-1) == batch.tgt_out)[real])


@pytest.mark.parametrize("make", [_model, _transformer])
def test_free_running_follows_greedy_search(make):
    model = make()
    with torch.inference_mode():
        _, correct, real, running = _positions(model, SRC, TGT, free=True)
        hyps = search_ids(model, SRC, SearchOptions(beam_size=1, max_len_offset=20))
    for i, (hyp, ref) in enumerate(zip(hyps, TGT)):
        greedy = hyp[0].tokens + [EOS]  # what each step emitted, EOS included
        agree = [t < len(greedy) and greedy[t] == y for t, y in enumerate(ref + [EOS])]
        assert correct[i][real[i]].tolist() == agree
        # an output is running at t until the step after its EOS
        assert running[i, : len(greedy)].all()
        assert not running[i, len(greedy) :].any()


def test_an_output_that_ended_is_wrong_and_no_longer_running():
    model = _model()
    with torch.no_grad():
        model.output_bias[EOS] = 100.0  # every greedy output is EOS at once
    with torch.inference_mode():
        _, correct, real, running = _positions(model, SRC, TGT, free=True)
        _, teacher_correct, _, _ = _positions(model, SRC, TGT, free=False)
    assert running[:, 0].all() and not running[:, 1:].any()
    assert not correct[real].any()
    # teacher forcing scores EOS right where the reference ends, whatever came before
    assert teacher_correct[0, 4] and teacher_correct[1, 2]
