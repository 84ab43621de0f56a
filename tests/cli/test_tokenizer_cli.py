"""`nmt tokenizer encode|decode|vocab` on a tokenizer folder or the tokenizer of a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import nmt, ok, user_error

from nmt.checkpoint import load_checkpoint, load_tokenizer
from nmt.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def lines(toy_dir) -> list[str]:
    return (toy_dir / "valid.en").read_text(encoding="utf-8").splitlines()[:30]


@pytest.fixture(scope="module")
def separate(toy_dir, tmp_path_factory) -> Path:
    """A folder with one model per side."""
    src = (toy_dir / "train.en").read_text(encoding="utf-8").splitlines()[:500]
    tgt = (toy_dir / "train.pt").read_text(encoding="utf-8").splitlines()[:500]
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(src, tgt, vocab_size=150, joint=False).save(out)
    return out


def _stdin(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("ids", [False, True], ids=["pieces", "ids"])
def test_encode_decode_round_trip_through_a_checkpoint(trained, lines, ids):
    flag = ["--ids"] if ids else []
    r = nmt("tokenizer", "encode", trained, *flag, input=_stdin(lines))
    ok(r)
    encoded = r.stdout.splitlines()
    tok = load_checkpoint(trained).tokenizer
    if ids:
        assert [list(map(int, e.split())) for e in encoded] == tok.encode_src(lines)
    else:
        assert all("▁" in e for e in encoded) and len(encoded) == len(lines)
    r = nmt("tokenizer", "decode", trained, "--side", "src", *flag, input=_stdin(encoded))
    ok(r)
    assert r.stdout.splitlines() == lines


def test_sides_of_a_separate_tokenizer(separate, lines):
    tok = Tokenizer.load(separate)
    for side, sp in (("src", tok.src), ("tgt", tok.tgt)):
        r = nmt("tokenizer", "encode", separate, "--side", side, "--ids", input=_stdin(lines[:3]))
        ok(r)
        assert [list(map(int, e.split())) for e in r.stdout.splitlines()] == sp.encode(lines[:3])
    r = nmt("tokenizer", "vocab", separate, "--side", "tgt")
    ok(r)
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == tok.tgt_vocab_size
    assert [r[1] for r in rows[:4]] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    assert float(rows[10][2]) == pytest.approx(tok.tgt.get_score(10), abs=1e-5)
    assert [r[1] for r in rows] != [tok.src.id_to_piece(i) for i in range(tok.src_vocab_size)]


def test_load_tokenizer_from_folder_and_checkpoint(trained, separate):
    assert load_tokenizer(separate).tgt_proto == Tokenizer.load(separate).tgt_proto
    assert load_tokenizer(trained).src_proto == load_checkpoint(trained).tokenizer.src_proto


def test_tokenizer_bad_input(trained, separate, tmp_path):
    user_error(nmt("tokenizer", "decode", trained, "--ids", input="4 5\n7 x\n"), "line 2", "x")
    user_error(nmt("tokenizer", "decode", trained, "--ids", input="99999\n"), "line 1", "99999")
    user_error(nmt("tokenizer", "encode", trained, "--side", "both", input="a\n"), "--side")
    user_error(nmt("tokenizer", "vocab", tmp_path), "src.model")
    user_error(nmt("tokenizer", "encode", trained, input=b"ok\n\xff\n"), "<stdin>:2", "UTF-8")


def test_a_huge_line_on_stdin_is_one_line_not_read_whole(trained, monkeypatch):
    import nmt.data.corpus as corpus

    monkeypatch.setattr(corpus, "MAX_LINE_BYTES", 64 << 10)
    huge = "word " * (1 << 20)  # 5 MB, no newline inside
    r = nmt("tokenizer", "encode", trained, input="a\n" + huge + "\n")
    user_error(r, "<stdin>:2", "line longer than 65,536 bytes")


@pytest.mark.parametrize("where", ["a-file", "a-file/below", "/dev/full"])
def test_tokenizer_train_into_something_not_a_folder_is_one_line(toy_dir, tmp_path, where):
    (tmp_path / "a-file").write_text("x")
    out = where if where.startswith("/") else tmp_path / where
    r = nmt(
        "tokenizer", "train", "--src", toy_dir / "valid.en", "--tgt", toy_dir / "valid.pt",
        "-o", out, "--vocab-size", "100",
    )  # fmt: skip
    user_error(r, str(out))
    assert (tmp_path / "a-file").read_text() == "x"
