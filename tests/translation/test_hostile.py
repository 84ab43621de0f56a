"""Hostile input: random Unicode, control characters, huge lines, CRLF, bad bytes.

Translation keeps one output line per input line whatever it is fed; the tokenizer never
crashes; invalid UTF-8 is an NmtError naming file and line.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt import NmtError
from nmt.data.corpus import read_lines
from nmt.search import SearchOptions
from nmt.translation.streaming import StreamOptions, translate_stream
from nmt.translation.translator import Translator

FEW = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


# text with no newline of its own: lines are joined with b"\n" or b"\r\n" by the tests
line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
    max_size=40,
)
control_text = st.text(
    alphabet=st.characters(max_codepoint=0x20, blacklist_characters="\n"), max_size=10
)
long_line = st.sampled_from(["a" * 100_000, "é ç " * 25_000, "\u4e2d" * 100_000])
invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xc0\x80", b"\xe2\x82", b"\x80abc", b"\xf8\x88\x80"]
)
hostile_line = st.one_of(
    line_text.map(lambda t: t.encode()),
    control_text.map(lambda t: t.encode()),
    st.just(b""),
    st.just(b"   "),
    invalid_utf8,
)


def n_lines(data: bytes) -> int:
    """Lines as a binary file iterates them: a last line without a newline still counts."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def join(lines: list[bytes], crlf: bool, final_newline: bool) -> bytes:
    eol = b"\r\n" if crlf else b"\n"
    data = eol.join(lines)
    return data + eol if final_newline and lines else data


def run(
    translator: Translator, data: bytes, fmt: str = "text", search: SearchOptions | None = None
) -> str:
    sink = io.StringIO()
    search = search or SearchOptions(beam_size=2)
    stream = StreamOptions(fmt=fmt, errors="replace")
    n = translate_stream(translator, io.BytesIO(data), sink, search, stream)
    assert n == n_lines(data)
    return sink.getvalue()


@FEW
@given(
    lines=st.lists(hostile_line, max_size=8),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    fmt=st.sampled_from(["text", "jsonl"]),
)
def test_translate_stream_keeps_one_line_per_line(translator, lines, crlf, final_newline, fmt):
    data = join(lines, crlf, final_newline)
    out = run(translator, data, fmt=fmt)
    assert out.count("\n") == n_lines(data)
    assert out.endswith("\n") or out == ""
    if fmt == "jsonl":
        records = [json.loads(r) for r in out.split("\n")[:-1]]
        for record, raw in zip(records, lines):
            assert record["source"] == raw.decode("utf-8", errors="replace")
            # one hypothesis, or none when the line has no tokens (blank, control characters)
            assert len(record["hypotheses"]) <= 1
            if not record["source"].strip():
                assert record["hypotheses"] == []
    else:
        for out_line, raw in zip(out.split("\n"), lines):
            if not raw.decode("utf-8", errors="replace").strip():
                assert out_line == ""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    long=long_line,
    before=st.lists(line_text.map(str.encode), max_size=2),
    crlf=st.booleans(),
    final_newline=st.booleans(),
)
def test_very_long_lines_are_truncated_not_dropped(translator, long, before, crlf, final_newline):
    data = join([*before, long.encode()], crlf, final_newline)
    # a short output limit: the property is about reading and truncating, not decoding
    out = run(
        translator, data, search=SearchOptions(beam_size=2, max_len_ratio=0.2, max_len_offset=2)
    )
    assert out.count("\n") == n_lines(data)


def test_edge_shapes(translator):
    for data in [b"", b"\n", b"\n\n\n", b"\r\n", b"no newline", b"a\rb\n", b"\x00\n\x1b[31m\n"]:
        assert run(translator, data).count("\n") == n_lines(data), data


@FEW
@given(texts=st.lists(st.one_of(line_text, control_text, st.text(max_size=30)), max_size=6))
def test_tokenizer_never_crashes(translator, texts):
    texts = [t.encode("utf-8", errors="replace").decode("utf-8") for t in texts]
    tok = translator.tokenizer
    src_ids = tok.encode_src(texts)
    tgt_ids = tok.encode_tgt(texts)
    assert len(src_ids) == len(tgt_ids) == len(texts)
    decoded = tok.decode_tgt(tgt_ids)
    assert len(decoded) == len(texts)
    assert all(isinstance(d, str) for d in decoded)
    for ids in src_ids:
        assert len(tok.src_pieces(ids)) == len(ids)
        assert all(0 <= i < tok.src_vocab_size for i in ids)


