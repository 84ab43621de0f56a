"""The lectures' synthetic experiments: tasks, the training loop, clipping, the measures."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.analysis import lab
from nmt.analysis.exposure import recovery
from nmt.tokenizer import BOS, EOS


def test_tasks_copy_and_reverse_with_lengths_in_range():
    src, tgt = lab.task("copy", 50, 3, 7, symbols=5, seed=1)
    assert all(3 <= len(s) <= 7 for s in src) and tgt == src
    assert {len(s) for s in src} == set(range(3, 8))  # every length drawn
    assert all(lab.SPECIALS <= x < lab.SPECIALS + 5 for s in src for x in s)
    rsrc, rtgt = lab.task("reverse", 50, 3, 7, symbols=5, seed=1)
    assert rsrc == src and rtgt == [s[::-1] for s in src]
    with pytest.raises(ValueError, match="copy, reverse"):
        lab.task("sort", 5, 1, 2)


def test_spikes_count_losses_thrown_back():
    history = lab.History(loss=[4.0, 2.0, 1.0, 3.0, 0.9, 1.5, math.nan])
    assert history.spikes() == 2  # 3.0 > 2 x 1.0 and the NaN; 1.5 < 2 x 0.9
    assert history.spikes(factor=1.5) == 3


def test_recurrent_gain_scales_only_the_recurrent_matrices():
    one = dict(lab.build(cell="rnn", attention="none", recurrent_gain=1.0).named_parameters())
    three = dict(lab.build(cell="rnn", attention="none", recurrent_gain=3.0).named_parameters())
    for name, weight in one.items():
        factor = 3.0 if "weight_hh" in name else 1.0
        torch.testing.assert_close(three[name], factor * weight)
    assert any("decoder" in n and "weight_hh" in n for n in one)  # the decoder's cells too


def test_clipping_bounds_every_step_and_records_the_norm_before_it():
    pairs = lab.task("copy", 64, 3, 6, symbols=6)
    model = lab.build(symbols=6, cell="rnn", attention="none", hidden=16, recurrent_gain=2.0)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    history = lab.train(model, pairs, steps=5, lr=1.0, optimizer="sgd", clip=0.01)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # SGD moves the weights by lr x the clipped gradient: at most 5 x 1.0 x 0.01 in all
    assert float((after - before).norm()) <= 5 * 0.01 + 1e-6
    assert min(history.grad_norm) > 0.01  # the norms logged are the unclipped ones
    unclipped = lab.build(symbols=6, cell="rnn", attention="none", hidden=16, recurrent_gain=2.0)
    lab.train(unclipped, pairs, steps=5, lr=1.0, optimizer="sgd", clip=None)
    moved = torch.cat([p.detach().flatten() for p in unclipped.parameters()]) - before
    assert float(moved.norm()) > 5 * 0.01


def test_a_small_attention_model_learns_to_copy():
    pairs = lab.task("copy", 500, 2, 4, symbols=5, seed=3)
    model = lab.build(symbols=5, hidden=24)
    history = lab.train(model, pairs, steps=150, lr=1e-2)
    test = lab.task("copy", 40, 2, 4, symbols=5, seed=4)
    ((label, accuracy, count),) = lab.accuracy_by_length(model, test, [2, 5])
    assert history.loss[-1] < history.loss[0] / 4
    assert (label, count) == ("2-4", 40) and accuracy > 0.8


def test_token_accuracy_by_position():
    assert lab.token_accuracy([5, 6, 7], [5, 6, 7]) == 1.0
    assert lab.token_accuracy([5, 9, 7], [5, 6, 7]) == pytest.approx(2 / 3)
    assert lab.token_accuracy([5, 6], [5, 6, 7, 8]) == 0.5  # missing tokens are wrong
    assert lab.token_accuracy([5, 6, 7, 8], [5, 6]) == 0.5  # so are extra ones


class _Counter(torch.nn.Module):
    """A scripted decoder: predicts the token after the one it reads (from its prefix, as a
    model that leans on its own output does) or, `from_source`, the target position's token
    from a fixed sequence (a model that ignores its prefix). Its second choice is 4."""

    def __init__(self, from_source: bool) -> None:
        super().__init__()
        self.from_source = from_source

    def forward(self, src, src_lengths, tgt_in):
        batch, steps = tgt_in.shape  # (B, T)
        if self.from_source:
            t = torch.arange(steps)[None].expand(batch, steps)
            nxt = torch.where(t == 6, EOS, t + 5)  # y_t = 5 + t, EOS after 10
        else:
            nxt = torch.where(tgt_in == BOS, 5, tgt_in + 1)
            nxt = torch.where(tgt_in == 10, EOS, nxt)
        logits = torch.zeros(batch, steps, 40)
        logits[..., 4] = 1.0
        return logits.scatter(-1, nxt[..., None], 10.0), None


def test_recovery_sees_a_mistake_carried_by_the_prefix_and_only_then():
    src = [[4, 5, 6, 7, 8, 9]] * 8
    tgt = [[5, 6, 7, 8, 9, 10]] * 8  # counting: the next token is the previous one + 1
    leaning = recovery(_Counter(from_source=False), src, tgt, window=2)
    assert leaning.clean == [1.0, 1.0]
    # the injected token (4, the second choice) is read at the next step: that step is
    # wrong; the one after reads the gold prefix again
    assert leaning.injected == [0.0, 1.0]
    assert leaning.drop() > 0.4
    ignoring = recovery(_Counter(from_source=True), src, tgt, window=2)
    assert ignoring.clean == ignoring.injected == [1.0, 1.0] and ignoring.drop() == 0.0
    assert leaning.counts[0] == 4 * 8  # 4 rounds, one position a sentence each


def test_gated_cells_carry_the_gradient_further_back_than_elman():
    ratio = {cell: lab.gradient_by_distance(cell, length=25)[20] for cell in ("rnn", "gru", "lstm")}
    assert ratio["gru"] > 10 * ratio["rnn"] and ratio["lstm"] > 10 * ratio["rnn"]
    # the Elman net's recurrent matrix decides: smaller, the gradient vanishes faster
    small = lab.gradient_by_distance("rnn", length=25, gain=0.5)[20]
    assert small < ratio["rnn"] / 10
    assert lab.gradient_by_distance("rnn", length=25)[0] == 1.0  # relative to the last step
