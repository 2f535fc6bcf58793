"""An endpoint in front of the local AWS that answers each call no sooner than AWS in the region would, and not much
later: moto's own speed (a BatchGetItem of 100 rows takes it tens of milliseconds, an UpdateItem over 10 ms of
interpreter time, one call at a time) is not DynamoDB's, and a cold start timed against it measures moto.

Each call is answered once it has taken the modelled latency: the service's per-call latency, plus a handshake on a
connection's first call. A read asked before, byte for byte, with no write through the endpoint since, is answered
with the answer the local AWS gave it then (with `replay`); any other call is passed on to the local AWS. Where the
local AWS took longer than the model, the call logs by how much (`Call.excess`), and `excess_ms` gives the time,
within a window, that callers spent waiting on it beyond the model, overlapping calls counted once: what to take out
of a timing to have it against the modelled AWS (exact for a caller that waits on one call at a time; where calls
overlap a caller's own work, an estimate).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CONNECT_MS", "LATENCY_MS", "Call", "LatencyEndpoint", "excess_ms"]

# Per-call latency in the region, by the service's signing name, in ms: DynamoDB's single-digit milliseconds for
# a small read or write, S3's first byte of a small object, AppConfig's data plane; other services as the last.
LATENCY_MS: Mapping[str, float] = {"dynamodb": 5.0, "s3": 20.0, "appconfig": 10.0, "*": 10.0}
# A new connection's TCP and TLS handshakes to a regional endpoint (each boto3 client opens its own).
CONNECT_MS = 10.0
# Headers that describe one hop, not the message (RFC 9110 7.6.1), and the one the endpoint answers itself.
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                  "expect", "host", "content-length"})
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
# Calls of JSON protocols that change nothing, by their operation's first word; for the others, GET and HEAD.
_READING = ("Get", "BatchGet", "Query", "Scan", "List", "Describe")


@dataclass(frozen=True)
class Call:
    """One call through the endpoint, on time.monotonic()'s clock (the same for every process of the machine)."""

    service: str  # the signing name: dynamodb, s3, appconfig, ...
    operation: str  # BatchGetItem for a JSON protocol; the method and the path's first part for a REST one
    started: float
    budget_s: float  # the modelled latency of this call
    upstream_s: float  # how long the local AWS took to answer (0 for a replayed read)
    status: int
    replayed: bool = False

    @property
    def excess(self) -> tuple[float, float] | None:
        """When the caller waited on the local AWS beyond the model: (from, to), or None."""
        if self.upstream_s <= self.budget_s:
            return None
        return self.started + self.budget_s, self.started + self.upstream_s


class LatencyEndpoint:
    """An HTTP endpoint on 127.0.0.1 in front of `upstream` (an http:// URL), each call answered after the modelled
    latency at the soonest. `latency_ms` maps signing names to ms ("*" for the rest); `replay` answers a read
    asked before from memory, until the next write."""

    def __init__(self, upstream: str, *, latency_ms: Mapping[str, float] = LATENCY_MS,
                 connect_ms: float = CONNECT_MS, replay: bool = True):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.latency_ms = dict(latency_ms)
        self.connect_ms = connect_ms
        self.replay = replay
        self.calls: list[Call] = []
        self._answers: dict[tuple[Any, ...], _Answer] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LatencyEndpoint:
        self._thread = threading.Thread(target=self._server.serve_forever, name="latency-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LatencyEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def budget_s(self, service: str, first_on_connection: bool) -> float:
        latency = self.latency_ms.get(service, self.latency_ms.get("*", 0.0))
        return (latency + (self.connect_ms if first_on_connection else 0.0)) / 1000

    def between(self, start: float, end: float) -> list[Call]:
        """The calls that started within [start, end]."""
        with self._lock:
            return [c for c in self.calls if start <= c.started <= end]

    def _answer(self, call: tuple[Any, ...], reads: bool, pass_on: Any) -> tuple[_Answer, bool]:
        """The answer to `call`, remembered or the local AWS's (from `pass_on()`), and whether it was remembered."""
        if self.replay and reads:
            with self._lock:
                known = self._answers.get(call)
            if known is not None:
                return known, True
        answer = pass_on()
        with self._lock:
            if not reads:
                self._answers.clear()  # a write may change what any read answers
            elif self.replay and 200 <= answer.status < 300:
                self._answers[call] = answer
        return answer, False

    def _log(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


def excess_ms(calls: list[Call], start: float, end: float) -> float:
    """The time within [start, end] that callers waited on the local AWS beyond the model, overlaps counted once."""
    spans = sorted((max(a, start), min(b, end)) for a, b in filter(None, (c.excess for c in calls)))
    total, reach = 0.0, start
    for a, b in spans:
        if b > max(a, reach):
            total += b - max(a, reach)
        reach = max(reach, b)
    return total * 1000


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    payload: bytes


def _handler(endpoint: LatencyEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
        calls_on_connection = 0
        upstream: http.client.HTTPConnection | None = None

        def setup(self) -> None:
            super().setup()
            # The answer goes out as headers and then body: without this, Nagle's algorithm holds the body until the
            # client acknowledges the headers, which a delayed ACK puts off by 40 ms; AWS's endpoints do not stall so.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            self._pass_on()

        do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_GET

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _pass_on(self) -> None:
            started = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            scope = _SCOPE.search(self.headers.get("Authorization", ""))
            service = scope.group(1) if scope else "*"
            target = self.headers.get("X-Amz-Target")
            operation = target.rsplit(".", 1)[-1] if target else _rest_operation(self.command, self.path)
            reads = operation.startswith(_READING) if target else self.command in ("GET", "HEAD")
            answer, replayed = endpoint._answer((service, self.command, self.path, target, body), reads,
                                                lambda: self._upstream(body))
            upstream_s = 0.0 if replayed else time.monotonic() - started
            budget = endpoint.budget_s(service, self.calls_on_connection == 0)
            self.calls_on_connection += 1
            endpoint._log(Call(service, operation, started, budget, upstream_s, answer.status, replayed))
            wait = started + budget - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.send_response(answer.status, answer.reason)
            for key, value in answer.headers:
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            # A HEAD's answer has no body, and its Content-Length is the object's.
            self.send_header("Content-Length", dict((k.lower(), v) for k, v in answer.headers).get("content-length", "0")
                             if self.command == "HEAD" else str(len(answer.payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.payload)

        def _upstream(self, body: bytes | None) -> _Answer:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(*endpoint.upstream, timeout=300)
            self.upstream.request(self.command, self.path, body=body, headers=headers)
            response = self.upstream.getresponse()
            return _Answer(response.status, response.reason, response.getheaders(), response.read())

    return Handler


def _rest_operation(method: str, path: str) -> str:
    """GET /bucket?list-type, PUT /bucket/…: the method, the path's first part and the query's first name."""
    parts = urlsplit(path)
    first, _, rest = parts.path.lstrip("/").partition("/")
    query = parts.query.partition("=")[0]
    return f"{method} /{first}{'/…' if rest else ''}{'?' + query if query else ''}"
