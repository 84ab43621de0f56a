"""`nmt serve`: an HTTP API over a Translator, with dynamic batching and a page that shows
the attention.

Starlette on uvicorn: a small ASGI stack with an in-process test client and no pydantic (the
request schema is checked in nmt/serving/requests.py and described by a hand-written OpenAPI
document, nmt/serving/static/openapi.json). Routes: POST /translate, GET /health, GET /info,
GET / (the page), GET /docs and /openapi.json. Every error is a JSON object {"error": ...,
"limit": ...}; bad input gets a 4xx, never a 500.

A web page the user visits must not drive the server: requests whose Host header names
another server are refused (DNS rebinding), /translate takes application/json only (which a
cross-site page cannot send without a preflight, and no CORS header allows one). Clients that
send slowly hold a connection for `read_seconds` at most, and at most `max_connections` are
open at once (nmt/serving/guards.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from nmt import NmtError, __version__, require_whole
from nmt.runtime.base import Translation, TranslatorBase
from nmt.runtime.folder import export_info, is_export
from nmt.search_options import SearchOptions
from nmt.serving.batcher import Batcher, BatchOptions
from nmt.serving.guards import (
    HostCheck,
    Server,
    allowed_hosts,
    check_open_files,
    connection_class,
)
from nmt.serving.requests import (
    ApiError,
    Limits,
    paragraph_json,
    parse_request,
    translation_json,
)
from nmt.translation.documents import DocumentOptions, assemble, language_of, prepare
from nmt.translation.loading import open_translator

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _error(status: int, message: str, limit: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if limit is not None:
        body["limit"] = limit
    # answered before the body was read whole: the connection closes instead of reading
    # the rest, which a slow client could send for ever
    headers = {"connection": "close"} if status in (408, 413, 415) else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413,
            f"body of {declared} bytes, over the limit max_body_bytes={limit}",
            "max_body_bytes",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body over the limit max_body_bytes={limit}", "max_body_bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Service:
    """The app's state: translator, batcher, limits, and the requests in flight."""

    def __init__(
        self,
        translator: TranslatorBase,
        info: dict[str, Any],
        limits: Limits,
        batching: BatchOptions,
    ) -> None:
        self.translator, self.info, self.limits = translator, info, limits
        self.batcher = Batcher(self._decode, batching)
        self.in_flight = 0
        self.language = language_of(translator.config)  # the sentence splitter's rules

    def _decode(self, sentences: list[str], options: SearchOptions) -> list[Translation]:
        return self.translator.translate(
            sentences, options, batch_tokens=self.batcher.options.max_batch_tokens
        )

    def lengths(self, sentences: list[str]) -> list[int]:
        """Source tokens of each sentence as decoded (EOS incl.), and one warning for the
        request when some are cut to the model's length."""
        cap = self.translator.max_src_len
        found = [len(ids) for ids in self.translator.tokenizer.encode_src(sentences)]
        over = sum(n > cap for n in found)
        if over:
            log.warning(
                "a request's sentences over the model's %d source tokens: %d of %d, truncated",
                cap,
                over,
                len(found),
            )
        return [min(n, cap) + 1 for n in found]

    async def translate(self, request: Request) -> Response:
        try:
            return await self._answer(request)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its graceful shutdown times
            # out; answered here, the client learns why and the log shows no traceback
            return _error(503, "the server shut down before this request was answered")

    async def _answer(self, request: Request) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            # a cross-site page may send text/plain without asking (no CORS preflight)
            raise ApiError(415, f"content-type must be application/json, got {media_type!r}")
        seconds = self.limits.read_seconds
        try:
            body = await asyncio.wait_for(_read_body(request, self.limits.max_body_bytes), seconds)
        except asyncio.TimeoutError:
            raise ApiError(
                408, f"body not complete within the limit read_seconds={seconds}", "read_seconds"
            ) from None
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        # counted once its body is here: a client that sends slowly (or never) holds a
        # connection for read_seconds, not a place among the requests being translated
        if self.in_flight >= self.limits.max_concurrent:
            raise ApiError(
                503,
                f"{self.in_flight} requests in flight, the limit "
                f"max_concurrent={self.limits.max_concurrent}",
                "max_concurrent",
            )
        self.in_flight += 1
        try:
            return await self._translate(request, body)
        finally:
            self.in_flight -= 1

    async def _translate(self, request: Request, body: bytes) -> Response:
        parsed = parse_request(body, self.limits)
        # split: each text's lines cut into sentences, which are what the batcher decodes
        document = DocumentOptions(
            split_sentences=True, language=self.language, markup=parsed.markup
        )
        try:
            paragraphs = [
                [
                    prepare(line, document, f"text {i} line {k}")
                    for k, line in enumerate(text.split("\n"), 1)
                ]
                if parsed.split
                else []
                for i, text in enumerate(parsed.sentences, 1)
            ]
        except NmtError as e:  # markup that cannot be read
            raise ApiError(422, str(e)) from None
        options = parsed.options
        if parsed.markup != "none":  # tags are put back by the attention
            options = replace(options, return_attention=True)
        units = (
            [u for lines in paragraphs for p in lines for u in p.units]
            if parsed.split
            else parsed.sentences
        )
        lengths = self.lengths(units)
        work = asyncio.ensure_future(self.batcher.translate(units, lengths, options))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():  # the client left: its sentences not yet decoded are dropped
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            return Response(status_code=400)  # nobody reads it
        try:
            results = work.result()
        except NmtError as e:
            raise ApiError(422, str(e)) from None
        attention = parsed.options.return_attention
        if not parsed.split:
            answers = [translation_json(t, attention) for t in results]
        else:
            answers, at = [], 0
            for lines in paragraphs:
                rebuilt = []
                for p in lines:
                    rebuilt.append(assemble(p, results[at : at + len(p.units)]))
                    at += len(p.units)
                answers.append(paragraph_json(rebuilt, attention))
        return JSONResponse({"translations": answers})

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "in_flight": self.in_flight, "batches": asdict(self.batcher.stats)}
        )

    async def info_route(self, request: Request) -> Response:
        return JSONResponse({**self.info, "limits": asdict(self.limits)})


