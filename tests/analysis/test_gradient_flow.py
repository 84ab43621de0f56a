"""Gradient flow through time: ||dL/dh_s|| of the encoder's hidden states by source position."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.analysis.figures import gradient_flow_title
from nmt.analysis.gradient_flow import gradient_flow, hidden_state_gradients, unrolled_encoder
from nmt.batching import make_batch
from nmt.config import ModelConfig
from nmt.model import Seq2Seq


def _model(**options) -> Seq2Seq:
    torch.manual_seed(0)
    sizes = dict(embed_dim=5, enc_hidden_size=4, hidden_size=6, dropout=0.0)
    return Seq2Seq(ModelConfig(**{**sizes, **options}), src_vocab=15, tgt_vocab=15).eval()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_unrolled_encoder_is_the_encoder(cell, layers):
    model = _model(cell=cell, enc_layers=layers, bidirectional=True)
    embedded = torch.randn(1, 6, 5)
    outputs, final = model.encoder(embedded, torch.tensor([6]))
    got_outputs, got_final, states = unrolled_encoder(model, embedded)
    torch.testing.assert_close(got_outputs, outputs)
    for a, b in zip(
        got_final if cell == "lstm" else [got_final], final if cell == "lstm" else [final]
    ):
        torch.testing.assert_close(a, b)
    assert len(states) == 2 and len(states[0]) == 6


def test_elman_gradients_match_backpropagation_through_time_by_hand():
    # without attention the loss reaches h_s only through h_{s+1}:
    #   dL/dh_s = W_hh^T (dL/dh_{s+1} * (1 - h_{s+1}^2)), h_{s+1} = tanh(W_ih x + W_hh h_s + b)
    model = _model(cell="rnn", attention="none", bidirectional=False)
    src, tgt = [4, 7, 9, 5, 6], [8, 10, 11]
    got = hidden_state_gradients(model, src, tgt)[0]  # (S,) with S = 6 (EOS)
    batch = make_batch([src], [tgt])
    embedded = model.src_embed(batch.src)  # (1, S, E)
    rnn = model.encoder.rnn
    h, hs = torch.zeros(1, 4), []
    for s in range(6):
        h = torch.tanh(
            embedded[:, s] @ rnn.weight_ih_l0.T
            + rnn.bias_ih_l0
            + h @ rnn.weight_hh_l0.T
            + rnn.bias_hh_l0
        )
        hs.append(h)
    last = hs[-1].detach().requires_grad_(True)
    state = model.decoder.init_state(last[None], 1)
    enc = model.decoder.encoder_out(torch.zeros(1, 6, 4), torch.ones(1, 6, dtype=torch.bool))
    loss = torch.zeros(())
    for t in range(batch.tgt_in.size(1)):
        state, _ = model.decoder.step(state, model.tgt_embed(batch.tgt_in[:, t]), enc)
        loss = loss + F.cross_entropy(
            model.logits(state.att_vec), batch.tgt_out[:, t], reduction="sum"
        )
    (grad,) = torch.autograd.grad(loss, last)  # dL/dh_{S-1}: only the decoder's start reads it
    expected = [float(grad.norm())]
    with torch.no_grad():
        for s in range(4, -1, -1):
            grad = (grad * (1 - hs[s + 1] ** 2)) @ rnn.weight_hh_l0
            expected.insert(0, float(grad.norm()))
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-4, atol=1e-7)


def test_gradient_flow_averages_over_sentences_by_position_and_from_the_end():
    model = _model(cell="gru", attention="bahdanau", bidirectional=True)
    pairs = [([4, 5], [6, 7]), ([8, 9, 10, 11], [12])]
    one, two = (hidden_state_gradients(model, s, t) for s, t in pairs)
    flow = gradient_flow(model, pairs)
    assert flow.counts == [2, 2, 2, 1, 1]
    torch.testing.assert_close(
        torch.tensor(flow.by_position["forward"][:3]), (one[0] + two[0, :3]) / 2
    )
    torch.testing.assert_close(
        flow.by_distance_from_end["backward"][0], float(one[1, -1] + two[1, -1]) / 2
    )
    assert flow.by_position["backward"][4] == pytest.approx(float(two[1, 4]))


def test_reverse_source_reports_positions_as_written():
    plain = _model(cell="gru", attention="none", bidirectional=False)
    backwards = _model(cell="gru", attention="none", bidirectional=False, reverse_source=True)
    backwards.load_state_dict(plain.state_dict())
    got = hidden_state_gradients(backwards, [4, 5, 6], [7])[0]
    mirror = hidden_state_gradients(plain, [6, 5, 4], [7])[0]
    torch.testing.assert_close(got, mirror[[2, 1, 0, 3]])


def test_a_transformer_is_refused():
    model = torch.nn.Linear(1, 1)
    with pytest.raises(NmtError, match="recurrent"):
        gradient_flow(model, [([4], [5])])


def test_the_figure_title_names_the_cell_as_the_lecture_does():
    flow = gradient_flow(_model(cell="rnn", attention="none", bidirectional=False), [([4], [5])])
    assert gradient_flow_title(asdict(flow)) == "Elman RNN, no attention: 1 sentence"
    flow.attention, flow.reverse_source, flow.sentences = "bahdanau", True, 2
    assert (
        gradient_flow_title(asdict(flow))
        == "Elman RNN, Bahdanau attention, reversed source: 2 sentences"
    )
