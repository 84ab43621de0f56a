"""Sentencepiece tokenizers: training, loading, and the bytes that travel inside checkpoints.

The special ids are fixed for every model nmt trains, so that the network, the search and
the checkpoint agree without a lookup: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from nmt import NmtError
from nmt.files import check_dir, fsync_dir

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_IDS = {"pad_id": PAD, "unk_id": UNK, "bos_id": BOS, "eos_id": EOS}
FILES = ("src.model", "tgt.model", "tokenizer.json")  # what a tokenizer folder holds


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
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
    )
    return buf.getvalue()


class Tokenizer:
    """Source and target sentencepiece models (the same object twice when joint)."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None) -> None:
        if not src_proto or tgt_proto == b"":
            raise NmtError("tokenizer: the sentencepiece model is empty")
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto  # None: joint
        self.src = _processor(src_proto, "src")
        self.tgt = self.src if tgt_proto is None else _processor(tgt_proto, "tgt")
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

    def encode_src(
        self, lines: list[str], alpha: float = 0.0, *, threads: int | None = None
    ) -> list[list[int]]:
        """Token ids of each line (sampled with `alpha` > 0), on `threads` threads
        (None: sentencepiece's default)."""
        return _encode(self.src, lines, alpha, threads)

    def encode_tgt(
        self, lines: list[str], alpha: float = 0.0, *, threads: int | None = None
    ) -> list[list[int]]:
        return _encode(self.tgt, lines, alpha, threads)

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
        """Write the folder whole or not at all: the files go to a temp folder beside it,
        which is then renamed into place (replacing an earlier tokenizer folder)."""
        out = Path(out_dir)
        check_tokenizer_dir(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        files = {"src.model": self.src_proto}
        if self.tgt_proto is not None:
            files["tgt.model"] = self.tgt_proto
        meta = {"joint": self.joint, **SPECIAL_IDS}
        files["tokenizer.json"] = json.dumps(meta, indent=2).encode()
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        try:
            for name, blob in files.items():
                with open(tmp / name, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o777 & ~_umask())
            fsync_dir(tmp)
            if out.exists():
                # a folder cannot be renamed over a full one: the old one steps aside first
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
                os.replace(out, old / out.name)
                os.replace(tmp, out)
                shutil.rmtree(old)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(out.parent)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        d = Path(directory)
        if not d.is_dir():
            raise NmtError(f"tokenizer folder {d} does not exist (made by `nmt tokenizer train`)")
        if not (d / "src.model").is_file() or not (d / "tokenizer.json").is_file():
            raise NmtError(
                f"tokenizer folder {d} is incomplete (it needs src.model and tokenizer.json): "
                "train it again with `nmt tokenizer train`"
            )
        try:
            joint = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))["joint"]
        except (ValueError, KeyError, TypeError):
            raise NmtError(f"tokenizer folder {d}: tokenizer.json is damaged") from None
        tgt = d / "tgt.model"
        if not joint and not tgt.is_file():
            raise NmtError(
                f"tokenizer folder {d} is incomplete: a separate tokenizer needs tgt.model"
            )
        try:
            return cls((d / "src.model").read_bytes(), None if joint else tgt.read_bytes())
        except NmtError as e:
            raise NmtError(f"tokenizer folder {d}: {e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_tokenizer_dir(out: Path) -> None:
    """Refuse, before any work, to replace a folder that holds more than a tokenizer (or a
    file)."""
    if out.exists() and not out.is_dir():
        raise NmtError(f"{out} is a file: the tokenizer needs a folder there")
    check_dir(out, "tokenizer folder")  # its parents too: none a file, one writable
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in FILES)
        if other:
            raise NmtError(
                f"{out} holds other files than a tokenizer's ({other[0]}, ...): write the "
                "tokenizer to a new or empty folder"
            )


def _processor(proto: bytes, side: str) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except (RuntimeError, TypeError):
        raise NmtError(f"{side}.model is not a sentencepiece model") from None


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


def _encode(
    sp: spm.SentencePieceProcessor, lines: list[str], alpha: float, threads: int | None
) -> list[list[int]]:
    if alpha > 0:
        return sp.encode(
            lines, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1,
            num_threads=threads,
        )  # fmt: skip
    return sp.encode(lines, out_type=int, num_threads=threads)


