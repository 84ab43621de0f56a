"""A checkpoint as ONNX graphs: the folder `nmt export --format onnx` writes (its layout is
nmt/runtime/folder.py), which the runtime runs without torch.

Search stays outside the graphs, in numpy (nmt/runtime/search.py): the encoder graph runs once
a batch, the decoder-step graph once a step with its state passed in and out. An RNN's state
is its hidden state (and an LSTM's cell) with the input-feeding vector, and the attention keys
are computed once a sentence by the encoder graph; a Transformer's state is every decoder
layer's self-attention keys and values, which grow by one position a step, and the
cross-attention keys and values are computed once a sentence.

The graphs are traced by torch.onnx's TorchScript exporter from the model's own `encode` and
`decode_step`, so the runtime computes what `nmt translate` computes; onnx's checker checks
them, and onnxruntime's dynamic quantization makes the int8 graphs.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nmt import NmtError, __version__
from nmt.checkpoint import load_checkpoint
from nmt.decoder import DecoderState, EncoderOut
from nmt.files import check_dir, fsync_dir
from nmt.model import Seq2Seq
from nmt.runs.export import checkpoint_info
from nmt.runtime import folder
from nmt.runtime.folder import Graphs
from nmt.search_options import SearchOptions
from nmt.tokenizer import BOS, EOS, PAD, UNK
from nmt.transformer import DecoderCache, Encoded, Transformer

OPSET = 17  # LayerNormalization is an operator from 17 on


@dataclass
class GraphExport:
    path: Path
    size_bytes: int
    precision: str


def _rnn_graphs(model: Seq2Seq) -> Graphs:
    lstm = model.config.cell == "lstm"
    attention = model.decoder.attention is not None
    encoded = (("keys",) if attention else ()) + ("values", "mask")
    state = ("hidden", "cell", "att_vec") if lstm else ("hidden", "att_vec")
    axes = (1, 1, 0) if lstm else (1, 0)
    return Graphs(encoded, state, axes, attention)


def _transformer_graphs(model: Transformer) -> Graphs:
    n = len(model.decoder_layers)
    encoded = tuple(f"cross_{kv}_{i}" for i in range(n) for kv in ("keys", "values")) + ("mask",)
    state = tuple(f"self_{kv}_{i}" for i in range(n) for kv in ("keys", "values"))
    return Graphs(encoded, state, (0,) * len(state), True)


class _Encoder(nn.Module):
    """src (N, S), src_lengths (N,) -> the encoded tensors and the first state, flat."""

    def __init__(self, model: Seq2Seq | Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc, state = self.model.encode(src, src_lengths)
        if isinstance(enc, Encoded):
            assert isinstance(state, DecoderCache)
            pairs = [t for kv in zip(enc.keys, enc.values) for t in kv]
            return (*pairs, enc.mask, *[t for kv in zip(state.keys, state.values) for t in kv])
        assert isinstance(state, DecoderState)
        encoded = ([] if enc.keys is None else [enc.keys]) + [enc.values, enc.mask]
        hidden = list(state.hidden) if isinstance(state.hidden, tuple) else [state.hidden]
        return (*encoded, *hidden, state.att_vec)


class _Step(nn.Module):
    """prev (R,), the state's and the encoded tensors, flat -> log_probs (R, V), the next
    state, flat, and attention (R, S) when the model has it."""

    def __init__(self, model: Seq2Seq | Transformer, graphs: Graphs) -> None:
        super().__init__()
        self.model, self.graphs = model, graphs

    def forward(self, prev: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_state = len(self.graphs.state)
        flat_state, flat_enc = tensors[:n_state], tensors[n_state:]
        state: Any
        enc: Any
        if isinstance(self.model, Transformer):
            keys, values = flat_state[0::2], flat_state[1::2]
            # the position of the next token is the cache's length (a traced size, so the
            # graph works at every step)
            state = DecoderCache(tuple(keys), tuple(values), keys[0].size(2))
            pairs = flat_enc[:-1]
            enc = Encoded(tuple(pairs[0::2]), tuple(pairs[1::2]), flat_enc[-1])
        else:
            hidden = (flat_state[0], flat_state[1]) if n_state == 3 else flat_state[0]
            state = DecoderState(hidden, flat_state[-1])
            enc_keys = flat_enc[0] if self.graphs.attention else None
            enc = EncoderOut(enc_keys, flat_enc[-2], flat_enc[-1])
        log_probs, new, weights = self.model.decode_step(state, prev, enc)
        if isinstance(new, DecoderCache):
            out = [t for kv in zip(new.keys, new.values) for t in kv]
        else:
            out = list(new.hidden) if isinstance(new.hidden, tuple) else [new.hidden]
            out.append(new.att_vec)
        if weights is not None and self.graphs.attention:
            out.append(weights)
        return (log_probs, *out)


def _axes(graphs: Graphs, transformer: bool) -> dict[str, dict[int, str]]:
    """The dynamic axes of every graph tensor: rows (N sentences, R hypotheses), source
    length S, a Transformer's decoded length t."""
    axes: dict[str, dict[int, str]] = {
        "src": {0: "N", 1: "S"},
        "src_lengths": {0: "N"},
        "prev": {0: "R"},
        "log_probs": {0: "R"},
        "attention": {0: "R", 1: "S"},
        "mask": {0: "N", 1: "S"},
    }
    for name in graphs.encoded:
        if name != "mask":
            axes[name] = {0: "N", 2: "S"} if transformer else {0: "N", 1: "S"}
    for name, axis in zip(graphs.state, graphs.state_axes):
        axes[name] = {0: "R", 2: "t"} if transformer else {axis: "R"}
        axes[f"next_{name}"] = {0: "R", 2: "t1"} if transformer else {axis: "R"}
    return axes


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and the quantizer's chatter kept off the terminal: torch's C++ shape
    inference writes warnings to file descriptor 2 about packed sequences (which the RNN
    operators of ONNX take as sequence lengths), the quantizer logs every tensor it skips.
    On an error, what was written is shown after all."""
    saved_fd = os.dup(2)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        root.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # the tracer warns of every Python value it records as a constant
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            os.dup2(saved_fd, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace")[-4000:])
            raise
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            root.setLevel(level)


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    with _quiet():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: a for n, a in axes.items() if n in inputs or n in outputs},
            opset_version=OPSET,
            dynamo=False,
        )


def _half_weights(path: Path) -> None:
    """Store the float32 weights in float16, each cast back to float32 where the graph reads
    it: half the file, float32 arithmetic (onnxruntime folds the casts when it loads)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 1:
            half = numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16"
            )
            kept.append(half)
            casts.append(
                helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT)
            )
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.save(model, str(path))


