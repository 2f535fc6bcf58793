"""Work a Lambda function does once its response is on its way: the caller does not wait for it, and it still finishes.

Lambda freezes an execution environment when its invocation ends, and an invocation ends when the runtime and every
extension have asked for the next event. An internal extension (a thread of the function's own process, registered
with the Extensions API during init) that asks only once the deferred work is done holds the invocation open for it,
while the runtime has already sent the response (the pattern of AWS's "Running code after returning a response from
an AWS Lambda function"). Outside Lambda, or if the registration is refused, deferred work runs at once, in line.

    after_response = AfterResponse.register(settings.runtime_api)     # at init, as the module loads
    after_response.defer(task, "exposure log", feed_id=feed_id)       # during the invocation
    with after_response.invocation():                                 # around the handler's work
        return app.resolve(event, context)
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["EXTENSION_NAME", "AfterResponse"]

EXTENSION_NAME = "tailor-after-response"
# The runtime posts the response on the main thread once the handler has returned; a deferred task starts this much
# later, so that its own Python work (a client preparing its request) does not hold the interpreter lock meanwhile.
SETTLE_SECONDS = 0.002
# Deferred work stops this long before the invocation's deadline: what is left is logged, not cut off by the timeout.
DEADLINE_MARGIN_SECONDS = 0.5
_API = "2020-01-01/extension"

logger = logging.getLogger(__name__)


class AfterResponse:
    """Tasks deferred until the response has gone (`defer`), run by the internal extension at each invocation's end
    (`invocation`); without one, `defer` runs the task at once."""

    def __init__(self, runtime_api: str | None = None, extension_id: str | None = None, *,
                 settle_seconds: float = SETTLE_SECONDS, margin_seconds: float = DEADLINE_MARGIN_SECONDS):
        self.runtime_api = runtime_api
        self.extension_id = extension_id
        self.settle_seconds = settle_seconds
        self.margin_seconds = margin_seconds
        self._tasks: list[tuple[Callable[[], Any], str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._handled = threading.Event()

    @classmethod
    def register(cls, runtime_api: str | None, *, name: str = EXTENSION_NAME, **options: Any) -> AfterResponse:
        """Register the internal extension with the Extensions API at `runtime_api` (AWS_LAMBDA_RUNTIME_API; None:
        not in Lambda) and start its thread; called during init, as Lambda takes registrations only then."""
        if not runtime_api:
            return cls(**options)
        try:
            extension_id = _register(runtime_api, name)
        except Exception:
            logger.exception("the after-response extension was not registered: deferred work runs before the response")
            return cls(**options)
        after = cls(runtime_api, extension_id, **options)
        threading.Thread(target=after._serve, name=name, daemon=True).start()
        return after

    @property
    def deferring(self) -> bool:
        """Whether deferred work waits for the response (an extension is registered) or runs at once."""
        return self.extension_id is not None

    def defer(self, task: Callable[[], Any], what: str, **context: Any) -> None:
        """Run `task` after the response; a failure is logged as `what` failing, with `context`, and goes no further."""
        if not self.deferring:
            _run(task, what, context)
            return
        with self._lock:
            self._tasks.append((task, what, context))

    @contextmanager
    def invocation(self) -> Iterator[None]:
        """Around a handler's work: when it ends, however it ends, the extension may run what it deferred."""
        try:
            yield
        finally:
            if self.deferring:
                self._handled.set()

    # -- the extension's thread ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Ask for each invocation, and once its handler is done, run what it deferred, then ask for the next one:
        that request is what tells Lambda the invocation may end."""
        while True:
            try:
                self._serve_invocation()
            except Exception:
                # The thread must go on asking: Lambda ends no invocation until it does.
                logger.exception("the after-response extension failed to serve an event")
                time.sleep(0.1)

    def _serve_invocation(self) -> None:
        event = _request(self.runtime_api, "GET", "event/next", self.extension_id)
        if event.get("eventType") != "INVOKE":
            return
        deadline = float(event.get("deadlineMs") or 0) / 1000
        self._handled.wait(timeout=max(0.0, deadline - time.time() - self.margin_seconds) if deadline else None)
        self._handled.clear()
        with self._lock:
            tasks, self._tasks = self._tasks, []
        if tasks:  # an invocation that deferred nothing ends at once
            time.sleep(self.settle_seconds)
            self._run_all(tasks, deadline)

    def _run_all(self, tasks: list[tuple[Callable[[], Any], str, dict[str, Any]]], deadline: float) -> None:
        for n, (task, what, context) in enumerate(tasks):
            if deadline and time.time() > deadline - self.margin_seconds:
                logger.error("deferred work not done: the invocation's deadline is near",
                             extra={"tasks_left": len(tasks) - n, "first": what, **context})
                return
            _run(task, what, context)


# -- helpers --------------------------------------------------------------------------------------------------------

def _run(task: Callable[[], Any], what: str, context: dict[str, Any]) -> None:
    try:
        task()
    except Exception:
        logger.exception(f"{what} failed", extra=context)


def _register(runtime_api: str, name: str) -> str:
    request = urllib.request.Request(f"http://{runtime_api}/{_API}/register", method="POST",
                                     data=json.dumps({"events": ["INVOKE"]}).encode(),
                                     headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        extension_id = response.headers.get("Lambda-Extension-Identifier")
    if not extension_id:
        raise RuntimeError("the Extensions API registered the extension without an identifier")
    return extension_id


def _request(runtime_api: str | None, method: str, path: str, extension_id: str | None) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{runtime_api}/{_API}/{path}", method=method,
                                     headers={"Lambda-Extension-Identifier": extension_id or ""})
    # No timeout: the next event comes when the next invocation does, however long that takes.
    with urllib.request.urlopen(request) as response:  # noqa: S310 (the runtime's own API, on the sandbox)
        body = response.read()
    return json.loads(body) if body else {}
