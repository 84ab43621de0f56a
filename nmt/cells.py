"""Recurrent networks one step at a time, as the lecture writes them.

The encoder and decoder run torch's fused cells (nn.RNN, nn.GRU, nn.LSTM) for speed; here the
recurrence is spelled out for the two simple recurrent networks the lecture starts from:

    Elman (1990):   h_t = tanh(W x_t + U h_{t-1} + b)    the hidden layer is fed back
    Jordan (1986):  h_t = tanh(W x_t + U y_{t-1} + b)    the output is fed back
    both:           y_t = softmax(V h_t)

`Tagger` labels every position of a stream of symbols with either feedback (or a GRU cell, the
gated baseline), unrolled by hand: `forward` returns the state after every step, so that
back-propagation through time can be cut anywhere (truncated BPTT, nmt/analysis/streams.py).

Shapes: B batch, T time steps, E embedding, H hidden, K labels.
"""

from __future__ import annotations

import torch
from torch import nn

FEEDBACKS = ("elman", "jordan", "gru")


class Tagger(nn.Module):
    """x_1..x_T -> one label distribution per step, each from the past only (x_1..x_t).

    A Jordan network's state is its own output distribution y_{t-1} (K numbers), not the
    reference: it remembers what it has said, and only as much of the past as that shows.
    """

    def __init__(self, *, inputs: int, labels: int, feedback: str = "elman", hidden: int = 64,
                 embed: int = 16) -> None:  # fmt: skip
        super().__init__()
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {', '.join(FEEDBACKS)}, got {feedback!r}")
        self.feedback, self.hidden, self.labels = feedback, hidden, labels
        self.embed = nn.Embedding(inputs, embed)
        if feedback == "gru":
            self.gru = nn.GRUCell(embed, hidden)
        else:
            self.W = nn.Linear(embed, hidden)  # W x_t + b
            fed_back = hidden if feedback == "elman" else labels
            self.U = nn.Linear(fed_back, hidden, bias=False)  # U h_{t-1}, or U y_{t-1}
        self.V = nn.Linear(hidden, labels)  # the output layer: y_t = softmax(V h_t)

    def initial_state(self, batch: int) -> torch.Tensor:
        """The state before the first step: zeros (B, H), or (B, K) for Jordan (no output yet)."""
        return torch.zeros(batch, self.labels if self.feedback == "jordan" else self.hidden)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,) symbols at step t, state (B, H) or (B, K) -> logits (B, K), the next state."""
        e = self.embed(x)  # (B, E)
        if self.feedback == "gru":
            h = self.gru(e, state)  # (B, H)
            return self.V(h), h
        h = torch.tanh(self.W(e) + self.U(state))  # (B, H)
        logits = self.V(h)  # (B, K)
        return logits, h if self.feedback == "elman" else logits.softmax(-1)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, T), state before x[:, 0] (default: `initial_state`) ->
        logits (B, T, K) and the T states after each step (each (B, H) or (B, K))."""
        state = self.initial_state(x.size(0)) if state is None else state
        logits, states = [], []
        for t in range(x.size(1)):
            out, state = self.step(x[:, t], state)
            logits.append(out)
            states.append(state)
        return torch.stack(logits, 1), states
