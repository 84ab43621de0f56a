"""Typed configuration: dataclasses with defaults, loaded from YAML, overridden, validated once.

A config is three sections, `data`, `model` and `train`. Every option, its default and its
meaning lives here and nowhere else; README.md lists them (a test keeps the two in sync).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt import NmtError, quote

CELLS = ("rnn", "gru", "lstm")
ATTENTIONS = ("none", "dot", "general", "bahdanau")
METRICS = ("bleu", "chrf", "loss")
MODEL_TYPES = ("unigram", "bpe")
ARCHS = ("rnn", "transformer")
NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")
SCHEDULES = ("plateau", "noam")
SEED_LIMIT = 2**32  # seeds derive the data order's seed * 1000 + epoch: it must fit 64 bits
WIDEST, DEEPEST, MAX_THREADS = 1 << 16, 64, 1024  # caps: a layer's width or table; layers


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    cap: float | None = None,
    arch: str = "",
) -> Any:
    """A config option, kept as data on the field (the checks, README's table and `nmt config
    show` are made from it): its default, meaning, values (`choices`; `low` to `high`, both
    included; `above`; `cap`, far past any use, so that a typo as 2e9 fails at once) and the
    one `arch` that reads it (the other refuses a value that would silently do nothing)."""
    limits = {"choices": choices, "low": low, "high": high, "above": above, "cap": cap}
    return field(default=default, metadata={"help": help, "arch": arch, **limits})


def width(default: int, help: str, arch: str) -> Any:
    """A size of the network (a layer's width, its heads, a table's rows): 1 to WIDEST."""
    return option(default, help, low=1, cap=WIDEST, arch=arch)


@dataclass
class DataConfig:
    train_src: str = option("", "training source file, one sentence a line")
    train_tgt: str = option("", "training target file, line-aligned with train_src")
    valid_src: str = option("", "validation source file")
    valid_tgt: str = option("", "validation target file")
    dataset: str = option("", "instead of files: hf:NAME[:CONFIG] or a save_to_disk folder")
    src_lang: str = option("src", "source key of a dataset's `translation` column")
    tgt_lang: str = option("tgt", "target key of a dataset's `translation` column")
    train_split: str = option("train", "dataset split used for training")
    valid_split: str = option("validation", "dataset split used for validation")
    tokenizer: str = option(
        "", "folder written by `nmt tokenizer train`; empty: train one in the run dir"
    )
    vocab_size: int = option(8000, "size of a tokenizer trained in the run dir", low=1)
    joint_vocab: bool = option(True, "one sentencepiece model for both sides")
    model_type: str = option(
        "unigram", "sentencepiece model type: unigram | bpe", choices=MODEL_TYPES
    )
    max_len: int = option(
        100, "training pairs longer than this (subword tokens, either side) are dropped", low=1
    )
    sampling_alpha: float = option(0.0, "subword regularization in training (0: off)", low=0)
    max_len_ratio: float = option(
        0.0, "drop pairs with a side over this times the other's tokens (0: off)"
    )
    drop_identical: bool = option(False, "drop training pairs whose two sides are the same text")
    drop_duplicates: bool = option(False, "drop repeated training pairs (the first is kept)")
    tokenizer_sample: int = option(
        2000000, "random lines a run-dir tokenizer learns from (0: all)", low=0
    )
    cache_dir: str = option("", "tokenized training data (nmt prepare); empty: RUN_DIR/cache")


@dataclass
class ModelConfig:
    arch: str = option(
        "rnn", "rnn (attention encoder-decoder) | transformer (Vaswani et al. 2017)", choices=ARCHS
    )
    cell: str = option(
        "gru", "rnn: recurrent cell: rnn (Elman, tanh) | gru | lstm", choices=CELLS, arch="rnn"
    )
    embed_dim: int = width(256, "rnn: embedding size of both sides (transformer: d_model)", "rnn")
    enc_hidden_size: int = width(256, "rnn: encoder hidden size per direction", "rnn")
    enc_layers: int = option(1, "encoder layers (rnn and transformer)", low=1, cap=DEEPEST)
    bidirectional: bool = option(True, "rnn: bidirectional encoder", arch="rnn")
    hidden_size: int = width(512, "rnn: decoder hidden size", "rnn")
    dec_layers: int = option(1, "decoder layers (rnn and transformer)", low=1, cap=DEEPEST)
    attention: str = option(
        "bahdanau",
        "rnn: none | dot | general (Luong) | bahdanau (additive)",
        choices=ATTENTIONS,
        arch="rnn",
    )
    input_feeding: bool = option(
        True, "rnn: feed the previous attentional vector back to the decoder", arch="rnn"
    )
    reverse_source: bool = option(
        False, "rnn: encode the source backwards, EOS last (Sutskever et al.)", arch="rnn"
    )
    dropout: float = option(
        0.3, "rnn: on embeddings, layers, attentional vector; transformer: residual", low=0, high=1
    )
    share_embeddings: bool = option(
        False, "one embedding matrix for source and target (joint vocab)"
    )
    tie_output: bool = option(True, "decoder output projection shares the target embedding")
    d_model: int = width(
        512, "transformer: width of embeddings, attention and the residual stream", "transformer"
    )
    heads: int = width(
        8, "transformer: attention heads (d_model must be divisible by it)", "transformer"
    )
    ff_size: int = width(
        2048, "transformer: inner size of the position-wise feed-forward layers", "transformer"
    )
    attention_dropout: float = option(
        0.0, "transformer: dropout on attention weights", low=0, high=1, arch="transformer"
    )
    activation_dropout: float = option(
        0.0, "transformer: dropout after the feed-forward ReLU", low=0, high=1, arch="transformer"
    )
    norm: str = option(
        "pre",
        "transformer: layer norm before sublayers (pre) or after residuals (post)",
        choices=NORMS,
        arch="transformer",
    )
    positions: str = option(
        "sinusoidal",
        "transformer: sinusoidal | learned position embeddings",
        choices=POSITIONS,
        arch="transformer",
    )
    max_positions: int = width(
        256, "transformer: learned positions' table size (longest sentence)", "transformer"
    )


@dataclass
class TrainConfig:
    run_dir: str = option("runs/default", "checkpoints (best.pt, last.pt) and log.jsonl go here")
    seed: int = option(1, "seeds weights, dropout and data order", low=0, high=SEED_LIMIT - 1)
    batch_tokens: int = option(
        4096, "token budget of a batch (source + target tokens, padding included)", low=1
    )
    max_steps: int = option(0, "stop after this many updates (0: no limit)", low=0)
    max_epochs: int = option(30, "stop after this many epochs (0: no limit)", low=0)
    max_minutes: float = option(
        0.0, "stop after this much wall-clock training time (0: no limit)", low=0
    )
    lr: float = option(
        0.001, "Adam learning rate (noam: the peak, reached at the end of warm-up)", above=0
    )
    warmup_steps: int = option(
        0, "linear learning-rate warm-up over this many updates (noam: > 0)", low=0
    )
    schedule: str = option(
        "plateau", "learning-rate schedule: plateau | noam (nmt/update.py)", choices=SCHEDULES
    )
    lr_decay: float = option(
        0.5, "plateau: learning rate factor when validation stops improving", low=0, high=1
    )
    lr_patience: int = option(
        2, "plateau: validations without improvement before the rate decays", low=0
    )
    min_lr: float = option(1e-5, "plateau: learning rate floor", low=0)
    adam_betas: tuple[float, float] = option(
        (0.9, 0.999), "Adam's moment decay rates, each in [0, 1)"
    )
    adam_eps: float = option(1e-8, "Adam's denominator term", above=0)
    clip_norm: float = option(1.0, "gradient-norm clipping threshold (0: off)", low=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", low=0, high=1)
    teacher_forcing_ratio: float = option(
        1.0, "below 1: scheduled sampling of the decoder's own guesses", low=0, high=1
    )
    valid_every: int = option(500, "validate (loss, BLEU, chrF) every this many updates", low=1)
    valid_metric: str = option(
        "bleu", "metric that picks the best checkpoint: bleu | chrf | loss", choices=METRICS
    )
    keep_best: int = option(
        1, "best checkpoints kept: best.pt, and above 1 best-step-STEP.pt of the N best", low=1
    )
    accumulate: int = option(1, "batches summed in an update", low=1, cap=WIDEST)
    patience: int = option(
        0, "stop after this many validations without improvement (0: off)", low=0
    )
    tensorboard: bool = option(False, "also write TensorBoard event files to RUN_DIR/tensorboard")
    log_every: int = option(50, "log training loss and speed every this many updates", low=1)
    max_bad_steps: int = option(5, "stop after this many non-finite losses in a row", low=1)
    threads: int = option(
        0, "CPU threads (0: auto, a share of the idle cores)", low=0, cap=MAX_THREADS
    )
    device: str = option("auto", "auto | cpu | cuda | cuda:N")


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


def options_table() -> str:
    """Every option, its default and its meaning, as a Markdown table (README's)."""

    def cell(value: Any) -> str:  # as YAML writes it; `|` escaped, or it splits the cell
        import yaml  # loaded with a config file, not by every command

        text = yaml.safe_dump(
            list(value) if isinstance(value, tuple) else value, default_flow_style=True, width=200
        )
        text = text.removesuffix("\n").removesuffix("\n...").replace("'", '"')
        return text.replace("|", "\\|")

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            help = f.metadata["help"].replace("|", "\\|")
            rows.append(f"| `{name}.{f.name}` | `{cell(f.default)}` | {help} |")
    return "\n".join(rows) + "\n"


def _coerce(section: str, name: str, default: Any, value: Any) -> Any:
    """`value` as the type of the option's default (a tuple: as many items, each coerced)."""
    where, kind = f"{section}.{name}", type(default)
    if isinstance(value, int) and value.bit_length() > 1000:  # 10**400 as a float overflows
        raise NmtError(f"config: {where} is too large a number ({value.bit_length()} bits)")
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


def coerced_options(raw: Any) -> dict[str, dict[str, Any]]:
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
    sections = coerced_options(raw)
    config = Config(**{name: SECTIONS[name](**values) for name, values in sections.items()})
    validate(config)
    return config


def _check_option(where: str, value: Any, limits: Any) -> None:
    """One option against the values its field allows (see `option`)."""
    low, high, above = limits["low"], limits["high"], limits["above"]
    if limits["choices"] and value not in limits["choices"]:
        allowed = ", ".join(limits["choices"])
        raise NmtError(f"config: {where} must be one of {allowed}, got {quote(value)}")
    if low is not None and high is not None and not low <= value <= high:
        raise NmtError(f"config: {where} must be between {low} and {high}, got {value}")
    if low is not None and value < low:
        raise NmtError(f"config: {where} must be >= {low}, got {value}")
    if limits["cap"] is not None and value > limits["cap"]:
        raise NmtError(f"config: {where} must be at most {limits['cap']}, got {value}")
    if above is not None and value <= above:
        raise NmtError(f"config: {where} must be > {above}, got {value}")


def _check_values(config: Config) -> None:
    """Each option alone: choices and ranges."""
    for name in SECTIONS:
        section = getattr(config, name)
        for f in dataclasses.fields(section):
            _check_option(f"{name}.{f.name}", getattr(section, f.name), f.metadata)
    d, t = config.data, config.train
    if d.max_len_ratio and d.max_len_ratio < 1:
        raise NmtError(f"config: data.max_len_ratio must be 0 (off) or >= 1, got {d.max_len_ratio}")
    for i, beta in enumerate(t.adam_betas):
        if not 0 <= beta < 1:
            raise NmtError(f"config: train.adam_betas[{i}] must be in [0, 1), got {beta}")


def validate(config: Config) -> None:
    """Every option in its range, and the options that depend on each other agree."""
    _check_values(config)
    d, m, t = config.data, config.model, config.train
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
        _refuse_changed(m, "transformer")
    if m.share_embeddings and not d.joint_vocab:
        raise NmtError("config: model.share_embeddings needs data.joint_vocab true")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device):  # as nmt train's pick_device
        raise NmtError(
            f"config: train.device must be auto, cpu, cuda or cuda:N, got {quote(t.device)}"
        )


def decoder_positions(src_tokens: int) -> int:
    """Positions the decoder reads (BOS, then every output token but the final EOS) for the
    longest output search allows by default (SearchOptions: 1.5 x source tokens + 10)."""
    return math.floor(src_tokens * 1.5) + 10 + 1


def _refuse_changed(m: ModelConfig, owner: str) -> None:
    """Refuse the options only model.arch `owner` reads, set with another arch."""
    for f in dataclasses.fields(m):
        name = f.name
        if f.metadata["arch"] == owner and getattr(m, name) != f.default:
            raise NmtError(
                f"config: model.{name} is an option of model.arch {owner}, but model.arch is "
                f"{m.arch}: remove it"
            )


def _validate_transformer(config: Config) -> None:
    m, t = config.model, config.train
    _refuse_changed(m, "rnn")
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
    import yaml

    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of thousands of digits
        parsed = value
    return section, key, "" if parsed is None else parsed


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults when path is None) and apply overrides."""
    return config_from_dict(load_raw(path, overrides))


def load_raw(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The options a YAML file and overrides give, as a mapping (not yet checked)."""
    raw: dict[str, Any] = {}
    if path is not None:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise NmtError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:  # ValueError: 5000 digits
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
