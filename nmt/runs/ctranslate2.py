"""A Transformer checkpoint as a CTranslate2 model folder (`nmt export --format ctranslate2`);
translation with such a folder is nmt/runtime/ctranslate2.py.

CTranslate2 runs Transformers only, in C++, with its own search. The export describes our
network in its converter's spec (ctranslate2.specs): the same layers under its names, with
these differences in form, not in what is computed:

- our separate query, key and value projections are fused: self-attention's q, k, v into its
  `linear[0]`, cross-attention's k, v into its `linear[1]` (its `linear[0]` is the query);
- our sinusoids are interleaved (sin, cos, sin, cos ...) where CTranslate2's built-in ones are
  concatenated (all sines, then all cosines), so the folder carries our table as if it were
  learned positions: `max_positions` rows, the longest source and output it can translate;
- the source's EOS is appended by CTranslate2 (`add_source_eos`), as our batching does.

The folder holds CTranslate2's files (config.json, model.bin, the vocabularies: the
sentencepiece pieces in id order), our sentencepiece models (src.model; tgt.model when not
joint) and nmt.json: what the export was made from and the source length it reads.

Search differs where CTranslate2 has no counterpart of an option: see `search_arguments`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError, __version__
from nmt.checkpoint import load_checkpoint
from nmt.files import check_dir
from nmt.runs.graphs import GraphExport, replace_folder
from nmt.runtime.ctranslate2 import (
    FORMAT,
    MANIFEST,
    SRC_MODEL,
    TGT_MODEL,
    VERSION,
    is_ctranslate2_export,
    require_ctranslate2,
)
from nmt.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from nmt.transformer import DecoderLayer, EncoderLayer, MultiHeadAttention, Transformer, sinusoids

PRECISIONS = ("float32", "float16", "int8")
# a sinusoidal table covers outputs up to this many times the longest source (the default
# --max-len-ratio is 1.5); a learned table has the model's own max_positions rows
SINUSOID_RATIO = 4.0
SINUSOID_OFFSET = 64


def _layer_norm(spec: Any, norm: torch.nn.Module) -> None:
    assert isinstance(norm, torch.nn.LayerNorm)
    spec.gamma, spec.beta = norm.weight, norm.bias


def _linear(spec: Any, linear: torch.nn.Linear | list[torch.nn.Linear]) -> None:
    """One Linear, or several fused along the output axis (their outputs side by side)."""
    parts = linear if isinstance(linear, list) else [linear]
    spec.weight = torch.cat([p.weight for p in parts])  # (sum of outputs, inputs)
    spec.bias = torch.cat([p.bias for p in parts])


def _self_attention(spec: Any, attn: MultiHeadAttention, norm: torch.nn.Module) -> None:
    _layer_norm(spec.layer_norm, norm)
    _linear(spec.linear[0], [attn.query, attn.key, attn.value])
    _linear(spec.linear[1], attn.out)


def _cross_attention(spec: Any, attn: MultiHeadAttention, norm: torch.nn.Module) -> None:
    _layer_norm(spec.layer_norm, norm)
    _linear(spec.linear[0], attn.query)
    _linear(spec.linear[1], [attn.key, attn.value])
    _linear(spec.linear[2], attn.out)


def _feed_forward(spec: Any, layer: EncoderLayer | DecoderLayer) -> None:
    _layer_norm(spec.layer_norm, layer.ff_residual.norm)
    _linear(spec.linear_0, layer.feed_forward.inner)
    _linear(spec.linear_1, layer.feed_forward.outer)


def position_table(model: Transformer, max_src_len: int) -> torch.Tensor:
    """The positional encodings CTranslate2 adds, (P, D): the learned table, or our
    interleaved sinusoids for positions 0 .. P - 1."""
    config = model.config
    if model.src_positions is not None:
        return model.src_positions.weight
    rows = max(max_src_len + 1, math.floor(max_src_len * SINUSOID_RATIO) + SINUSOID_OFFSET + 1)
    return sinusoids(torch.arange(rows), config.d_model)


def transformer_spec(model: Transformer, tokenizer: Tokenizer, max_src_len: int) -> Any:
    """Our Transformer described in CTranslate2's TransformerSpec, weights included."""
    from ctranslate2.specs import common_spec
    from ctranslate2.specs import transformer_spec as ts

    config = model.config
    pre = config.norm == "pre"
    relu = common_spec.Activation.RELU  # FeedForward: max(0, x W1 + b1) W2 + b2
    encoder = ts.TransformerEncoderSpec(
        config.enc_layers, config.heads, pre_norm=pre, activation=relu
    )
    decoder = ts.TransformerDecoderSpec(
        config.dec_layers, config.heads, pre_norm=pre, activation=relu
    )
    spec = ts.TransformerSpec(encoder, decoder)

    # embeddings: CTranslate2 scales them by sqrt(D) (scale_embeddings), as _embed does
    encoder.embeddings[0].weight = model.src_embed.weight
    decoder.embeddings.weight = model.tgt_embed.weight  # the same tensor when shared
    table = position_table(model, max_src_len)
    encoder.position_encodings.encodings = table
    tgt_table = model.tgt_positions.weight if model.tgt_positions is not None else table
    decoder.position_encodings.encodings = tgt_table
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers):
        assert isinstance(layer, EncoderLayer)
        _self_attention(
            layer_spec.self_attention, layer.self_attention, layer.attention_residual.norm
        )
        _feed_forward(layer_spec.ffn, layer)
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers):
        assert isinstance(layer, DecoderLayer)
        _self_attention(
            layer_spec.self_attention, layer.self_attention, layer.attention_residual.norm
        )
        _cross_attention(layer_spec.attention, layer.cross_attention, layer.cross_residual.norm)
        _feed_forward(layer_spec.ffn, layer)
    if pre:  # post-norm has no final norms, and CTranslate2 makes none without pre_norm
        _layer_norm(encoder.layer_norm, model.encoder_norm)
        _layer_norm(decoder.layer_norm, model.decoder_norm)
    if config.tie_output:
        decoder.projection.weight = model.tgt_embed.weight
        decoder.projection.bias = model.output_bias
    else:
        assert isinstance(model.output, torch.nn.Linear)
        _linear(decoder.projection, model.output)

    src, tgt = tokenizer.src, tokenizer.tgt
    spec.register_source_vocabulary([src.id_to_piece(i) for i in range(src.get_piece_size())])
    spec.register_target_vocabulary([tgt.id_to_piece(i) for i in range(tgt.get_piece_size())])
    spec.config.unk_token = tgt.id_to_piece(UNK)
    spec.config.bos_token = tgt.id_to_piece(BOS)
    spec.config.eos_token = tgt.id_to_piece(EOS)
    spec.config.decoder_start_token = tgt.id_to_piece(BOS)
    spec.config.add_source_bos = False
    spec.config.add_source_eos = True  # our sources end with EOS, and start with no BOS
    spec.config.layer_norm_epsilon = 1e-5  # torch LayerNorm's, which Residual keeps
    return spec


