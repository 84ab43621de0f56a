"""Gradient flow through time: how much of the loss's gradient reaches each encoder state.

For a sentence pair, the loss is the summed cross-entropy of the reference translation under
teacher forcing (no label smoothing, no dropout). Its gradient with respect to the top encoder
layer's hidden state h_s at source position s is the total derivative: every path from h_s to
the loss, through later recurrent steps (backpropagation through time), through attention and
through the final state that starts the decoder. Without attention the loss reaches h_s only
through the recurrence, so ||dL/dh_s|| shows the lecture's picture: with an Elman cell it
shrinks (vanishes) with the distance from the final state, with GRU and LSTM much less.

nn.RNN runs the whole sequence in one call and its hidden states between steps are not tensors
of the graph, so the encoder is unrolled here step by step with the same weights and the
equations of torch's RNN, GRU and LSTM cells (the test checks both give the same outputs).

Shapes: S source length (EOS included), H hidden per direction, D = directions * H,
L encoder layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nmt import NmtError
from nmt.batching import make_batch
from nmt.checkpoint import load_checkpoint
from nmt.data.corpus import read_parallel
from nmt.model import Seq2Seq, reversed_order
from nmt.tokenizer import PAD

DIRECTIONS = ("forward", "backward")


@dataclass
class GradientFlow:
    """Mean ||dL/dh_s|| over sentences, per encoder direction, by source position as written
    (0 = first token) and by distance from the end (0 = EOS); `counts*`: sentences a position
    holds (means are over those)."""

    cell: str
    attention: str
    reverse_source: bool
    sentences: int
    by_position: dict[str, list[float]] = field(default_factory=dict)
    by_distance_from_end: dict[str, list[float]] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)  # sentences with at least s + 1 tokens


def _cell_step(
    kind: str, x: torch.Tensor, state: tuple[torch.Tensor, ...], w: list[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """One step of torch's RNN (tanh) / GRU / LSTM cell: x (1, In), state (h,) or (h, c) each
    (1, H), w = [weight_ih, weight_hh, bias_ih, bias_hh] -> the new state."""
    w_ih, w_hh, b_ih, b_hh = w
    gi, gh = F.linear(x, w_ih, b_ih), F.linear(state[0], w_hh, b_hh)
    if kind == "rnn":
        return (torch.tanh(gi + gh),)
    if kind == "gru":
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return ((1 - z) * n + z * state[0],)
    i, f, g, o = (gi + gh).chunk(4, -1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    return (torch.sigmoid(o) * torch.tanh(c), c)


def unrolled_encoder(
    model: Seq2Seq, embedded: torch.Tensor
) -> tuple[
    torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor], list[list[torch.Tensor]]
]:
    """embedded (1, S, E), in the order the encoder reads -> outputs (1, S, D), the final state
    (L, 1, D) (a pair for LSTM) as Encoder.forward gives them, and the top layer's hidden
    states [direction][s] (1, H), indexed by reading position (eval mode: no dropout)."""
    rnn, kind = model.encoder.rnn, model.config.cell
    steps = embedded.size(1)
    xs = [embedded[:, s] for s in range(steps)]
    finals: list[list[tuple[torch.Tensor, ...]]] = []  # per layer, per direction: (h,), (h, c)
    states: list[list[torch.Tensor]] = []
    for layer in range(rnn.num_layers):
        states, layer_final = [], []
        for d in range(model.encoder.directions):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w = [
                getattr(rnn, f"{n}{suffix}")
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            zero = xs[0].new_zeros(1, rnn.hidden_size)
            state: tuple[torch.Tensor, ...] = (zero, zero) if kind == "lstm" else (zero,)
            hs: list[torch.Tensor] = [zero] * steps
            for s in range(steps) if d == 0 else reversed(range(steps)):
                state = _cell_step(kind, xs[s], state, w)
                hs[s] = state[0]
            states.append(hs)
            layer_final.append(state)
        finals.append(layer_final)
        xs = [torch.cat([states[d][s] for d in range(len(states))], -1) for s in range(steps)]
    outputs = torch.stack(xs, 1)  # (1, S, D)

    def join(part: int) -> torch.Tensor:  # (L, 1, D): directions side by side, as Encoder._join
        return torch.stack([torch.cat([f[part] for f in layer], -1) for layer in finals])

    final = (join(0), join(1)) if kind == "lstm" else join(0)
    return outputs, final, states


def hidden_state_gradients(model: Seq2Seq, src_ids: list[int], tgt_ids: list[int]) -> torch.Tensor:
    """||dL/dh_s|| of one sentence pair (ids without EOS/BOS) -> (directions, S), s the
    source position as written (EOS last), L the summed cross-entropy of the reference."""
    if model.training:
        raise ValueError("hidden_state_gradients needs the model in eval mode (no dropout)")
    batch = make_batch([src_ids], [tgt_ids])
    lengths, steps = batch.src_lengths, batch.src.size(1)
    order = torch.arange(steps)[None]
    if model.config.reverse_source:
        order = reversed_order(lengths, steps)  # (1, S): reading position -> written position
    outputs, final, states = unrolled_encoder(model, model.src_embed(batch.src.gather(1, order)))
    outputs = outputs.gather(1, order[..., None].expand_as(outputs))
    enc = model.decoder.encoder_out(outputs, torch.ones(1, steps, dtype=torch.bool))
    state = model.decoder.init_state(final, 1)
    loss = outputs.new_zeros(())
    for t in range(batch.tgt_in.size(1)):
        state, _ = model.decoder.step(state, model.tgt_embed(batch.tgt_in[:, t]), enc)
        loss = loss + F.cross_entropy(
            model.logits(state.att_vec), batch.tgt_out[:, t], ignore_index=PAD, reduction="sum"
        )
    flat = [h for direction in states for h in direction]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    norms = torch.tensor([0.0 if g is None else float(g.norm()) for g in grads]).view(
        len(states), steps
    )  # (directions, S) by reading position
    return norms[:, order[0].argsort()]  # by written position


def gradient_flow(model: torch.nn.Module, pairs: list[tuple[list[int], list[int]]]) -> GradientFlow:
    """Mean ||dL/dh_s|| over sentence pairs (id lists), by position and by distance from
    the end; an NmtError for a Transformer (it has no recurrent states to follow)."""
    if not isinstance(model, Seq2Seq):
        raise NmtError(
            "gradients by source position need a recurrent (model.arch rnn) checkpoint: a "
            "Transformer has no hidden state carried from one position to the next"
        )
    if not pairs:
        raise NmtError("no sentence pair to measure (are --src and --tgt empty?)")
    model.eval()
    per_sentence = [hidden_state_gradients(model, s, t) for s, t in pairs]  # (dirs, S_i)
    dirs, longest = per_sentence[0].size(0), max(g.size(1) for g in per_sentence)
    sums = torch.zeros(2, dirs, longest)  # [by position, by distance from the end]
    counts = torch.zeros(longest)
    for g in per_sentence:
        n = g.size(1)
        sums[0, :, :n] += g
        sums[1, :, :n] += g.flip(1)
        counts[:n] += 1
    means = sums / counts
    return GradientFlow(
        cell=model.config.cell,
        attention=model.config.attention,
        reverse_source=model.config.reverse_source,
        sentences=len(pairs),
        by_position={DIRECTIONS[d]: means[0, d].tolist() for d in range(dirs)},
        by_distance_from_end={DIRECTIONS[d]: means[1, d].tolist() for d in range(dirs)},
        counts=[int(c) for c in counts],
    )


def gradient_flow_of_files(
    checkpoint: str | Path, src_path: str | Path, tgt_path: str | Path, lines: int
) -> GradientFlow:
    """gradient_flow of a checkpoint's model over the first `lines` pairs of two files (pairs
    with an empty side are left out)."""
    ckpt = load_checkpoint(checkpoint)
    src, tgt = read_parallel(src_path, tgt_path)
    src, tgt = src[:lines], tgt[:lines]
    pairs = zip(ckpt.tokenizer.encode_src(src), ckpt.tokenizer.encode_tgt(tgt))
    return gradient_flow(ckpt.model, [(s, t) for s, t in pairs if s and t])