def _openapi(limits: Limits) -> dict[str, Any]:
    schema = json.loads((STATIC / "openapi.json").read_text(encoding="utf-8"))
    fields = schema["components"]["schemas"]["TranslateRequest"]["properties"]
    fields["beam_size"]["maximum"] = limits.max_beam
    fields["nbest"]["maximum"] = limits.max_nbest
    fields["text"]["oneOf"][0]["maxLength"] = limits.max_chars
    fields["text"]["oneOf"][1]["maxItems"] = limits.max_sentences
    return schema


class _OneWarningARequest(logging.Filter):
    """Drops the Translator's warning for each truncated sentence while the app runs: the app
    warns once a request instead (one request logged 64 lines, each naming the sentence's
    place in a batch merged from several requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "truncated" not in str(record.msg)


def make_app(
    translator: TranslatorBase,
    info: dict[str, Any],
    limits: Limits | None = None,
    batching: BatchOptions | None = None,
    hosts: Sequence[str] | None = None,
) -> Starlette:
    """The ASGI app serving `translator`; `info` is what GET /info answers (with the limits);
    `hosts`: the Host headers it answers (allowed_hosts()), None for any."""
    service = Service(translator, info, limits or Limits(), batching or BatchOptions())
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    docs = (STATIC / "docs.html").read_text(encoding="utf-8")
    openapi = _openapi(service.limits)
    translator_log = logging.getLogger(TranslatorBase.__module__)
    one_warning = _OneWarningARequest()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.ensure_future(service.batcher.run())
        translator_log.addFilter(one_warning)
        try:
            yield
        finally:  # uvicorn gets here once the requests in flight are answered
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            service.batcher.close()
            translator_log.removeFilter(one_warning)

    async def api_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, ApiError)
        return _error(e.status, e.message, e.limit)

    async def http_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, HTTPException)
        return _error(e.status_code, e.detail)

    routes = [
        Route("/", lambda r: HTMLResponse(page)),
        Route("/docs", lambda r: HTMLResponse(docs)),
        Route("/openapi.json", lambda r: JSONResponse(openapi)),
        Route("/health", service.health),
        Route("/info", service.info_route),
        Route("/translate", service.translate, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error, HTTPException: http_error},
        middleware=[] if hosts is None else [Middleware(HostCheck, allowed=hosts)],
    )
    app.state.service = service
    return app


# what GET /info tells of the checkpoint: no file paths, nor the training config that holds them
_INFO = ("kind", "parameters", "dtype", "src_vocab", "tgt_vocab", "joint_tokenizer", "model")
_TRAINED = ("step", "epoch", "best", "metric", "versions")


def server_info(checkpoint: str | Path, translator: TranslatorBase) -> dict[str, Any]:
    """GET /info: the languages, the longest source the model reads, the server's version and
    the checkpoint's (or export's) summary (architecture, vocabularies, training progress,
    versions)."""
    if is_export(checkpoint):
        info = export_info(checkpoint)
    else:
        from nmt.runs.export import checkpoint_info

        info = checkpoint_info(checkpoint)
    data = translator.config.data
    return {
        "languages": {"source": data.src_lang, "target": data.tgt_lang},
        "max_source_tokens": translator.max_src_len,
        "version": __version__,
        **{key: info[key] for key in _INFO + _TRAINED},
    }


def serve(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    quantize: str | None = None,
    threads: int = 0,
    workers: int = 1,
    limits: Limits | None = None,
    batching: BatchOptions | None = None,
    grace_seconds: int = 10,
    hosts: Sequence[str] = (),
) -> None:
    """Load `checkpoint` and serve it on host:port until SIGTERM or SIGINT, which finish the
    requests in flight (those not answered within `grace_seconds` get a 503) and return; a
    second signal ends the process at once. `hosts`: Host headers answered besides the
    local names and `host` (see allowed_hosts)."""
    if not 0 <= port <= 65535:  # checked before the model loads
        raise NmtError(f"port must be between 0 and 65535, got {port}")
    require_whole("grace_seconds", grace_seconds, low=0)
    limits = limits or Limits()
    answered = allowed_hosts(host, port, hosts)
    check_open_files(limits.max_connections)
    translator = open_translator(
        [checkpoint], device=device, quantize=quantize, threads=threads, workers=workers
    )
    # the first call starts the worker processes (before uvicorn starts its threads) and
    # pays the one-off costs of a first decode
    translator.translate(["."], SearchOptions(beam_size=1))
    app = make_app(translator, server_info(checkpoint, translator), limits, batching, answered)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=connection_class(limits.max_connections, limits.read_seconds),
        # asyncio accepts up to `backlog` connections at a time before any is closed for
        # being over the cap: this bounds the file descriptors open at once
        backlog=limits.max_connections,
        timeout_graceful_shutdown=grace_seconds,
        log_level="info",
        access_log=False,
    )
    server = Server(config)
    # uvicorn raises the signal again after its graceful shutdown; with these handlers in place
    # that is a no-op, and the command exits 0 instead of dying of the signal
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit:  # uvicorn's way out when it cannot listen, after logging why
        raise NmtError(f"cannot serve on {host}:{port} (see the error above)") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        translator.close()
