"""What a Trainer learns from: the training and validation text, and the tokenizer.

`prepare_data` is the one place that reads the data and makes the tokenizer; the Trainer
receives their result.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from nmt import NmtError
from nmt.config import Config
from nmt.corpus import read_dataset, read_parallel
from nmt.distributed import barrier
from nmt.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    train_src: list[str]
    train_tgt: list[str]
    valid_src: list[str]
    valid_tgt: list[str]


def read_data(config: Config) -> TrainData:
    """The raw training and validation text named by the config."""
    d = config.data
    if d.dataset:
        train = read_dataset(d.dataset, d.train_split, d.src_lang, d.tgt_lang)
        valid = read_dataset(d.dataset, d.valid_split, d.src_lang, d.tgt_lang)
    else:
        for name in ("train_src", "train_tgt", "valid_src", "valid_tgt"):
            if not getattr(d, name):
                raise NmtError(f"config: data.{name} is not set (or set data.dataset)")
        train = read_parallel(d.train_src, d.train_tgt)
        valid = read_parallel(d.valid_src, d.valid_tgt)
    if not any(s.strip() and t.strip() for s, t in zip(*train)):
        where = d.dataset or f"{d.train_src} and {d.train_tgt}"
        raise NmtError(f"the training set is empty: {where} hold no pair with two non-empty sides")
    return TrainData(*train, *valid)


def get_tokenizer(config: Config, data: TrainData, run_dir: Path) -> Tokenizer:
    if config.data.tokenizer:
        return Tokenizer.load(config.data.tokenizer)
    tok_dir = run_dir / "tokenizer"
    if (tok_dir / "src.model").is_file():
        return Tokenizer.load(tok_dir)
    log.info("training a tokenizer into %s", tok_dir)
    tok = train_tokenizer(
        data.train_src,
        data.train_tgt,
        vocab_size=config.data.vocab_size,
        model_type=config.data.model_type,
        joint=config.data.joint_vocab,
    )
    tok.save(tok_dir)
    return tok


def prepare_data(config: Config, *, rank: int = 0, world: int = 1) -> tuple[TrainData, Tokenizer]:
    """The text and tokenizer a Trainer learns from: the tokenizer named by the config, or one
    trained on the text into RUN_DIR/tokenizer (by rank 0; the other ranks wait, then load it).
    """
    data = read_data(config)
    run_dir = Path(config.train.run_dir)
    if rank == 0:
        probe_run_dir(run_dir, need_bytes=0)
        tokenizer = get_tokenizer(config, data, run_dir)
    barrier(world)
    if rank != 0:
        tokenizer = get_tokenizer(config, data, run_dir)
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
