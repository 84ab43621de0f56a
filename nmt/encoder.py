"""The encoder: an Elman, GRU or LSTM network over the source, bidirectional by default.

Shapes: B batch, S source length, E embedding, H hidden per direction, L layers,
D = directions * H (the size of an encoder output).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CLASSES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # LSTM state is (h, c)


class Encoder(nn.Module):
    def __init__(
        self,
        *,
        cell: str,
        embed_dim: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size
        self.rnn = RNN_CLASSES[cell](
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """embedded (B, S, E), lengths (B,) on the CPU ->
        outputs (B, S, D), zero at padded positions, and the final state of every layer
        (L, B, D) (a pair of them for LSTM)."""
        # packing keeps padding out of the recurrence, so a sentence's encoding does not
        # depend on what it is batched with
        packed = pack_padded_sequence(
            self.dropout(embedded), lengths, batch_first=True, enforce_sorted=False
        )
        packed_out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(
            packed_out, batch_first=True, total_length=embedded.size(1)
        )  # (B, S, D)
        if isinstance(final, tuple):
            return outputs, (self._join(final[0]), self._join(final[1]))
        return outputs, self._join(final)

    def _join(self, state: torch.Tensor) -> torch.Tensor:
        # (L * dirs, B, H) -> (L, B, dirs * H): forward and backward side by side
        layers, batch = self.num_layers, state.size(1)
        state = state.view(layers, self.directions, batch, -1)
        return torch.cat([state[:, d] for d in range(self.directions)], dim=-1)
