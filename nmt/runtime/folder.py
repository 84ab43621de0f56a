"""An exported model folder: what `nmt export --format onnx` writes and the runtime reads.

    model.json     the manifest: format and version, architecture, special ids, the graphs'
                   input and output names, the search defaults, the training config, versions
    encoder.onnx   src (N, S) int64, src_lengths (N,) int64 -> the `encoded` tensors (N rows,
                   read by every decoder step) and the first decoder `state`
    decoder.onnx   prev (R,) int64, the state (R rows), the encoded (N rows, R = N * K: the K
                   hypotheses of a sentence are consecutive rows) -> log_probs (R, V) float32,
                   the next state, and attention (R, S) when the model has attention
    src.model      the source sentencepiece model; tgt.model the target's (absent: joint)

The state's tensors keep their rows on the axis `state_axes` names (an RNN's hidden state is
(L, R, H): axis 1); the encoded tensors on axis 0. The search needs nothing else: picking rows
of these tensors follows beam backpointers and drops finished sentences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt import NmtError
from nmt.tokenizer import Tokenizer

FORMAT = "nmt-onnx"
# raised when the graphs' inputs, outputs or the manifest change meaning; a runtime reads only
# its own version
VERSION = 1
MANIFEST = "model.json"
ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
SRC_MODEL, TGT_MODEL = "src.model", "tgt.model"
PRECISIONS = ("float32", "float16", "int8")


@dataclass(frozen=True)
class Graphs:
    """The names of the graphs' tensors, in the order the graphs take them."""

    encoded: tuple[str, ...]  # encoder outputs read by every step (N rows, axis 0)
    state: tuple[str, ...]  # decoder state: encoder outputs, decoder inputs and outputs
    state_axes: tuple[int, ...]  # the row axis of each state tensor
    attention: bool  # the decoder's last output is attention weights (R, S)

    @property
    def decoder_inputs(self) -> list[str]:
        return ["prev", *self.state, *self.encoded]

    @property
    def decoder_outputs(self) -> list[str]:
        out = ["log_probs", *(f"next_{name}" for name in self.state)]
        return out + (["attention"] if self.attention else [])

    @property
    def encoder_outputs(self) -> list[str]:
        return [*self.encoded, *self.state]

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoded": list(self.encoded),
            "state": list(self.state),
            "state_axes": list(self.state_axes),
            "attention": self.attention,
        }


@dataclass(frozen=True)
class Manifest:
    architecture: str  # rnn or transformer
    precision: str  # float32, float16 (weights stored in half precision) or int8
    graphs: Graphs
    max_src_len: int  # source tokens the model reads (EOS excluded); longer input is cut
    max_positions: int | None  # a Transformer's learned positions bound the output length
    config: dict[str, Any]  # the training config it came from
    raw: dict[str, Any]  # model.json as read


def write_manifest(directory: Path, fields: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")


def is_export(path: str | Path) -> bool:
    """A folder with a manifest: what `nmt translate` and `nmt serve` run without torch."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(directory: str | Path) -> Manifest:
    """Check an exported folder and read its manifest; one clear error for anything else."""
    d = Path(directory)
    if d.is_file():
        raise NmtError(
            f"{d} is a file, not an exported model folder (a checkpoint? translate it with "
            f"torch, or export it: nmt export {d} --format onnx -o DIR)"
        )
    if not d.is_dir():
        raise NmtError(f"{d}: no such folder")
    path = d / MANIFEST
    if not path.is_file():
        raise NmtError(f"{d} is not an exported model folder: it has no {MANIFEST}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NmtError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise NmtError(f"{path}: not an nmt export manifest (format {FORMAT!r} expected)")
    if raw.get("version") != VERSION:
        raise NmtError(
            f"{path}: export format version {raw.get('version')!r}, this runtime reads version "
            f"{VERSION}: export the checkpoint again with this version of nmt"
        )
    try:
        g = raw["graphs"]
        graphs = Graphs(
            tuple(g["encoded"]), tuple(g["state"]), tuple(g["state_axes"]), bool(g["attention"])
        )
        manifest = Manifest(
            architecture=str(raw["architecture"]),
            precision=str(raw["precision"]),
            graphs=graphs,
            max_src_len=int(raw["max_src_len"]),
            max_positions=None if raw["max_positions"] is None else int(raw["max_positions"]),
            config=dict(raw["config"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise NmtError(f"{path}: the manifest lacks or garbles {e}") from None
    if len(graphs.state) != len(graphs.state_axes):
        raise NmtError(f"{path}: the manifest's state and state_axes differ in length")
    for name in (ENCODER, DECODER, SRC_MODEL):
        if not (d / name).is_file():
            what = "tokenizer" if name.endswith(".model") else "graph"
            raise NmtError(f"{d}: the {what} {name} is missing: export the model again")
    return manifest


def export_info(directory: str | Path) -> dict[str, Any]:
    """What `nmt info` and GET /info tell of an export: the summary of the checkpoint it was
    made from (kind, architecture, sizes, training progress, versions), with the export's
    own kind, precision and size."""
    d = Path(directory)
    manifest = read_manifest(d)
    info = dict(manifest.raw.get("info", {}))
    info.update(
        path=str(d),
        kind=f"export ({FORMAT} {VERSION})",
        dtype=manifest.precision,
        size_bytes=sum(f.stat().st_size for f in d.iterdir() if f.is_file()),
        config=manifest.config,
    )
    return info


def read_tokenizer(directory: str | Path) -> Tokenizer:
    d = Path(directory)
    src = (d / SRC_MODEL).read_bytes()
    tgt = (d / TGT_MODEL).read_bytes() if (d / TGT_MODEL).is_file() else None
    return Tokenizer(src, tgt)
