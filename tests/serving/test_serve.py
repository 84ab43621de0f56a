"""`nmt serve`: the HTTP API in-process, dynamic batching, limits and bad input, slow
clients and other sites, the page in a headless Chromium, and SIGTERM on a real server
process (loopback addresses only; tests/translation/test_hostile.py attacks a real one)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import browser_path
from starlette.testclient import TestClient
from typer.testing import CliRunner

from nmt import NmtError
from nmt.cli.main import app as cli_app
from nmt.search import SearchOptions
from nmt.serving.app import make_app, server_info
from nmt.serving.batcher import Batcher, BatchOptions
from nmt.serving.guards import HostCheck, allowed_hosts, check_open_files
from nmt.serving.requests import Limits
from nmt.translation.translator import Translator

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(max_body_bytes=20_000, max_sentences=8, max_chars=300, max_beam=8, max_nbest=4)


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


@pytest.fixture(scope="module")
def sentences(toy_dir) -> list[str]:
    return (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:16]


@pytest.fixture(scope="module")
def client(trained, translator):
    app = make_app(
        translator, server_info(trained, translator), LIMITS, BatchOptions(max_wait_ms=30.0)
    )
    with TestClient(app) as c:
        yield c


def _post(client, body) -> httpx.Response:
    return client.post("/translate", json=body)


def _texts(reply: dict) -> list[str]:
    return [t["text"] for t in reply["translations"]]


# -- the API ---------------------------------------------------------------------------
def test_translate_matches_translator(client, translator, sentences) -> None:
    body = {"text": sentences[:6], "beam_size": 4, "nbest": 3, "length_penalty": 0.6}
    reply = _post(client, body).json()
    want = translator.translate(
        sentences[:6], SearchOptions(beam_size=4, nbest=3, length_penalty=0.6)
    )
    assert _texts(reply) == [t.text for t in want]
    for got, t in zip(reply["translations"], want):
        assert [h["text"] for h in got["nbest"]] == [h.text for h in t.hypotheses]
        assert [h["score"] for h in got["nbest"]] == pytest.approx(
            [h.score for h in t.hypotheses], abs=1e-5
        )
        assert got["score"] == got["nbest"][0]["score"]
        assert "attention" not in got


def test_translate_matches_cli_byte_for_byte(client, trained, sentences, tmp_path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    run = CliRunner().invoke(cli_app, ["translate", str(trained), str(source), "-o", str(out)])
    assert run.exit_code == 0, run.output
    served = [_texts(_post(client, {"text": s}).json())[0] for s in sentences]
    assert "".join(f"{t}\n" for t in served).encode() == out.read_bytes()


def test_attention_when_asked(client, translator, sentences) -> None:
    reply = _post(client, {"text": sentences[0], "attention": True}).json()
    got = reply["translations"][0]["attention"]
    want = translator.translate(sentences[:1], SearchOptions(return_attention=True))[0]
    assert got["source"] == want.src_tokens
    assert got["target"] == want.hypotheses[0].tokens
    assert len(got["weights"]) == len(got["target"])
    assert all(len(row) == len(got["source"]) for row in got["weights"])
    assert [sum(row) for row in got["weights"]] == pytest.approx([1.0] * len(got["target"]), 1e-3)


def test_empty_sentence_and_empty_list(client) -> None:
    reply = _post(client, {"text": ["", "   "]}).json()
    empty = {"text": "", "score": None, "log_prob": None, "nbest": []}
    assert reply == {"translations": [empty | {"confidence": None, "sentences": []}] * 2}
    reply = _post(client, {"text": ["", "   "], "split": False}).json()
    assert reply == {"translations": [empty] * 2}
    assert _post(client, {"text": []}).json() == {"translations": []}


def test_health_info_docs_and_page(client, trained) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    info = client.get("/info").json()
    assert info["languages"] == {"source": "src", "target": "tgt"}
    assert info["step"] == 250 and info["best"] is not None and info["metric"]
    assert "torch" in info["versions"] and info["model"]["hidden_size"] == 128
    assert str(trained) not in json.dumps(info)  # no file paths of the server
    api = client.get("/openapi.json").json()
    assert api["openapi"].startswith("3.")
    request = api["components"]["schemas"]["TranslateRequest"]["properties"]
    assert request["beam_size"]["maximum"] == LIMITS.max_beam
    assert "/openapi.json" in client.get("/docs").text
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "/translate" in page.text
    # nothing from a CDN: no script, style, image or font from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(|@import""", page.text)


