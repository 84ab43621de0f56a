"""nmt.data.corpus under attack: a line over the cap is refused while it is read, in bounded
memory, by every reader; a UTF-8 byte order mark is no text."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest

import nmt.data.corpus as corpus
from nmt import NmtError
from nmt.data.corpus import iter_parallel, read_chunks, read_lines

CAP = 64 << 10  # the cap patched in: a line of a few MB is far over it
HUGE = b"word " * (3 << 20 >> 2)  # about 3.75 MB, no newline inside


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(corpus, "MAX_LINE_BYTES", CAP)
    return CAP


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "train.src"
    tgt = tmp_path / "train.tgt"
    src.write_bytes(b"a short line\n" + HUGE + b"\nthe end\n")
    tgt.write_bytes(b"uma linha\noutra\nfim\n")
    return src, tgt


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "reader",
    [
        lambda src, tgt: list(read_chunks(src, chunk_lines=10)),
        lambda src, tgt: list(iter_parallel(src, tgt, chunk_lines=10)),
        lambda src, tgt: read_lines(src),
    ],
    ids=["read_chunks", "iter_parallel", "read_lines"],
)
def test_a_huge_line_is_refused_in_bounded_memory(tmp_path, small_cap, reader):
    src, tgt = _corpus(tmp_path)

    def read() -> None:
        with pytest.raises(NmtError, match=r"train.src:2: line longer than 65,536 bytes"):
            reader(src, tgt)

    # the line is never held whole: memory stays a few times the cap, not the line's size
    assert _peak_bytes(read) < len(HUGE) // 4


def test_tokenizer_training_text_is_read_under_the_cap(tmp_path, small_cap):
    from nmt.config import DataConfig
    from nmt.data.prepare import training_lines

    src, tgt = _corpus(tmp_path)
    d = DataConfig(train_src=str(src), train_tgt=str(tgt))
    with pytest.raises(NmtError, match="train.src:2: line longer than"):
        list(training_lines(d, "src"))


def test_a_huge_dataset_row_is_refused(small_cap):
    datasets = pytest.importorskip("datasets")

    rows = [{"en": "a", "pt": "b"}, {"en": "c", "pt": "x" * (CAP + 1)}]
    ds = datasets.Dataset.from_dict({"translation": rows})
    with pytest.raises(NmtError, match="dataset toy: row 2: longer than 65,536 bytes"):
        list(corpus.iter_dataset(ds, "toy", "en", "pt"))


def test_a_byte_order_mark_is_left_out_and_said_once(tmp_path, caplog):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfThe cat.\r\n\xef\xbb\xbfinside stays\n")
    with caplog.at_level(logging.INFO, logger="nmt.data.corpus"):
        lines = read_lines(path)
        chunked = [line for chunk, _ in read_chunks(path) for line in chunk]
    assert lines == chunked == ["The cat.", "\ufeffinside stays"]  # only the file's first
    said = [r for r in caplog.records if "byte order mark" in r.getMessage()]
    assert len(said) == 2 and all("bom.txt" in r.getMessage() for r in said)  # once a read


def test_score_does_not_count_a_byte_order_mark_as_text(tmp_path):
    from conftest import nmt, ok

    ref = tmp_path / "ref.txt"
    ref.write_text("The red cat sees the dog.\nTwo big houses.\n", encoding="utf-8")
    hyp = tmp_path / "hyp.txt"
    hyp.write_bytes(b"\xef\xbb\xbf" + ref.read_bytes())
    r = nmt("score", "--ref", ref, "--hyp", hyp, "--metrics", "chrf")
    ok(r)
    assert "100.0" in r.stdout, r.stdout