def _int8(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    with _quiet():
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    os.replace(quantized, path)


def export_onnx(
    checkpoint: str | Path, out: str | Path, *, precision: str = "float32"
) -> GraphExport:
    """Write the folder of `checkpoint`'s graphs, tokenizer and manifest to `out`: made
    beside it and renamed into place, so a folder at `out` is always whole. An existing
    export at `out` is replaced; anything else there is refused."""
    import onnx

    if precision not in folder.PRECISIONS:
        raise NmtError(
            f"must be one of {', '.join(folder.PRECISIONS)}, got {precision!r}", option="precision"
        )
    src, out = Path(checkpoint), Path(out)
    if src.is_dir():
        raise NmtError(f"{src} is a folder: export takes a checkpoint file (best.pt, last.pt)")
    if out.exists() and not folder.is_export(out) and (not out.is_dir() or any(out.iterdir())):
        raise NmtError(f"-o {out} exists and is not an exported model folder: choose another -o")
    check_dir(out.parent if str(out.parent) else Path("."), "-o")
    ckpt = load_checkpoint(src, "cpu")
    model = ckpt.model.eval()
    assert isinstance(model, (Seq2Seq, Transformer))  # what load_checkpoint builds
    transformer = isinstance(model, Transformer)
    graphs = _transformer_graphs(model) if isinstance(model, Transformer) else _rnn_graphs(model)
    axes = _axes(graphs, transformer)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else "."))
    try:
        # distinct sizes (N 2, S 5, K 3, t 2), so that the tracer confuses no two of them
        src_ids = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]])
        lengths = torch.tensor([5, 3])
        encoder = _Encoder(model)
        inputs = ["src", "src_lengths"]
        with torch.no_grad():
            first = encoder(src_ids, lengths)
        _export(
            encoder, (src_ids, lengths), tmp / folder.ENCODER, inputs, graphs.encoder_outputs, axes
        )
        step = _Step(model, graphs)
        n_enc = len(graphs.encoded)
        encoded, state = first[:n_enc], first[n_enc:]
        rows = torch.arange(2).repeat_interleave(3)  # (R = 6,) 3 hypotheses a sentence
        state = tuple(t.index_select(axis, rows) for t, axis in zip(state, graphs.state_axes))
        prev = torch.full((6,), BOS)
        if transformer:  # a state after two tokens: the cache has a traced length
            with torch.no_grad():
                for token in (BOS, UNK):
                    state = step(torch.full((6,), token), *state, *encoded)[1 : 1 + len(state)]
        _export(
            step,
            (prev, *state, *encoded),
            tmp / folder.DECODER,
            graphs.decoder_inputs,
            graphs.decoder_outputs,
            axes,
        )
        for name in (folder.ENCODER, folder.DECODER):
            onnx.checker.check_model(str(tmp / name))
            if precision == "int8":
                _int8(tmp / name)
            elif precision == "float16":
                _half_weights(tmp / name)
        tok = ckpt.tokenizer
        (tmp / folder.SRC_MODEL).write_bytes(tok.src_proto)
        if tok.tgt_proto is not None:
            (tmp / folder.TGT_MODEL).write_bytes(tok.tgt_proto)
        config = ckpt.config
        learned = transformer and config.model.positions == "learned"
        folder.write_manifest(
            tmp,
            {
                "format": folder.FORMAT,
                "version": folder.VERSION,
                "architecture": config.model.arch,
                "precision": precision,
                "special_ids": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS},
                "vocab": {"src": tok.src_vocab_size, "tgt": tok.tgt_vocab_size},
                "max_src_len": config.data.max_len,
                "max_positions": config.model.max_positions if learned else None,
                "graphs": graphs.to_dict(),
                "search": _search_defaults(),
                "config": config.to_dict(),
                "checkpoint": {"file": src.name, "size": src.stat().st_size},
                # what `nmt info` and GET /info tell of the model (without the paths of its
                # training config)
                "info": {
                    k: v for k, v in checkpoint_info(src).items() if k not in ("path", "config")
                },
                "versions": {
                    "nmt": __version__,
                    "torch": torch.__version__,
                    "onnx": onnx.__version__,
                    "opset": OPSET,
                },
            },
        )
        size = sum(f.stat().st_size for f in tmp.iterdir())
        os.chmod(tmp, 0o755)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GraphExport(out, size, precision)


def _search_defaults() -> dict[str, Any]:
    opts = SearchOptions()
    return {
        "beam_size": opts.beam_size,
        "length_penalty": opts.length_penalty,
        "max_len_ratio": opts.max_len_ratio,
        "max_len_offset": opts.max_len_offset,
        "min_len": opts.min_len,
        "stopping": opts.stopping,
    }


def replace_folder(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`; an export already there is moved aside first
    and removed after, so that `out` is either the old export or the new one."""
    old = None
    try:
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(new, out)
    except OSError as e:  # another export wrote `out` between these two renames
        raise NmtError(
            f"-o {out}: could not put the export in place ({e.strerror}): run again"
        ) from None
    fsync_dir(out.parent if str(out.parent) else Path("."))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
