"""Typed configuration: dataclasses with defaults, loaded from YAML, overridden, validated once.

A config is three sections, `data`, `model` and `train`. Every option, its default and its
meaning lives here and nowhere else; README.md lists them (a test keeps the two in sync).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nmt import NmtError

CELLS = ("rnn", "gru", "lstm")
ATTENTIONS = ("none", "dot", "general", "bahdanau")
METRICS = ("bleu", "chrf", "loss")
MODEL_TYPES = ("unigram", "bpe")
ARCHS = ("rnn", "transformer")
NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")
# options that only one architecture reads; the other refuses them when they differ from
# their defaults, so that a setting never silently does nothing
RNN_ONLY = (
    "cell", "embed_dim", "enc_hidden_size", "bidirectional", "hidden_size", "attention",
    "input_feeding", "reverse_source",
)  # fmt: skip
TRANSFORMER_ONLY = (
    "d_model", "heads", "ff_size", "attention_dropout", "activation_dropout", "norm",
    "positions", "max_positions",
)  # fmt: skip
SCHEDULES = ("plateau", "noam")
# options a resumed run may change: when and how often it stops, logs and validates, and where
# it runs; every other option shapes the model or the updates and comes from the checkpoint
RESUMABLE = frozenset(
    {
        "train.run_dir", "train.max_steps", "train.max_epochs", "train.max_minutes",
        "train.valid_every", "train.log_every", "train.patience", "train.max_bad_steps",
        "train.threads", "train.device", "data.cache_dir",
    }
)  # fmt: skip
SEED_LIMIT = 2**32  # seeds derive the data order's seed * 1000 + epoch: it must fit 64 bits


@dataclass
class DataConfig:
    train_src: str = ""  # training source file, one sentence a line
    train_tgt: str = ""  # training target file, line-aligned with train_src
    valid_src: str = ""  # validation source file
    valid_tgt: str = ""  # validation target file
    dataset: str = ""  # instead of files: hf:NAME[:CONFIG] or a save_to_disk folder
    src_lang: str = "src"  # source key of a dataset's `translation` column
    tgt_lang: str = "tgt"  # target key of a dataset's `translation` column
    train_split: str = "train"  # dataset split used for training
    valid_split: str = "validation"  # dataset split used for validation
    tokenizer: str = ""  # folder written by `nmt tokenizer train`; empty: train one in the run dir
    vocab_size: int = 8000  # size of a tokenizer trained in the run dir
    joint_vocab: bool = True  # one sentencepiece model for both sides
    model_type: str = "unigram"  # sentencepiece model type: unigram | bpe
    max_len: int = 100  # training pairs longer than this (subword tokens, either side) are dropped
    sampling_alpha: float = 0.0  # subword regularization in training (0: off)
    max_len_ratio: float = 0.0  # drop pairs with a side over this times the other's tokens (0: off)
    drop_identical: bool = False  # drop training pairs whose two sides are the same text
    drop_duplicates: bool = False  # drop repeated training pairs (the first is kept)
    tokenizer_sample: int = 2000000  # random lines a run-dir tokenizer learns from (0: all)
    cache_dir: str = ""  # tokenized training data (nmt prepare); empty: RUN_DIR/cache


@dataclass
class ModelConfig:
    arch: str = "rnn"  # rnn (attention encoder-decoder) | transformer (Vaswani et al. 2017)
    cell: str = "gru"  # rnn: recurrent cell: rnn (Elman, tanh) | gru | lstm
    embed_dim: int = 256  # rnn: embedding size of both sides (transformer: d_model)
    enc_hidden_size: int = 256  # rnn: encoder hidden size per direction
    enc_layers: int = 1  # encoder layers (rnn and transformer)
    bidirectional: bool = True  # rnn: bidirectional encoder
    hidden_size: int = 512  # rnn: decoder hidden size
    dec_layers: int = 1  # decoder layers (rnn and transformer)
    attention: str = "bahdanau"  # rnn: none | dot | general (Luong) | bahdanau (additive)
    input_feeding: bool = True  # rnn: feed the previous attentional vector back to the decoder
    reverse_source: bool = False  # rnn: encode the source backwards, EOS last (Sutskever et al.)
    dropout: float = 0.3  # rnn: on embeddings, layers, attentional vector; transformer: residual
    share_embeddings: bool = False  # one embedding matrix for source and target (joint vocab)
    tie_output: bool = True  # decoder output projection shares the target embedding
    d_model: int = 512  # transformer: width of embeddings, attention and the residual stream
    heads: int = 8  # transformer: attention heads (d_model must be divisible by it)
    ff_size: int = 2048  # transformer: inner size of the position-wise feed-forward layers
    attention_dropout: float = 0.0  # transformer: dropout on attention weights
    activation_dropout: float = 0.0  # transformer: dropout after the feed-forward ReLU
    norm: str = "pre"  # transformer: layer norm before sublayers (pre) or after residuals (post)
    positions: str = "sinusoidal"  # transformer: sinusoidal | learned position embeddings
    max_positions: int = 256  # transformer: learned positions' table size (longest sentence)


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"  # checkpoints (best.pt, last.pt) and log.jsonl go here
    seed: int = 1  # seeds weights, dropout and data order
    batch_tokens: int = 4096  # token budget of a batch (source + target tokens, padding included)
    max_steps: int = 0  # stop after this many updates (0: no limit)
    max_epochs: int = 30  # stop after this many epochs (0: no limit)
    max_minutes: float = 0.0  # stop after this much wall-clock training time (0: no limit)
    lr: float = 0.001  # Adam learning rate (noam: the peak, reached at the end of warm-up)
    warmup_steps: int = 0  # linear learning-rate warm-up over this many updates (noam: > 0)
    schedule: str = "plateau"  # learning-rate schedule: plateau | noam (nmt/schedule.py)
    lr_decay: float = 0.5  # plateau: learning rate factor when validation stops improving
    lr_patience: int = 2  # plateau: validations without improvement before the rate decays
    min_lr: float = 1e-5  # plateau: learning rate floor
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam's moment decay rates, each in [0, 1)
    adam_eps: float = 1e-8  # Adam's denominator term
    clip_norm: float = 1.0  # gradient-norm clipping threshold (0: off)
    label_smoothing: float = 0.1  # label smoothing of the cross-entropy
    teacher_forcing_ratio: float = 1.0  # below 1: scheduled sampling of the decoder's own guesses
    valid_every: int = 500  # validate (loss, BLEU, chrF) every this many updates
    valid_metric: str = "bleu"  # metric that picks the best checkpoint: bleu | chrf | loss
    keep_best: int = (
        1  # best checkpoints kept: best.pt, and above 1 best-step-STEP.pt of the N best
    )
    patience: int = 0  # stop after this many validations without improvement (0: off)
    log_every: int = 50  # log training loss and speed every this many updates
    max_bad_steps: int = 5  # stop after this many non-finite losses in a row
    threads: int = 0  # torch CPU threads (0: torch's default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data that YAML, JSON and checkpoints hold: tuples become lists."""
        return {
            name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
            for name, section in dataclasses.asdict(self).items()
        }


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

