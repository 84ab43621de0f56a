"""Tokenizer folders: written whole or not at all, refused when incomplete or foreign."""

from __future__ import annotations

import pytest
from conftest import tiny_config

import nmt.tokenizer
from nmt import NmtError
from nmt.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def separate(toy_dir) -> Tokenizer:
    en = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()
    pt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()
    return train_tokenizer(en, pt, vocab_size=150, joint=False)


def test_a_kill_while_saving_leaves_no_half_folder(separate, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = nmt.tokenizer.os.fsync

    def dies_after_the_first_file(fd):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(fd)

    monkeypatch.setattr(nmt.tokenizer.os, "fsync", dies_after_the_first_file)
    with pytest.raises(KeyboardInterrupt):
        separate.save(tmp_path / "tok")
    assert not (tmp_path / "tok").exists()
    assert not list(tmp_path.iterdir())  # the temp folder is gone too


def test_saving_again_replaces_the_folder(separate, tmp_path):
    joint = Tokenizer(separate.src_proto)
    separate.save(tmp_path / "tok")
    joint.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["src.model", "tokenizer.json"]
    assert Tokenizer.load(tmp_path / "tok").joint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_a_folder_with_other_files_is_not_replaced(separate, tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "notes.txt").write_text("mine")
    with pytest.raises(NmtError, match="holds other files"):
        separate.save(tmp_path / "tok")
    assert (tmp_path / "tok" / "notes.txt").read_text() == "mine"


def test_an_incomplete_folder_is_refused(separate, tmp_path):
    separate.save(tmp_path / "tok")
    (tmp_path / "tok" / "tgt.model").unlink()
    with pytest.raises(NmtError, match="needs tgt.model"):
        Tokenizer.load(tmp_path / "tok")
    # what an earlier, file-by-file save left when killed after its first file
    (tmp_path / "tok" / "tokenizer.json").unlink()
    with pytest.raises(NmtError, match="incomplete"):
        Tokenizer.load(tmp_path / "tok")


def test_a_file_that_is_no_sentencepiece_model_is_one_line(separate, tmp_path):
    separate.save(tmp_path / "tok")
    (tmp_path / "tok" / "src.model").write_bytes(b"not a model at all\n")
    with pytest.raises(NmtError, match=r"tok: src.model is not a sentencepiece model"):
        Tokenizer.load(tmp_path / "tok")


def test_a_run_dir_tokenizer_of_the_other_kind_is_refused(toy_dir, tmp_path, separate):
    from nmt.data.prepare import prepare_data

    cfg = tiny_config(toy_dir, tmp_path / "run")
    separate.save(tmp_path / "run" / "tokenizer")
    with pytest.raises(NmtError, match="is separate but data.joint_vocab is true"):
        prepare_data(cfg)


def test_a_vocabulary_the_text_cannot_fill_is_refused_at_once(monkeypatch):
    """Refused before sentencepiece starts (which would grind through the text first)."""
    import nmt.tokenizer

    def never(*args, **kwargs):
        raise AssertionError("sentencepiece started")

    monkeypatch.setattr(nmt.tokenizer, "_train_model", never)
    lines = ["a small text", "with few words"]
    with pytest.raises(NmtError, match="vocabulary size 2,000,000,000 is more than"):
        train_tokenizer(lines, lines, vocab_size=2_000_000_000)


def test_the_bound_is_above_what_sentencepiece_reaches(toy_dir):
    from nmt.tokenizer import max_pieces

    lines = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()
    bound = max_pieces(lines)
    # asked for the bound, sentencepiece makes what it can: fewer pieces
    assert train_tokenizer(lines, lines, vocab_size=bound).src_vocab_size <= bound


def test_a_smaller_vocabulary_than_asked_is_said(toy_dir, caplog):
    lines = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()
    with caplog.at_level("WARNING", logger="nmt.tokenizer"):
        tok = train_tokenizer(lines, lines, vocab_size=600)
    assert tok.src_vocab_size < 600
    assert f"600 pieces asked, the training text gave {tok.src_vocab_size}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="nmt.tokenizer"):
        train_tokenizer(lines, lines, vocab_size=100)
    assert "pieces asked" not in caplog.text


def test_the_bound_is_that_of_the_sample_sentencepiece_sees():
    lines = [f"word{i}x{i * 7919 % 10007}yz other{i}" for i in range(3000)]
    train_tokenizer(lines, lines, vocab_size=200, sample=3)  # three lines fill 200 pieces
    # the corpus could fill 2,000 pieces, its three lines sampled cannot
    with pytest.raises(NmtError, match="vocabulary size 2,000 is more than"):
        train_tokenizer(lines, lines, vocab_size=2000, sample=3)


def test_the_bound_stops_reading_once_it_reaches_the_cap():
    from nmt.tokenizer import max_pieces

    read = []

    def lines():
        for i in range(100_000):
            read.append(i)
            yield f"word{i} and more words {i}"

    assert max_pieces(lines(), cap=500) >= 500
    assert len(read) < 100  # the set of words stays small on any corpus
