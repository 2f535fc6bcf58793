"""Execution environments in processes of their own, as Lambda's are: a function run there does not take turns with
the rest of the local stack (the API above all) for one interpreter lock."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from . import sandbox

__all__ = ["EnvironmentProcess", "InvocationError"]

HOST = Path(__file__).with_name("environment_host.py")
INIT_TIMEOUT_S = 60.0  # Lambda allows an init 10 s; a cold interpreter importing numpy on a busy laptop needs more
KILL_GRACE_S = 1.0  # past the function's timeout before its process is killed


class InvocationError(Exception):
    """An invocation's failure as the environment reported it, in Lambda's form."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("errorMessage", ""))
        self.error = error


class EnvironmentProcess:
    """One execution environment: a process that imported the handler, called like the handler itself."""

    def __init__(self, handler_path: str, paths: list[str], environment: dict[str, str], *,
                 log_stream: TextIO | None = None, niceness: int = 0, cwd: Path | None = None):
        self._log_stream = log_stream
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-P", str(HOST)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=_file_of(log_stream), env={**_process_environment(), **environment}, text=True, bufsize=1,
            cwd=cwd, start_new_session=True)  # Ctrl-C in the terminal reaches the stack, which stops us
        answer = self._exchange({"handler": handler_path, "paths": paths, "nice": niceness},
                                time.monotonic() + INIT_TIMEOUT_S)
        if "error" in answer:
            self.close()
            raise InvocationError(answer["error"])
        self.init_ms: float = answer["init_ms"]

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def __call__(self, event: Any, context: Any) -> Any:
        fields = {k: v for k, v in vars(context).items() if k not in ("identity", "client_context")}
        answer = self._exchange({"event": event, "request_id": context.aws_request_id, "context": fields},
                                context.deadline + KILL_GRACE_S)
        if "error" in answer:
            raise InvocationError(answer["error"])
        return answer["payload"]

    def close(self) -> None:
        """Stop the process (at once: an environment holds nothing that must be saved)."""
        if self.alive:
            self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()

    def _exchange(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        with self._lock:
            try:
                assert self._process.stdin is not None and self._process.stdout is not None
                self._process.stdin.write(json.dumps(message) + "\n")
                self._process.stdin.flush()
                ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, deadline - time.monotonic()))
                line = self._process.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError, ValueError):
                line = ""
            if not line:
                return {"error": self._gone(timed_out=time.monotonic() >= deadline)}
        answer: dict[str, Any] = json.loads(line)
        if answer.get("output"):
            self._write_output(answer["output"])
        return answer

    def _gone(self, *, timed_out: bool) -> dict[str, Any]:
        if timed_out:
            self.close()
            return {"errorType": "Sandbox.Timedout", "errorMessage": "the invocation ran past its timeout"}
        self.close()
        return {"errorType": "Runtime.ExitError",
                "errorMessage": f"the execution environment's process exited with status {self._process.returncode}"}

    def _write_output(self, text: str) -> None:
        current = sandbox.current()
        log = current.log if current is not None and current.log is not None else self._log_stream
        if log is not None:
            sandbox.write(log, text)
        else:
            sys.stdout.write(text)


def _process_environment() -> dict[str, str]:
    """This process's variables (called outside any invocation, so no function's sandbox shows through)."""
    return dict(os.environ)


def _file_of(stream: TextIO | None) -> Any:
    if stream is None:
        return None
    try:
        stream = sandbox.terminal(stream)
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a StringIO, say: the process's stderr goes where ours goes
        return None
