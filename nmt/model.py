"""The attention seq2seq network: embeddings, encoder, decoder and output layer.

Shapes: B batch, S source length, T target length, E embedding, H decoder hidden,
V target vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from torch import nn

from nmt import NmtError
from nmt.batching import padding_mask
from nmt.config import ModelConfig
from nmt.decoder import Decoder, DecoderState, EncoderOut, select
from nmt.encoder import Encoder
from nmt.output import TiedOutput
from nmt.tokenizer import PAD
from nmt.transformer import Transformer


class Seq2Seq(nn.Module):
    def __init__(self, config: ModelConfig, *, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.config = config
        self.src_embed = nn.Embedding(src_vocab, config.embed_dim, padding_idx=PAD)
        if config.share_embeddings:
            if src_vocab != tgt_vocab:
                raise ValueError("shared embeddings need one vocabulary for both sides")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab, config.embed_dim, padding_idx=PAD)
        self.encoder = Encoder(
            cell=config.cell,
            embed_dim=config.embed_dim,
            hidden_size=config.enc_hidden_size,
            num_layers=config.enc_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.decoder = Decoder(
            cell=config.cell,
            embed_dim=config.embed_dim,
            hidden_size=config.hidden_size,
            num_layers=config.dec_layers,
            enc_size=self.encoder.output_size,
            attention=config.attention,
            input_feeding=config.input_feeding,
            dropout=config.dropout,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output: nn.Module  # (..., H or E) -> logits (..., V)
        self.pre_output: nn.Linear | None  # (..., H) -> (..., E) when the output is tied
        if config.tie_output:
            # the output layer reuses the target embedding: project H down to E first
            self.pre_output = nn.Linear(config.hidden_size, config.embed_dim, bias=False)
            self.output_bias = nn.Parameter(torch.zeros(tgt_vocab))
            self.output = TiedOutput(self.tgt_embed, self.output_bias)
        else:
            self.pre_output = None
            self.output = nn.Linear(config.hidden_size, tgt_vocab)
        # a fixed order, each matrix once (a set's order follows memory addresses, which
        # would make the same seed give different weights)
        for embed in dict.fromkeys((self.src_embed, self.tgt_embed)):
            nn.init.normal_(embed.weight, std=0.1)
            with torch.no_grad():
                embed.weight[PAD].zero_()

    def logits(self, att_vec: torch.Tensor) -> torch.Tensor:
        """att_vec (..., H) -> logits (..., V)."""
        x = self.dropout(att_vec)
        if self.pre_output is not None:
            x = self.pre_output(x)  # (..., E)
        return self.output(x)

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[EncoderOut, DecoderState]:
        """src (B, S), src_lengths (B,) on the CPU -> what every decoder step reads, and the
        decoder's first state."""
        if self.config.reverse_source:
            # the encoder reads the words backwards; its outputs are put back in the source's
            # order, so attention (and its heatmaps) index the source as written
            order = reversed_order(src_lengths.to(src.device), src.size(1))  # (B, S)
            outputs, final = self.encoder(self.src_embed(src.gather(1, order)), src_lengths)
            outputs = outputs.gather(1, order[..., None].expand_as(outputs))  # (B, S, D)
        else:
            outputs, final = self.encoder(self.src_embed(src), src_lengths)  # (B, S, D)
        mask = padding_mask(src_lengths.to(src.device), src.size(1))  # (B, S)
        enc = self.decoder.encoder_out(outputs, mask)
        return enc, self.decoder.init_state(final, src.size(0))

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        return_attention: bool = False,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced decoding of tgt_in (B, T) -> logits (B, T, V) and, when asked,
        attention (B, T, S). With `keep` (B, T) bool, logits only at those positions (N, V):
        training skips the output layer, the largest matmul, at padded positions.

        With teacher_forcing_ratio < 1 each step feeds, per sentence, the model's own
        greedy guess instead of the reference token with probability 1 - ratio.
        """
        enc, state = self.encode(src, src_lengths)
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        sampling = self.training and teacher_forcing_ratio < 1.0
        att_vecs: list[torch.Tensor] = []
        weights: list[torch.Tensor] = []
        step_logits: list[torch.Tensor] = []
        for t in range(tgt_in.size(1)):
            emb_t = embedded[:, t]
            if sampling and t > 0:
                guess = step_logits[-1].argmax(-1)  # (B,)
                use_guess = torch.rand(guess.shape, device=guess.device) >= teacher_forcing_ratio
                emb_t = torch.where(use_guess[:, None], self.dropout(self.tgt_embed(guess)), emb_t)
            state, w = self.decoder.step(state, emb_t, enc)
            att_vecs.append(state.att_vec)
            if sampling:
                step_logits.append(self.logits(state.att_vec))
            if return_attention and w is not None:
                weights.append(w)
        if sampling:
            logits = torch.stack(step_logits, 1)  # (B, T, V)
            logits = logits if keep is None else logits[keep]
        else:
            # one large output projection over all steps instead of T small ones
            stacked = torch.stack(att_vecs, 1)  # (B, T, H)
            logits = self.logits(stacked if keep is None else stacked[keep])
        return logits, (torch.stack(weights, 1) if weights else None)

    def decode_step(
        self, state: DecoderState, prev: torch.Tensor, enc: EncoderOut, normalize: bool = True
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """prev (B,) last tokens -> float32 log-probabilities (B, V) (logits when not
        `normalize`), new state, weights (B, S)."""
        state, weights = self.decoder.step(state, self.tgt_embed(prev), enc)
        logits = self.logits(state.att_vec).float()
        return (logits.log_softmax(-1) if normalize else logits), state, weights

    def select_state(self, state: DecoderState, rows: torch.Tensor) -> DecoderState:
        """The state's rows picked by index (R' rows): beam backpointers, dropping sentences."""
        return select(state, rows)

    def select_encoded(self, enc: EncoderOut, sentences: torch.Tensor) -> EncoderOut:
        """enc's rows picked by index (N' rows): dropping finished sentences."""
        return select(enc, sentences)


def reversed_order(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """lengths (B,) -> indices (B, S=width) that reverse each sentence's tokens but its last
    (EOS stays at the end) and leave padding in place; applied twice they give the identity."""
    pos = torch.arange(width, device=lengths.device)[None, :]  # (1, S)
    last = (lengths - 1)[:, None]  # (B, 1) the EOS position
    return torch.where(pos < last, last - 1 - pos, pos)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(config: ModelConfig, *, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """The network that `config.arch` names: Seq2Seq (rnn) or Transformer; one that cannot
    fit in this machine's memory is refused first (`check_fits`)."""
    # the exact count (on the meta device, whose first use imports a second of torch) only
    # when the sizes' bound does not fit already; on meta nothing is allocated
    bound = parameter_bound(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    too_large = bound * WEIGHT_BYTES > (physical_memory() or bound * WEIGHT_BYTES)
    if too_large and torch.get_default_device().type != "meta":
        check_fits(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    if config.arch == "transformer":
        return Transformer(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    return Seq2Seq(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab)


# bytes a parameter takes: its float32 weight alone, or in training with its gradient and
# Adam's two moments (activations come on top)
WEIGHT_BYTES, TRAIN_BYTES = 4, 16
# the options that size the network, by architecture
SIZE_OPTIONS = {
    "rnn": ("embed_dim", "enc_hidden_size", "hidden_size", "enc_layers", "dec_layers"),
    "transformer": ("d_model", "ff_size", "enc_layers", "dec_layers", "max_positions"),
}


def parameter_bound(config: ModelConfig, *, src_vocab: int, tgt_vocab: int) -> int:
    """At least the parameters of the model `config` describes, from its sizes alone: the
    embeddings, output rows and position table (twice: untied), and each layer (two more for
    attention, output and norms) at most 16 W^2 with W the RNN's widest, or a Transformer
    layer's two attentions and feed-forward with their biases."""
    layers = config.enc_layers + config.dec_layers + 2
    rows = src_vocab + tgt_vocab + config.max_positions
    if config.arch == "transformer":  # a layer: 2 attentions of 4 D^2, a D x F feed-forward
        d, f = config.d_model, config.ff_size
        return 2 * rows * d + layers * (8 * d * d + 2 * d * f + 8 * (d + f))
    widest = max(config.embed_dim, 2 * config.enc_hidden_size, config.hidden_size)
    return 2 * rows * widest + 16 * layers * widest * widest


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def count_on_meta(config: ModelConfig, *, src_vocab: int, tgt_vocab: int) -> int:
    """The parameters of the model `config` describes, counted on the meta device: shapes
    only, nothing allocated, however large."""
    with torch.device("meta"):
        return count_parameters(build_model(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab))


def check_fits(
    config: ModelConfig, *, src_vocab: int, tgt_vocab: int, bytes_per_parameter: int = WEIGHT_BYTES
) -> int:
    """The parameter count of the model `config` describes, or NmtError when its parameters
    (`bytes_per_parameter` each: WEIGHT_BYTES to hold the weights, TRAIN_BYTES to train them)
    exceed this machine's memory, naming the option whose default would save the most."""
    count = count_on_meta(config, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    need, have = count * bytes_per_parameter, physical_memory()
    if have is None or need <= have:
        return count

    def saved(option: str) -> int:  # the parameters `option` at its default would save
        if option == "vocabulary":  # against data.vocab_size's default
            vocab = {"src_vocab": min(src_vocab, 8000), "tgt_vocab": min(tgt_vocab, 8000)}
            return count - count_on_meta(config, **vocab)
        default = getattr(ModelConfig, option)
        # heads 1: the default d_model must still divide into heads (the count is the same)
        usual = replace(config, heads=1, **{option: default})
        return count - count_on_meta(usual, src_vocab=src_vocab, tgt_vocab=tgt_vocab)

    savings = {name: saved(name) for name in (*SIZE_OPTIONS[config.arch], "vocabulary")}
    worst = max(savings, key=savings.__getitem__)
    if savings[worst] <= 0:
        what = "its sizes are the defaults: a smaller model is needed"
    elif worst == "vocabulary":
        what = f"the vocabulary ({src_vocab:,} and {tgt_vocab:,} pieces) weighs most, lower it"
    else:
        what = f"model.{worst} ({getattr(config, worst):,}) weighs most, lower it"
    raise NmtError(
        f"the model would have {count:,} parameters, {need / 2**30:,.1f} GiB, more than this "
        f"machine's {have / 2**30:,.1f} GiB of memory: {what}"
    )