def train_tokenizer(
    src_lines: Iterable[str],
    tgt_lines: Iterable[str],
    vocab_size: int = 8000,
    model_type: str = "unigram",
    joint: bool = True,
    sample: int = 0,
) -> Tokenizer:
    """Train sentencepiece on the two sides: one model over both (joint) or one per side.

    The lines may stream (generators over files); blank ones are skipped. With `sample` > 0
    each model learns from at most that many lines, drawn at random, and only those are held
    in memory. A vocabulary those lines cannot fill is refused before sentencepiece starts.
    """
    src_lines, tgt_lines = _non_blank(src_lines), _non_blank(tgt_lines)
    sides = [itertools.chain(src_lines, tgt_lines)] if joint else [src_lines, tgt_lines]
    texts = [_sample(lines, sample) for lines in sides]
    # checked on what sentencepiece will see: a sample may hold far fewer words than the corpus
    reachable = min(max_pieces(text, cap=vocab_size) for text in texts)
    if vocab_size > reachable:
        raise NmtError(
            f"tokenizer: vocabulary size {vocab_size:,} is more than the training text can "
            f"fill (at most {reachable:,} pieces): ask for fewer"
        )
    try:
        tok = Tokenizer(*(_train_model(_drain(text), vocab_size, model_type) for text in texts))
    except RuntimeError as e:
        raise NmtError(f"tokenizer: sentencepiece failed: {str(e).splitlines()[0]}") from None
    got = min(tok.src_vocab_size, tok.tgt_vocab_size)
    if got < vocab_size:  # hard_vocab_limit=False: sentencepiece stops where the text runs out
        log.warning(
            "tokenizer: %s pieces asked, the training text gave %s: the vocabulary is smaller",
            f"{vocab_size:,}",
            f"{got:,}",
        )
    return tok


def _non_blank(lines: Iterable[str]) -> Iterator[str]:
    """The lines that are not blank; NmtError if none is."""
    rest = (s for s in lines if s.strip())
    first = next(rest, None)
    if first is None:
        raise NmtError("tokenizer: training text is empty")
    return itertools.chain([first], rest)


def _sample(lines: Iterable[str], size: int) -> list[str]:
    """At most `size` of `lines` (all when `size` is 0) drawn uniformly at random with a fixed
    seed; all of them, in order, when there are fewer. A reservoir (Li's algorithm L): one
    pass, memory for the sample alone, and a random draw only per line kept, the lines in
    between skipped by islice."""
    lines = iter(lines)
    if size <= 0:
        return list(lines)
    kept = list(itertools.islice(lines, size))
    rng = random.Random(0)

    def shrink() -> float:  # a factor in (0, 1]
        return math.exp(math.log(1.0 - rng.random()) / size)

    w = shrink()
    while True:
        skip = math.floor(math.log(1.0 - rng.random()) / math.log1p(-w))
        line = next(itertools.islice(lines, skip, None), None)
        if line is None:
            return kept
        kept[rng.randrange(size)] = line
        w *= shrink()


def _drain(lines: list[str]) -> Iterator[str]:
    """The lines in order, each let go once yielded: sentencepiece copies them as it reads,
    so the text is not held twice."""
    lines.reverse()
    while lines:
        yield lines.pop()


def max_pieces(lines: Iterable[str], cap: int | None = None) -> int:
    """An upper bound of the vocabulary sentencepiece can build from `lines`: the special
    pieces, every character, and every substring (up to sentencepiece's 16 characters) of each
    distinct word with its leading word-boundary mark. Asked for far more, sentencepiece does
    not stop short: it runs for ever. With a `cap`, counting stops once the bound reaches it
    (the value returned is then at least `cap`), so that the set of words stays small."""
    words: set[str] = set()
    chars: set[str] = set()
    substrings = 0
    for line in lines:
        chars.update(line)
        for word in line.split():
            if word not in words:
                words.add(word)
                n = len(word) + 1
                k = min(n, 16)
                substrings += k * (2 * n - k + 1) // 2  # substrings of length 1..k
        if cap is not None and len(SPECIAL_IDS) + len(chars) + substrings >= cap:
            break
    return len(SPECIAL_IDS) + len(chars) + substrings
