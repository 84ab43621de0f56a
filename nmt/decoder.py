"""The decoder: a stack of Elman, GRU or LSTM cells with attention and input feeding.

One step: the cell reads [embedding of the previous token; previous attentional vector]
(input feeding, the Jordan-style feedback), its top hidden state queries the attention, and
the attentional vector tanh(W [h; context]) predicts the next token. With attention "none"
the decoder is Sutskever-style: the encoder's final state (through the bridge) is all it
knows of the source.

Shapes: B batch, S source length, T target length, E embedding, H decoder hidden,
D encoder output size, L decoder layers, V target vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import torch
from torch import nn

from nmt.attention import Attention
from nmt.encoder import State

CELL_CLASSES = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


class DecoderState(NamedTuple):
    hidden: State  # (L, B, H), or (h, c) for LSTM
    att_vec: torch.Tensor  # (B, H) previous attentional vector (input feeding)


class EncoderOut(NamedTuple):
    # (B, S, A) from Attention.project_keys, once per batch (Bahdanau's stored doubled, 2 W_k k:
    # see Attention.forward); None without attention
    keys: torch.Tensor | None
    values: torch.Tensor  # (B, S, D) encoder outputs
    mask: torch.Tensor  # (B, S) True at real source tokens


Selectable = TypeVar("Selectable", DecoderState, EncoderOut, torch.Tensor, None)


def select(tree: Selectable, index: torch.Tensor) -> Selectable:
    """Pick batch rows (dim 0 of batch-first tensors, dim 1 of (L, B, H) states): a state,
    an encoder output or a tensor -> the same kind with len(index) rows.

    Beam search uses it (through Seq2Seq) to follow backpointers and to drop finished
    sentences.
    """
    if tree is None:
        return None
    if isinstance(tree, DecoderState):
        return DecoderState(_select_hidden(tree.hidden, index), tree.att_vec.index_select(0, index))
    if isinstance(tree, EncoderOut):
        keys = None if tree.keys is None else tree.keys.index_select(0, index)
        return EncoderOut(
            keys, tree.values.index_select(0, index), tree.mask.index_select(0, index)
        )
    return tree.index_select(0, index)


def _select_hidden(hidden: State, index: torch.Tensor) -> State:
    if isinstance(hidden, tuple):
        h, c = hidden
        return h.index_select(1, index), c.index_select(1, index)
    return hidden.index_select(1, index)


class Decoder(nn.Module):
    def __init__(
        self,
        *,
        cell: str,
        embed_dim: int,
        hidden_size: int,
        num_layers: int,
        enc_size: int,
        attention: str,
        input_feeding: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.cell_kind = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_feeding = input_feeding
        in_size = embed_dim + (hidden_size if input_feeding else 0)
        cell_cls = CELL_CLASSES[cell]
        self.cells = nn.ModuleList(
            cell_cls(in_size if i == 0 else hidden_size, hidden_size) for i in range(num_layers)
        )
        # the bridge maps the encoder's final top-layer state to every decoder layer's state
        self.bridge = nn.Linear(enc_size, num_layers * hidden_size)
        self.bridge_cell = nn.Linear(enc_size, num_layers * hidden_size) if cell == "lstm" else None
        self.attention = (
            None
            if attention == "none"
            else Attention(kind=attention, query_size=hidden_size, key_size=enc_size)
        )
        ctx = enc_size if self.attention is not None else 0
        self.att_out = nn.Linear(hidden_size + ctx, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, enc_final: State, batch: int) -> DecoderState:
        """enc_final: the encoder's final states (L_enc, B, D) -> the decoder's first state."""

        def bridge(linear: nn.Linear, state: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(linear(state[-1]))  # (B, L * H)
            return h.view(batch, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()

        hidden: State
        if self.cell_kind == "lstm":
            assert self.bridge_cell is not None  # made for LSTM cells
            hidden = (bridge(self.bridge, enc_final[0]), bridge(self.bridge_cell, enc_final[1]))
        else:
            assert isinstance(enc_final, torch.Tensor)  # (h, c) pairs are LSTM states only
            hidden = bridge(self.bridge, enc_final)
        ref = hidden[0] if isinstance(hidden, tuple) else hidden
        return DecoderState(hidden, ref.new_zeros(batch, self.hidden_size))

    def encoder_out(self, enc_outputs: torch.Tensor, mask: torch.Tensor) -> EncoderOut:
        keys = None if self.attention is None else self.attention.project_keys(enc_outputs)
        return EncoderOut(keys, enc_outputs, mask)

    def step(
        self, state: DecoderState, embedded: torch.Tensor, enc: EncoderOut
    ) -> tuple[DecoderState, torch.Tensor | None]:
        """embedded (B, E) previous token -> new state (att_vec (B, H) predicts the next token)
        and attention weights (B, S), or None without attention. In beam search the state
        and tokens have K rows a sentence, `enc` one (B / K rows): see Attention.forward."""
        x = torch.cat([embedded, state.att_vec], dim=-1) if self.input_feeding else embedded
        x = self.dropout(x)
        lstm = isinstance(state.hidden, tuple)
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            if lstm:
                h, c = cell(x, (state.hidden[0][i], state.hidden[1][i]))
                cs.append(c)
            else:
                h = cell(x, state.hidden[i])
            hs.append(h)
            x = self.dropout(h) if i + 1 < self.num_layers else h
        hidden = (torch.stack(hs), torch.stack(cs)) if lstm else torch.stack(hs)  # (L, B, H)
        if self.attention is None:
            att_vec, weights = torch.tanh(self.att_out(x)), None
        else:
            context, weights = self.attention(x, enc.keys, enc.values, enc.mask)  # (B, D), (B, S)
            att_vec = torch.tanh(self.att_out(torch.cat([x, context], dim=-1)))  # (B, H)
        return DecoderState(hidden, att_vec), weights
