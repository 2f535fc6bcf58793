"""A stand-in for Lambda's Extensions API, as an internal extension sees it: registration, then one event per
invocation, each asked for once the extension is done with the one before (which is what ends an invocation)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ExtensionsApi:
    """Serves /2020-01-01/extension/register and /event/next on a free local port (`address`, as
    AWS_LAMBDA_RUNTIME_API gives it). `invoke()` starts an invocation; `ended(n)` waits until the extension has asked
    for the event after the n-th, i.e. until Lambda would end it. `refuse` makes registration answer 403."""

    def __init__(self, *, refuse: bool = False):
        self.refuse = refuse
        self.registrations: list[dict[str, Any]] = []
        self.asked: list[float] = []  # when the extension asked for its next event (the first: the end of init)
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._asked = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path != "/2020-01-01/extension/register" or api.refuse:
                    self._answer(403, {"errorType": "Extension.Forbidden"})
                    return
                api.registrations.append({"name": self.headers.get("Lambda-Extension-Name"), **body})
                self._answer(200, {"functionName": "ApiFunction"}, {"Lambda-Extension-Identifier": "extension-1"})

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/2020-01-01/extension/event/next" or \
                        self.headers.get("Lambda-Extension-Identifier") != "extension-1":
                    self._answer(403, {"errorType": "Extension.Unknown"})
                    return
                with api._asked:
                    api.asked.append(time.monotonic())
                    api._asked.notify_all()
                self._answer(200, api._events.get())

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def invoke(self, *, seconds: float = 30.0) -> None:
        """Start an invocation that times out in `seconds`: the extension's pending request gets its event."""
        deadline_ms = int((time.time() + seconds) * 1000)
        self.send({"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": f"r-{deadline_ms}"})

    def send(self, event: dict[str, Any]) -> None:
        """Answer the extension's pending request (or its next one) with `event`."""
        self._events.put(event)

    def ended(self, invocations: int, *, timeout: float = 10.0) -> bool:
        """Wait until the extension has asked for the event after invocation number `invocations` (from 1)."""
        with self._asked:
            return self._asked.wait_for(lambda: len(self.asked) > invocations, timeout=timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def extensions_api(**options: Any) -> Iterator[ExtensionsApi]:
    api = ExtensionsApi(**options)
    try:
        yield api
    finally:
        api.close()
