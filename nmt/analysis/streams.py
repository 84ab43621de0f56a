"""Labelling streams of symbols: the lectures' experiments on recurrence itself.

Where nmt/analysis/lab.py trains the seq2seq network, this trains networks that output one
label per input step (`nmt.cells.Tagger`, or the package's `Encoder` with a linear layer on
top), on tasks whose memory need is chosen:

- `delay`: y_t = x_{t-d}, the symbol read d steps ago (the output never shows it before);
- `sum`: y_t = (x_1 + ... + x_t) mod K, where the last output is all the memory needed;
- `pair`: y_t = table[x_{t-1}, x_t], a random table: a nonlinear function at every step;
- `context`: y_t = table[x_t, x_{t+1}]: the label depends on what comes next.

`train` runs full back-propagation through time or truncated BPTT(k1, k2) (Williams and
Peng, 1990): every k1 steps, back-propagate through the last k2 only; the state before them
is carried forward as a constant, so no gradient reaches further back than k2 steps.

Positions a task leaves undefined (t < d; the first of `pair`, the last of `context`) carry
the label IGNORE: not trained on, not scored. Shapes: N streams, B batch, T steps, K labels.
"""

from __future__ import annotations

import random
import time

import torch
from torch import nn

from nmt.analysis.lab import History
from nmt.cells import Tagger
from nmt.encoder import Encoder

IGNORE = -100  # cross_entropy's ignore_index
TASKS = ("delay", "sum", "pair", "context")

Streams = tuple[torch.Tensor, torch.Tensor]  # inputs (N, T), labels (N, T)


def task(kind: str, n: int, length: int, *, symbols: int = 10, delay: int = 2,
         seed: int = 0) -> Streams:  # fmt: skip
    """n streams of `length` random symbols and their labels (values 0..symbols-1)."""
    if kind not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {kind!r}")
    if length < 3 or not 0 < delay < length:
        raise ValueError(f"need length >= 3 and 0 < delay < length, got {length}, {delay}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(symbols, (n, length), generator=gen)  # (N, T)
    y = torch.full_like(x, IGNORE)
    # the task's function: one table for every split (its own seed, not the streams')
    table = torch.randint(symbols, (symbols, symbols), generator=torch.Generator().manual_seed(0))
    if kind == "delay":
        y[:, delay:] = x[:, :-delay]
    elif kind == "sum":
        y = x.cumsum(1) % symbols
    elif kind == "pair":
        y[:, 1:] = table[x[:, :-1], x[:, 1:]]
    else:
        y[:, :-1] = table[x[:, :-1], x[:, 1:]]
    return x, y


class EncoderTagger(nn.Module):
    """The package's encoder (nmt/encoder.py: any cell, deep, bidirectional) labelling each
    step: logits_t = V [h_t forward; h_t backward] (B, T, K)."""

    def __init__(
        self, *, inputs: int, labels: int, cell: str = "gru", hidden: int = 64, layers: int = 1,
        bidirectional: bool = False, embed: int = 16,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(inputs, embed)
        self.encoder = Encoder(cell=cell, embed_dim=embed, hidden_size=hidden, num_layers=layers,
                               bidirectional=bidirectional, dropout=0.0)  # fmt: skip
        self.V = nn.Linear(self.encoder.output_size, labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        lengths = torch.full((x.size(0),), x.size(1))
        outputs, _ = self.encoder(self.embed(x), lengths)  # (B, T, D)
        return self.V(outputs), []


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)


def train(
    model: Tagger | EncoderTagger,
    streams: Streams,
    *,
    batches: int,
    batch: int = 32,
    lr: float = 3e-3,
    clip: float = 1.0,
    bptt: tuple[int, int] | None = None,
    seed: int = 0,
) -> History:
    """Adam on `batches` random batches of streams. `bptt`: None for full BPTT (one update a
    batch, the gradient through all T steps), or (k1, k2) with k1 <= k2 for truncated BPTT
    (a `Tagger` only): an update every k1 steps, back-propagating through the last k2 (so
    up to T / k1 updates a batch, none for a window without a scored label: truncation gets
    more updates from the same data, not fewer).
    History: every update's loss and gradient norm before clipping."""
    if bptt is not None and not (isinstance(model, Tagger) and 1 <= bptt[0] <= bptt[1]):
        raise ValueError(f"truncated BPTT needs a Tagger and 1 <= k1 <= k2, got {bptt}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all, y_all = streams
    history = History()
    start = time.perf_counter()
    model.train()

    def update(loss: torch.Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        history.loss.append(loss.item())
        history.grad_norm.append(float(norm))

    for _ in range(batches):
        rows = torch.tensor([rng.randrange(len(x_all)) for _ in range(batch)])
        x, y = x_all[rows], y_all[rows]  # (B, T)
        if bptt is None:
            update(_loss(model(x)[0], y))
            continue
        assert isinstance(model, Tagger)
        k1, k2 = bptt
        length = x.size(1)
        states = {0: model.initial_state(batch)}  # step -> the state before it, detached
        done = 0  # steps already scored
        for end in [*range(k1, length, k1), length]:
            begin = max(0, end - k2)
            # the state at `begin` is a constant: the gradient stops there, k2 steps back
            logits, after = model(x[:, begin:end], states[begin])  # (B, end - begin, K)
            if (y[:, done:end] != IGNORE).any():  # else nothing to learn (and a NaN loss)
                update(_loss(logits[:, done - begin :], y[:, done:end]))  # steps done..end-1
            for t, s in enumerate(after, begin + 1):
                states[t] = s.detach()
            done = end
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: Tagger | EncoderTagger, streams: Streams) -> float:
    """Share of the defined positions labelled right (argmax)."""
    x, y = streams
    model.eval()
    guess = model(x)[0].argmax(-1)  # (N, T)
    keep = y != IGNORE
    return (guess[keep] == y[keep]).float().mean().item()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