@FEW
@given(ids=st.lists(st.lists(st.integers(min_value=0, max_value=10_000), max_size=20), max_size=4))
def test_decoding_any_valid_ids_never_crashes(translator, ids):
    tok = translator.tokenizer
    ids = [[i % tok.tgt_vocab_size for i in seq] for seq in ids]
    assert len(tok.decode_tgt(ids)) == len(ids)


@FEW
@given(
    good=st.lists(line_text.map(str.encode), max_size=6),
    bad=invalid_utf8,
    position=st.integers(min_value=0, max_value=6),
    crlf=st.booleans(),
    after=st.lists(st.one_of(line_text.map(str.encode), invalid_utf8), max_size=3),
)
def test_read_lines_names_file_and_line_of_bad_bytes(good, bad, position, crlf, after):
    position = min(position, len(good))
    lines = [*good[:position], b"ok " + bad + b" ok", *good[position:], *after]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_bytes(join(lines, crlf, final_newline=True))
        with pytest.raises(NmtError) as e:
            read_lines(path)
    msg = str(e.value)
    assert f"corpus.txt:{position + 1}:" in msg
    assert "UTF-8" in msg and "\n" not in msg


@FEW
@given(lines=st.lists(line_text, max_size=8), crlf=st.booleans(), final_newline=st.booleans())
def test_read_lines_round_trips_valid_text(lines, crlf, final_newline):
    # a line of its own may hold a lone \r (not CRLF): only the line ending is taken off
    lines = [t.rstrip("\r") for t in lines]
    data = join([t.encode() for t in lines], crlf, final_newline)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_bytes(data)
        got = read_lines(path)
    expected = lines if final_newline or not lines or lines[-1] else lines[:-1]
    assert got == (expected if data else [])


def test_strict_stream_names_the_line(translator):
    with pytest.raises(NmtError, match=r"in\.txt:3: not valid UTF-8"):
        translate_stream(translator, io.BytesIO(b"a\nb\n\xffc\n"), io.StringIO(), name="in.txt")


def test_a_lone_carriage_return_is_text_not_a_line_ending():
    # found by the property test above: the last line b"\r" (no LF) came back as ""
    from nmt.data.corpus import decode_line

    assert decode_line(b"\r", "x") == "\r"
    assert decode_line(b"a\r", "x") == "a\r"
    assert decode_line(b"a\r\n", "x") == decode_line(b"a\n", "x") == "a"


# -- the command line under attack: one line (exit 2) or the work done, nothing lost ----------
def cli(*args, input=None):
    from conftest import nmt

    return nmt(*args, input=input)


def one_line(result, *mentions: str) -> str:
    from conftest import user_error

    return user_error(result, *mentions)


def done(result) -> None:
    from conftest import ok

    ok(result)


@pytest.fixture
def src(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("The red cat.\nTwo big houses.\n", encoding="utf-8")
    return path


# paths
def test_output_naming_the_input_is_refused(trained, src):
    before = src.read_bytes()
    one_line(cli("translate", trained, src, "-o", src), "in.txt", "is the input")
    assert src.read_bytes() == before
    link = src.with_name("link.txt")
    link.symlink_to(src)
    one_line(cli("translate", trained, src, "-o", link), "is the input")
    assert src.read_bytes() == before and link.is_symlink()


def test_output_through_a_symlink_writes_its_target(trained, src, tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    link.symlink_to(target)
    done(cli("translate", trained, src, "-o", link))
    assert link.is_symlink() and target.read_text(encoding="utf-8").count("\n") == 2


def test_output_to_a_fifo_is_written_in_place(trained, src, tmp_path):
    import os
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done(cli("translate", trained, src, "-o", fifo))
    reader.join(timeout=30)
    assert got and got[0].count(b"\n") == 2
    assert fifo.is_fifo() and not (tmp_path / "out.fifo.partial").exists()


@pytest.mark.parametrize("taken", ["out", "out.partial"])
def test_unusable_output_is_refused_before_any_work(trained, src, tmp_path, taken):
    (tmp_path / taken).mkdir()  # the output, or its partial file, is a directory
    one_line(cli("translate", trained, src, "-o", tmp_path / "out"), taken, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.txt", taken])


def test_attention_outputs_that_are_files_are_refused(trained, src, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    one_line(cli("translate", trained, src, "--attention-dir", a_file), "--attention-dir", "file")
    one_line(cli("attention", trained, "--text", "The cat.", "-o", a_file), "-o", "taken")
    assert a_file.read_text() == "x"


def test_inputs_that_are_directories_fifos_or_dev_stdin(trained, src, tmp_path):
    import os
    import threading

    one_line(cli("translate", trained, tmp_path), "is a directory")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()), daemon=True)
    writer.start()
    r = cli("translate", trained, fifo)
    done(r)
    assert r.stdout.count("\n") == 2


def test_user_text_in_messages_is_not_markup(trained, tmp_path):
    line = one_line(cli("translate", trained, tmp_path / "[/foo]"), "[/foo]", "does not exist")
    assert "MarkupError" not in line
    one_line(cli("translate", trained, "--device", "cuda:abc", input="a\n"), "'cuda:abc'")


# devices
@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "cuda"])
def test_unusable_devices_are_one_line(trained, device):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    one_line(cli("translate", trained, "--device", device, input="a\n"), "--device", device)


