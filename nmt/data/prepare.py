"""What a Trainer learns from: the training pairs, the validation text, and the tokenizer.

`prepare_data` is the one place that reads the data and makes the tokenizer; the Trainer
receives their result. The training pairs are tokenized once into a cache on disk
(nmt/data/cache.py) that later runs and `--resume` reuse; only subword sampling, which encodes
the text anew every epoch, keeps the training text in memory.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nmt import NmtError
from nmt.config import Config, DataConfig
from nmt.data.cache import Progress, TokenCache, build_cache, cache_key, file_identity, open_cache
from nmt.data.corpus import (
    PairFilter,
    iter_dataset,
    iter_parallel,
    open_dataset,
    read_chunks,
    read_dataset,
    read_parallel,
)
from nmt.distributed import barrier
from nmt.files import check_dir
from nmt.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)

CHUNK_LINES = 20000  # pairs read, encoded and written at a time: memory stays flat


@dataclass
class TrainData:
    # training text in memory: read only where no cache serves (subword sampling), or given
    # by a caller that has its own lists
    train_src: list[str]
    train_tgt: list[str]
    valid_src: list[str]
    valid_tgt: list[str]
    train_ids: TokenCache | None = None  # the tokenized training pairs on disk; None: encode


def pair_filter(d: DataConfig) -> PairFilter:
    return PairFilter(
        max_len=d.max_len,
        max_len_ratio=d.max_len_ratio,
        drop_identical=d.drop_identical,
        drop_duplicates=d.drop_duplicates,
    )


def _check_sources(d: DataConfig) -> None:
    if d.dataset:
        return
    for name in ("train_src", "train_tgt", "valid_src", "valid_tgt"):
        if not getattr(d, name):
            raise NmtError(f"config: data.{name} is not set (or set data.dataset)")


def _where(d: DataConfig) -> str:
    return d.dataset or f"{d.train_src} and {d.train_tgt}"


def training_chunks(d: DataConfig) -> Iterator[tuple[list[str], list[str], float]]:
    """The training pairs a chunk at a time, with the fraction of the corpus read."""
    if d.dataset:
        ds = open_dataset(d.dataset, d.train_split)
        return iter_dataset(ds, d.dataset, d.src_lang, d.tgt_lang, CHUNK_LINES)
    return iter_parallel(d.train_src, d.train_tgt, CHUNK_LINES)


def training_lines(d: DataConfig, side: str) -> Iterator[str]:
    """One side of the training pairs, line by line."""
    if d.dataset:
        pick: Literal[0, 1] = 0 if side == "src" else 1
        return (line for chunk in training_chunks(d) for line in chunk[pick])
    path = d.train_src if side == "src" else d.train_tgt
    return (line for chunk, _ in read_chunks(path, CHUNK_LINES) for line in chunk)


def corpus_identity(d: DataConfig) -> dict[str, Any]:
    """What identifies the training corpus in a cache key: its files' identities."""
    if not d.dataset:
        return {"files": [file_identity(d.train_src), file_identity(d.train_tgt)]}
    ds = open_dataset(d.dataset, d.train_split)
    files = [file_identity(f["filename"]) for f in ds.cache_files]
    return {
        "dataset": d.dataset,
        "split": d.train_split,
        "langs": [d.src_lang, d.tgt_lang],
        # a dataset with no files behind it (built in memory) has only its fingerprint
        "files": files or getattr(ds, "_fingerprint", None),
    }


def check_corpus(d: DataConfig) -> None:
    """Read the training pairs through once: errors in them (UTF-8, line counts, no pair at
    all) are raised before anything is written."""
    found = False
    for src, tgt, _ in training_chunks(d):
        found = found or any(s.strip() and t.strip() for s, t in zip(src, tgt))
    if not found:
        raise NmtError(
            f"the training set is empty: {_where(d)} hold no pair with two non-empty sides"
        )


def read_data(d: DataConfig) -> TrainData:
    """All training and validation text named by the data section, in memory."""
    _check_sources(d)
    if d.dataset:
        train = read_dataset(d.dataset, d.train_split, d.src_lang, d.tgt_lang)
    else:
        train = read_parallel(d.train_src, d.train_tgt)
    if not any(s.strip() and t.strip() for s, t in zip(*train)):
        raise NmtError(
            f"the training set is empty: {_where(d)} hold no pair with two non-empty sides"
        )
    return TrainData(*train, *read_valid(d))


def read_valid(d: DataConfig) -> tuple[list[str], list[str]]:
    if d.dataset:
        return read_dataset(d.dataset, d.valid_split, d.src_lang, d.tgt_lang)
    return read_parallel(d.valid_src, d.valid_tgt)


def check_validation(d: DataConfig, data: TrainData) -> None:
    """Refuse, before any training, a validation set that validation would fail on."""
    if not any(s.strip() and t.strip() for s, t in zip(data.valid_src, data.valid_tgt)):
        where = f"{d.valid_src} and {d.valid_tgt}"
        if d.dataset:
            where = f"{d.dataset} ({d.valid_split})"
        raise NmtError(
            f"the validation set is empty: {where} hold no pair with two non-empty sides"
        )


