"""Config: defaults, YAML, --set overrides, errors that list the valid choices, README sync."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nmt import NmtError
from nmt.config import (
    SECTIONS,
    Config,
    DataConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    options_table,
    parse_override,
    validate,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_validate():
    validate(Config())
    assert config_from_dict({}) == Config()
    assert load_config(None) == Config()


def test_yaml_file_is_loaded(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "data:\n  vocab_size: 500\n  joint_vocab: false\n"
        "model:\n  cell: lstm\n  attention: general\n"
        "train:\n  lr: 0.0005\n  run_dir: runs/x\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.data.vocab_size == 500 and cfg.data.joint_vocab is False
    assert (cfg.model.cell, cfg.model.attention) == ("lstm", "general")
    assert cfg.train.lr == 0.0005 and cfg.train.run_dir == "runs/x"
    assert cfg.train.seed == TrainConfig().seed  # untouched keys keep their defaults


def test_empty_yaml_and_empty_sections_give_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\nmodel:\n", encoding="utf-8")
    assert load_config(path) == Config()
    path.write_text("", encoding="utf-8")
    assert load_config(path) == Config()


def test_overrides_are_yaml_typed_and_win_over_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.1\n  max_steps: 5\n", encoding="utf-8")
    cfg = load_config(
        path,
        [
            "train.lr=0.0005",
            "train.max_steps=7",
            "model.bidirectional=false",
            "model.cell=lstm",
            "data.tokenizer=",
            "train.max_minutes=2",
        ],
    )
    assert cfg.train.lr == 0.0005 and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 7 and isinstance(cfg.train.max_steps, int)
    assert cfg.model.bidirectional is False
    assert cfg.model.cell == "lstm"
    assert cfg.data.tokenizer == ""
    assert cfg.train.max_minutes == 2.0 and isinstance(cfg.train.max_minutes, float)


@pytest.mark.parametrize("text", ["1e-3", "1.0e-3", "0.001", "1E-3"])
def test_exponent_without_dot_is_a_float(text):
    # PyYAML reads 1e-3 as a string; the config must still take it as a number
    assert load_config(None, [f"train.lr={text}"]).train.lr == pytest.approx(0.001)


def test_exponent_in_yaml_file_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  min_lr: 1e-6\n", encoding="utf-8")
    assert load_config(path).train.min_lr == pytest.approx(1e-6)


def test_parse_override():
    assert parse_override("train.lr=0.5") == ("train", "lr", 0.5)
    assert parse_override("model.cell=gru") == ("model", "cell", "gru")
    assert parse_override("data.tokenizer=") == ("data", "tokenizer", "")
    assert parse_override("train.run_dir=a=b") == ("train", "run_dir", "a=b")


@pytest.mark.parametrize("text", ["train.lr", "lr=0.1", "train.=1", "=1"])
def test_malformed_override(text):
    with pytest.raises(NmtError, match="section.key=value"):
        load_config(None, [text])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(NmtError) as e:
        load_config(None, ["train.learning_rate=0.1"])
    msg = str(e.value)
    assert "train.learning_rate" in msg
    for f in dataclasses.fields(TrainConfig):
        assert f.name in msg
    assert "\n" not in msg


def test_unknown_key_in_yaml_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden: 3\n", encoding="utf-8")
    with pytest.raises(NmtError, match=r"model\.hidden.*valid keys:.*hidden_size"):
        load_config(path)


def test_unknown_section_lists_valid_sections(tmp_path):
    with pytest.raises(NmtError, match=r"unknown section decode.*data, model, train"):
        load_config(None, ["decode.beam=5"])
    path = tmp_path / "c.yaml"
    path.write_text("trian:\n  lr: 1\n", encoding="utf-8")
    with pytest.raises(NmtError, match=r"unknown section trian.*data, model, train"):
        load_config(path)


def test_non_string_keys_are_reported_not_crashed_on():
    with pytest.raises(NmtError, match="unknown key"):
        config_from_dict({"model": {1: 2, "foo": 3}})
    with pytest.raises(NmtError, match="unknown section"):
        config_from_dict({1: {}, "foo": {}})


@pytest.mark.parametrize(
    "override, where",
    [
        ("train.max_steps=ten", "train.max_steps"),
        ("train.max_steps=2.5", "train.max_steps"),
        ("train.lr=fast", "train.lr"),
        ("train.lr=true", "train.lr"),
        ("model.bidirectional=maybe", "model.bidirectional"),
        ("model.bidirectional=1", "model.bidirectional"),
        ("model.cell=[gru]", "model.cell"),
        ("data.vocab_size={a: 1}", "data.vocab_size"),
    ],
)
def test_wrong_types(override, where):
    with pytest.raises(NmtError, match=re.escape(where)):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.hidden_size=-1", "model.hidden_size must be >= 1"),
        ("model.embed_dim=0", "model.embed_dim must be >= 1"),
        ("data.vocab_size=-5", "data.vocab_size"),
        ("train.batch_tokens=0", "train.batch_tokens"),
        ("train.max_steps=-1", "train.max_steps must be >= 0"),
        ("model.dropout=1.5", "model.dropout must be between 0 and 1"),
        ("train.label_smoothing=-0.1", "train.label_smoothing"),
        ("train.lr=0", "train.lr must be > 0"),
        ("train.lr=.nan", "train.lr must be a finite number"),
        ("train.max_minutes=.inf", "train.max_minutes must be a finite number"),
        ("train.device=tpu", "train.device must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_impossible_values(override, expected):
    with pytest.raises(NmtError, match=re.escape(expected)):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, choices",
    [
        ("model.cell=transformer", "rnn, gru, lstm"),
        ("model.attention=luong", "none, dot, general, bahdanau"),
        ("train.valid_metric=ter", "bleu, chrf, loss"),
        ("data.model_type=word", "unigram, bpe"),
    ],
)
def test_bad_choice_lists_the_valid_ones(override, choices):
    with pytest.raises(NmtError, match=re.escape(choices)):
        load_config(None, [override])


def test_inconsistent_combinations():
    with pytest.raises(NmtError, match="attention dot"):
        load_config(None, ["model.attention=dot", "model.hidden_size=100"])
    # dot is fine when the sizes agree: 2 * 256 (bidirectional) == 512
    assert load_config(None, ["model.attention=dot"]).model.attention == "dot"
    with pytest.raises(NmtError, match="share_embeddings needs data.joint_vocab"):
        load_config(None, ["model.share_embeddings=true", "data.joint_vocab=false"])


def test_config_file_errors(tmp_path):
    with pytest.raises(NmtError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(NmtError, match="not valid YAML"):
        load_config(bad)
    bad.write_bytes(b"train:\n  run_dir: \xff\xfe\n")
    with pytest.raises(NmtError, match="bad.yaml"):
        load_config(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(NmtError, match="expected a mapping"):
        load_config(bad)
    bad.write_text("train: 5\n", encoding="utf-8")
    with pytest.raises(NmtError, match="section train must be a mapping"):
        load_config(bad)


def test_to_dict_round_trips():
    cfg = load_config(None, ["model.cell=lstm", "train.lr=0.002"])
    assert config_from_dict(cfg.to_dict()) == cfg


# -- README sync ------------------------------------------------------------------------
def test_readme_shows_the_options_table_as_generated():
    """README's table is options_table(), made from the fields' help: every option, its
    default and its meaning, in one place."""
    assert options_table() in README.read_text(encoding="utf-8")


def test_options_table_escapes_pipes_and_lists_every_option():
    rows = options_table().splitlines()[2:]
    assert len(rows) == sum(len(dataclasses.fields(cls)) for cls in SECTIONS.values())
    for row in rows:
        # a bare | would split a cell: each row has exactly four cell borders
        assert len(re.findall(r"(?<!\\)\|", row)) == 4, row
    assert "| `train.keep_best` | `1` | best checkpoints kept" in options_table()
    assert "unigram \\| bpe" in options_table()


def test_every_option_has_help():
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_every_field_has_a_typed_default():
    # the loader infers each option's type from its default: all must be bool/int/float/str,
    # or a tuple of them (a fixed-length list in YAML)
    for cls in (DataConfig, ModelConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            items = f.default if isinstance(f.default, tuple) else (f.default,)
            assert items and all(type(v) in (bool, int, float, str) for v in items), (
                f"{cls.__name__}.{f.name}"
            )


def test_error_messages_quote_little_of_a_huge_value(tmp_path):
    # nested aliases: a million items from a few hundred bytes
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 6):
        levels.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\ntrain:\n  seed: *a5\n")
    with pytest.raises(NmtError, match="train.seed must be int") as e:
        load_config(path)
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("seed", ["100000000000000000000", "-1", "4294967296"])
def test_a_seed_out_of_range_is_refused(seed):
    with pytest.raises(NmtError, match="train.seed must be between 0 and 4294967295"):
        load_config(None, [f"train.seed={seed}"])


def test_resume_keeps_the_saved_config_and_takes_what_may_change():
    from nmt.checkpoint import resume_config
    from nmt.config import load_raw

    saved = load_config(None, ["model.cell=lstm", "train.lr=0.002", "train.max_steps=10"])
    given = load_raw(None, ["train.max_steps=20", "train.lr=0.002", "train.device=cpu"])
    cfg = resume_config(saved, given, "run/last.pt")
    assert cfg.model.cell == "lstm"  # not given: the checkpoint's, not the default
    assert (cfg.train.max_steps, cfg.train.device, cfg.train.lr) == (20, "cpu", 0.002)


def test_a_resumed_run_may_read_its_cache_elsewhere():
    from nmt.checkpoint import resume_config
    from nmt.config import load_raw

    saved = load_config(None, ["data.cache_dir=/disk/a"])
    cfg = resume_config(saved, load_raw(None, ["data.cache_dir=/disk/b"]), "run/last.pt")
    assert cfg.data.cache_dir == "/disk/b"


@pytest.mark.parametrize(
    "override, mentions",
    [
        ("model.cell=gru", ["model.cell is 'lstm' in the checkpoint, 'gru' here"]),
        ("train.lr=0.1", ["train.lr is 0.002 in the checkpoint, 0.1 here"]),
        ("data.vocab_size=500", ["data.vocab_size is 8000 in the checkpoint, 500 here"]),
    ],
)
def test_resume_refuses_a_change_that_cannot_happen_mid_run(override, mentions):
    from nmt.checkpoint import resume_config
    from nmt.config import load_raw

    saved = load_config(None, ["model.cell=lstm", "train.lr=0.002"])
    with pytest.raises(NmtError) as e:
        resume_config(saved, load_raw(None, [override]), "run/last.pt")
    for text in [*mentions, "--resume run/last.pt", "drop the option"]:
        assert text in str(e.value)


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*/*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_config_is_valid(recipe):
    load_config(recipe)


@pytest.mark.parametrize(
    ("override", "bound"),
    [
        ("model.hidden_size=2000000000", "model.hidden_size must be at most 65536"),
        ("model.embed_dim=1048576", "model.embed_dim must be at most 65536"),
        ("model.enc_layers=1000", "model.enc_layers must be at most 64"),
        ("model.dec_layers=1000", "model.dec_layers must be at most 64"),
        ("train.threads=10000", "train.threads must be at most 1024"),
    ],
)
def test_sizes_beyond_any_model_are_refused_when_loading(override, bound):
    with pytest.raises(NmtError, match=bound):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override",
    ["model.d_model=1048576", "model.ff_size=4000000000", "model.max_positions=2000000000"],
)
def test_transformer_sizes_beyond_any_model_are_refused(override):
    option = override.split("=")[0]
    with pytest.raises(NmtError, match=f"{option} must be at most 65536"):
        load_config(None, ["model.arch=transformer", override])


def test_huge_sizes_are_one_line_from_the_command(tmp_path):
    from conftest import nmt, user_error

    r = nmt("train", "--set", "model.hidden_size=2000000000", "--set", f"train.run_dir={tmp_path}")
    user_error(r, "model.hidden_size must be at most 65536")
    assert not any(tmp_path.iterdir())
