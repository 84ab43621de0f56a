"""Labelling streams: the tasks, full and truncated BPTT, the package's encoder as a tagger."""

from __future__ import annotations

import pytest
import torch

from nmt.analysis import streams
from nmt.analysis.streams import IGNORE
from nmt.cells import Tagger


def test_tasks_label_what_they_say():
    x, y = streams.task("delay", 4, 9, symbols=5, delay=3, seed=1)
    assert (y[:, :3] == IGNORE).all() and torch.equal(y[:, 3:], x[:, :-3])
    x, y = streams.task("sum", 4, 9, symbols=5, seed=1)
    assert torch.equal(y, x.cumsum(1) % 5)
    x, y = streams.task("pair", 4, 9, symbols=5, seed=1)
    assert (y[:, 0] == IGNORE).all()
    x, y = streams.task("context", 4, 9, symbols=5, seed=1)
    assert (y[:, -1] == IGNORE).all() and (y[:, :-1] != IGNORE).all()
    with pytest.raises(ValueError, match="delay, sum, pair, context"):
        streams.task("sort", 2, 5)


@pytest.mark.parametrize("kind", ["pair", "context"])
def test_a_table_task_is_one_function_for_every_split(kind):
    # the train and test streams come from other seeds; the table they label by must not
    train = streams.task(kind, 300, 12, symbols=4, seed=1)
    test = streams.task(kind, 300, 12, symbols=4, seed=2)
    table = {}
    for x, y in (train, test):
        for t in range(1, 11):
            left, right = (x[:, t - 1], x[:, t]) if kind == "pair" else (x[:, t], x[:, t + 1])
            for a, b, label in zip(left.tolist(), right.tolist(), y[:, t].tolist()):
                assert table.setdefault((a, b), label) == label
    assert len(table) == 16


def test_truncated_bptt_updates_every_k1_steps():
    model = Tagger(inputs=5, labels=5, feedback="elman", hidden=8)
    data = streams.task("delay", 20, 10, symbols=5, delay=2, seed=1)
    assert len(streams.train(model, data, batches=2, batch=4).loss) == 2  # full: one a batch
    history = streams.train(model, data, batches=2, batch=4, bptt=(3, 5))
    assert len(history.loss) == 2 * 4  # windows end at 3, 6, 9, 10
    with pytest.raises(ValueError, match="k1 <= k2"):
        streams.train(model, data, batches=1, bptt=(5, 3))


def test_truncated_bptt_learns_within_k2_and_not_beyond():
    """The lecture's claim in miniature: echoing a symbol 4 steps back, BPTT(2, 2) gets no
    gradient from it and stays near chance (1/3); BPTT(2, 6) and full BPTT learn it."""
    torch.set_num_threads(1)
    train = streams.task("delay", 2000, 12, symbols=3, delay=4, seed=1)
    test = streams.task("delay", 200, 12, symbols=3, delay=4, seed=2)
    acc = {}
    for k in (None, (2, 2), (2, 6)):
        model = Tagger(inputs=3, labels=3, feedback="gru", hidden=16)
        streams.train(model, train, batches=150, batch=32, lr=1e-2, bptt=k)
        acc[k] = streams.accuracy(model, test)
    assert acc[None] > 0.75 and acc[(2, 6)] > 0.75, acc  # full BPTT: a sixth of the updates
    assert acc[(2, 2)] < 0.5, acc


@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_tagger_reads_the_right_context_only_when_bidirectional(bidirectional):
    torch.manual_seed(0)
    model = streams.EncoderTagger(inputs=6, labels=4, cell="gru", hidden=8, layers=2,
                                  bidirectional=bidirectional)  # fmt: skip
    x = torch.randint(6, (3, 9))
    changed = x.clone()
    changed[:, 6] = (x[:, 6] + 1) % 6
    a, b = model(x)[0], model(changed)[0]  # (B, T, K)
    assert torch.allclose(a[:, :6], b[:, :6]) is not bidirectional


def test_a_window_without_labels_makes_no_update():
    # delay 5: the first window (steps 0-2) has nothing to score; a NaN loss must not be taken
    model = Tagger(inputs=5, labels=5, feedback="elman", hidden=8)
    data = streams.task("delay", 20, 9, symbols=5, delay=5, seed=1)
    history = streams.train(model, data, batches=1, batch=4, bptt=(3, 3))
    assert len(history.loss) == 2 and all(x == x for x in history.loss)  # windows to 6 and 9