def _same(tok: Tokenizer, saved: Tokenizer | None, where: Path) -> Tokenizer:
    if saved is not None and tok.to_state() != saved.to_state():
        raise NmtError(
            f"tokenizer {where} is not the one the checkpoint was trained with (its models "
            "differ): resume with the run's own tokenizer"
        )
    return tok


def get_tokenizer(
    d: DataConfig,
    run_dir: Path,
    data: TrainData | None = None,
    *,
    saved: Tokenizer | None = None,
) -> Tokenizer:
    """The tokenizer data.tokenizer names, the run dir's, or one trained into the run dir on
    (a random sample of) the training text: `data`'s, or the corpus read as a stream. A resumed run
    passes the checkpoint's (`saved`), which any tokenizer found must equal byte for byte."""
    if d.tokenizer:
        return _same(Tokenizer.load(d.tokenizer), saved, Path(d.tokenizer))
    tok_dir = run_dir / "tokenizer"
    if tok_dir.exists():
        tok = Tokenizer.load(tok_dir)
        if tok.joint != d.joint_vocab:
            raise NmtError(
                f"tokenizer {tok_dir} is {'joint' if tok.joint else 'separate'} but "
                f"data.joint_vocab is {str(d.joint_vocab).lower()}: remove it, or "
                "train with --overwrite"
            )
        return _same(tok, saved, tok_dir)
    if saved is not None:
        saved.save(tok_dir)
        return saved
    if data is None:
        check_corpus(d)
    probe_run_dir(run_dir, need_bytes=0)
    log.info("training a tokenizer into %s", tok_dir)
    src: Iterable[str]
    tgt: Iterable[str]
    if data is None:
        src, tgt = training_lines(d, "src"), training_lines(d, "tgt")
    else:
        src, tgt = data.train_src, data.train_tgt
    tok = train_tokenizer(
        src,
        tgt,
        vocab_size=d.vocab_size,
        model_type=d.model_type,
        joint=d.joint_vocab,
        sample=d.tokenizer_sample,
    )
    tok.save(tok_dir)
    return tok


def cache_path(config: Config, tokenizer: Tokenizer) -> tuple[Path, str]:
    """Where the training pairs' cache is (data.cache_dir or RUN_DIR/cache), and its key."""
    d = config.data
    key = cache_key(corpus_identity(config.data), tokenizer, pair_filter(d))
    root = Path(d.cache_dir) if d.cache_dir else Path(config.train.run_dir) / "cache"
    return root / key, key


def load_cache(
    config: Config, tokenizer: Tokenizer, on_progress: Progress | None = None
) -> TokenCache:
    """The training pairs' cache: opened if whole and current, else (re)built."""
    path, key = cache_path(config, tokenizer)
    cache = open_cache(path, key)
    if cache is not None:
        log.info("training pairs: %s from %s", f"{len(cache):,}", path)
        return cache
    start = time.perf_counter()
    cache = build_cache(
        training_chunks(config.data),
        tokenizer,
        pair_filter(config.data),
        path=path,
        key=key,
        where=_where(config.data),
        on_progress=on_progress,
    )
    seconds = time.perf_counter() - start
    log.info("tokenized %s training pairs into %s in %.1f s", f"{len(cache):,}", path, seconds)
    return cache


def prepare_data(
    config: Config,
    *,
    rank: int = 0,
    world: int = 1,
    saved: Tokenizer | None = None,
    on_progress: Progress | None = None,
) -> tuple[TrainData, Tokenizer]:
    """The data and tokenizer a Trainer learns from: the tokenizer named by the config, or
    one trained on the text into RUN_DIR/tokenizer, and the training pairs' cache, built
    when missing (by rank 0; the other ranks wait, then open them). A resumed run passes its
    checkpoint's tokenizer as `saved`. `on_progress` follows a cache build (by default, log
    lines).
    """
    d = config.data
    _check_sources(d)
    run_dir = Path(config.train.run_dir)
    in_memory = d.sampling_alpha > 0
    if d.cache_dir and not in_memory:  # before any work: a file there, or /proc
        check_dir(Path(d.cache_dir), "data.cache_dir", writable=False)
    data = read_data(config.data) if in_memory else TrainData([], [], *read_valid(config.data))
    check_validation(config.data, data)
    text = data if in_memory else None
    if rank == 0:
        tokenizer = get_tokenizer(config.data, run_dir, text, saved=saved)
        if not in_memory:
            data.train_ids = load_cache(config, tokenizer, on_progress)
        probe_run_dir(run_dir, need_bytes=0)
    barrier(world)
    if rank != 0:
        tokenizer = get_tokenizer(config.data, run_dir, text, saved=saved)
        if not in_memory:
            data.train_ids = load_cache(config, tokenizer, on_progress)
    return data, tokenizer


def probe_run_dir(run_dir: Path, need_bytes: int) -> None:
    """Fail before training, not at the first checkpoint, when the run dir is unusable."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-probe"
        probe.write_bytes(b"x" * 1024)
        probe.unlink()
    except OSError as e:
        raise NmtError(f"run dir {run_dir} is not writable ({e.strerror or e})") from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise NmtError(
            f"run dir {run_dir}: {free // 2**20} MiB free, checkpoints need about "
            f"{need_bytes // 2**20} MiB"
        )