def _converter(spec: Any) -> Any:
    """A ctranslate2 Converter whose model is `spec` (what its convert() validates,
    quantizes and saves)."""
    from ctranslate2.converters import Converter

    class SpecConverter(Converter):
        def _load(self) -> Any:
            return spec

    return SpecConverter()


def export_ctranslate2(
    checkpoint: str | Path, out: str | Path, *, precision: str = "float32"
) -> GraphExport:
    """Write the CTranslate2 folder of `checkpoint`'s Transformer to `out`, its weights in
    `precision` (float32, float16 or int8): made beside it and renamed into place, so a
    folder at `out` is always whole. A CTranslate2 folder at `out` is replaced; anything else
    there is refused."""
    if precision not in PRECISIONS:
        raise NmtError(
            f"must be one of {', '.join(PRECISIONS)}, got {precision!r}", option="precision"
        )
    require_ctranslate2()
    src, out = Path(checkpoint), Path(out)
    if src.is_dir():
        raise NmtError(f"{src} is a folder: export takes a checkpoint file (best.pt, last.pt)")
    if out.exists() and not is_ctranslate2_export(out) and (not out.is_dir() or any(out.iterdir())):
        raise NmtError(f"-o {out} exists and is not a CTranslate2 model folder: choose another -o")
    parent = out.parent if str(out.parent) else Path(".")
    check_dir(parent, "-o")
    ckpt = load_checkpoint(src, "cpu")
    model = ckpt.model
    if not isinstance(model, Transformer):
        raise NmtError(
            f"{src} is an RNN (model.arch {ckpt.config.model.arch}): CTranslate2 runs "
            "Transformers only; export it with --format onnx"
        )
    max_src_len = ckpt.config.data.max_len
    with torch.no_grad():
        spec = transformer_spec(model, ckpt.tokenizer, max_src_len)
    positions = int(spec.decoder.position_encodings.encodings.shape[0])
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        made = tmp / "model"
        try:
            _converter(spec).convert(str(made), quantization=precision)
        except (ValueError, RuntimeError, NotImplementedError) as e:
            raise NmtError(f"CTranslate2 refused the model of {src}: {e}") from None
        tok = ckpt.tokenizer
        (made / SRC_MODEL).write_bytes(tok.src_proto)
        if tok.tgt_proto is not None:
            (made / TGT_MODEL).write_bytes(tok.tgt_proto)
        import ctranslate2

        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "precision": precision,
            "special_ids": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS},
            "max_src_len": max_src_len,
            # decoder positions 0 .. P - 1: outputs of up to P - 1 tokens
            "max_positions": positions,
            "config": ckpt.config.to_dict(),
            "checkpoint": {"file": src.name, "size": src.stat().st_size},
            "versions": {"nmt": __version__, "ctranslate2": ctranslate2.__version__},
        }
        (made / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        size = sum(f.stat().st_size for f in made.iterdir())
        os.chmod(made, 0o755)
        replace_folder(made, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GraphExport(out, size, precision)
