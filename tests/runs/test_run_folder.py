"""A run dir holds one run: training again refuses it unless told to resume or start over."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config

from nmt import NmtError
from nmt.train import train


def _config(toy_dir, run_dir, **train_options):
    cfg = tiny_config(toy_dir, run_dir)
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.log_every = 2, 2, 1
    cfg.train.batch_tokens = 800
    for key, value in train_options.items():
        setattr(cfg.train, key, value)
    return cfg


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x]


@pytest.fixture
def finished(toy_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(toy_dir, run_dir))
    return run_dir


def test_training_again_into_a_run_is_refused_and_changes_nothing(toy_dir, finished):
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    with pytest.raises(NmtError) as e:
        train(_config(toy_dir, finished, seed=2))
    message = str(e.value)
    assert str(finished) in message and "\n" not in message
    assert f"--resume {finished / 'last.pt'}" in message
    assert "--overwrite (removes best.pt, last.pt, log.jsonl, tokenizer/)" in message
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before


def test_overwrite_starts_a_new_run(toy_dir, finished):
    (finished / "notes.txt").write_text("mine")
    train(_config(toy_dir, finished, max_steps=3, valid_every=3), overwrite=True)
    records = _records(finished)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [3]
    assert (finished / "notes.txt").read_text() == "mine"  # not a file of the run


def test_overwrite_keeps_a_tokenizer_the_config_names(toy_dir, finished):
    cfg = _config(toy_dir, finished)
    cfg.data.tokenizer = str(finished / "tokenizer")
    made = (finished / "tokenizer" / "src.model").stat().st_mtime_ns
    train(cfg, overwrite=True)
    assert (finished / "tokenizer" / "src.model").stat().st_mtime_ns == made


def test_a_run_dir_without_a_run_needs_no_flag(toy_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.txt").write_text("x")
    assert train(_config(toy_dir, tmp_path / "run"))["step"] == 2


def test_an_empty_run_dir_option_is_an_error(toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NmtError, match="train.run_dir is empty"):
        train(tiny_config(toy_dir, ""))
    assert not list(tmp_path.iterdir())


def test_resuming_into_the_folder_of_another_run_is_refused(toy_dir, finished, tmp_path):
    other = tmp_path / "other"
    train(_config(toy_dir, other))
    log = (other / "log.jsonl").read_bytes()
    cfg = _config(toy_dir, other, max_steps=4)
    with pytest.raises(NmtError, match="holds another run"):
        train(cfg, resume=finished / "last.pt")
    assert (other / "log.jsonl").read_bytes() == log


def test_overwrite_and_resume_exclude_each_other(toy_dir, finished):
    with pytest.raises(NmtError, match="give one"):
        train(_config(toy_dir, finished), resume=finished / "last.pt", overwrite=True)
