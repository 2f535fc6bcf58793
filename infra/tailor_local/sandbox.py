"""What a Lambda execution environment has to itself but this process shares, kept per thread: while a thread runs an
invocation, it sees its function's environment variables and import paths, and its output goes to its function's
log; so do the threads it starts (a handler's thread pool); every other thread sees the process as it is. So
functions run side by side in one process."""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import sys
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["RoutedStream", "Sandbox", "current", "entered", "install", "per_thread_library_state", "terminal",
           "write"]


@dataclass
class Sandbox:
    """One function's view of the process: variables over the process's own, import paths, and where output goes."""

    environ: MutableMapping[str, str]  # the function's variables; a handler's writes to os.environ land here
    paths: list[str] = field(default_factory=list)  # searched first for top-level modules (CodeUri, layers)
    log: TextIO | None = None  # None: output goes where the process's goes
    removed: set[str] = field(default_factory=set)  # variables a handler deleted

    def __post_init__(self) -> None:
        if isinstance(self.log, RoutedStream):  # e.g. sys.stderr given as the log: its terminal, not itself
            self.log = self.log.terminal


def current() -> Sandbox | None:
    """The sandbox of the invocation running on this thread, if any."""
    return getattr(_local, "sandbox", None)


@contextlib.contextmanager
def entered(sandbox: Sandbox) -> Iterator[None]:
    """Run the body on this thread inside `sandbox`."""
    install()
    previous = current()
    _local.sandbox = sandbox
    try:
        yield
    finally:
        _local.sandbox = previous
        if sandbox.log is not None:
            with _log_lock:
                if not sandbox.log.closed:
                    sandbox.log.flush()


def install() -> None:
    """Make the process's environment, output streams and module search sandbox-aware (once; again if someone, such
    as a test harness, has replaced sys.stdout or sys.stderr since)."""
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, RoutedStream):
                setattr(sys, name, RoutedStream(stream))
        if not isinstance(os.environ, _SandboxedEnviron):
            # The same object, so modules that imported `environ` from os see the sandbox too.
            os.environ.__class__ = _SandboxedEnviron
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        if threading.Thread.start is not _start_in_sandbox:
            threading.Thread.start = _start_in_sandbox  # type: ignore[method-assign]


def write(log: TextIO, text: str) -> None:
    """Write to a log that several threads write to, whole, and flush it."""
    log = terminal(log)
    with _log_lock:
        if not log.closed:
            log.write(text)
            log.flush()


def terminal(stream: TextIO) -> TextIO:
    """The stream a routed stream writes to outside invocations (the stream itself if it is not routed)."""
    return stream.terminal if isinstance(stream, RoutedStream) else stream


class RoutedStream:
    """sys.stdout or sys.stderr: a write goes to the log of the invocation running on the writing thread, else to the
    stream the process had."""

    def __init__(self, terminal: TextIO):
        self.terminal = terminal

    def write(self, text: str) -> int:
        sandbox = current()
        if sandbox is None or sandbox.log is None:
            return self.terminal.write(text)
        with _log_lock:
            if sandbox.log.closed:  # the stack has stopped; a handler still at work has nowhere to write
                return len(text)
            return sandbox.log.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        sandbox = current()
        if sandbox is None or sandbox.log is None:
            self.terminal.flush()
        else:
            with _log_lock:
                if not sandbox.log.closed:
                    sandbox.log.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer, ...: the terminal's
        return getattr(self.terminal, name)


# ---- threads ----------------------------------------------------------------------------------------

_thread_start = threading.Thread.start


def _start_in_sandbox(self: threading.Thread) -> None:
    """Thread.start: a thread started during an invocation (a handler's thread pool) runs in its sandbox too."""
    sandbox = current()
    if sandbox is not None:
        run = self.run

        def run_in_sandbox() -> None:
            with entered(sandbox):
                run()

        self.run = run_in_sandbox  # type: ignore[method-assign]
    _thread_start(self)


# ---- the environment ------------------------------------------------------------------------------


