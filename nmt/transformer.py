"""The Transformer (Vaswani et al. 2017): attention everywhere, no recurrence.

An encoder layer is multi-head self-attention over the source, then a feed-forward network
applied at every position alike. A decoder layer has three sublayers: causal self-attention
(position t sees positions <= t only), attention over the encoder's output (cross-attention)
and the feed-forward network. Each sublayer sits in a residual connection with layer
normalization, either before the sublayer (pre-norm: steadier to train, no warm-up needed
for small models) or after the residual sum (post-norm, as in the paper). Attention ignores
word order: the positional encodings added to the embeddings are all the model knows of it.

Shapes: B batch, S source length, T target length, D d_model, H heads, Dh = D / H head size,
F feed-forward size, V vocabulary, L decoder layers. In search: N sentences, K hypotheses a
sentence, R = N * K rows, t tokens decoded so far.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from nmt import NmtError
from nmt.batching import padding_mask
from nmt.config import ModelConfig
from nmt.output import TiedOutput
from nmt.tokenizer import PAD


class Encoded(NamedTuple):
    """What every decoder step reads, computed once per batch: one row a sentence (N)."""

    keys: tuple[torch.Tensor, ...]  # per decoder layer: cross-attention keys (N, H, S, Dh)
    values: tuple[torch.Tensor, ...]  # per decoder layer: cross-attention values (N, H, S, Dh)
    mask: torch.Tensor  # (N, S) True at real source tokens


class DecoderCache(NamedTuple):
    """The decoder state in search: the self-attention keys and values of the tokens so far."""

    keys: tuple[torch.Tensor, ...]  # per decoder layer (R, H, t, Dh)
    values: tuple[torch.Tensor, ...]  # per decoder layer (R, H, t, Dh)
    step: int  # t, the position of the next token


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (L,) -> encodings (L, D): PE(pos, 2i) = sin(pos / 10000^(2i/D)) and
    PE(pos, 2i+1) = cos(pos / 10000^(2i/D)), wavelengths from 2 pi to 10000 x 2 pi."""
    two_i = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    angles = positions[:, None].float() / 10000 ** (two_i / dim)  # (L, D / 2)
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)[:, :dim]  # interleaved


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, H, L, Dh)."""
    b, length, d = x.shape
    return x.view(b, length, heads, d // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, D): the heads' outputs side by side."""
    b, h, length, dh = x.shape
    return x.transpose(1, 2).reshape(b, length, h * dh)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    dropout: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention, softmax(q k^T / sqrt(Dh)) v, for every head at once.

    q (B, H, Lq, Dh), k and v (B, H, Lk, Dh); mask broadcast to (B, H, Lq, Lk), True where a
    query may look; `causal` hides key j from query i when j > i. -> (B, H, Lq, Dh), and with
    `need_weights` the weights (B, H, Lq, Lk) (before dropout), else None. Without weights
    torch's fused kernel computes the same without forming the (Lq, Lk) matrix.
    """
    assert q.dim() == k.dim() == v.dim() == 4 and k.shape == v.shape, (
        f"q (B, H, Lq, Dh), k and v (B, H, Lk, Dh) expected, got {tuple(q.shape)}, "
        f"{tuple(k.shape)}, {tuple(v.shape)}"
    )
    assert q.shape[:2] == k.shape[:2] and q.size(3) == k.size(3), (
        f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch, heads or head size"
    )
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal
        )
        return out, None
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Lq, Lk)
    if causal:
        lq, lk = scores.shape[-2:]
        past = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        mask = past if mask is None else mask & past
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return F.dropout(weights, dropout) @ v, weights


class MultiHeadAttention(nn.Module):
    """Queries, keys and values projected to H heads of size Dh, attention in each head, the
    heads' outputs concatenated and projected back to D."""

    def __init__(self, *, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> keys and values (B, H, L, Dh)."""
        return split_heads(self.key(x), self.heads), split_heads(self.value(x), self.heads)

    def forward(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (R, Lq, D) queries; keys and values (N, H, Lk, Dh) with R = N * K: K consecutive
        query rows read one row of keys (the hypotheses of a sentence in beam search, else
        K = 1); mask (N, 1, 1, Lk) or None. -> (R, Lq, D), weights (R, H, Lq, Lk) or None."""
        rows, lq, d = x.shape
        n = keys.size(0)
        # a sentence's K rows of Lq queries become K * Lq queries of one row: every beam
        # reads the sentence's keys and values, which are never copied K times
        q = split_heads(self.query(x).reshape(n, -1, d), self.heads)  # (N, H, K * Lq, Dh)
        p = self.dropout if self.training else 0.0
        context, weights = attention(
            q, keys, values, mask, causal=causal, dropout=p, need_weights=need_weights
        )  # (N, H, K * Lq, Dh)
        out = self.out(merge_heads(context).reshape(rows, lq, d))  # (R, Lq, D)
        if weights is not None:
            weights = weights.view(n, self.heads, -1, lq, keys.size(2)).transpose(1, 2)
            weights = weights.reshape(rows, self.heads, lq, keys.size(2))  # (R, H, Lq, Lk)
        return out, weights


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, the same at every position: D -> F -> D."""

    def __init__(self, *, d_model: int, ff_size: int, dropout: float) -> None:
        super().__init__()
        self.inner = nn.Linear(d_model, ff_size)
        self.outer = nn.Linear(ff_size, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(torch.relu(self.inner(x))))


class Residual(nn.Module):
    """The residual connection around a sublayer f, with dropout and layer norm:
    pre-norm x + dropout(f(norm(x))), post-norm norm(x + dropout(f(x)))."""

    def __init__(self, *, d_model: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def sublayer_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.pre_norm else x

    def add(self, x: torch.Tensor, sublayer_output: torch.Tensor) -> torch.Tensor:
        y = x + self.dropout(sublayer_output)
        return y if self.pre_norm else self.norm(y)


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, pre = config.d_model, config.norm == "pre"
        self.self_attention = MultiHeadAttention(
            d_model=d, heads=config.heads, dropout=config.attention_dropout
        )
        self.feed_forward = FeedForward(
            d_model=d, ff_size=config.ff_size, dropout=config.activation_dropout
        )
        self.attention_residual = Residual(d_model=d, dropout=config.dropout, pre_norm=pre)
        self.ff_residual = Residual(d_model=d, dropout=config.dropout, pre_norm=pre)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, 1, S) True at real tokens -> (B, S, D)."""
        h = self.attention_residual.sublayer_input(x)
        keys, values = self.self_attention.keys_values(h)  # (B, H, S, Dh)
        x = self.attention_residual.add(x, self.self_attention(h, keys, values, mask)[0])
        h = self.ff_residual.sublayer_input(x)
        return self.ff_residual.add(x, self.feed_forward(h))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, heads, pre = config.d_model, config.heads, config.norm == "pre"
        self.self_attention = MultiHeadAttention(
            d_model=d, heads=heads, dropout=config.attention_dropout
        )
        self.cross_attention = MultiHeadAttention(
            d_model=d, heads=heads, dropout=config.attention_dropout
        )
        self.feed_forward = FeedForward(
            d_model=d, ff_size=config.ff_size, dropout=config.activation_dropout
        )
        self.attention_residual = Residual(d_model=d, dropout=config.dropout, pre_norm=pre)
        self.cross_residual = Residual(d_model=d, dropout=config.dropout, pre_norm=pre)
        self.ff_residual = Residual(d_model=d, dropout=config.dropout, pre_norm=pre)

    def forward(
        self,
        x: torch.Tensor,
        enc_keys: torch.Tensor,
        enc_values: torch.Tensor,
        src_mask: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """x (R, T, D); enc_keys, enc_values (N, H, S, Dh); src_mask (N, 1, 1, S); cache: the
        self-attention keys and values (R, H, t, Dh) of earlier tokens in search, None in
        training (T positions at once, causally masked) -> x (R, T, D), the keys and values
        (R, H, t + T, Dh) and, with need_weights, cross-attention weights (R, H, T, S)."""
        h = self.attention_residual.sublayer_input(x)
        keys, values = self.self_attention.keys_values(h)  # (R, H, T, Dh)
        if cache is not None:
            # one new position, which may see every earlier one: no mask needed
            keys, values = torch.cat([cache[0], keys], 2), torch.cat([cache[1], values], 2)
        y, _ = self.self_attention(h, keys, values, causal=cache is None)
        x = self.attention_residual.add(x, y)
        h = self.cross_residual.sublayer_input(x)
        y, weights = self.cross_attention(
            h, enc_keys, enc_values, src_mask, need_weights=need_weights
        )
        x = self.cross_residual.add(x, y)
        x = self.ff_residual.add(x, self.feed_forward(self.ff_residual.sublayer_input(x)))
        return x, (keys, values), weights


class Transformer(nn.Module):
    """Encoder-decoder Transformer with the decoding interface of nmt.search."""

    def __init__(self, config: ModelConfig, *, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        # the decoder layer whose cross-attention forward and decode_step return (heatmaps),
        # and its head, or None for the mean over heads
        self.attention_layer = -1
        self.attention_head: int | None = None
        self.src_embed = nn.Embedding(src_vocab, d, padding_idx=PAD)
        if config.share_embeddings:
            if src_vocab != tgt_vocab:
                raise ValueError("shared embeddings need one vocabulary for both sides")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab, d, padding_idx=PAD)
        learned = config.positions == "learned"
        self.src_positions = nn.Embedding(config.max_positions, d) if learned else None
        self.tgt_positions = nn.Embedding(config.max_positions, d) if learned else None
        self.dropout = nn.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.enc_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.dec_layers))
        # pre-norm leaves the residual stream unnormalized: one last norm on each side
        pre = config.norm == "pre"
        self.encoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d) if pre else nn.Identity()
        self.output: nn.Module  # (..., D) -> logits (..., V)
        if config.tie_output:
            self.output_bias = nn.Parameter(torch.zeros(tgt_vocab))
            self.output = TiedOutput(self.tgt_embed, self.output_bias)
        else:
            self.output = nn.Linear(d, tgt_vocab)
        self._init_weights()

    def choose_attention(self, layer: int, head: int | None) -> None:
        """The decoder layer (negative: from the last) whose cross-attention forward and
        decode_step return, and its head, or None for the mean over heads."""
        n, h = len(self.decoder_layers), self.config.heads
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise NmtError(
                f"must be between {-n} and {n - 1} (the model has {n} decoder layers), "
                f"got {layer!r}",
                option="attention_layer",
            )
        if head is not None and (isinstance(head, bool) or not isinstance(head, int)):
            raise NmtError(
                f"must be a head number or None (mean), got {head!r}", option="attention_head"
            )
        if head is not None and not 0 <= head < h:
            raise NmtError(
                f"must be between 0 and {h - 1} (the model has {h} heads) or mean, got {head}",
                option="attention_head",
            )
        self.attention_layer, self.attention_head = layer, head

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # std 1 / sqrt(D): scaled by sqrt(D) the embeddings have unit size, like the
        # positional encodings, and tied output logits start small
        embeds = (self.src_embed, self.tgt_embed, self.src_positions, self.tgt_positions)
        for embed in dict.fromkeys(e for e in embeds if e is not None):
            nn.init.normal_(embed.weight, std=self.config.d_model**-0.5)
            if embed.padding_idx is not None:
                with torch.no_grad():
                    embed.weight[PAD].zero_()

    def _embed(
        self, tokens: torch.Tensor, embed: nn.Embedding, positions: nn.Embedding | None, start: int
    ) -> torch.Tensor:
        """tokens (B, L) at positions start .. start + L - 1 -> (B, L, D):
        sqrt(D) x token embedding + positional encoding, then dropout."""
        d, end = self.config.d_model, start + tokens.size(1)
        where = torch.arange(start, end, device=tokens.device)  # (L,)
        if positions is None:
            pos = sinusoids(where, d).to(embed.weight.dtype)
        elif end > positions.num_embeddings:
            raise NmtError(
                f"a sequence of {end} tokens is longer than the model's learned positions "
                f"(model.max_positions {positions.num_embeddings}); lower --max-len-ratio or "
                f"--max-len-offset"
            )
        else:
            pos = positions(where)
        return self.dropout(embed(tokens) * math.sqrt(d) + pos)  # (B, L, D)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> logits (..., V)."""
        return self.output(hidden)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Encoded, DecoderCache]:
        """src (B, S), src_lengths (B,) on the CPU -> every decoder layer's cross-attention
        keys and values with the source mask, and an empty decoder state."""
        mask = padding_mask(src_lengths.to(src.device), src.size(1))  # (B, S)
        x = self._embed(src, self.src_embed, self.src_positions, 0)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, mask[:, None, None, :])
        memory = self.encoder_norm(x)  # (B, S, D)
        keys_values = [
            cast(DecoderLayer, layer).cross_attention.keys_values(memory)
            for layer in self.decoder_layers
        ]
        enc = Encoded(tuple(k for k, _ in keys_values), tuple(v for _, v in keys_values), mask)
        b, h = src.size(0), self.config.heads
        empty = memory.new_zeros(b, h, 0, self.config.d_model // h)  # (B, H, 0, Dh)
        n = len(self.decoder_layers)
        return enc, DecoderCache((empty,) * n, (empty,) * n, 0)

    def _decode(
        self,
        tokens: torch.Tensor,
        enc: Encoded,
        cache: DecoderCache | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, DecoderCache, torch.Tensor | None]:
        """tokens (R, T) -> decoder output (R, T, D), the state after them and cross-attention
        weights (R, T, S) of the chosen layer and head (None unless need_weights). Without a
        cache the T tokens are the whole target prefix (training); with one, they follow it."""
        start = 0 if cache is None else cache.step
        x = self._embed(tokens, self.tgt_embed, self.tgt_positions, start)  # (R, T, D)
        src_mask = enc.mask[:, None, None, :]  # (N, 1, 1, S)
        chosen = self.attention_layer % len(self.decoder_layers)
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.decoder_layers):
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v), w = layer(
                x, enc.keys[i], enc.values[i], src_mask, layer_cache, need_weights and i == chosen
            )
            keys.append(k)
            values.append(v)
            if w is not None:  # (R, H, T, S)
                weights = w.mean(1) if self.attention_head is None else w[:, self.attention_head]
        state = DecoderCache(tuple(keys), tuple(values), start + tokens.size(1))
        return self.decoder_norm(x), state, weights

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        return_attention: bool = False,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced decoding of tgt_in (B, T), all positions at once -> logits (B, T, V),
        or (N, V) at the `keep` (B, T) positions, and, when asked, attention (B, T, S)."""
        if teacher_forcing_ratio < 1:
            raise NmtError(
                "the transformer trains with teacher forcing only: set "
                "train.teacher_forcing_ratio to 1"
            )
        enc, _ = self.encode(src, src_lengths)
        hidden, _, weights = self._decode(tgt_in, enc, None, return_attention)  # (B, T, D)
        return self.logits(hidden if keep is None else hidden[keep]), weights

    def decode_step(
        self, state: DecoderCache, prev: torch.Tensor, enc: Encoded, normalize: bool = True
    ) -> tuple[torch.Tensor, DecoderCache, torch.Tensor]:
        """prev (R,) last tokens, state R rows, enc N rows (R = N * K) -> float32
        log-probabilities (R, V) (logits when not `normalize`), new state, weights (R, S)."""
        hidden, state, weights = self._decode(prev[:, None], enc, state, need_weights=True)
        assert weights is not None  # asked for with need_weights
        logits = self.logits(hidden[:, 0]).float()  # (R, V)
        return (logits.log_softmax(-1) if normalize else logits), state, weights[:, 0]

    def select_state(self, state: DecoderCache, rows: torch.Tensor) -> DecoderCache:
        """The caches' rows picked by index (beam backpointers, dropped sentences)."""
        return DecoderCache(
            tuple(k.index_select(0, rows) for k in state.keys),
            tuple(v.index_select(0, rows) for v in state.values),
            state.step,
        )

    def select_encoded(self, enc: Encoded, sentences: torch.Tensor) -> Encoded:
        """The sentences' rows picked by index (dropping finished sentences)."""
        return Encoded(
            tuple(k.index_select(0, sentences) for k in enc.keys),
            tuple(v.index_select(0, sentences) for v in enc.values),
            enc.mask.index_select(0, sentences),
        )