# -- limits and bad input --------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "limit"),
    [
        ({"text": ["a"] * 9}, 413, "max_sentences"),
        ({"text": "a" * 301}, 413, "max_chars"),
        ({"text": "a " * 15_000}, 413, "max_body_bytes"),
        ({"text": "a", "beam_size": 9}, 422, "max_beam"),
        ({"text": "a", "beam_size": 8, "nbest": 5}, 422, "max_nbest"),
    ],
)
def test_limits(client, body, status, limit) -> None:
    reply = _post(client, body)
    assert reply.status_code == status
    assert reply.json()["limit"] == limit
    assert f"{limit}=" in reply.json()["error"]


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b'{"text": "a"', 400, "JSON"),
        (b'{"text": "caf\xe9"}', 400, "UTF-8"),
        (b"", 400, "JSON"),
        (b'["a"]', 422, "object"),
        (b'{"txt": "a"}', 422, "txt"),
        (b'{"beam_size": 2}', 422, "text"),
        (b'{"text": 5}', 422, "text"),
        (b'{"text": ["a", null]}', 422, "text"),
        (b'{"text": "\\ud800"}', 422, "Unicode"),
        (b'{"text": "a", "beam_size": "5"}', 422, "beam_size"),
        (b'{"text": "a", "beam_size": true}', 422, "beam_size"),
        (b'{"text": "a", "beam_size": 0}', 422, "beam_size"),
        (b'{"text": "a", "beam_size": 2.5}', 422, "beam_size"),
        (b'{"text": "a", "beam_size": 2, "nbest": 3}', 422, "nbest"),
        (b'{"text": "a", "length_penalty": NaN}', 422, "length_penalty"),
        (b'{"text": "a", "length_penalty": "big"}', 422, "length_penalty"),
        (b'{"text": "a", "length_penalty": "0.6"}', 422, "length_penalty"),
        (b'{"text": "a", "length_penalty": false}', 422, "length_penalty"),
        (b'{"text": "a", "attention": "yes"}', 422, "attention"),
        (b'{"text": "a", "beam_size": 1' + b"0" * 5000 + b"}", 400, "JSON"),
    ],
)
def test_bad_input_is_a_4xx_and_the_server_lives(client, raw, status, says) -> None:
    reply = client.post("/translate", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert says in reply.json()["error"]
    assert _post(client, {"text": "a"}).status_code == 200


def test_wrong_method_and_path_are_json_errors(client) -> None:
    assert client.get("/translate").status_code == 405
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()


def test_concurrent_requests_over_the_limit_get_503(trained, translator) -> None:
    limits = Limits(max_concurrent=1)
    app = make_app(translator, {}, limits, BatchOptions(max_wait_ms=1500))
    with TestClient(app) as c, ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/translate", json={"text": "a"})
        deadline = time.monotonic() + 5
        while c.get("/health").json()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = _post(c, {"text": "b"})
        assert second.status_code == 503 and second.json()["limit"] == "max_concurrent"
        assert first.result().status_code == 200


# -- batching --------------------------------------------------------------------------
def _summary(translations) -> list[tuple[str, list[float]]]:
    return [(t.text, [h.score for h in t.hypotheses]) for t in translations]


def test_batch_invariance(translator, sentences) -> None:
    """Requests merged into one batch get what each gets alone."""
    options = SearchOptions(beam_size=4, nbest=2)
    requests = [sentences[0:1], sentences[1:4], sentences[4:5], sentences[5:9]]
    decoded: list[list[str]] = []

    def decode(texts, opts):
        decoded.append(texts)
        return translator.translate(texts, opts)

    async def main():
        batcher = Batcher(decode, BatchOptions(max_batch_tokens=10_000, max_wait_ms=300))
        task = asyncio.ensure_future(batcher.run())
        lengths = [[5] * len(r) for r in requests]
        results = await asyncio.gather(
            *(batcher.translate(r, n, options) for r, n in zip(requests, lengths))
        )
        task.cancel()
        batcher.close()
        return results

    merged = asyncio.run(main())
    assert len(decoded) == 1, "the requests were not merged into one batch"
    for request, got in zip(requests, merged):
        want = _summary(translator.translate(request, options))
        assert [t for t, _ in _summary(got)] == [t for t, _ in want]
        for (_, scores), (_, expected) in zip(_summary(got), want):
            assert scores == pytest.approx(expected, abs=1e-5)


def test_different_options_are_not_batched_together(translator, sentences) -> None:
    seen: list[tuple[int, int]] = []

    def decode(texts, opts):
        seen.append((len(texts), opts.beam_size))
        return translator.translate(texts, opts)

    async def main():
        batcher = Batcher(decode, BatchOptions(max_wait_ms=200))
        task = asyncio.ensure_future(batcher.run())
        greedy, beam = SearchOptions(beam_size=1), SearchOptions(beam_size=3)
        results = await asyncio.gather(
            batcher.translate(sentences[:2], [5, 5], greedy),
            batcher.translate(sentences[2:5], [5, 5, 5], beam),
            batcher.translate(sentences[5:6], [5], greedy),
        )
        task.cancel()
        batcher.close()
        return results

    a, b, c = asyncio.run(main())
    assert sorted(seen) == [(3, 1), (3, 3)]
    assert [t.text for t in a + c] == [
        t.text
        for t in translator.translate(sentences[:2] + sentences[5:6], SearchOptions(beam_size=1))
    ]
    assert [t.text for t in b] == [
        t.text for t in translator.translate(sentences[2:5], SearchOptions(beam_size=3))
    ]


def test_50_requests_from_10_threads_equal_one_at_a_time(client, sentences) -> None:
    bodies = [
        {"text": sentences[i % len(sentences) : i % len(sentences) + 1 + i % 3], "nbest": 2}
        for i in range(50)
    ]
    alone = [_post(client, b).json() for b in bodies]
    before = client.get("/health").json()["batches"]
    with ThreadPoolExecutor(10) as pool:
        together = list(pool.map(lambda b: _post(client, b).json(), bodies))
    after = client.get("/health").json()["batches"]
    assert [_texts(r) for r in together] == [_texts(r) for r in alone]
    for got, want in zip(together, alone):
        for g, w in zip(got["translations"], want["translations"]):
            assert [h["score"] for h in g["nbest"]] == pytest.approx(
                [h["score"] for h in w["nbest"]], abs=1e-5
            )
    assert after["batches"] - before["batches"] < 50, "no two requests shared a batch"


def test_cancelled_request_drops_its_sentences(translator, sentences) -> None:
    decoded: list[str] = []

    def decode(texts, opts):
        decoded.extend(texts)
        return translator.translate(texts, opts)

    async def main():
        batcher = Batcher(decode, BatchOptions(max_batch_tokens=10, max_wait_ms=0))
        task = asyncio.ensure_future(batcher.run())
        options = SearchOptions(beam_size=2)
        # 5 tokens a sentence and 10 a batch: the sentences go two by two
        leaving = asyncio.ensure_future(batcher.translate(sentences[:8], [5] * 8, options))
        while not decoded:
            await asyncio.sleep(0.001)
        leaving.cancel()
        staying = await batcher.translate(sentences[8:9], [5], options)
        task.cancel()
        batcher.close()
        return staying, batcher.stats

    staying, stats = asyncio.run(main())
    assert (
        staying[0].text == translator.translate(sentences[8:9], SearchOptions(beam_size=2))[0].text
    )
    assert len(decoded) < 9 and stats.dropped > 0
    assert sentences[7] not in decoded


def test_client_gone_before_its_batch_frees_its_work(trained, translator, sentences) -> None:
    """An ASGI client that disconnects while its request waits for a batch: never decoded."""
    app = make_app(translator, {}, Limits(), BatchOptions(max_wait_ms=300))
    service = app.state.service
    decoded: list[str] = []
    service.batcher._decode = lambda texts, opts: decoded.extend(texts) or []
    body = json.dumps({"text": sentences[:3]}).encode()
    sent: list[dict] = []

    async def main():
        task = asyncio.ensure_future(service.batcher.run())
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(0.05)  # then the client goes away
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/translate",
            "headers": [(b"content-type", b"application/json")],
            "query_string": b"",
        }
        await app(scope, receive, send)
        await asyncio.sleep(0.4)  # past max_wait_ms: its batch would have been decoded by now
        task.cancel()
        service.batcher.close()

    asyncio.run(main())
    assert decoded == []
    assert service.batcher.stats.dropped == 3