class _SandboxedEnviron(os._Environ):  # type: ignore[name-defined]  # os.environ's own class, extended
    """os.environ: on a thread in a sandbox, the sandbox's variables over the process's; elsewhere the process's."""

    def __getitem__(self, key: str) -> str:
        sandbox = current()
        if sandbox is not None:
            if key in sandbox.environ:
                return sandbox.environ[key]
            if key in sandbox.removed:
                raise KeyError(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        sandbox = current()
        if sandbox is None:
            super().__setitem__(key, value)
            return
        self.encodekey(key), self.encodevalue(value)  # the same type checks as the process's environment
        sandbox.environ[key] = value
        sandbox.removed.discard(key)

    def __delitem__(self, key: str) -> None:
        sandbox = current()
        if sandbox is None:
            super().__delitem__(key)
            return
        if key not in self:
            raise KeyError(key)
        sandbox.environ.pop(key, None)
        sandbox.removed.add(key)

    def __iter__(self) -> Iterator[str]:
        sandbox = current()
        if sandbox is None:
            yield from super().__iter__()
            return
        own = list(sandbox.environ)
        yield from own
        for key in list(super().__iter__()):
            if key not in sandbox.environ and key not in sandbox.removed:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"environ({dict(self)!r})"


# ---- imports ---------------------------------------------------------------------------------------


class _SandboxPathFinder:
    """Finds top-level modules imported while a handler runs (not only at import) in its CodeUri and layers first,
    as Lambda's sys.path has them."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        sandbox = current()
        if sandbox is None or path is not None or not sandbox.paths:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, sandbox.paths, target)

    def invalidate_caches(self) -> None:
        pass


# ---- library state that assumes one invocation per process --------------------------------------------


def per_thread_library_state() -> None:
    """Powertools keeps a few things at class level, on the premise that a process serves one invocation at a time:
    the REST resolver's current event and context, and the metrics not yet flushed. Two invocations at once would
    answer with each other's query parameters and flush each other's metrics; per thread, each has its own. Call it
    before a handler module creates its Metrics (they keep the class's dicts)."""
    global _library_state_done
    if _library_state_done:
        return
    _library_state_done = True
    try:
        from aws_lambda_powertools.event_handler import api_gateway
        from aws_lambda_powertools.metrics import metrics
    except ImportError:  # functions that do not use Powertools need none of this
        return
    _per_thread_class_attributes(api_gateway.BaseRouter, ("current_event", "lambda_context"))
    for name in ("_metrics", "_dimensions", "_metadata"):
        setattr(metrics.Metrics, name, _PerThreadDict())


class _PerThreadValue:
    """A class attribute with a value per thread (read and set through the class or its instances)."""

    def __init__(self, name: str):
        self.name = name
        self._values = threading.local()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        try:
            return self._values.value
        except AttributeError:
            raise AttributeError(self.name) from None

    def __set__(self, instance: Any, value: Any) -> None:
        self._values.value = value


def _per_thread_class_attributes(cls: type, names: tuple[str, ...]) -> None:
    values = {name: _PerThreadValue(name) for name in names}
    for name, value in values.items():
        if name in cls.__dict__:
            value.__set__(None, cls.__dict__[name])
        setattr(cls, name, value)  # what instances read and set
    # What `cls.name = value` sets: only a descriptor of the metaclass sees assignments to the class itself.
    properties = {name: property(lambda c, v=value: v.__get__(None, c), lambda c, x, v=value: v.__set__(None, x))
                  for name, value in values.items()}
    cls.__class__ = type(f"PerThread{type(cls).__name__}", (type(cls),), properties)


class _PerThreadDict(MutableMapping):  # type: ignore[type-arg]
    """A dict with contents per thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def _dict(self) -> dict[Any, Any]:
        try:
            return self._local.dict
        except AttributeError:
            self._local.dict = {}
            return self._local.dict

    def __getitem__(self, key: Any) -> Any:
        return self._dict[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._dict[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._dict[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._dict))

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return repr(self._dict)


_local = threading.local()
_install_lock = threading.RLock()
_log_lock = threading.RLock()  # one invocation's line at a time in a log that several write to
_FINDER = _SandboxPathFinder()
_library_state_done = False
