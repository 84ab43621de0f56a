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


def check_validation(config: Config, data: TrainData) -> None:
    """Refuse, before any training, a validation set that validation would fail on."""
    if not any(s.strip() and t.strip() for s, t in zip(data.valid_src, data.valid_tgt)):
        d = config.data
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
    config: Config, data: TrainData, run_dir: Path, saved: Tokenizer | None = None
) -> Tokenizer:
    """The config's tokenizer, the run dir's, or one trained into the run dir; a resumed run
    passes the checkpoint's (`saved`), which any tokenizer found must equal byte for byte."""
    if config.data.tokenizer:
        return _same(Tokenizer.load(config.data.tokenizer), saved, Path(config.data.tokenizer))
    tok_dir = run_dir / "tokenizer"
    if tok_dir.exists():
        tok = Tokenizer.load(tok_dir)
        if tok.joint != config.data.joint_vocab:
            raise NmtError(
                f"tokenizer {tok_dir} is {'joint' if tok.joint else 'separate'} but "
                f"data.joint_vocab is {str(config.data.joint_vocab).lower()}: remove it, or "
                "train with --overwrite"
            )
        return _same(tok, saved, tok_dir)
    if saved is not None:
        saved.save(tok_dir)
        return saved
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


def prepare_data(
    config: Config, *, rank: int = 0, world: int = 1, saved: Tokenizer | None = None
) -> tuple[TrainData, Tokenizer]:
    """The text and tokenizer a Trainer learns from: the tokenizer named by the config, or one
    trained on the text into RUN_DIR/tokenizer (by rank 0; the other ranks wait, then load it).
    A resumed run passes its checkpoint's tokenizer as `saved`.
    """
    data = read_data(config)
    check_validation(config, data)
    run_dir = Path(config.train.run_dir)
    if rank == 0:
        probe_run_dir(run_dir, need_bytes=0)
        tokenizer = get_tokenizer(config, data, run_dir, saved)
    barrier(world)
    if rank != 0:
        tokenizer = get_tokenizer(config, data, run_dir, saved)
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