# -- the attack report: slow clients, hostile bodies, other sites -----------------------
async def _call(app, chunks: list[bytes], *, ends: bool, headers=None) -> list[dict]:
    """POST /translate to `app` as a client sending `chunks` of a body; with ends=False the
    body never ends (a client that stalls). The messages the app sent."""
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if ends:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a stalled body, or a client that stays

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/translate",
        "headers": headers or [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    await app(scope, receive, send)
    return sent


def _status_and_body(sent: list[dict]) -> tuple[int, dict, dict]:
    start = sent[0]
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]) or b"{}")
    return start["status"], body, dict(start["headers"])


def test_a_body_not_sent_within_read_seconds_is_a_408_that_closes(translator) -> None:
    app = make_app(translator, {}, Limits(read_seconds=1))

    async def main():
        async with app.router.lifespan_context(app):
            return await asyncio.wait_for(_call(app, [b'{"te'], ends=False), 30)

    status, body, headers = _status_and_body(asyncio.run(main()))
    assert status == 408 and body["limit"] == "read_seconds"
    assert headers[b"connection"] == b"close"  # the rest of the body is not waited for


def test_requests_still_sending_their_bodies_are_not_in_flight(translator) -> None:
    """Stalled bodies over max_concurrent: a complete request is still answered (130 stalled
    sockets made every /translate answer 503)."""
    app = make_app(translator, {}, Limits(max_concurrent=2, read_seconds=60))

    async def main():
        async with app.router.lifespan_context(app):
            stalled = [
                asyncio.ensure_future(_call(app, [b'{"text": '], ends=False)) for _ in range(5)
            ]
            await asyncio.sleep(0.2)  # their headers are in, their bodies never end
            answer = await asyncio.wait_for(_call(app, [b'{"text": "a"}'], ends=True), 60)
            in_flight = app.state.service.in_flight
            for task in stalled:
                task.cancel()
            await asyncio.gather(*stalled, return_exceptions=True)
            return answer, in_flight

    answer, in_flight = asyncio.run(main())
    assert _status_and_body(answer)[0] == 200
    assert in_flight == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"[" * 10_000, 400),  # under max_body_bytes, and far over the recursion limit
        (b'{"text": ' + b"[" * 10_000, 400),
        (b"[" * 20 + b"]" * 20, 400),
        (b'{"text": [["a"]]}', 422),  # shallow: parsed, and refused by the schema
        (b'{"text": "[[[[[[[[[[ {{{{{{{{{{"}', 200),  # brackets in a string do not nest
    ],
)
def test_deeply_nested_json_is_a_4xx_not_a_recursion_error(client, raw, status) -> None:
    reply = client.post("/translate", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    if status == 400:
        assert "deep" in reply.json()["error"]
    assert _post(client, {"text": "a"}).status_code == 200


def test_info_tells_no_path_of_the_server(client, trained, toy_dir) -> None:
    info = client.get("/info").json()
    text = json.dumps(info)
    for path in (toy_dir, trained.parent):  # the training files, the run dir and tokenizer
        assert str(path) not in text
    assert "config" not in info and "path" not in info
    assert info["limits"]["max_chars"] == LIMITS.max_chars
    assert info["max_source_tokens"] == 40 and info["src_vocab"] > 0
    assert info["version"] and info["model"]["hidden_size"] == 128


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_translate_takes_json_only(client, kind) -> None:
    """What a cross-site page may send without a CORS preflight is refused."""
    headers = {"content-type": kind} if kind else {}
    reply = client.post("/translate", content=b'{"text": "a"}', headers=headers)
    assert reply.status_code == 415 and "application/json" in reply.json()["error"]
    charset = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/translate", content=b'{"text": "a"}', headers=charset).status_code == 200


def test_no_cors_header_lets_another_site_read_answers(client) -> None:
    origin = {"origin": "http://evil.example"}
    preflight = client.options(
        "/translate",
        headers={**origin, "access-control-request-method": "POST"},
    )
    posted = _post_with(client, {"text": "a"}, origin)
    assert preflight.status_code == 405 and posted.status_code == 200
    for reply in (preflight, posted):
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")]


def _post_with(client, body, headers) -> httpx.Response:
    return client.post("/translate", json=body, headers=headers)


def test_host_headers_naming_another_server_are_refused(translator) -> None:
    app = make_app(translator, {}, LIMITS, hosts=allowed_hosts("127.0.0.1", 8000))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "LocalHost:8000", "[::1]:8000"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1:8001", "127.0.0.1", "a@127.0.0.1:8000"):
            reply = _post_with(c, {"text": "a"}, {"host": host})
            assert reply.status_code == 400, host
            assert reply.json()["limit"] == "allowed_hosts"


def test_allowed_hosts() -> None:
    assert allowed_hosts("127.0.0.1", 80) == ["localhost:80", "127.0.0.1:80", "[::1]:80"]
    assert allowed_hosts("::", 0, ["example.org"]) == ["localhost", "127.0.0.1", "[::1]"] + [
        "example.org"
    ]
    assert allowed_hosts("box.lan", 8080)[-1] == "box.lan:8080"
    check = HostCheck(None, allowed_hosts("127.0.0.1", 80, ["example.org", "b.example:8443"]))
    assert check.answers("127.0.0.1") and check.answers("127.0.0.1:80")  # 80: HTTP's port
    assert check.answers("example.org:1234") and check.answers("b.example:8443")
    assert not check.answers("b.example") and not check.answers("127.0.0.1:8000")
    assert HostCheck(None, ["*"]).any
    with pytest.raises(NmtError, match="allowed_hosts"):
        allowed_hosts("127.0.0.1", 80, ["http://x/"])


def test_long_sentences_log_one_warning_a_request(client, caplog) -> None:
    long = " ".join(["the tall girl sees two red cars"] * 9)  # over the model's 40 tokens
    with caplog.at_level(logging.WARNING):
        reply = _post(client, {"text": [long] * 5 + ["a"]})
    assert reply.status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "5 of 6" in warnings[0]


def test_max_connections_must_leave_files_to_the_process(monkeypatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    check_open_files(400)  # 800 at most for connections, 100 for the server's own files
    with pytest.raises(NmtError, match="max_connections .*ulimit -n"):
        check_open_files(500)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--allowed-hosts", "x/y"), ("--grace-seconds", "-1"), ("--read-seconds", "0")],
)
def test_bad_server_options_are_one_line_and_exit_2(trained, option, value) -> None:
    run = CliRunner().invoke(cli_app, ["serve", str(trained), option, value])
    assert run.exit_code == 2, run.output
    assert option in run.output or option[2:].replace("-", "_") in run.output


# -- real server processes -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(trained: Path, *options: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "nmt", "serve", str(trained), "--port", str(port), *options]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


def test_sigterm_finishes_requests_in_flight_and_exits_0(trained, translator, sentences) -> None:
    proc, url = _start(trained, "--max-wait-ms", "1500")
    try:
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(
                httpx.post, url + "/translate", json={"text": sentences[:2]}, timeout=60
            )
            time.sleep(0.5)  # the request waits for its batch to fill
            proc.send_signal(signal.SIGTERM)
            answer = reply.result()
        assert answer.status_code == 200
        assert _texts(answer.json()) == [t.text for t in translator.translate(sentences[:2])]
        assert proc.wait(timeout=30) == 0, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_options_are_one_line_and_exit_2(trained) -> None:
    run = CliRunner().invoke(cli_app, ["serve", str(trained), "--max-wait-ms", "-1"])
    assert run.exit_code == 2
    assert "max_wait_ms" in run.output


def test_a_port_in_use_is_one_line_and_exit_2(trained) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        run = CliRunner().invoke(cli_app, ["serve", str(trained), "--port", port])
    assert run.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in run.output


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = browser_path("chromium"), browser_path("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


def test_page_translates_and_draws_the_attention(browser, trained, translator, sentences) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = _start(trained)
    try:
        browser.get(url + "/")
        browser.find_element(By.ID, "source").send_keys(sentences[3])
        browser.find_element(By.ID, "go").click()
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "translation").text)
        want = translator.translate(
            [sentences[3]], SearchOptions(beam_size=5, nbest=3, return_attention=True)
        )[0]
        assert browser.find_element(By.ID, "translation").text == want.text
        items = browser.find_elements(By.CSS_SELECTOR, "#nbest li .text")
        assert [li.text for li in items] == [h.text for h in want.hypotheses]
        scores = browser.find_elements(By.CSS_SELECTOR, "#nbest li .score")
        assert [float(s.text) for s in scores] == pytest.approx(
            [h.score for h in want.hypotheses], abs=1e-3
        )
        rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap g.row")
        assert len(rows) == len(want.hypotheses[0].tokens)
        cells = rows[0].find_elements(By.CSS_SELECTOR, "rect.cell")
        assert len(cells) == len(want.src_tokens)
        ActionChains(browser).move_to_element(cells[0]).perform()
        weight = want.hypotheses[0].attention[0][0]
        wait.until(lambda d: d.find_element(By.ID, "weight").text)
        assert browser.find_element(By.ID, "weight").text.endswith(f"{weight:.4f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_port_out_of_range_is_one_line_and_exit_2(trained) -> None:
    run = CliRunner().invoke(cli_app, ["serve", str(trained), "--port", "99999"])
    assert run.exit_code == 2
    assert "port must be between 0 and 65535, got 99999" in run.output


def test_a_request_glossary_and_placeholders_are_those_of_the_translator(
    client, translator
) -> None:
    from nmt.terms import Terms

    text = ["The cat sees the key on May 3, 2017.", "The boys like www.example.org/a_b."]
    body = {"text": text, "split": False, "glossary": {"key": "tecla", "boys": ""}}
    reply = _post(client, {**body, "placeholders": True})
    assert reply.status_code == 200, reply.text
    terms = Terms(glossary=(("key", "tecla"), ("boys", "")), placeholders=True)
    want = translator.translate(text, SearchOptions(terms=terms))
    assert _texts(reply.json()) == [t.text for t in want]
    assert "tecla" in want[0].text and "www.example.org/a_b" in want[1].text
    for bad in ({"glossary": ["key", "tecla"]}, {"glossary": {"key": 3}}, {"placeholders": 1}):
        reply = _post(client, {"text": text, **bad})
        assert reply.status_code == 422, reply.text
        assert next(iter(bad)) in reply.json()["error"]
