"""Sentencepiece tokenizers: training, loading, and the bytes that travel inside checkpoints.

The special ids are fixed for every model nmt trains, so that the network, the search and
the checkpoint agree without a lookup: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from nmt import NmtError
from nmt.atomic import write_atomic

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_IDS = {"pad_id": PAD, "unk_id": UNK, "bos_id": BOS, "eos_id": EOS}


def _train_model(lines: Iterable[str], vocab_size: int, model_type: str) -> bytes:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        # small corpora cannot always fill the vocabulary: take what is there
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        **SPECIAL_IDS,
    )
    return buf.getvalue()


class Tokenizer:
    """Source and target sentencepiece models (the same object twice when joint)."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None) -> None:
        if not src_proto or tgt_proto == b"":
            raise NmtError("tokenizer: the sentencepiece model is empty")
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto  # None: joint
        self.src = spm.SentencePieceProcessor(model_proto=src_proto)
        self.tgt = (
            self.src if tgt_proto is None else spm.SentencePieceProcessor(model_proto=tgt_proto)
        )
        for sp in (self.src, self.tgt):
            if (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) != (PAD, UNK, BOS, EOS):
                raise NmtError("tokenizer: special ids must be pad 0, unk 1, bos 2, eos 3")

    @property
    def joint(self) -> bool:
        return self.tgt_proto is None

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: list[str], alpha: float = 0.0) -> list[list[int]]:
        return _encode(self.src, lines, alpha)

    def encode_tgt(self, lines: list[str], alpha: float = 0.0) -> list[list[int]]:
        return _encode(self.tgt, lines, alpha)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def to_state(self) -> dict[str, bytes]:
        state = {"src": self.src_proto}
        if self.tgt_proto is not None:
            state["tgt"] = self.tgt_proto
        return state

    @classmethod
    def from_state(cls, state: dict[str, bytes]) -> Tokenizer:
        return cls(state["src"], state.get("tgt"))

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"src.model": self.src_proto}
        if self.tgt_proto is not None:
            files["tgt.model"] = self.tgt_proto
        meta = {"joint": self.joint, **SPECIAL_IDS}
        files["tokenizer.json"] = json.dumps(meta, indent=2).encode()
        for name, blob in files.items():
            write_atomic(out / name, blob)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        d = Path(directory)
        if not (d / "src.model").is_file():
            raise NmtError(f"tokenizer folder {d} has no src.model (made by `nmt tokenizer train`)")
        tgt = d / "tgt.model"
        return cls((d / "src.model").read_bytes(), tgt.read_bytes() if tgt.is_file() else None)


def _side(tok: Tokenizer, side: str) -> spm.SentencePieceProcessor:
    if side not in ("src", "tgt"):
        raise NmtError(f"--side must be src or tgt, got {side!r}")
    return tok.src if side == "src" else tok.tgt


def encode_lines(
    tok: Tokenizer, lines: list[str], side: str = "src", ids: bool = False
) -> list[str]:
    """Each line as space-separated pieces (or ids): pieces never hold a space themselves."""
    sp = _side(tok, side)
    encoded = sp.encode(lines, out_type=int if ids else str)
    return [" ".join(map(str, seq)) for seq in encoded]


def decode_lines(
    tok: Tokenizer, lines: list[str], side: str = "tgt", ids: bool = False, first_line: int = 1
) -> list[str]:
    """The text of space-separated pieces (or ids), one line each; `first_line` numbers errors."""
    sp = _side(tok, side)
    seqs = [line.split() for line in lines]
    if not ids:
        return sp.decode_pieces(seqs)
    size = sp.get_piece_size()
    numbers = []
    for n, seq in enumerate(seqs, first_line):
        try:
            nums = [int(x) for x in seq]
        except ValueError:
            raise NmtError(f"line {n}: ids must be integers, got {' '.join(seq)[:60]!r}") from None
        bad = [i for i in nums if not 0 <= i < size]
        if bad:
            raise NmtError(f"line {n}: id {bad[0]} is outside the vocabulary (0 to {size - 1})")
        numbers.append(nums)
    return sp.decode(numbers)


def vocab_rows(tok: Tokenizer, side: str = "src") -> list[tuple[int, str, float]]:
    """(id, piece, score) of every piece: the score is the unigram log probability (or the
    BPE merge rank, negated)."""
    sp = _side(tok, side)
    return [(i, sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]


def _encode(sp: spm.SentencePieceProcessor, lines: list[str], alpha: float) -> list[list[int]]:
    if alpha > 0:
        return sp.encode(lines, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1)
    return sp.encode(lines, out_type=int)


def train_tokenizer(
    src_lines: list[str],
    tgt_lines: list[str],
    vocab_size: int = 8000,
    model_type: str = "unigram",
    joint: bool = True,
) -> Tokenizer:
    """Train sentencepiece on the two sides: one model over both (joint) or one per side."""
    src_lines = [s for s in src_lines if s.strip()]
    tgt_lines = [s for s in tgt_lines if s.strip()]
    if not src_lines or not tgt_lines:
        raise NmtError("tokenizer: training text is empty")
    try:
        if joint:
            return Tokenizer(
                _train_model(_interleave(src_lines, tgt_lines), vocab_size, model_type)
            )
        return Tokenizer(
            _train_model(src_lines, vocab_size, model_type),
            _train_model(tgt_lines, vocab_size, model_type),
        )
    except RuntimeError as e:
        raise NmtError(f"tokenizer: sentencepiece failed: {str(e).splitlines()[0]}") from None


def _interleave(a: list[str], b: list[str]) -> Iterator[str]:
    yield from a
    yield from b
