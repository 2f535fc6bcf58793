"""Work a Lambda function does once its response is on its way: the caller does not wait for it, and it still finishes.

Lambda freezes an execution environment when its invocation ends, and an invocation ends when the runtime and every
extension have asked for the next event. An internal extension (a thread of the function's own process, registered
with the Extensions API during init) that asks only once the deferred work is done holds the invocation open for it,
while the runtime has already sent the response (the pattern of AWS's "Running code after returning a response from
an AWS Lambda function"). Outside Lambda, or if the registration is refused, deferred work runs at once, in line.

    after_response = AfterResponse.register(settings.runtime_api)     # at init, as the module loads
    after_response.defer(task, "exposure log", feed_id=feed_id)       # during an invocation

    @after_response.handler                                           # outermost, around the decorators too
    def lambda_handler(event, context): ...

Work is kept by invocation (the context's request id, which the extension's INVOKE event names): the extension runs
an invocation's work once that invocation's handler is done, and the work of earlier ones whose handler ended only
after their extension had stopped waiting (near their deadline) with it, rather than let it slip into a later
invocation unseen.
"""

from __future__ import annotations

import functools
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
FAILURES_BEFORE_STOPPING = 10  # requests in a row the Extensions API did not answer
_API = "2020-01-01/extension"
_ANY = ""  # the key of an invocation whose handler had no request id

_Task = tuple[Callable[[], Any], str, dict[str, Any]]  # the work, what it is (for the log), its context

logger = logging.getLogger(__name__)


class AfterResponse:
    """Tasks deferred until the response has gone (`defer`), run by the internal extension once their invocation's
    handler is done (`handler`, or `invocation`); without an extension, or outside an invocation, `defer` runs the
    task at once."""

    def __init__(self, runtime_api: str | None = None, extension_id: str | None = None, *,
                 settle_seconds: float = SETTLE_SECONDS, margin_seconds: float = DEADLINE_MARGIN_SECONDS):
        self.runtime_api = runtime_api
        self.extension_id = extension_id
        self.settle_seconds = settle_seconds
        self.margin_seconds = margin_seconds
        self._tasks: dict[str, list[_Task]] = {}
        self._current: str | None = None  # the invocation whose handler is running
        self._done: set[str] = set()  # invocations whose handler has ended, their work not yet run
        self._passed: str | None = None  # the invocation the extension last stopped waiting for
        self._changed = threading.Condition()
        self.thread: threading.Thread | None = None  # the extension's, once registered

    @classmethod
    def register(cls, runtime_api: str | None, *, name: str = EXTENSION_NAME, **options: Any) -> AfterResponse:
        """Register the internal extension with the Extensions API at `runtime_api` (AWS_LAMBDA_RUNTIME_API; None:
        not in Lambda) and start its thread; called during init, as Lambda takes registrations only then.
        `margin_seconds`: the longest a task may take, kept before the invocation's deadline."""
        if not runtime_api:
            return cls(**options)
        try:
            extension_id = _register(runtime_api, name)
        except Exception:
            logger.exception("the after-response extension was not registered: deferred work runs before the response")
            return cls(**options)
        after = cls(runtime_api, extension_id, **options)
        after.thread = threading.Thread(target=after._serve, name=name, daemon=True)
        after.thread.start()
        return after

    @property
    def deferring(self) -> bool:
        """Whether deferred work waits for the response (an extension is registered) or runs at once."""
        return self.extension_id is not None

    def defer(self, task: Callable[[], Any], what: str, **context: Any) -> None:
        """Run `task` after the response; a failure is logged as `what` failing, with `context`, and goes no further."""
        with self._changed:
            current = self._current if self.deferring else None
            if current is not None:
                self._tasks.setdefault(current, []).append((task, what, context))
                return
        _run(task, what, context)

    def handler(self, function: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """A Lambda handler whose invocations end with `invocation`, keyed by the context's request id."""

        @functools.wraps(function)
        def handled(event: Any, context: Any) -> Any:
            with self.invocation(getattr(context, "aws_request_id", None)):
                return function(event, context)

        return handled

    @contextmanager
    def invocation(self, request_id: str | None) -> Iterator[None]:
        """Around a handler's work: when it ends, however it ends, the extension may run what it deferred."""
        key = request_id or _ANY
        with self._changed:
            self._current = key
        try:
            yield
        finally:
            with self._changed:
                self._current = None
                self._done.add(key)
                self._changed.notify_all()
                late = key == self._passed and bool(self._tasks.get(key))
            if late:
                logger.warning("the handler ended after its extension stopped waiting: its deferred work waits for "
                               "the next invocation", extra={"request_id": request_id})

    # -- the extension's thread ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Ask for each invocation, and once its handler is done, run what it deferred, then ask for the next one:
        that request is what tells Lambda the invocation may end."""
        failures = 0
        while failures < FAILURES_BEFORE_STOPPING:
            try:
                if not self._serve_invocation():
                    return  # the environment shuts down
                failures = 0
            except Exception:
                # The thread goes on asking, as Lambda ends no invocation until it does; an API that answers no more
                # is an environment going away.
                failures += 1
                logger.exception("the after-response extension failed to serve an event")
                time.sleep(0.1)
        logger.error("the after-response extension stopped: the Extensions API did not answer; deferred work runs "
                     "before the response from now on", extra={"failures": failures})
        self._stop()

    def _serve_invocation(self) -> bool:
        """Serve one event; False once the environment shuts down."""
        event = _next_event(self.runtime_api, self.extension_id)
        if event.get("eventType") == "SHUTDOWN":
            self._stop()
            return False
        if event.get("eventType") != "INVOKE":
            return True
        deadline = float(event.get("deadlineMs") or 0) / 1000
        request_id = event.get("requestId") or _ANY
        with self._changed:
            done = self._changed.wait_for(
                lambda: request_id in self._done or _ANY in self._done,
                timeout=max(0.0, deadline - time.time() - self.margin_seconds) if deadline else None)
            if not done:
                self._passed = request_id  # its handler, ending later, says so
            # This invocation's work if its handler is done (else it waits for the next one), after any of an
            # earlier one whose handler ended late.
            finished, self._done = self._done, set()
            late = [task for key in finished - {request_id, _ANY} for task in self._tasks.pop(key, [])]
            tasks = late + [task for key in finished & {request_id, _ANY} for task in self._tasks.pop(key, [])]
        if late:
            logger.warning("deferred work of an invocation whose handler ended after its deadline's margin ran in a "
                           "later one", extra={"tasks": len(late)})
        if tasks:  # an invocation that deferred nothing ends at once
            time.sleep(self.settle_seconds)
            self._run_all(tasks, deadline)
        return True

    def _stop(self) -> None:
        """No extension from now on: deferred work runs at once, what is still waiting first."""
        with self._changed:
            self.extension_id = None
            waiting = [task for tasks in self._tasks.values() for task in tasks]
            self._tasks.clear()
        for task, what, context in waiting:
            _run(task, what, context)

    def _run_all(self, tasks: list[_Task], deadline: float) -> None:
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


def _next_event(runtime_api: str | None, extension_id: str | None) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{runtime_api}/{_API}/event/next",
                                     headers={"Lambda-Extension-Identifier": extension_id or ""})
    # No timeout: the next event comes when the next invocation does, however long that takes.
    with urllib.request.urlopen(request) as response:  # noqa: S310 (the runtime's own API, on the sandbox)
        body = response.read()
    return json.loads(body) if body else {}
