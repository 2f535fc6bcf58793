"""Lambda's Extensions API, as an internal extension sees it, for one execution environment of the local runtime.

An extension registers during init (POST /2020-01-01/extension/register, events INVOKE) and then asks for events
(GET /2020-01-01/extension/event/next): the first request ends its init, and each later one tells Lambda it is done
with the invocation before, which ends that invocation. `invoke()` starts an invocation (its INVOKE answers the
pending request); `ended(n)` waits until the extension has asked for the event after the n-th. Registration after
the first invocation has started is refused (403), as Lambda refuses it once init is over. `close()` answers a
pending request with a SHUTDOWN event, as the environment goes away.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ExtensionsApi"]

_BASE = "/2020-01-01/extension"
_IDS = itertools.count(1)


class ExtensionsApi:
    """Serves one environment's Extensions API on a free local port (`address`, as AWS_LAMBDA_RUNTIME_API gives it).
    `refuse`: registration answers 403, as where a runtime takes no extensions."""

    def __init__(self, *, refuse: bool = False):
        self.refuse = refuse
        self.registrations: list[dict[str, Any]] = []
        self.asked: list[float] = []  # when the extension asked for its next event (the first: the end of its init)
        self.invocations = 0
        self._init_over = False
        self._identifier = f"extension-{next(_IDS)}"
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._asked = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="extensions-api",
                         daemon=True).start()

    @property
    def registered(self) -> bool:
        return bool(self.registrations)

    def environ(self, shared: MutableMapping[str, str]) -> MutableMapping[str, str]:
        """The environment's variables: the function's `shared` ones (where writes land, as every environment of
        the function shares them here) with AWS_LAMBDA_RUNTIME_API, this API's address, over them."""
        return _Overlay(shared, {"AWS_LAMBDA_RUNTIME_API": self.address})

    def begin(self, *, seconds: float, request_id: str) -> bool:
        """An invocation of the environment starts: registrations are refused from now on, and a registered extension
        gets its INVOKE event. Whether one did (the invocation then ends once it asks again: `ended`)."""
        self._init_over = True
        if not self.registered:
            return False
        self.invoke(seconds=seconds, request_id=request_id)
        return True

    def invoke(self, *, seconds: float = 30.0, request_id: str | None = None) -> str:
        """Start an invocation that times out in `seconds`: the extension's pending request gets its event, which
        names the invocation's request id (returned; made up where none is given)."""
        self._init_over = True
        self.invocations += 1
        request_id = request_id or f"r-{self.invocations}"
        deadline_ms = int((time.time() + seconds) * 1000)
        self.send({"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id})
        return request_id

    def send(self, event: dict[str, Any]) -> None:
        """Answer the extension's pending request (or its next one) with `event`."""
        self._events.put(event)

    def ended(self, invocations: int | None = None, *, timeout: float = 10.0) -> bool:
        """Wait until the extension has asked for the event after invocation number `invocations` (from 1; default:
        the latest started), as Lambda waits before it ends that invocation; True once it has."""
        wanted = self.invocations if invocations is None else invocations
        with self._asked:
            return self._asked.wait_for(lambda: len(self.asked) > wanted, timeout=timeout)

    def close(self) -> None:
        """Stop serving; an extension waiting for its next event gets SHUTDOWN, so its request and thread end."""
        self._events.put({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ExtensionsApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _handler_for(api: ExtensionsApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != f"{_BASE}/register":
                self._answer(404, {"errorType": "NotFound"})
            elif api.refuse or api._init_over or api.registrations:
                self._answer(403, {"errorType": "Extension.Forbidden", "errorMessage": "registration refused"})
            else:
                api.registrations.append({"name": self.headers.get("Lambda-Extension-Name"), **body})
                self._answer(200, {"functionName": "local"}, {"Lambda-Extension-Identifier": api._identifier})

        def do_GET(self) -> None:  # noqa: N802
            if self.path != f"{_BASE}/event/next":
                self._answer(404, {"errorType": "NotFound"})
                return
            if self.headers.get("Lambda-Extension-Identifier") != api._identifier:
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

    return Handler


class _Overlay(MutableMapping):
    """Variables read from `own` over `shared`; a write or deletion of one not in `own` goes to `shared`."""

    def __init__(self, shared: MutableMapping[str, str], own: dict[str, str]):
        self.shared, self.own = shared, own

    def __getitem__(self, key: str) -> str:
        return self.own[key] if key in self.own else self.shared[key]

    def __setitem__(self, key: str, value: str) -> None:
        (self.own if key in self.own else self.shared)[key] = value

    def __delitem__(self, key: str) -> None:
        del (self.own if key in self.own else self.shared)[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.own
        yield from (key for key in list(self.shared) if key not in self.own)

    def __len__(self) -> int:
        return sum(1 for _ in self)
