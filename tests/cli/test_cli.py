"""The `nmt` command through typer's CliRunner: each command works, and bad input is one line
on stderr naming the culprit, exit code 2, no traceback and nothing half-written."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import nmt, ok, tiny_config, user_error, write

from nmt.search import SearchOptions

SENTENCES = ["The red cat sees the dog.", "", "Two big houses.", "The girl reads a book."]


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok_dir(toy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    r = nmt(
        "tokenizer", "train", "--src", toy_dir / "train.en", "--tgt", toy_dir / "train.pt",
        "--out", out, "--vocab-size", "200", "--model-type", "bpe",
    )  # fmt: skip
    ok(r)
    return out


def write_config(path: Path, toy_dir: Path, run_dir: Path, tok_dir: Path, **train) -> Path:
    cfg = tiny_config(toy_dir, run_dir, embed_dim=16, enc_hidden_size=16, hidden_size=32)
    raw = cfg.to_dict()
    raw["data"]["tokenizer"] = str(tok_dir)
    raw["train"].update({"max_steps": 20, "valid_every": 20, "log_every": 10, **train})
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cli_run(toy_dir, tok_dir, tmp_path_factory):
    """A tiny model trained for 20 steps through `nmt train`: (config, run dir, stdout)."""
    base = tmp_path_factory.mktemp("cli")
    config = write_config(base / "c.yaml", toy_dir, base / "run", tok_dir)
    r = nmt("train", "--config", config, "--quiet")
    ok(r)
    return config, base / "run", r.stdout


@pytest.fixture(scope="module")
def no_attention_ckpt(cli_run, tmp_path_factory) -> Path:
    """A checkpoint of a model with attention none (untrained: only its config matters)."""
    from nmt.checkpoint import load_checkpoint, save_checkpoint
    from nmt.config import config_from_dict
    from nmt.model import Seq2Seq

    ckpt = load_checkpoint(cli_run[1] / "last.pt")
    raw = ckpt.config.to_dict()
    raw["model"]["attention"] = "none"
    config = config_from_dict(raw)
    model = Seq2Seq(
        config.model,
        src_vocab=ckpt.tokenizer.src_vocab_size,
        tgt_vocab=ckpt.tokenizer.tgt_vocab_size,
    )
    path = tmp_path_factory.mktemp("noatt") / "none.pt"
    save_checkpoint(path, model=model, config=config, tokenizer=ckpt.tokenizer)
    return path


# -- data -------------------------------------------------------------------------------
def test_data_toy(tmp_path):
    out = tmp_path / "toy"
    r = nmt("data", "toy", "--out", out, "--size", "200", "--seed", "3")
    ok(r)
    assert r.stdout == ""
    for split in ("train", "valid", "test"):
        src = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
        tgt = (out / f"{split}.pt").read_text(encoding="utf-8").splitlines()
        assert len(src) == len(tgt) > 0
    assert len((out / "train.en").read_text(encoding="utf-8").splitlines()) == 200


@pytest.mark.parametrize("size", ["0", "-5"])
def test_data_toy_bad_size(tmp_path, size):
    user_error(nmt("data", "toy", "--out", tmp_path / "toy", "--size", size), "--size")
    assert not (tmp_path / "toy" / "train.en").exists()


# -- tokenizer --------------------------------------------------------------------------
def test_tokenizer_train_joint(tok_dir):
    assert (tok_dir / "src.model").is_file()
    assert not (tok_dir / "tgt.model").exists()
    meta = json.loads((tok_dir / "tokenizer.json").read_text())
    assert meta["joint"] is True
    assert (meta["pad_id"], meta["unk_id"], meta["bos_id"], meta["eos_id"]) == (0, 1, 2, 3)


def test_tokenizer_train_separate(toy_dir, tmp_path):
    out = tmp_path / "tok"
    r = nmt(
        "tokenizer", "train", "--src", toy_dir / "train.en", "--tgt", toy_dir / "train.pt",
        "--out", out, "--vocab-size", "150", "--model-type", "bpe", "--separate",
    )  # fmt: skip
    ok(r)
    assert (out / "src.model").is_file() and (out / "tgt.model").is_file()
    assert json.loads((out / "tokenizer.json").read_text())["joint"] is False
    assert "separate bpe" in r.stderr


@pytest.fixture
def pair(tmp_path):
    def make(src: str | bytes, tgt: str | bytes) -> tuple[Path, Path]:
        return write(tmp_path / "a.src", src), write(tmp_path / "a.tgt", tgt)

    return make


def test_tokenizer_bad_inputs(pair, tmp_path):
    out = tmp_path / "tok"

    def train(src, tgt, *extra):
        return nmt("tokenizer", "train", "--src", src, "--tgt", tgt, "--out", out, *extra)

    src, tgt = pair("a b\nc d\n", "x y\n")
    user_error(train(tmp_path / "missing.src", tgt), "missing.src", "does not exist")
    user_error(train(src, tgt), "a.src has 2 lines", "a.tgt has 1")
    src, tgt = pair("good\nbad \xff line\n".encode("latin-1"), "ok\nok\n")
    user_error(train(src, tgt), "a.src:2", "UTF-8")
    src, tgt = pair("", "")
    user_error(train(src, tgt), "empty")
    src, tgt = pair("a\n", "b\n")
    user_error(train(src, tgt, "--model-type", "word"), "--model-type", "unigram or bpe")
    user_error(train(src, tgt, "--vocab-size", "-1"), "--vocab-size", ">= 8")
    src, tgt = pair("a small text\n", "ein kleiner Text\n")
    user_error(train(src, tgt, "--vocab-size", "2000000000"), "2,000,000,000", "at most")
    assert not out.exists()
    write(out, "a file")
    user_error(train(src, tgt, "--vocab-size", "20"), f"{out} is a file")


# -- train ------------------------------------------------------------------------------
def test_train(cli_run):
    _, run_dir, stdout = cli_run
    result = json.loads(stdout)
    assert result["step"] == 20 and result["run_dir"] == str(run_dir)
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [20]


def test_train_resume_continues(cli_run, tmp_path):
    config, run_dir, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    r = nmt(
        "train", "--config", config, "--set", f"train.run_dir={copy}",
        "--set", "train.max_steps=30", "--resume", copy / "last.pt", "--quiet",
    )  # fmt: skip
    ok(r)
    assert json.loads(r.stdout)["step"] == 30
    records = [json.loads(line) for line in (copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20, 30]
    from nmt.checkpoint import load_checkpoint

    assert load_checkpoint(copy / "last.pt").train_state["step"] == 30


def test_train_again_into_a_run_is_refused(cli_run):
    config, run_dir, _ = cli_run
    line = user_error(
        nmt("train", "--config", config, "-q"),
        str(run_dir), f"--resume {run_dir / 'last.pt'}", "--overwrite (removes",
    )  # fmt: skip
    assert "tokenizer/" not in line  # the config names its own tokenizer: never removed


def test_train_overwrite_starts_over(cli_run, tmp_path):
    config, run_dir, _ = cli_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for _ in range(2):  # as `make demo` does each time
        r = nmt("train", "--config", config, "--set", f"train.run_dir={copy}", "--overwrite", "-q")
        ok(r)
    records = [json.loads(line) for line in (copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20]


def test_train_resume_as_the_readme_shows_it(toy_dir, tok_dir, tmp_path):
    run = tmp_path / "run"
    my = {
        "data": {
            "train_src": str(toy_dir / "train.en"), "train_tgt": str(toy_dir / "train.pt"),
            "valid_src": str(toy_dir / "valid.en"), "valid_tgt": str(toy_dir / "valid.pt"),
            "tokenizer": str(tok_dir),
        },
        "model": {"embed_dim": 16, "enc_hidden_size": 16, "hidden_size": 32},
        "train": {"run_dir": str(run), "max_steps": 4, "valid_every": 2, "batch_tokens": 800},
    }  # fmt: skip
    config = write(tmp_path / "my.yaml", yaml.safe_dump(my))
    ok(nmt("train", "--config", config, "--set", "train.lr=0.0005", "--set", "model.cell=lstm"))
    last = run / "last.pt"
    r = nmt("train", "--config", config, "--resume", last, "--set", "train.max_steps=6", "-q")
    ok(r)
    assert json.loads(r.stdout)["step"] == 6
    r = nmt("train", "--resume", last, "--set", "train.max_steps=8", "-q")
    ok(r)
    assert json.loads(r.stdout)["step"] == 8
    from nmt.checkpoint import load_checkpoint

    ckpt = load_checkpoint(last)
    assert (ckpt.config.model.cell, ckpt.config.train.lr) == ("lstm", 0.0005)
    user_error(
        nmt("train", "--config", config, "--resume", last, "--set", "model.cell=gru"),
        "model.cell is 'lstm' in the checkpoint, 'gru' here", "without --config",
    )  # fmt: skip


def test_train_progress_off_a_terminal(toy_dir, tok_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("nmt.cli.train._PLAIN_EVERY_S", 0.0)
    config = write_config(
        tmp_path / "c.yaml", toy_dir, tmp_path / "run", tok_dir, max_steps=0, max_epochs=30
    )
    r = nmt("train", "--config", config, "--set", "train.max_minutes=0.05")
    ok(r)
    err = r.stderr
    words = " ".join(err.split())  # the log wraps long lines
    assert "plan: " in words and "training pairs" in words and "batches an epoch" in words
    assert "stops after 30 epochs" in words and "or 0.05 minutes" in words
    lines = [ln for ln in err.splitlines() if ln.startswith("step ") and "tok/s" in ln]
    assert lines and "epoch 1 (1/" in lines[0] and "ETA" in lines[0]


def test_train_progress_on_a_terminal(toy_dir, tok_dir, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    # the log (the app's handler) and the bar (the train command) write to the same console
    monkeypatch.setattr("nmt.cli.main.err", console)
    monkeypatch.setattr("nmt.cli.train.err", console)
    config = write_config(tmp_path / "c.yaml", toy_dir, tmp_path / "run", tok_dir, max_steps=6)
    ok(nmt("train", "--config", config, "--set", "train.log_every=100"))
    shown = screen.getvalue()
    # the bar moved before the first log record (log_every 100): every update shows
    assert "epoch 1 (6/" in shown and "ETA" in shown and "tok/s" in shown


def test_train_prints_its_result_on_rank_0_only(train_config, monkeypatch):
    from nmt import train as train_module

    config, _ = train_config()
    monkeypatch.setattr(train_module, "train", lambda *a, **k: {"step": 1})
    monkeypatch.setenv("RANK", "1")
    r = nmt("train", "--config", config)
    ok(r)
    assert r.stdout == ""
    monkeypatch.setenv("RANK", "0")
    assert json.loads(nmt("train", "--config", config).stdout) == {"step": 1}


def test_version_and_verbose_in_help():
    from nmt import __version__

    r = nmt("--version")
    ok(r)
    assert r.stdout.strip() == f"nmt {__version__}"
    help_text = nmt("--help").stdout
    assert "--verbose" in help_text and "INTEGER" not in help_text and "<int>" not in help_text


def test_data_toy_help_says_pt_is_portuguese():
    text = " ".join(nmt("data", "toy", "--help").stdout.split())
    assert "Portuguese, not a checkpoint" in text


@pytest.fixture
def train_config(toy_dir, tok_dir, tmp_path):
    """Write a config whose data section can be swapped; returns (config path, run dir)."""

    def make(**data) -> tuple[Path, Path]:
        run_dir = tmp_path / "run"
        path = write_config(tmp_path / "c.yaml", toy_dir, run_dir, tok_dir)
        raw = yaml.safe_load(path.read_text())
        raw["data"].update({k: str(v) for k, v in data.items()})
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return path, run_dir

    return make


@pytest.mark.parametrize(
    "override, mentions",
    [
        ("train.learning_rate=0.1", ["train.learning_rate", "valid keys:", "lr, warmup_steps"]),
        ("decoder.beam=2", ["decoder", "data, model, train"]),
        ("model.cell=transformer", ["model.cell", "rnn, gru, lstm"]),
        ("model.hidden_size=-4", ["model.hidden_size", ">= 1"]),
        ("data.vocab_size=-1", ["data.vocab_size"]),
        ("train.lr=fast", ["train.lr", "float"]),
        ("train.max_steps=1.5", ["train.max_steps", "int"]),
        ("trainlr=1", ["section.key=value"]),
    ],
)
def test_train_bad_config(train_config, override, mentions):
    config, run_dir = train_config()
    user_error(nmt("train", "--config", config, "--set", override), *mentions)
    assert not run_dir.exists()


def test_train_unknown_key_in_file(train_config):
    config, run_dir = train_config()
    raw = yaml.safe_load(config.read_text())
    raw["model"]["hiden_size"] = 3
    config.write_text(yaml.safe_dump(raw))
    user_error(nmt("train", "--config", config), "model.hiden_size", "hidden_size")
    assert not run_dir.exists()


def test_train_missing_config_file(tmp_path):
    user_error(nmt("train", "--config", tmp_path / "nope.yaml"), "nope.yaml", "does not exist")


def test_train_bad_data(train_config, tmp_path):
    missing = tmp_path / "missing.en"
    config, run_dir = train_config(train_src=missing)
    user_error(nmt("train", "--config", config), "missing.en", "does not exist")

    short = write(tmp_path / "short.en", "one line\n")
    config, run_dir = train_config(train_src=short)
    user_error(nmt("train", "--config", config), "short.en has 1 lines", "train.pt has")

    bad = write(tmp_path / "bad.en", b"fine\nstill fine\nnot \xc3( fine\n")
    good = write(tmp_path / "good.pt", "a\nb\nc\n")
    config, run_dir = train_config(train_src=bad, train_tgt=good)
    user_error(nmt("train", "--config", config), "bad.en:3", "UTF-8")

    empty_src, empty_tgt = write(tmp_path / "e.en", ""), write(tmp_path / "e.pt", "")
    config, run_dir = train_config(train_src=empty_src, train_tgt=empty_tgt)
    user_error(nmt("train", "--config", config), "training set is empty")

    blank_src, blank_tgt = write(tmp_path / "b.en", "\n \n"), write(tmp_path / "b.pt", "\n\n")
    config, run_dir = train_config(train_src=blank_src, train_tgt=blank_tgt)
    user_error(nmt("train", "--config", config), "training set is empty")
    assert not run_dir.exists()


def test_train_resume_from_a_foreign_file(train_config, tmp_path):
    config, run_dir = train_config()
    # random bytes fail in many ways (refused as not plain data, or damaged): fixed ones here
    bogus = write(tmp_path / "bogus.pt", random.Random(0).randbytes(3000))
    user_error(nmt("train", "--config", config, "--resume", bogus), "bogus.pt", "checkpoint")
    user_error(nmt("train", "--config", config, "--resume", tmp_path / "no.pt"), "no.pt")
    assert not run_dir.exists()


# -- translate --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_lines(trained) -> list[str]:
    from nmt.translation.translator import Translator

    results = Translator(trained).translate(SENTENCES, SearchOptions(beam_size=5))
    return [t.text for t in results]


def test_translate_file_to_file(trained, reference_lines, tmp_path):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    out = tmp_path / "out.txt"
    r = nmt("translate", trained, src, "-o", out)
    ok(r)
    assert r.stdout == ""
    assert out.read_text(encoding="utf-8").split("\n") == [*reference_lines, ""]
    assert reference_lines[1] == "" and all(reference_lines[i] for i in (0, 2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_translate_with_worker_processes(trained, reference_lines, tmp_path):
    lines = SENTENCES * 20  # several batches for each worker
    src = write(tmp_path / "in.txt", "\n".join(lines) + "\n")
    out = tmp_path / "out.txt"
    ok(nmt("translate", trained, src, "-o", out, "--workers", "2", "--threads", "1"))
    assert out.read_text(encoding="utf-8").splitlines() == reference_lines * 20


def test_translate_stdin_to_stdout(trained, reference_lines):
    r = nmt("translate", trained, input="\n".join(SENTENCES) + "\n")
    ok(r)
    assert r.stdout.split("\n") == [*reference_lines, ""]


def test_translate_crlf_and_no_final_newline(trained, reference_lines):
    r = nmt("translate", trained, input="\r\n".join(SENTENCES))
    ok(r)
    assert r.stdout.split("\n") == [*reference_lines, ""]
    assert "\r" not in r.stdout


def test_translate_empty_lines_are_kept(trained):
    r = nmt("translate", trained, "-b", "1", input="\n\nThe cat.\n\n \n")
    ok(r)
    lines = r.stdout.split("\n")
    assert len(lines) == 6 and lines[:2] == ["", ""] and lines[3:] == ["", "", ""]
    assert lines[2]


def test_translate_quiet_has_empty_stderr(trained, tmp_path):
    r = nmt("translate", trained, "--quiet", input="The red cat.\n")
    ok(r)
    assert r.stderr == ""
    assert r.stdout.count("\n") == 1


@pytest.mark.parametrize("with_attention", [False, True])
def test_translate_jsonl(trained, reference_lines, with_attention):
    args = ["--with-attention"] if with_attention else []
    r = nmt("translate", trained, "--format", "jsonl", *args, input="\n".join(SENTENCES))
    ok(r)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["source"] for rec in records] == SENTENCES
    assert records[1]["hypotheses"] == []
    for rec, text in zip(records, reference_lines):
        if not rec["source"]:
            continue
        (hyp,) = rec["hypotheses"]
        assert hyp["text"] == text
        assert hyp["log_prob"] <= 0 and isinstance(hyp["score"], float)
        if with_attention:
            att, tokens, src_tokens = hyp["attention"], hyp["tokens"], hyp["src_tokens"]
            assert tokens[-1] == "</s>" and src_tokens[-1] == "</s>"
            assert len(att) == len(tokens) and all(len(row) == len(src_tokens) for row in att)
            assert all(abs(sum(row) - 1) < 1e-4 for row in att)
        else:
            assert "attention" not in hyp and "tokens" not in hyp


def test_translate_greedy_jsonl_has_scores(trained):
    # text output skips greedy's scores; jsonl shows them, so it must have them
    r = nmt("translate", trained, "-b", "1", "--format", "jsonl", input="The red cat.\n")
    ok(r)
    (hyp,) = json.loads(r.stdout)["hypotheses"]
    assert math.isfinite(hyp["log_prob"]) and hyp["log_prob"] < 0
    assert math.isfinite(hyp["score"])


def test_translate_nbest_jsonl(trained):
    r = nmt(
        "translate", trained, "--nbest", "2", "-b", "3", "--format", "jsonl", input="The cat.\n"
    )
    ok(r)
    (record,) = [json.loads(line) for line in r.stdout.splitlines()]
    hyps = record["hypotheses"]
    assert len(hyps) == 2
    assert hyps[0]["score"] >= hyps[1]["score"]
    assert hyps[0]["text"] != hyps[1]["text"]


def test_translate_resume_via_cli(trained, reference_lines, tmp_path):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    out = tmp_path / "out.txt"
    write(tmp_path / "out.txt.partial", reference_lines[0] + "\n" + "half a li")
    _partial_record(trained, src, out)
    ok(nmt("translate", trained, src, "-o", out, "--resume"))
    assert out.read_text(encoding="utf-8").split("\n") == [*reference_lines, ""]
    assert not (tmp_path / "out.txt.partial").exists()


def _partial_record(trained, src: Path, out: Path) -> None:
    """The record a killed run with the default options leaves beside OUT.partial."""
    from nmt.search import SearchOptions
    from nmt.translation.partial import InputHash, output_target, write_meta
    from nmt.translation.streaming import StreamOptions, fingerprint
    from nmt.translation.translator import Translator

    with src.open("rb") as f:
        record = fingerprint(Translator(trained), SearchOptions(scores=False), StreamOptions(), f)
    write_meta(output_target(out), record, InputHash())


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["-b", "0"], ["--beam-size", ">= 1"]),
        (["-b", "-3"], ["--beam-size"]),
        (["-b", "2", "--nbest", "3"], ["--nbest", "beam size (2)"]),
        (["--nbest", "0"], ["--nbest"]),
        (["--format", "xml"], ["--format", "text or jsonl"]),
        (["--errors", "ignore"], ["--errors", "strict or replace"]),
        (["--length-penalty", "long"], ["--length-penalty", "avg"]),
        (["--length-penalty", "-1"], ["--length-penalty"]),
        (["--min-len", "-1"], ["--min-len"]),
        (["--max-len-offset", "-2"], ["--max-len-offset"]),
        (["--max-len-ratio", "nan"], ["--max-len-ratio", "finite"]),
        (["--length-penalty", "inf"], ["--length-penalty"]),
        (["--quantize", "int4"], ["--quantize", "none, int8"]),
        (["--batch-tokens", "0"], ["--batch-tokens", ">= 1"]),
        (["--threads", "-1"], ["--threads", ">= 0"]),
        (["--workers", "0"], ["--workers", ">= 1"]),
        (["--workers", "2", "--device", "cuda"], ["--workers", "CPU only"]),
    ],
)
def test_translate_bad_options(trained, tmp_path, args, mentions):
    src = write(tmp_path / "in.txt", "The cat.\n")
    out = tmp_path / "out.txt"
    user_error(nmt("translate", trained, src, "-o", out, *args), *mentions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_option_that_is_not_a_number_is_a_usage_error(trained):
    # typer's own parse errors: a boxed usage message, still exit 2 and no traceback
    r = nmt("translate", trained, "-b", "many", input="a\n")
    assert r.exit_code == 2 and "--beam-size" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and r.stdout == ""


def test_translate_resume_needs_output(trained):
    user_error(nmt("translate", trained, "--resume", input="a\n"), "--resume", "--output")


def test_translate_missing_files(trained, tmp_path):
    out = tmp_path / "out.txt"
    user_error(nmt("translate", tmp_path / "none.pt", input="a\n"), "none.pt", "does not exist")
    user_error(nmt("translate", trained, tmp_path / "in.txt", "-o", out), "in.txt", "not exist")
    src = write(tmp_path / "in.txt", "a\n")
    user_error(nmt("translate", trained, src, "-o", tmp_path / "no" / "out.txt"), "out.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_translate_invalid_utf8_names_file_and_line(trained, tmp_path):
    src = write(tmp_path / "in.txt", b"The cat.\nThe dog.\nBad \xff byte.\n")
    out = tmp_path / "out.txt"
    user_error(nmt("translate", trained, src, "-o", out), "in.txt:3", "UTF-8", "2 lines before")
    # the lines before are kept for --resume --errors replace
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.txt",
        "out.txt.partial",
        "out.txt.partial.meta",
    ]
    r = nmt("translate", trained, input=b"ok\n\xc3(\n")
    user_error(r, "<stdin>:2", "UTF-8")
    assert r.stdout.count("\n") == 1


def test_failed_translate_keeps_the_old_output(trained, tmp_path):
    src = write(tmp_path / "in.txt", b"The cat.\n\xff\n")
    out = write(tmp_path / "out.txt", "previous run\n")
    user_error(nmt("translate", trained, src, "-o", out), "in.txt:2")
    assert out.read_text() == "previous run\n"
    assert "out.txt" in [p.name for p in tmp_path.iterdir()]


def test_translate_invalid_utf8_replaced(trained, tmp_path):
    src = write(tmp_path / "in.txt", b"The cat.\nBad \xff byte.\n\n")
    r = nmt("translate", trained, src, "--errors", "replace", "-q")
    ok(r)
    assert r.stdout.count("\n") == 3


# -- checkpoints that are not ours ------------------------------------------------------
class WritesAFile:
    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


class RunsAShell:
    target = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _bad_checkpoint(kind: str, trained: Path, tmp_path: Path) -> bytes:
    if kind == "random":
        return random.Random(1).randbytes(4000)  # fixed: random bytes fail in varied ways
    if kind == "empty":
        return b""
    if kind == "truncated":
        data = trained.read_bytes()
        return data[: len(data) // 3]
    buf = io.BytesIO()
    if kind == "foreign":
        torch.save({"weights": torch.zeros(4), "epoch": 3}, buf)
    elif kind in ("open", "system"):
        payload = WritesAFile() if kind == "open" else RunsAShell()
        payload.target = str(tmp_path / "pwned")
        torch.save({"format": 1, "model": payload}, buf)
    elif kind == "open-pickle":
        payload = WritesAFile()
        payload.target = str(tmp_path / "pwned")
        return pickle.dumps(payload, protocol=2)
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind, mention",
    [
        ("random", "bad.pt"),
        ("empty", "damaged or not a checkpoint"),
        ("truncated", "damaged or not a checkpoint"),
        ("foreign", "not an nmt checkpoint"),
        ("open", "would run code"),
        ("system", "would run code"),
        ("open-pickle", "would run code"),
    ],
)
@pytest.mark.parametrize("command", ["translate", "attention"])
def test_checkpoint_not_ours(trained, tmp_path, kind, mention, command):
    ckpt = write(tmp_path / "bad.pt", _bad_checkpoint(kind, trained, tmp_path))
    out = tmp_path / "out"
    if command == "translate":
        r = nmt("translate", ckpt, "-o", out, input="The cat.\n")
    else:
        r = nmt("attention", ckpt, "--text", "The cat.", "-o", out)
    user_error(r, "bad.pt", mention)
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


# -- score ------------------------------------------------------------------------------
def test_score_identical_files(tmp_path):
    text = "the red cat sees the dog\nthe girl reads a big book today\n"
    hyp, ref = write(tmp_path / "hyp.txt", text), write(tmp_path / "ref.txt", text)
    r = nmt("score", "--hyp", hyp, "--ref", ref)
    ok(r)
    lines = r.stdout.splitlines()
    assert [line.split("|")[0] for line in lines] == ["BLEU", "chrF2", "TER"]
    assert "nrefs:1" in lines[0] and " = 100.0" in lines[0]

    r = nmt("score", "--hyp", hyp, "--ref", ref, "--json")
    ok(r)
    scores = {s["name"]: s for s in json.loads(r.stdout)}
    assert scores["BLEU"]["score"] == 100.0
    assert scores["chrF2"]["score"] == 100.0
    assert scores["TER"]["score"] == 0.0
    assert scores["BLEU"]["signature"].startswith("nrefs:1")


def test_score_bad_inputs(tmp_path):
    hyp = write(tmp_path / "hyp.txt", "a\nb\n")
    ref = write(tmp_path / "ref.txt", "a\n")
    user_error(nmt("score", "--hyp", hyp, "--ref", ref), "hyp.txt has 2 lines", "ref.txt has 1")
    user_error(nmt("score", "--hyp", hyp, "--ref", tmp_path / "x.txt"), "x.txt", "not exist")
    bad = write(tmp_path / "bad.txt", b"a\n\xfe\n")
    user_error(nmt("score", "--hyp", bad, "--ref", hyp), "bad.txt:2", "UTF-8")


# -- attention and plots ----------------------------------------------------------------
def test_attention_png(trained, tmp_path):
    out = tmp_path / "att"
    r = nmt("attention", trained, "--text", "The red cat sees the dog.", "-o", out, "-b", "2")
    ok(r)
    paths = [Path(p) for p in r.stdout.splitlines()]
    assert len(paths) == 1 and paths[0].suffix == ".png" and paths[0].parent == out
    assert paths[0].read_bytes().startswith(b"\x89PNG")


def test_translate_writes_attention_alongside(trained, tmp_path):
    out = tmp_path / "att"
    r = nmt(
        "translate",
        trained,
        "--attention-dir",
        out,
        "-b",
        "2",
        "-q",
        input="The red cat sees the dog.\n\nTwo girls have a book.\n",
    )
    ok(r)
    assert len(r.stdout.splitlines()) == 3
    # one heatmap per non-empty line, named by its line number
    assert sorted(p.name for p in out.iterdir()) == ["attention-00001.png", "attention-00003.png"]


def test_attention_from_input_lines(trained, tmp_path):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    out = tmp_path / "att"
    r = nmt("attention", trained, "-i", src, "--lines", "3-4", "-o", out, "--format", "json")
    ok(r)
    assert [Path(p).parent for p in r.stdout.splitlines()] == [out]


def test_attention_says_when_the_default_lines_leave_some_out(trained, tmp_path):
    src = write(tmp_path / "in.txt", "The cat.\n" * 22)
    r = nmt("attention", trained, "-i", src, "-o", tmp_path / "a", "--format", "html", "-b", "1")
    ok(r)
    assert len(r.stdout.splitlines()) == 20 + 1  # a page a sentence, and the index
    assert "plotting lines 1-20 of the 22" in " ".join(r.stderr.split())
    r = nmt("attention", trained, "-i", src, "--lines", "all", "-o", tmp_path / "b", "-b", "1",
            "--format", "html")  # fmt: skip
    ok(r)
    assert len(r.stdout.splitlines()) == 22 + 1 and "plotting" not in r.stderr


def test_attention_of_a_model_without_attention(no_attention_ckpt, tmp_path):
    out = tmp_path / "att"
    r = nmt("attention", no_attention_ckpt, "--text", "The cat.", "-o", out)
    user_error(r, "none.pt", "attention none")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--text", "a", "--format", "gif"], ["--format", "png"]),
        ([], ["--text", "--input"]),
        (["--text", "a", "-i", "x.txt"], ["--text", "--input"]),
        (["-i", "in.txt", "--lines", "5-2"], ["--lines"]),
        (["-i", "in.txt", "--lines", "a-b"], ["--lines"]),
        (["-i", "in.txt", "--lines", "40-50"], ["in.txt", "--lines"]),
        (["-i", "missing.txt"], ["missing.txt"]),
    ],
)
def test_attention_bad_options(trained, tmp_path, args, mentions):
    write(tmp_path / "in.txt", "The cat.\n")
    args = [str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    out = tmp_path / "att"
    user_error(nmt("attention", trained, "-o", out, *args), *mentions)
    assert not out.exists()


def test_plot_run_dir(cli_run, tmp_path):
    out = tmp_path / "curves.png"
    r = nmt("plot", cli_run[1], "-o", out)
    ok(r)
    assert r.stdout.strip() == str(out)
    assert out.read_bytes().startswith(b"\x89PNG")


def test_plot_bad_inputs(tmp_path):
    user_error(nmt("plot", tmp_path / "norun", "-o", tmp_path / "c.png"), "norun")
    (tmp_path / "run").mkdir()
    user_error(nmt("plot", tmp_path / "run", "-o", tmp_path / "c.gif"), "gif")
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "c.gif").exists()


@pytest.mark.parametrize(
    "args, tunes, fast_exit, code",
    [
        (["translate", "--help"], True, True, 0),
        (["-v", "train", "--help"], False, True, 0),
        (["attention", "--help"], False, True, 0),
        (["score", "--hyp", "missing.txt", "--ref", "missing.txt"], False, False, 2),
        (["plot", "--help"], False, False, 0),
        (["--help"], False, False, 0),
    ],
)
def test_only_the_commands_that_gain_change_the_process(args, tunes, fast_exit, code, tmp_path):
    """nmt.cli.main.run tunes glibc's allocator for translate only, and skips the interpreter's
    teardown (os._exit) only for the commands that load torch."""
    import subprocess
    import sys

    probe = (
        "import os, sys\n"
        "import nmt.cli.main as cli\n"
        "cli.reuse_freed_memory = lambda: print('TUNED', file=sys.stderr) or True\n"
        "real_exit = os._exit\n"
        "def fast_exit(code):\n"
        "    print('FAST_EXIT', file=sys.stderr, flush=True)\n"
        "    real_exit(code)\n"
        "os._exit = fast_exit\n"
        "sys.argv = ['nmt', *sys.argv[1:]]\n"
        "cli.run()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == code, proc.stderr
    assert ("TUNED" in proc.stderr) == tunes
    assert ("FAST_EXIT" in proc.stderr) == fast_exit


def test_the_nmt_process_delivers_all_output_and_its_exit_code(trained, tmp_path) -> None:
    """`nmt` leaves through os._exit (nmt.cli.main.run): stdout must still arrive complete (here
    from two worker processes) and error codes must be kept."""
    import subprocess
    import sys

    from nmt.translation.translator import Translator

    lines = SENTENCES * 30
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "nmt", "translate", str(trained), str(tmp_path / "in.txt")]
    cmd += ["-b", "2", "-q", "--workers", "2", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = [t.text for t in Translator(trained).translate(lines, SearchOptions(beam_size=2))]
    assert proc.stdout.splitlines() == expected
    missing = tmp_path / "missing.txt"
    proc = subprocess.run(cmd[:4] + [str(trained), str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr.replace("\n", "")


def _systems(toy_dir, tmp_path) -> dict[str, Path]:
    """Two references and two systems of known quality: a baseline that drops every third
    word and a system that drops a word in every fifth line."""
    refs = (toy_dir / "valid.pt").read_text(encoding="utf-8").splitlines()[:60]
    words = [r.split() for r in refs]
    files = {
        "ref": refs,
        "ref2": [" ".join(w[1:] + w[:1]) for w in words],
        "base": [" ".join(x for i, x in enumerate(w) if i % 3 != 1) for w in words],
        "new": [" ".join(w[:-1] if n % 5 == 0 else w) for n, w in enumerate(words)],
    }
    return {k: write(tmp_path / f"{k}.txt", "\n".join(v) + "\n") for k, v in files.items()}


def test_score_two_references_equals_sacrebleu(toy_dir, tmp_path):
    from sacrebleu.metrics import BLEU, CHRF, TER

    f = _systems(toy_dir, tmp_path)
    hyps, refs = (
        f["new"].read_text().splitlines(),
        [f[r].read_text().splitlines() for r in ("ref", "ref2")],
    )
    r = nmt("score", "--hyp", f["new"], "--ref", f["ref"], "--ref", f["ref2"], "--json")
    ok(r)
    found = {s["name"]: s for s in json.loads(r.stdout)}
    for metric in (BLEU(), CHRF(), TER()):
        expected = metric.corpus_score(hyps, refs)
        assert found[expected.name]["score"] == round(expected.score, 2)
        assert found[expected.name]["signature"] == str(metric.get_signature())
        assert found[expected.name]["signature"].startswith("nrefs:2")
    # hypotheses from stdin, some metrics only
    refs_args = ["--ref", f["ref"], "--ref", f["ref2"]]
    r = nmt("score", *refs_args, "--metrics", "ter,bleu", input=f["new"].read_text())
    ok(r)
    assert [line.split("|")[0] for line in r.stdout.splitlines()] == ["TER", "BLEU"]
    assert f" = {found['BLEU']['text'].split(' = ', 1)[1]}" in r.stdout


@pytest.mark.parametrize("test", ["bs", "ar"])
def test_score_significance_matches_the_sacrebleu_command(toy_dir, tmp_path, test):
    import subprocess
    import sys

    f = _systems(toy_dir, tmp_path)
    n = "1000" if test == "bs" else "2000"
    # the sacrebleu command of this interpreter's environment
    cmd = [str(Path(sys.executable).parent / "sacrebleu")]
    cmd += [str(f["ref"]), str(f["ref2"]), "-i", str(f["base"]), str(f["new"])]
    cmd += [f"--paired-{test}", f"--paired-{test}-n", n, "-m", "bleu", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_SEED"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=True)
    base, new = json.loads(proc.stdout)
    args = ["score", "--hyp", f["new"], "--baseline", f["base"], "--ref", f["ref"]]
    args += ["--ref", f["ref2"]]
    r = nmt(*args, "--paired", test, "--paired-n", n, "--json")
    ok(r)
    (bleu,) = [p for p in json.loads(r.stdout) if p["name"] == "BLEU"]
    assert bleu["baseline"] == pytest.approx(base["BLEU"]["score"], rel=1e-9)
    assert bleu["system"] == pytest.approx(new["BLEU"]["score"], rel=1e-9)
    assert bleu["p_value"] == pytest.approx(new["BLEU"]["p_value"], rel=1e-9)
    assert bleu["p_value"] < 0.05  # the baseline drops a third of the words
    if test == "bs":  # the command line gives no intervals with AR; nmt bootstraps them
        for key, system in (("baseline", base), ("system", new)):
            assert bleu[f"{key}_mean"] == pytest.approx(system["BLEU"]["mean"], rel=1e-9)
            assert bleu[f"{key}_ci"] == pytest.approx(system["BLEU"]["ci"], rel=1e-9)
    assert f"{test}:{n}|seed:12345" in bleu["signature"] and "nrefs:2" in bleu["signature"]
    r = nmt(*args, "--paired", test, "--paired-n", n, "--metrics", "chrf")
    ok(r)
    line = r.stdout.strip()
    assert line.startswith("chrF2|nrefs:2") and "baseline " in line and "p = " in line


def test_score_names_the_file_at_fault(tmp_path):
    hyp = write(tmp_path / "hyp.txt", "a b\nc d\n")
    ref = write(tmp_path / "ref.txt", "a b\nc d\n")
    short = write(tmp_path / "short.txt", "a\n")
    empty = write(tmp_path / "empty.txt", "")
    user_error(nmt("score", "--hyp", hyp, "--ref", ref, "--ref", short), "short.txt has 1")
    user_error(nmt("score", "--hyp", hyp, "--ref", ref, "--baseline", short), "short.txt has 1")
    user_error(nmt("score", "--hyp", empty, "--ref", ref), "empty.txt is empty")
    user_error(nmt("score", "--ref", ref, input=""), "<stdin> is empty")
    user_error(nmt("score", "--hyp", hyp, "--ref", empty), "empty.txt is empty")
    user_error(nmt("score", "--hyp", hyp, "--ref", ref, "--metrics", "bleu,meteor"), "--metrics")
    user_error(
        nmt("score", "--hyp", hyp, "--ref", ref, "--baseline", ref, "--paired", "t"), "--paired"
    )


# -- first use: defaults, progress, a terminal ---------------------------------------------
def test_translate_defaults_are_auto():
    r = nmt("translate", "--help")
    ok(r)
    text = " ".join(r.stdout.replace("│", " ").split())
    for option in ("--workers", "--device"):
        after = text.split(option + " <str>", 1)[1]
        assert after.split("[default: ", 1)[1].startswith("auto]"), option


def test_translate_logs_progress_off_a_terminal(trained, tmp_path, monkeypatch):
    monkeypatch.setattr("nmt.cli.translate._PROGRESS_LOG_S", 0.0)
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES * 3) + "\n")
    r = nmt("translate", trained, src, "-o", tmp_path / "out.txt", "--batch-tokens", "20")
    ok(r)
    lines = [line for line in r.stderr.splitlines() if " sentences" in line]
    assert len(lines) > 1 and "12 sentences (100%)" in lines[-1] and "sent/s" in lines[-1]


def test_translate_on_a_terminal_answers_each_line(trained):
    """Typed lines are translated as they come, not at Ctrl-D."""
    import os
    import pty
    import select
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", "translate", str(trained)],  # workers auto
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        os.write(leader, b"The red cat.\n")
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "no translation before the end of input"
        assert proc.stdout.readline().strip()
    finally:
        os.write(leader, b"\x04")  # Ctrl-D
        proc.wait(timeout=60)
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0
    assert b"Ctrl-D" in proc.stderr.read()


def test_flags_that_would_do_nothing(trained, tmp_path):
    user_error(
        nmt("translate", trained, "--with-attention", input="a\n"), "--with-attention", "jsonl"
    )
    src = write(tmp_path / "in.txt", "The cat.\nThe dog.\n")
    r = nmt("attention", trained, "-i", src, "--lines", "1-5", "-o", tmp_path / "att")
    ok(r)
    words = " ".join(r.stderr.split())  # the log wraps long lines where the path ends
    assert "--lines 1-5" in words and "has 2 lines" in words
    assert len(r.stdout.splitlines()) == 2


def test_score_names_the_option_that_needs_by_length(tmp_path):
    ref = write(tmp_path / "ref.txt", "a b\n")
    hyp = write(tmp_path / "hyp.txt", "a b\n")
    plot = tmp_path / "p.png"
    user_error(nmt("score", "--ref", ref, "--hyp", hyp, "--hyp", hyp), "several --hyp")
    user_error(nmt("score", "--ref", ref, "--hyp", hyp, "--plot", plot), "--plot draws BLEU")


def test_search_flags_default_to_the_search_options_defaults():
    """The search defaults are SearchOptions'; the flags of translate and attention (which
    import no torch to show their help) must say the same."""
    import typer

    from nmt.cli.main import app

    commands = typer.main.get_command(app).commands
    default = SearchOptions()
    for name in ("translate", "attention"):
        flags = {p.name: p.default for p in commands[name].params}
        for option in ("beam_size", "nbest", "length_penalty", "max_len_ratio", "max_len_offset"):
            if option in flags:
                want = getattr(default, option)
                assert type(want)(flags[option]) == want, (name, option, flags[option], want)
        for option in ("min_len", "stopping"):
            if option in flags:
                assert flags[option] == getattr(default, option), (name, option)


def test_config_show_lists_every_option_with_its_help(tmp_path):
    from nmt.config import SECTIONS

    r = nmt("config", "show")
    ok(r)
    lines = r.stdout.splitlines()
    assert len(lines) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values())
    assert "  train.lr = 0.001  (float)  Adam learning rate" in r.stdout
    cfg = write(tmp_path / "c.yaml", "model: {cell: lstm}\n")
    r = nmt("config", "show", "-c", cfg, "--set", "train.lr=0.002", "--changed")
    ok(r)
    assert r.stdout.splitlines() == [
        line for line in r.stdout.splitlines() if line.startswith("* ")
    ]
    assert [line.split(" = ")[0] for line in r.stdout.splitlines()] == [
        "* model.cell",
        "* train.lr",
    ]


def test_config_check_says_ok_or_names_the_option(tmp_path):
    good = write(tmp_path / "good.yaml", "train: {lr: 0.002}\n")
    r = nmt("config", "check", good)
    ok(r)
    assert r.stdout.strip() == f"{good}: ok"
    bad = write(tmp_path / "bad.yaml", "train: {lr: -1}\n")
    user_error(nmt("config", "check", bad), "train.lr must be > 0")
    user_error(nmt("config", "check", good, "--set", "model.cell=transistor"), "model.cell")
    user_error(nmt("config", "check", tmp_path / "missing.yaml"), "does not exist")


def test_command_help_has_no_hard_line_breaks_inside_a_paragraph():
    """rich wraps each paragraph to the terminal; a line break kept from the docstring would
    cut a line short in the middle of a sentence."""
    import typer

    from nmt.cli.main import app

    def commands(group):
        for sub in group.commands.values():
            yield from commands(sub) if hasattr(sub, "commands") else [sub]

    found = list(commands(typer.main.get_command(app)))
    assert len(found) >= 19
    for command in found:
        for paragraph in command.help.split("\n\n"):
            assert paragraph and "\n" not in paragraph, (command.name, paragraph)