def test_full_disk_is_one_line(trained, src, tmp_path):
    import subprocess
    import sys

    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for args, stdout in [(["-o", "/dev/full"], None), ([], "/dev/full")]:
        with open(stdout or "/dev/null", "w") as sink:
            r = subprocess.run(
                [sys.executable, "-m", "nmt", "translate", str(trained), str(src), *args],
                stdout=sink,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                timeout=300,
            )
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
        assert "No space left" in r.stderr and "Traceback" not in r.stderr
    assert Path("/dev/full").is_char_device()


def test_closed_stdin_or_stdout_is_one_line(trained, src):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for fd, args, mention in [(1, [str(src)], "stdout is closed"), (0, [], "stdin is closed")]:
        r = subprocess.run(
            [sys.executable, "-m", "nmt", "translate", str(trained), *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=lambda fd=fd: os.close(fd),
            timeout=300,
        )
        assert r.returncode == 2 and mention in r.stderr and "Traceback" not in r.stderr


# non-finite options
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("option", ["--max-len-ratio", "--length-penalty"])
def test_non_finite_options_are_refused(trained, option, value):
    one_line(cli("translate", trained, option, value, input="a\n"), option)


def test_search_ends_by_the_max_length_whatever_the_scores(translator):
    """NaN weights (a damaged file loaded some other way): every search loop still ends."""
    import copy

    import torch

    model = copy.deepcopy(translator.model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    calls = []
    step = model.decode_step

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 500:
            raise AssertionError("the search does not end")
        return step(*args, **kwargs)

    model.decode_step = counted
    from nmt.search import search_ids

    ids = translator.tokenizer.encode_src(["The red cat sees the dog.", "A cat."])
    for beam in (1, 3):
        calls.clear()
        opts = SearchOptions(beam_size=beam, max_len_ratio=1.0, max_len_offset=5)
        search_ids(model, ids, opts)
        assert len(calls) <= max(map(len, ids)) + 6


def test_non_finite_weights_are_refused_at_load(trained, tmp_path):
    import torch

    state = torch.load(trained, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(NmtError, match=f"weight {name} holds NaN"):
        Translator(tmp_path / "nan.pt")


def test_a_record_cut_short_is_refused_when_loading_with_mmap(trained, tmp_path):
    """torch's mmap loading skips the record size check that a plain load makes."""
    import zipfile

    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(trained) as z, zipfile.ZipFile(damaged, "w") as out:
        for info in z.infolist():
            data = z.read(info.filename)
            out.writestr(info.filename, data[:-8] if info.filename.endswith("/data/0") else data)
    with pytest.raises(NmtError, match="damaged.pt is damaged"):
        Translator(damaged)


# huge options and inputs
def test_min_len_above_the_length_limit_is_refused(translator, trained):
    with pytest.raises(NmtError, match="min_len 100000 is above the longest output"):
        translator.translate(["The cat."], SearchOptions(min_len=100_000))
    one_line(cli("translate", trained, "--min-len", "100000", input="a\n"), "--min-len")


def test_huge_beam_is_refused():
    with pytest.raises(NmtError, match="beam_size must be at most 1000"):
        SearchOptions(beam_size=100_000)


def test_a_line_without_end_is_cut_at_the_cap(translator, caplog):
    from nmt.data.corpus import MAX_LINE_BYTES

    data = b"ok\n" + b"a " * MAX_LINE_BYTES + b"\nlast\n"
    with caplog.at_level("WARNING"):
        out = run(translator, data, search=SearchOptions(beam_size=1, max_len_offset=2))
    assert out.count("\n") == 3
    assert "<stdin>:2: longer than 1 MB, cut there" in caplog.text


def test_score_refuses_a_huge_line(tmp_path):
    from nmt.data.corpus import MAX_LINE_BYTES

    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (MAX_LINE_BYTES + 10) + b"\n")
    one_line(cli("score", "--ref", big, "--hyp", big), "big.txt:1", "longer than 1 MB")


# dead workers
def test_a_worker_killed_from_outside_is_an_error_not_a_hang(trained):
    import multiprocessing
    import os
    import signal
    import threading

    translator = Translator(trained, workers=2, threads=1)
    sentences = ["The red cat sees the big dog in the house."] * 300
    translator.translate(sentences[:40], SearchOptions(beam_size=2))  # the workers are up
    victim = multiprocessing.active_children()[0]
    threading.Timer(0.2, os.kill, (victim.pid, signal.SIGKILL)).start()
    try:
        with pytest.raises(NmtError, match="a worker process died"):
            for _ in range(20):  # until the kill lands in a call
                translator.translate(sentences, SearchOptions(beam_size=4))
    finally:
        translator.close()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_ctrl_c_or_kill_with_workers_is_quiet_and_leaves_no_process(trained, tmp_path, sig):
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "in.txt"
    src.write_text("The red cat sees the big dog in the house.\n" * 20_000, encoding="utf-8")
    out = tmp_path / "out.txt"
    partial = tmp_path / "out.txt.partial"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = ["translate", str(trained), str(src), "-o", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", *command],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a process group of its own, as a shell job has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size):
        time.sleep(0.2)
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
    else:
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must follow
    try:
        # stderr ends when every process holding it (the workers too) has ended
        _, stderr = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # anything left of the group
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert partial.read_text(encoding="utf-8").count("\n") > 0


# unclear messages
def test_lone_surrogates_through_the_api_are_an_nmt_error(translator):
    with pytest.raises(NmtError, match="sentence 2: not valid Unicode"):
        translator.translate(["fine", "bad \ud800 text"])


def test_an_empty_tokenizer_is_not_called_code(trained, tmp_path):
    import torch

    state = torch.load(trained, weights_only=True)
    state["tokenizer"]["src"] = b""
    torch.save(state, tmp_path / "empty_tok.pt")
    with pytest.raises(NmtError, match="sentencepiece model is empty"):
        Translator(tmp_path / "empty_tok.pt")


# files planted beside the output: never written through
@pytest.mark.parametrize("planted", ["symlink", "hard link", "fifo"])
def test_a_file_planted_at_the_partial_name_is_refused(trained, src, tmp_path, planted):
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out, partial = tmp_path / "out.txt", tmp_path / "out.txt.partial"
    if planted == "symlink":
        partial.symlink_to(victim)
    elif planted == "hard link":
        os.link(victim, partial)
    else:
        os.mkfifo(partial)
    for resume in ([], ["--resume"]):
        one_line(cli("translate", trained, src, "-o", out, *resume), "out.txt.partial", "remove it")
    assert victim.read_text() == "precious\n"
    assert not out.exists() and not out.is_symlink()


def test_a_link_planted_at_the_partial_record_is_not_written_through(trained, src, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out.txt.partial.meta.tmp").symlink_to(victim)
    done(cli("translate", trained, src, "-o", tmp_path / "out.txt"))
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").count("\n") == 2


@pytest.mark.parametrize("option", ["--threads", "--workers"])
def test_thousands_of_threads_or_workers_are_refused(trained, option):
    one_line(cli("translate", trained, option, "10000", input="a\n"), option, "at most 1024")


# -- the server under attack: a real `nmt serve` on 127.0.0.1 ---------------------------------
def serve_process(trained, *options: str):
    """`nmt serve` on a free loopback port, stdout and stderr into one pipe: (process, port)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-m", "nmt", "serve", str(trained), "--port", str(port), *options]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


def ended(proc, timeout: float) -> str:
    """The output of `proc` once it has ended; a hang (past `timeout`) fails the test."""
    import subprocess

    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {timeout} s later: {proc.communicate()[0]}") from None
    return output


def stalled(port: int, body_start: bytes = b'{"te', headers_end: bool = True):
    """A socket that sent a /translate request's headers (or part of them) and the start of
    a 100-byte body, and nothing more."""
    import contextlib
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /translate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n"
    ).encode()
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # closed as it came
        sock.sendall(head + (b"\r\n" + body_start if headers_end else b""))
    return sock


def until_closed(sock, timeout: float = 30) -> bytes:
    """What the server sends on `sock` until it closes it; still open after `timeout`: fail."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open: {data!r}") from None
    finally:
        sock.close()
    return data


def reply_json(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(trained):
    """One server for the attacks that leave it standing: short deadlines, small caps."""
    import signal

    options = ["--read-seconds", "2", "--max-connections", "16", "--max-concurrent", "4"]
    proc, port = serve_process(trained, *options)
    yield proc, port
    proc.send_signal(signal.SIGTERM)
    output = ended(proc, 30)
    assert "Traceback" not in output, output


def test_server_answers_slow_bodies_408_and_others_meanwhile(server):
    """Stalled bodies above max_concurrent: they get 408 and close, a complete request is
    answered (130 such sockets made every /translate answer 503)."""
    import httpx

    _, port = server
    socks = [stalled(port) for _ in range(8)]
    reply = httpx.post(f"http://127.0.0.1:{port}/translate", json={"text": "a"}, timeout=30)
    assert reply.status_code == 200
    for sock in socks:
        status, body = reply_json(until_closed(sock))
        assert status == 408 and body["limit"] == "read_seconds"


def test_server_caps_and_times_out_half_open_connections(server):
    """40 connections that never finish their headers: at most max_connections are held,
    each for read_seconds (300 such connections stayed open, each a file descriptor)."""
    import os
    import time

    import httpx

    proc, port = server
    fds = f"/proc/{proc.pid}/fd"
    before = len(os.listdir(fds)) if os.path.isdir(fds) else None
    socks = [stalled(port, headers_end=False) for _ in range(40)]
    time.sleep(0.5)  # the server accepts them
    if before is not None:
        assert len(os.listdir(fds)) - before <= 16 + 2
    for sock in socks:
        until_closed(sock)
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200


def test_server_refuses_deep_json(server):
    import httpx

    _, port = server
    url = f"http://127.0.0.1:{port}/translate"
    for raw in (b"[" * 100_000, b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        reply = httpx.post(url, content=raw, headers={"content-type": "application/json"})
        assert reply.status_code == 400 and "deep" in reply.json()["error"]
    assert httpx.post(url, json={"text": "a"}, timeout=30).status_code == 200


def test_server_is_not_driven_by_other_sites(server):
    """Another Host (DNS rebinding), a cross-site text/plain POST, a CORS preflight."""
    import httpx

    _, port = server
    url = f"http://127.0.0.1:{port}"
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}"):
        reply = httpx.post(url + "/translate", json={"text": "a"}, headers={"host": host})
        assert reply.status_code == 400 and reply.json()["limit"] == "allowed_hosts"
    origin = {"origin": "http://evil.example"}
    plain = httpx.post(
        url + "/translate",
        content=b'{"text": "a"}',
        headers={**origin, "content-type": "text/plain"},
    )
    assert plain.status_code == 415
    preflight = httpx.options(
        url + "/translate", headers={**origin, "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 405
    for reply in (plain, preflight):
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")]


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_server_stops_under_load_within_its_grace(trained, sig):
    """Requests in flight are answered, clients holding unfinished bodies get a 503 when the
    grace period ends, the process exits 0, and nothing is a traceback (it stayed up for 40 s
    and more, and SIGINT printed a traceback for each cancelled request)."""
    import signal
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    options = ["--grace-seconds", "5", "--read-seconds", "120", "--max-wait-ms", "2000"]
    proc, port = serve_process(trained, *options)
    try:
        socks = [stalled(port) for _ in range(4)]
        url = f"http://127.0.0.1:{port}/translate"
        with ThreadPoolExecutor(3) as pool:
            posts = [
                pool.submit(httpx.post, url, json={"text": f"The {n} red cats."}, timeout=60)
                for n in ("two", "three", "four")
            ]
            deadline = time.monotonic() + 30
            health = f"http://127.0.0.1:{port}/health"
            while httpx.get(health).json()["in_flight"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)  # until the three wait for their batch to fill
            proc.send_signal(getattr(signal, sig))
            assert [p.result().status_code for p in posts] == [200] * 3
        for sock in socks:
            data = until_closed(sock)
            assert not data or reply_json(data)[0] == 503, data
        output = ended(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "CancelledError" not in output, output


@pytest.mark.slow
@pytest.mark.parametrize("second", ["SIGTERM", "SIGINT"])
def test_server_second_signal_exits_at_once_and_quietly(trained, second):
    import signal
    import time

    proc, port = serve_process(trained, "--grace-seconds", "300", "--read-seconds", "300")
    try:
        sock = stalled(port)  # keeps the first signal's graceful shutdown waiting
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert proc.poll() is None  # still waiting for the unfinished body
        proc.send_signal(getattr(signal, second))
        output = ended(proc, 30)  # not the grace period's 300 s
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -getattr(signal, second), output
    assert "Traceback" not in output and "CancelledError" not in output, output
