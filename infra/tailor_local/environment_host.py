"""An execution environment's process: imports one function's handler, then runs its invocations one at a time.

Started by tailor_local.environments with the function's environment variables already in its own; speaks one JSON
message a line on stdin and stdout, so it imports nothing of Tailor's and nothing beyond the standard library before
the handler's module. Output the handler writes goes back with each answer, for the parent to put in the
function's log.

    parent -> {"handler": "app.handler", "paths": [...], "nice": 0}          once
    host   -> {"init_ms": 812.3, "output": "..."}  or  {"error": {...}, "output": "..."}
    parent -> {"event": ..., "request_id": "...", "context": {...}}           per invocation
    host   -> {"payload": ..., "duration_ms": 4.2, "output": "..."}  or  {"error": {...}, ...}
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import time
import traceback
from typing import Any


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # output below Python's streams (a C library's) goes where stderr goes, never into the protocol
    capture = _Capture()
    sys.stdout = sys.stderr = capture  # type: ignore[assignment]  # before the import: loggers keep the stream
    setup = json.loads(sys.stdin.readline())
    if setup.get("nice"):
        os.nice(int(setup["nice"]))
    sys.path[:0] = setup["paths"]
    started = time.monotonic()
    try:
        module_name, _, attribute = setup["handler"].rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
    except BaseException as exc:  # Runtime.ImportModuleError in Lambda: the parent reports it and discards us
        _send(protocol, {"error": error_of(exc), "output": capture.take()})
        return 1
    _send(protocol, {"init_ms": (time.monotonic() - started) * 1000, "output": capture.take()})
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(**request["context"])
        began = time.monotonic()
        answer: dict[str, Any]
        try:
            response = handler(request["event"], context)
        except Exception as exc:  # the handler's failure is the invocation's result, as in Lambda
            answer = {"error": error_of(exc)}
        else:
            try:
                answer = {"payload": json.loads(json.dumps(response))}
            except (TypeError, ValueError) as exc:
                answer = {"error": error_of(exc, marshal=True)}
        answer["duration_ms"] = (time.monotonic() - began) * 1000
        answer["output"] = capture.take()
        _send(protocol, answer)
    return 0


class LambdaContext:
    """The context object Lambda passes to a Python handler; the deadline is time.monotonic()'s, shared by processes."""

    def __init__(self, *, deadline: float, identity: Any = None, client_context: Any = None, **fields: Any):
        self.__dict__.update(fields)
        self.deadline = deadline
        self.identity = identity
        self.client_context = client_context

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def error_of(exc: BaseException, *, marshal: bool = False) -> dict[str, Any]:
    """The error as Lambda reports it."""
    return {
        "errorType": "Runtime.MarshalError" if marshal else type(exc).__name__,
        "errorMessage": f"Unable to marshal response: {exc}" if marshal else str(exc),
        "stackTrace": traceback.format_exception(exc)[1:],
    }


class _Capture(io.TextIOBase):
    """sys.stdout and sys.stderr: what the handler and its threads write, kept until the answer carries it."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def take(self) -> str:
        with self._lock:
            text, self._parts = "".join(self._parts), []
        return text

    def isatty(self) -> bool:
        return False


def _send(protocol: io.TextIOBase, message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()


if __name__ == "__main__":
    sys.exit(main())
