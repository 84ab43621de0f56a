"""What keeps web pages, slow clients and hostile bodies from driving or starving `nmt serve`.

- `HostCheck`: a request whose Host header names another server is refused, so that a page
  of another site cannot read answers through a name resolving to 127.0.0.1 (DNS rebinding).
- `connection_class`: uvicorn's h11 connection with a deadline for request headers and a cap
  on open connections.
- `Server`: uvicorn's server, ended at once by a second SIGTERM or SIGINT.
- `json_depth`: how deep a body nests, read before it is parsed.
- `check_open_files`: the connection cap leaves the process files of its own.

Each says which of uvicorn's or Starlette's own mechanisms falls short, and why.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import signal
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit

import uvicorn
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from nmt import NmtError, quote

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # names a local client reaches the server by
# a JSON string; one left open runs to the end, so that each character is read once
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_OWN_FILES = 100  # file descriptors the server keeps for itself: checkpoint, worker pipes, ...


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON `text`, read without parsing it (strings left
    out, brackets counted: linear time, no recursion; json.loads recurses once a level)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    """(name, port or None) of a Host header or an allowed host: `name`, `name:port`,
    `[IPv6]:port`; None when it is neither."""
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:  # a port that is no number or out of range
        return None


def allowed_hosts(host: str, port: int, allowed: Sequence[str] = ()) -> list[str]:
    """The Host headers a server bound to host:port answers: the local names and `host`
    (unless it is a wildcard address) with `port` (any port when 0), then `allowed`: `name`
    (any port), `name:port`, or `*` (any Host header). NmtError for a malformed entry."""
    for entry in allowed:
        if entry != "*" and _host_and_port(entry) is None:
            raise NmtError(
                f"{quote(entry)} is not a host name, host:port or *", option="allowed_hosts"
            )
    names = [*LOCAL_HOSTS, *([] if host in ("", "0.0.0.0", "::", *LOCAL_HOSTS) else [host])]
    bracketed = [f"[{name}]" if ":" in name else name for name in names]
    return [f"{name}:{port}" if port else name for name in bracketed] + list(allowed)


class HostCheck:
    """ASGI middleware: 400 for a request whose Host header names another server.

    A page of any site can make a browser send requests to 127.0.0.1, and a name the site
    controls can be made to resolve there (DNS rebinding) so that the page reads the answers;
    such requests name the site in their Host header. (Starlette's TrustedHostMiddleware
    answers in plain text, where every error here is JSON, and ignores the port.)"""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = [found for a in allowed if (found := _host_and_port(a.lower()))]

    def answers(self, host: str) -> bool:
        found = _host_and_port(host.lower())
        if found is None:
            return False
        name, port = found[0], found[1] or 80  # no port: HTTP's
        return any(name == n and p in (None, port) for n, p in self.allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any:
            host = Headers(scope=scope).get("host", "")
            if not self.answers(host):
                body = {
                    "error": f"Host {quote(host)} is not a name of this server (--allowed-hosts)",
                    "limit": "allowed_hosts",
                }
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def connection_class(max_connections: int, read_seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 connection with two guards its options lack.

    A deadline for each request's headers (`read_seconds`): uvicorn times out idle keep-alive
    connections only, so a client that sent a header line now and then held its connection
    for ever. A cap on open connections (`max_connections`; more are closed as they come):
    uvicorn's limit_concurrency answers requests with 503, but a connection that never
    completes its headers makes no request (300 such connections stayed open, and enough of
    them use up the file descriptors of the process)."""
    refusing = False  # said so in the log; quiet until a connection is accepted again

    class Connection(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            nonlocal refusing
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                if not refusing:
                    log.warning(
                        "%d connections open, the limit max_connections=%d: new ones are "
                        "closed until some end",
                        len(self.connections) - 1,
                        max_connections,
                    )
                refusing = True
                transport.close()
                return
            refusing = False
            self._await_request()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_request()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if self.deadline is not None:
                self.deadline.cancel()

        def _await_request(self) -> None:
            """The next request's headers must be here within read_seconds."""
            if self.deadline is not None:
                self.deadline.cancel()
            self.deadline = self.loop.call_later(read_seconds, self._headers_late)

        def _headers_late(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # for headers
            if waiting and not self.transport.is_closing():
                self.transport.close()

    return Connection


class Server(uvicorn.Server):
    """uvicorn's server, but a second SIGTERM or SIGINT ends the process at once: uvicorn
    forced its way out on a second SIGINT only, cancelling requests mid-way (a traceback each),
    and a second SIGTERM was ignored."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:  # die of the signal: no waiting, nothing printed
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
        super().handle_exit(sig, frame)


def check_open_files(max_connections: int) -> None:
    """NmtError if `max_connections` would leave the process too few file descriptors: the
    connections open, as many just accepted (the listen backlog) and the server's own."""
    try:
        import resource
    except ImportError:  # not Unix
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and 2 * max_connections + _OWN_FILES > soft:
        raise NmtError(
            f"{max_connections} (twice: open and just accepted) and the server's own "
            f"{_OWN_FILES} files are over the {soft} this process may open (ulimit -n): lower "
            "it or raise the limit",
            option="max_connections",
        )
