"""Attention over the encoder outputs: dot, general (Luong) and additive (Bahdanau).

Stateless: the keys are projected once per batch by `project_keys`, held by the caller and
passed to every step. `bahdanau_reference` is additive attention as the textbook writes it;
`Attention.forward` computes the same weights another way (see there), and a test compares the
two. Shapes: B batch, S source length, D encoder output size, H decoder hidden size, A attention
size, K queries a sentence.
"""

from __future__ import annotations

import torch
from torch import nn


def bahdanau_reference(
    att: Attention, query: torch.Tensor, enc_outputs: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive attention (Bahdanau et al., 2015) written as the formula, with the layers of
    `att` (kind "bahdanau"): W_k = att.key_proj, W_q = att.query_proj, v = att.energy.

        e_j = v^T tanh(W_k k_j + W_q q)   score of source position j (k_j: encoder output j)
        a   = softmax(e) over real j        weights, exactly 0 at padding
        c   = sum_j a_j k_j                 context

    query (B, H), enc_outputs (B, S, D), mask (B, S) True at real tokens -> context (B, D) and
    weights (B, S). For reading and testing; models run `Attention.forward`.
    """
    hidden = torch.tanh(att.key_proj(enc_outputs) + att.query_proj(query).unsqueeze(1))  # (B, S, A)
    scores = att.energy(hidden).squeeze(2)  # (B, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, S)
    context = torch.bmm(weights.unsqueeze(1), enc_outputs).squeeze(1)  # (B, D)
    return context, weights


def _check_shapes(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> None:
    """The boundary of `Attention.forward`: shapes that would broadcast into wrong weights
    fail here, naming them, instead of deep inside a matmul (or not at all)."""
    b, s = mask.shape
    assert keys.dim() == values.dim() == 3 and query.dim() == 2, (
        f"query (B * K, H), keys (B, S, A), values (B, S, D) expected, got "
        f"{tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}"
    )
    assert keys.shape[:2] == values.shape[:2] == (b, s), (
        f"keys {tuple(keys.shape)} and values {tuple(values.shape)} must start with the "
        f"mask's (B, S) = {(b, s)}"
    )
    assert query.size(0) % b == 0, f"query rows {query.size(0)} are not K per sentence of {b}"


class Attention(nn.Module):
    def __init__(self, *, kind: str, query_size: int, key_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "general":
            # score(q, k) = q^T W k; W k computed once per batch as the key
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
        elif kind == "bahdanau":
            # score(q, k) = v^T tanh(W_k k + W_q q)
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
            self.query_proj = nn.Linear(query_size, query_size, bias=False)
            self.energy = nn.Linear(query_size, 1, bias=False)
        elif kind != "dot":
            raise ValueError(f"unknown attention {kind!r}")

    def project_keys(self, enc_outputs: torch.Tensor) -> torch.Tensor:
        """enc_outputs (B, S, D) -> keys (B, S, A), the argument `forward` takes.

        dot: the encoder outputs; general: W k; bahdanau: 2 W_k k, stored doubled because
        `forward` computes tanh through a sigmoid of twice its argument (see there)."""
        if self.kind == "dot":
            return enc_outputs
        keys = self.key_proj(enc_outputs)
        return 2 * keys if self.kind == "bahdanau" else keys

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B * K, H), keys (B, S, A), values (B, S, D), mask (B, S) True at real tokens
        -> context (B * K, D) and weights (B * K, S), exactly 0 at padded positions, rows
        summing to 1. K queries a sentence (the beams of beam search; 1 otherwise) read its
        keys and values once, without copies of them per beam."""
        b, s = mask.shape
        _check_shapes(query, keys, values, mask)
        q = query.view(b, -1, query.size(-1))  # (B, K, H)
        if self.kind == "bahdanau":
            # The textbook score is v^T tanh(W_k k + W_q q) (`bahdanau_reference`). Since
            # tanh(x) = 2 sigmoid(2x) - 1, v^T tanh(x) = 2 v^T sigmoid(2x) - sum(v), and the
            # constant sum(v) cancels in the softmax: the same weights from a sigmoid, which is
            # cheaper than tanh, in this (B, K, S, A) pass, the largest elementwise work of a
            # decoder step. The keys come doubled from `project_keys`, 2 W_k k.
            q = 2 * self.query_proj(q).unsqueeze(2)  # (B, K, 1, A)
            hidden = torch.sigmoid(keys.unsqueeze(1) + q)  # (B, K, S, A)
            scores = 2 * self.energy(hidden).squeeze(3)  # (B, K, S)
        else:
            scores = torch.bmm(q, keys.transpose(1, 2))  # (B, K, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, K, S)
        context = torch.bmm(weights, values)  # (B, K, D)
        return context.view(-1, values.size(-1)), weights.view(-1, s)
