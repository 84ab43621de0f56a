"""Translation with a CTranslate2 model folder that `nmt export --format ctranslate2` wrote
(nmt/runs/ctranslate2.py): our sentencepiece models around CTranslate2's own search, given the
arguments closest to ours. No torch: tools/bench_runtime.py times CTranslate2 beside torch and
the ONNX runtime as a user would run it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt import NmtError
from nmt.search_options import SearchOptions, max_length
from nmt.tokenizer import BOS, EOS, PAD, Tokenizer

FORMAT = "nmt-ctranslate2"
VERSION = 1
MANIFEST = "nmt.json"
SRC_MODEL, TGT_MODEL = "src.model", "tgt.model"
# ((5 + n) / 6) ** alpha grows like n ** (alpha * n / (5 + n)): about n ** (0.7 alpha) at the
# 10 to 15 pieces of a typical sentence (see search_arguments)
GNMT_EXPONENT = 0.7


def require_ctranslate2() -> None:
    """One clear line when the optional package is missing."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise NmtError(
            "CTranslate2 is not installed: pip install ctranslate2 (or nmt[dev])"
        ) from None


def is_ctranslate2_export(path: str | Path) -> bool:
    """A CTranslate2 model folder (ours or another converter's)."""
    d = Path(path)
    return d.is_dir() and (d / "config.json").is_file() and (d / "model.bin").is_file()


@dataclass
class CTranslate2Model:
    """A CTranslate2 folder loaded: the translator, our tokenizer, the lengths it reads."""

    translator: Any  # ctranslate2.Translator
    tokenizer: Tokenizer
    max_src_len: int  # longer sources are cut, as nmt translate cuts them
    max_positions: int  # outputs may have up to max_positions - 1 tokens


def load_ctranslate2(folder: str | Path, *, threads: int = 1) -> CTranslate2Model:
    """The folder `export_ctranslate2` wrote, on the CPU with `threads` threads (one
    translation at a time: inter_threads 1)."""
    require_ctranslate2()
    import ctranslate2

    d = Path(folder)
    if not is_ctranslate2_export(d) or not (d / MANIFEST).is_file():
        raise NmtError(f"{d} is not a CTranslate2 folder of nmt export --format ctranslate2")
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise NmtError(f"{d}: {MANIFEST} is not version {VERSION} of {FORMAT}")
    tgt = d / TGT_MODEL
    tokenizer = Tokenizer((d / SRC_MODEL).read_bytes(), tgt.read_bytes() if tgt.is_file() else None)
    translator = ctranslate2.Translator(
        str(d), device="cpu", inter_threads=1, intra_threads=threads
    )
    return CTranslate2Model(
        translator, tokenizer, int(manifest["max_src_len"]), int(manifest["max_positions"])
    )


def search_arguments(options: SearchOptions, tokenizer: Tokenizer) -> dict[str, Any]:
    """translate_batch's arguments closest to `options` (the max length is set per group).

    Greedy (beam 1) is the same search. Beam search differs in two rules that CTranslate2
    has no option for:
    - the score: ours divides a hypothesis's log-probability (EOS included) by the GNMT
      penalty ((5 + length) / 6) ** alpha, or by its length with "avg"; CTranslate2 by
      length ** length_penalty (its GNMT form is gone). "avg" is length_penalty 1; alpha is
      given as GNMT_EXPONENT x alpha, the exponent of length that the GNMT penalty grows
      like at a typical output length;
    - when a sentence is done: with a length penalty CTranslate2 stops at beam_size x
      patience finished hypotheses, without one when its best hypothesis ends; ours when
      the best open hypothesis cannot beat the K-th finished one at the next step (stopping
      early) or at all (exact). Patience 2 brings "avg" closer to ours: the searches go on
      longer, as ours does.
    """
    tgt = tokenizer.tgt
    avg = options.length_penalty == "avg"
    alpha = 1.0 if avg else float(options.length_penalty)
    return {
        "beam_size": options.beam_size,
        "length_penalty": alpha if avg else GNMT_EXPONENT * alpha,
        "patience": 2.0 if avg else 1.0,
        # the EOS comes back: an output that ran to the max length is told from one that
        # ended (see _output_ids)
        "return_end_token": True,
        # like ours, no PAD and no BOS ever, and no EOS before min_len (a Translator's 1)
        "suppress_sequences": [[tgt.id_to_piece(PAD)], [tgt.id_to_piece(BOS)]],
        "min_decoding_length": max(options.min_len, 1),
        "max_input_length": 0,  # sources are cut to max_src_len before, not by CTranslate2
    }


def translate_ctranslate2(
    model: CTranslate2Model | str | Path,
    sentences: list[str],
    options: SearchOptions | None = None,
    *,
    threads: int = 1,
    batch_size: int = 64,
) -> list[str]:
    """Translate `sentences` with a CTranslate2 folder (or one loaded by `load_ctranslate2`)
    and our sentencepiece models; `threads` when a folder is given. tools/bench_runtime.py
    calls this to time CTranslate2 beside torch and the ONNX runtime.

    Each sentence is tokenized, cut to the model's max source length, searched with the
    `options` `search_arguments` maps (and the same max output length as nmt translate:
    sentences of one length limit are searched together, `batch_size` at a time), and
    detokenized. An empty sentence gives an empty line.

    int8 folders: on a CPU without VNNI (AVX2 only; AMD CPUs, where CTranslate2 leaves MKL
    off), its default oneDNN int8 product multiplies unsigned 8-bit activations whose
    pairwise sums saturate, and greedy outputs stray far from ours; CT2_USE_MKL=1 in the
    environment before ctranslate2 is imported picks MKL's, which does not (and is slower).
    """
    if not isinstance(model, CTranslate2Model):
        model = load_ctranslate2(model, threads=threads)
    options = options or SearchOptions()
    tok = model.tokenizer
    ids = tok.encode_src(sentences)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, seq in enumerate(ids):
        del seq[model.max_src_len :]
        if seq:
            groups[max_length(len(seq) + 1, options)].append(i)
    longest = max(groups, default=0)
    if longest >= model.max_positions:
        raise NmtError(
            f"an output of up to {longest} tokens is longer than the folder's positions "
            f"({model.max_positions - 1} tokens); lower --max-len-ratio or --max-len-offset"
        )
    arguments = search_arguments(options, tok)
    outputs = [""] * len(sentences)
    for limit, rows in sorted(groups.items()):
        results = model.translator.translate_batch(
            [tok.src_pieces(ids[i]) for i in rows],
            max_batch_size=batch_size,
            max_decoding_length=limit + 1,  # + the EOS, which return_end_token counts
            **arguments,
        )
        out_ids = [_output_ids(r.hypotheses[0], limit, tok) for r in results]
        for i, text in zip(rows, tok.decode_tgt(out_ids)):
            outputs[i] = text
    return outputs


def _output_ids(pieces: list[str], limit: int, tok: Tokenizer) -> list[int]:
    """A hypothesis's ids without its EOS. One that ran to the max length without an EOS
    has one token too many: at `limit` tokens our search allows only EOS, CTranslate2 any."""
    ended = bool(pieces) and pieces[-1] == tok.tgt.id_to_piece(EOS)
    pieces = pieces[:-1] if ended else pieces[:limit]
    return [tok.tgt.piece_to_id(p) for p in pieces]
