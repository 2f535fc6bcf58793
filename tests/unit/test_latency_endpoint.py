"""The cold-start benchmark's endpoint in front of the local AWS: what it passes on, what it answers from memory, and
how much of a caller's wait it puts down to the local AWS rather than to the modelled latency."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tailor_lab.bench.latency import Call, LatencyEndpoint, excess_ms

SIGNED = "AWS4-HMAC-SHA256 Credential=local/20261205/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x"


@pytest.fixture
def upstream():
    """A server answering each request with how many it has had, by path."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer()

        def do_GET(self):
            self._answer()

        def _answer(self):
            seen.append((self.command, self.path))
            body = str(len(seen)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def call(endpoint: LatencyEndpoint, operation: str, body: bytes, service: str = "dynamodb") -> bytes:
    connection = http.client.HTTPConnection(endpoint.url.removeprefix("http://"))
    connection.request("POST", "/", body=body, headers={"X-Amz-Target": f"DynamoDB_20120810.{operation}",
                                                        "Authorization": SIGNED.format(service=service)})
    return connection.getresponse().read()


def test_a_read_asked_again_is_answered_from_memory_until_a_write_passes(upstream):
    url, seen = upstream
    with LatencyEndpoint(url, latency_ms={"dynamodb": 1.0}, connect_ms=0.0) as endpoint:
        assert call(endpoint, "BatchGetItem", b'{"a": 1}') == b"1"
        assert call(endpoint, "BatchGetItem", b'{"a": 1}') == b"1"
        assert call(endpoint, "BatchGetItem", b'{"a": 2}') == b"2"
        assert call(endpoint, "UpdateItem", b'{"a": 1}') == b"3"
        assert call(endpoint, "BatchGetItem", b'{"a": 1}') == b"4"
    assert len(seen) == 4
    assert [(c.service, c.operation, c.replayed) for c in endpoint.calls] == [
        ("dynamodb", "BatchGetItem", False), ("dynamodb", "BatchGetItem", True), ("dynamodb", "BatchGetItem", False),
        ("dynamodb", "UpdateItem", False), ("dynamodb", "BatchGetItem", False)]
    assert all(c.budget_s == 0.001 for c in endpoint.calls)


def test_without_replay_every_call_is_passed_on_and_budgets_are_by_service_with_a_handshake_first(upstream):
    url, seen = upstream
    with LatencyEndpoint(url, latency_ms={"s3": 2.0, "*": 1.0}, connect_ms=3.0, replay=False) as endpoint:
        call(endpoint, "GetItem", b"{}", service="s3")
        call(endpoint, "GetItem", b"{}", service="kinesis")
    assert len(seen) == 2 and [c.budget_s for c in endpoint.calls] == [0.005, 0.004]


def test_the_local_aws_s_excess_is_counted_once_where_calls_overlap_and_only_within_the_window():
    def done(started: float, upstream: float) -> Call:
        return Call("dynamodb", "BatchGetItem", started, budget_s=0.005, upstream_s=upstream, status=200)

    calls = [done(0.0, 0.050), done(0.010, 0.030), done(0.100, 0.004), done(0.200, 0.105)]
    # [0.005, 0.050] and [0.015, 0.040] overlap: 45 ms; the third was quicker than its budget; the fourth is cut at 0.25.
    assert excess_ms(calls, 0.0, 0.250) == pytest.approx(45.0 + 45.0)
    assert excess_ms(calls, 0.020, 0.100) == pytest.approx(30.0)