# what error messages quote of a value: a YAML file of nested aliases expands to billions of
# items, whose full repr would take gigabytes
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxother = 3, 80, 80


def quote(value: Any) -> str:
    """A short repr of `value` for an error message (at most about 200 characters)."""
    text = _QUOTE.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _coerce(section: str, name: str, default: Any, value: Any) -> Any:
    """`value` as the type of the option's default (a tuple: as many items, each coerced)."""
    where, kind = f"{section}.{name}", type(default)
    if kind is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(default):
            return tuple(_coerce(section, name, d, v) for d, v in zip(default, value))
        kinds = ", ".join(type(d).__name__ for d in default)
        raise NmtError(f"config: {where} must be a list [{kinds}], got {quote(value)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, str):
            # PyYAML reads 1e-3 (no dot) as a string; it is still the number the user meant
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise NmtError(f"config: {where} must be a finite number, got {quote(value)}")
            return float(value)
    elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise NmtError(f"config: {where} must be {kind.__name__}, got {quote(value)}")


def _key(key: Any) -> str:
    return key if isinstance(key, str) and len(key) <= 80 else quote(key)


def _coerced(raw: Any) -> dict[str, dict[str, Any]]:
    """The sections and keys of `raw`, checked and coerced to their options' types (not yet
    validated together); unknown sections or keys are errors listing the valid ones."""
    if not isinstance(raw, dict):
        raise NmtError("config: expected a mapping with sections data, model, train")
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise NmtError(f"config: section {name} must be a mapping")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields), key=quote)
        if unknown:
            raise NmtError(
                f"config: unknown key {name}.{_key(unknown[0])}; valid keys: {', '.join(fields)}"
            )
        sections[name] = {k: _coerce(name, k, fields[k].default, v) for k, v in values.items()}
    unknown = sorted(set(raw) - set(SECTIONS), key=quote)
    if unknown:
        raise NmtError(
            f"config: unknown section {_key(unknown[0])}; valid sections: data, model, train"
        )
    return sections


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config; unknown sections or keys are errors listing the valid ones."""
    config = Config(**{name: SECTIONS[name](**values) for name, values in _coerced(raw).items()})
    validate(config)
    return config


def _refuse_resume_change(where: str, saved: Any, given: Any, checkpoint: str) -> None:
    raise NmtError(
        f"--resume {checkpoint}: {where} is {quote(saved)} in the checkpoint, {quote(given)} "
        "here (config file or --set); a resumed run keeps it: drop the option (or resume "
        "without --config: the checkpoint holds the config), or train a new run elsewhere"
    )


def resume_config(saved: Config, given: dict[str, Any], checkpoint: str) -> Config:
    """The config of a run resumed from `checkpoint`: its `saved` config, with the options
    `given` again (a mapping read by `load_raw`) that may change mid-run (RESUMABLE); another
    given option that differs from the saved one is refused, naming both values."""
    merged = saved.to_dict()
    for section, values in _coerced(given).items():
        for key, value in values.items():
            old = getattr(getattr(saved, section), key)
            if value == old:
                continue
            if f"{section}.{key}" not in RESUMABLE:
                _refuse_resume_change(f"{section}.{key}", old, value, checkpoint)
            merged[section][key] = value
    return config_from_dict(merged)


def check_resumable(saved: Config, config: Config, checkpoint: str) -> None:
    """Refuse to resume with a `config` that differs from the `saved` one beyond RESUMABLE."""
    for section in SECTIONS:
        a, b = getattr(saved, section), getattr(config, section)
        for f in dataclasses.fields(a):
            where = f"{section}.{f.name}"
            if where not in RESUMABLE and getattr(a, f.name) != getattr(b, f.name):
                _refuse_resume_change(where, getattr(a, f.name), getattr(b, f.name), checkpoint)


def _choice(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise NmtError(f"config: {where} must be one of {', '.join(allowed)}, got {quote(value)}")


def _at_least(where: str, value: float, low: float) -> None:
    if value < low:
        raise NmtError(f"config: {where} must be >= {low}, got {value}")


def _check_values(config: Config) -> None:
    """Each option alone: choices and ranges."""
    d, m, t = config.data, config.model, config.train
    _choice("model.arch", m.arch, ARCHS)
    _choice("model.cell", m.cell, CELLS)
    _choice("model.norm", m.norm, NORMS)
    _choice("model.positions", m.positions, POSITIONS)
    _choice("model.attention", m.attention, ATTENTIONS)
    _choice("train.valid_metric", t.valid_metric, METRICS)
    _choice("train.schedule", t.schedule, SCHEDULES)
    _choice("data.model_type", d.model_type, MODEL_TYPES)
    for where, value in [
        ("data.vocab_size", d.vocab_size),
        ("data.max_len", d.max_len),
        ("model.embed_dim", m.embed_dim),
        ("model.enc_hidden_size", m.enc_hidden_size),
        ("model.enc_layers", m.enc_layers),
        ("model.hidden_size", m.hidden_size),
        ("model.dec_layers", m.dec_layers),
        ("model.d_model", m.d_model),
        ("model.heads", m.heads),
        ("model.ff_size", m.ff_size),
        ("model.max_positions", m.max_positions),
        ("train.batch_tokens", t.batch_tokens),
        ("train.valid_every", t.valid_every),
        ("train.log_every", t.log_every),
        ("train.max_bad_steps", t.max_bad_steps),
        ("train.keep_best", t.keep_best),
    ]:
        _at_least(where, value, 1)
    for where, value in [
        ("train.max_steps", t.max_steps),
        ("train.max_epochs", t.max_epochs),
        ("train.max_minutes", t.max_minutes),
        ("train.warmup_steps", t.warmup_steps),
        ("train.lr_patience", t.lr_patience),
        ("train.patience", t.patience),
        ("train.clip_norm", t.clip_norm),
        ("train.threads", t.threads),
        ("train.min_lr", t.min_lr),
        ("data.sampling_alpha", d.sampling_alpha),
        ("data.tokenizer_sample", d.tokenizer_sample),
    ]:
        _at_least(where, value, 0)
    if d.max_len_ratio and d.max_len_ratio < 1:
        raise NmtError(f"config: data.max_len_ratio must be 0 (off) or >= 1, got {d.max_len_ratio}")
    for where, value in [
        ("model.dropout", m.dropout),
        ("model.attention_dropout", m.attention_dropout),
        ("model.activation_dropout", m.activation_dropout),
        ("train.label_smoothing", t.label_smoothing),
        ("train.teacher_forcing_ratio", t.teacher_forcing_ratio),
        ("train.lr_decay", t.lr_decay),
    ]:
        if not 0 <= value <= 1:
            raise NmtError(f"config: {where} must be between 0 and 1, got {value}")
    for i, beta in enumerate(t.adam_betas):
        if not 0 <= beta < 1:
            raise NmtError(f"config: train.adam_betas[{i}] must be in [0, 1), got {beta}")
    for where, value in [("train.lr", t.lr), ("train.adam_eps", t.adam_eps)]:
        if value <= 0:
            raise NmtError(f"config: {where} must be > 0, got {value}")


def validate(config: Config) -> None:
    """Every option in its range, and the options that depend on each other agree."""
    _check_values(config)
    d, m, t = config.data, config.model, config.train
    if not 0 <= t.seed < SEED_LIMIT:
        raise NmtError(f"config: train.seed must be between 0 and {SEED_LIMIT - 1}, got {t.seed}")
    if t.schedule == "noam" and t.warmup_steps < 1:
        raise NmtError("config: train.schedule noam needs train.warmup_steps > 0 (its peak step)")
    enc_out = m.enc_hidden_size * (2 if m.bidirectional else 1)
    if m.attention == "dot" and enc_out != m.hidden_size:
        raise NmtError(
            f"config: model.attention dot needs model.hidden_size ({m.hidden_size}) equal to the "
            f"encoder output size ({enc_out}); use general or bahdanau, or change the sizes"
        )
    if m.arch == "transformer":
        _validate_transformer(config)
    else:
        _refuse_changed(m, TRANSFORMER_ONLY, "transformer")
    if m.share_embeddings and not d.joint_vocab:
        raise NmtError("config: model.share_embeddings needs data.joint_vocab true")
    if t.device != "auto" and not (t.device == "cpu" or t.device.startswith("cuda")):
        raise NmtError(
            f"config: train.device must be auto, cpu, cuda or cuda:N, got {quote(t.device)}"
        )


def decoder_positions(src_tokens: int) -> int:
    """Positions the decoder reads (BOS, then every output token but the final EOS) for the
    longest output search allows by default (SearchOptions: 1.5 x source tokens + 10)."""
    return math.floor(src_tokens * 1.5) + 10 + 1


def _refuse_changed(m: ModelConfig, names: tuple[str, ...], owner: str) -> None:
    defaults = ModelConfig()
    for name in names:
        if getattr(m, name) != getattr(defaults, name):
            raise NmtError(
                f"config: model.{name} is an option of model.arch {owner}, but model.arch is "
                f"{m.arch}: remove it"
            )


def _validate_transformer(config: Config) -> None:
    m, t = config.model, config.train
    _refuse_changed(m, RNN_ONLY, "rnn")
    if m.d_model % m.heads:
        raise NmtError(
            f"config: model.d_model ({m.d_model}) must be divisible by model.heads ({m.heads})"
        )
    if t.teacher_forcing_ratio < 1:
        raise NmtError("config: train.teacher_forcing_ratio below 1 needs model.arch rnn")
    # a learned table has no row for a position past its end: it must hold the longest
    # training source (EOS included) and the longest output that search allows by default
    needed = max(config.data.max_len + 1, decoder_positions(config.data.max_len))
    if m.positions == "learned" and m.max_positions < needed:
        raise NmtError(
            f"config: model.max_positions ({m.max_positions}) must be >= {needed} with learned "
            f"positions and data.max_len {config.data.max_len} (the longest source and output)"
        )


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, value); the value is read as YAML (1e-3, true, ...)."""
    path, sep, value = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not key:
        raise NmtError(f"--set {text!r}: expected section.key=value, e.g. train.lr=0.0005")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return section, key, "" if parsed is None else parsed


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults when path is None) and apply overrides."""
    return config_from_dict(load_raw(path, overrides))


def load_raw(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The options a YAML file and overrides give, as a mapping (not yet checked)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise NmtError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise NmtError(f"config file {p} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise NmtError(f"config file {p}: expected a mapping with sections data, model, train")
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise NmtError(f"--set {text!r}: unknown section {section}; valid: data, model, train")
        section_values = raw.setdefault(section, {})
        if not isinstance(section_values, dict):
            raise NmtError(f"config: section {section} must be a mapping")
        section_values[key] = value
    return raw
