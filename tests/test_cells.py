"""The lecture's simple recurrent networks written out: Elman and Jordan feedback."""

from __future__ import annotations

import pytest
import torch

from nmt.cells import Tagger


@pytest.mark.parametrize("feedback", ["elman", "jordan", "gru"])
def test_a_label_depends_on_the_past_only(feedback):
    torch.manual_seed(0)
    model = Tagger(inputs=6, labels=4, feedback=feedback, hidden=8)
    x = torch.randint(6, (3, 9))
    changed = x.clone()
    changed[:, 5:] = (x[:, 5:] + 1) % 6
    a, b = model(x)[0], model(changed)[0]  # (B, T, K)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_elman_feeds_back_its_hidden_layer_and_jordan_its_output():
    torch.manual_seed(0)
    x = torch.randint(6, (2, 4))
    elman = Tagger(inputs=6, labels=4, feedback="elman", hidden=8)
    _, states = elman(x)
    assert states[-1].shape == (2, 8)  # h_t
    jordan = Tagger(inputs=6, labels=4, feedback="jordan", hidden=8)
    logits, states = jordan(x)
    assert states[-1].shape == (2, 4)  # y_t: K numbers, all a Jordan net carries forward
    for t, state in enumerate(states):
        torch.testing.assert_close(state, logits[:, t].softmax(-1))
    # Jordan's step, written as the lecture does: h_t = tanh(W x_t + U y_{t-1} + b)
    h = torch.tanh(jordan.W(jordan.embed(x[:, 1])) + jordan.U(states[0]))
    torch.testing.assert_close(jordan.V(h), logits[:, 1])


@pytest.mark.parametrize("feedback", ["elman", "jordan", "gru"])
def test_a_stream_continues_from_a_state(feedback):
    torch.manual_seed(0)
    model = Tagger(inputs=6, labels=4, feedback=feedback, hidden=8)
    x = torch.randint(6, (3, 10))
    whole, states = model(x)
    first, head = model(x[:, :4])
    rest, _ = model(x[:, 4:], head[-1])
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)
    torch.testing.assert_close(head[-1], states[3])


def test_unknown_feedback_is_refused():
    with pytest.raises(ValueError, match="elman, jordan, gru"):
        Tagger(inputs=3, labels=3, feedback="hopfield")
