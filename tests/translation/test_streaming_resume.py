"""translate_file with resume: a run killed part-way and resumed gives the uninterrupted output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from nmt import NmtError
from nmt.search import SearchOptions
from nmt.translation.partial import InputHash, output_target, write_meta
from nmt.translation.streaming import StreamOptions, fingerprint, translate_file
from nmt.translation.translator import Translator


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


@pytest.fixture(scope="module")
def source(toy_dir) -> bytes:
    lines = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:17]
    lines[5] = ""  # an empty line keeps its place
    return ("\n".join(lines) + "\n").encode()


def _translate(
    translator,
    source: bytes,
    out: Path,
    fmt: str = "text",
    chunk_lines: int = 10_000,
    resume: bool = False,
    nbest: int = 1,
) -> str:
    search = SearchOptions(beam_size=3, nbest=nbest)
    stream = StreamOptions(fmt=fmt, chunk_lines=chunk_lines)
    translate_file(translator, io.BytesIO(source), out, search, stream, resume=resume)
    return out.read_text(encoding="utf-8")


def _leave_partial(translator, out: Path, text: str, fmt: str = "text") -> None:
    """What a run killed part-way leaves: OUT.partial and the record of what it holds (one
    that has checked no line yet, as after a kill before the first write)."""
    out.with_name(out.name + ".partial").write_text(text, encoding="utf-8")
    record = fingerprint(
        translator, SearchOptions(beam_size=3), StreamOptions(fmt=fmt), io.BytesIO()
    )
    write_meta(output_target(out), record, InputHash())


@pytest.fixture(scope="module")
def references(translator, source, tmp_path_factory):
    """Uninterrupted outputs, by (format, chunk_lines)."""
    cache: dict[tuple[str, int], str] = {}

    def get(fmt: str, chunk_lines: int = 10_000) -> str:
        if (fmt, chunk_lines) not in cache:
            out = tmp_path_factory.mktemp("ref") / "out.txt"
            cache[fmt, chunk_lines] = _translate(
                translator, source, out, fmt=fmt, chunk_lines=chunk_lines
            )
        return cache[fmt, chunk_lines]

    return get


@pytest.fixture(scope="module", params=["text", "jsonl"])
def reference(request, references) -> tuple[str, str]:
    return request.param, references(request.param)


@pytest.mark.parametrize("done", [0, 1, 6, 16, 17])
@pytest.mark.parametrize("chunk_lines", [4, 10_000])
@pytest.mark.parametrize("half_line", [False, True])
@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_resume_gives_the_uninterrupted_output(
    translator, source, references, tmp_path, fmt, done, chunk_lines, half_line
):
    # same chunking as the uninterrupted run: scores in jsonl are batch-dependent in the last
    # digit, and resume re-batches the interrupted chunk exactly as that run did
    full = references(fmt, chunk_lines)
    lines = full.splitlines(keepends=True)
    assert len(lines) == 17
    out = tmp_path / "out.txt"
    partial = tmp_path / "out.txt.partial"
    # what a run killed after `done` lines leaves: complete lines, maybe half of the next one
    killed = "".join(lines[:done])
    if half_line and done < len(lines):
        killed += lines[done][: max(1, len(lines[done]) // 2)].rstrip("\n")
    _leave_partial(translator, out, killed, fmt)

    resumed = _translate(translator, source, out, fmt=fmt, resume=True, chunk_lines=chunk_lines)

    assert resumed.splitlines() == full.splitlines()
    assert resumed == full
    assert not partial.exists()
    if fmt == "jsonl":
        sources = [json.loads(line)["source"] for line in resumed.splitlines()]
        assert sources == source.decode().splitlines()


def test_resume_without_a_partial_file_translates_everything(
    translator, source, reference, tmp_path
):
    fmt, full = reference
    assert _translate(translator, source, tmp_path / "o.txt", fmt=fmt, resume=True) == full


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_a_prefix_run_then_resume_on_the_whole_input(translator, source, references, tmp_path, fmt):
    """Simulate the kill by translating only the first two chunks into the partial file."""
    full = references(fmt, 4)
    out = tmp_path / "out.txt"
    prefix = b"".join(source.splitlines(keepends=True)[:8])
    _translate(translator, prefix, tmp_path / "prefix.txt", fmt=fmt, chunk_lines=4)
    _leave_partial(translator, out, (tmp_path / "prefix.txt").read_text(encoding="utf-8"), fmt)
    assert _translate(translator, source, out, fmt=fmt, resume=True, chunk_lines=4) == full


def test_without_resume_an_old_partial_is_discarded(translator, source, reference, tmp_path):
    fmt, full = reference
    out = tmp_path / "out.txt"
    (tmp_path / "out.txt.partial").write_text("stale\nlines\n", encoding="utf-8")
    assert _translate(translator, source, out, fmt=fmt) == full


def test_resume_refuses_multi_line_nbest_text(translator, source, tmp_path):
    with pytest.raises(NmtError, match="resume works with one output line"):
        _translate(translator, source, tmp_path / "o.txt", resume=True, nbest=2)


def test_bad_input_on_the_first_line_leaves_no_partial_file(translator, tmp_path):
    out = tmp_path / "out.txt"
    with pytest.raises(NmtError, match=r"in.txt:1"):
        translate_file(translator, io.BytesIO(b"\xff bad\ngood\n"), out, name="in.txt")
    assert sorted(tmp_path.iterdir()) == []


def test_output_in_a_missing_folder_is_an_nmt_error(translator, tmp_path):
    with pytest.raises(NmtError, match="folder .* does not exist"):
        translate_file(translator, io.BytesIO(b"a\n"), tmp_path / "no" / "out.txt")


class Killed(Exception):
    """Stands for kill -9: raised from the progress callback after some lines."""


def _killed_run(translator, source: bytes, out: Path, after: int, **search) -> int:
    """A run stopped once `after` lines are written; returns the lines the partial holds."""
    seen = []

    def stop(written) -> None:
        seen.append(len(written.translations))
        if sum(seen) >= after:
            raise Killed

    stream = StreamOptions(chunk_lines=4)
    with pytest.raises(Killed):
        translate_file(
            translator,
            io.BytesIO(source),
            out,
            SearchOptions(beam_size=3, **search),
            stream,
            on_progress=stop,
        )
    return sum(seen)


def test_a_killed_run_keeps_a_record_and_resumes(translator, source, references, tmp_path):
    out = tmp_path / "out.txt"
    kept = _killed_run(translator, source, out, after=5)
    partial = tmp_path / "out.txt.partial"
    assert partial.read_text(encoding="utf-8").count("\n") == kept >= 5
    record = json.loads((tmp_path / "out.txt.partial.meta").read_text())
    assert record["lines"] == kept
    assert _translate(translator, source, out, resume=True, chunk_lines=4) == references("text", 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_resume_refuses_a_partial_of_another_input(translator, source, tmp_path):
    out = tmp_path / "out.txt"
    _killed_run(translator, source, out, after=5)
    other = source.replace(b"a", b"o", 1)
    with pytest.raises(NmtError, match="another input"):
        _translate(translator, other, out, resume=True)
    shorter = b"".join(source.splitlines(keepends=True)[:3])
    with pytest.raises(NmtError, match="lines but the input only 3"):
        _translate(translator, shorter, out, resume=True)
    assert (tmp_path / "out.txt.partial").exists()  # refused, not replaced


def test_resume_refuses_a_partial_of_other_options_or_model(translator, source, tmp_path):
    out = tmp_path / "out.txt"
    _killed_run(translator, source, out, after=5, length_penalty=0.5)
    with pytest.raises(NmtError, match=r"another options \(length_penalty: 0.5 then, 1.0 now"):
        _translate(translator, source, out, resume=True)
    (tmp_path / "out.txt.partial.meta").unlink()
    with pytest.raises(NmtError, match="has no out.txt.partial.meta"):
        _translate(translator, source, out, resume=True)


def test_a_second_run_into_the_same_output_is_refused(translator, source, tmp_path):
    import fcntl

    out = tmp_path / "out.txt"
    with open(tmp_path / "out.txt.partial", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a first run at work
        with pytest.raises(NmtError, match="being written by another run"):
            _translate(translator, source, out)
    assert not out.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_lines_are_written_before_the_chunk_ends(trained, source, tmp_path, workers):
    """A kill loses only the batches in flight: lines reach the file batch by batch."""
    translator = Translator(trained, workers=workers, threads=1)
    out = tmp_path / "out.txt"
    on_disk = []

    def written(w) -> None:
        on_disk.append((tmp_path / "out.txt.partial").read_text(encoding="utf-8").count("\n"))

    # one chunk of 17 lines in batches of a few lines each
    stream = StreamOptions(chunk_lines=10_000, batch_tokens=40)
    try:
        translate_file(translator, io.BytesIO(source), out, None, stream, on_progress=written)
    finally:
        translator.close()
    assert len(on_disk) > 1 and on_disk[0] < 17
    assert on_disk == sorted(on_disk) and on_disk[-1] == 17


def test_invalid_utf8_part_way_keeps_the_lines_before(translator, source, references, tmp_path):
    out = tmp_path / "out.txt"
    lines = source.splitlines(keepends=True)
    bad = b"".join(lines[:9]) + b"bad \xff byte\n" + b"".join(lines[10:])
    with pytest.raises(NmtError, match=r"in.txt:10: not valid UTF-8.*the 9 lines before are kept"):
        translate_file(translator, io.BytesIO(bad), out, SearchOptions(beam_size=3), name="in.txt")
    partial = (tmp_path / "out.txt.partial").read_text(encoding="utf-8")
    assert partial.splitlines() == references("text").splitlines()[:9]
    stream = StreamOptions(errors="replace")
    translate_file(
        translator, io.BytesIO(bad), out, SearchOptions(beam_size=3), stream, resume=True
    )
    resumed = out.read_text(encoding="utf-8").splitlines()
    assert len(resumed) == 17 and resumed[:9] == references("text").splitlines()[:9]
