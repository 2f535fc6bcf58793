"""`tailor local up` as a terminal runs it: its stderr read all along (a pipe nobody reads fills and stops the
writer), Ctrl-C to stop it, and a stack that does not stop dumped and killed rather than left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

UP_LINE = "The local stack is up"
STOP_TIMEOUT_S = 60


class LocalUp:
    """`tailor --template T local up ARGS` in a process of its own, every line it writes to stderr kept."""

    def __init__(self, template: Path, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tailor_cli", "--template", str(template), "local", "up", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._up = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="local-up-stderr")
        self._reader.start()

    def wait_until_up(self, timeout_s: float) -> list[str]:
        """The lines written until the stack said it is up (all of them so far if it never did within `timeout_s`)."""
        self._up.wait(timeout_s)
        return [line.rstrip("\n") for line in self.lines]

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ctrl-C. One still running after `timeout_s` has every thread's stack dumped (SIGUSR1), is killed, and
        fails the test with the end of what it wrote."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2.0)
            self.process.kill()
            self.process.wait()
            self._reader.join(5.0)
            tail = "".join(self.lines[-200:])
            raise AssertionError(f"`tailor local up` did not stop within {timeout_s} s of Ctrl-C; it wrote:\n{tail}")
        self._reader.join(5.0)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if UP_LINE in line:
                self._up.set()
        self._up.set()  # the process ended: nobody waits for a line that will not come
