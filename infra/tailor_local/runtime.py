"""The in-process Lambda runtime: each function's handler, imported from CodeUri with its layers and environment."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import sandbox
from .aws import LocalAws, Resources
from .environments import EnvironmentProcess, InvocationError
from .extensions import ExtensionsApi
from .template import Function, Template, TemplateError

__all__ = [
    "Invocation",
    "LambdaContext",
    "LambdaRuntime",
    "LocalFunction",
]

Handler = Callable[[Any, "LambdaContext"], Any]

# sys.path and sys.modules belong to the whole process: one function's module is imported at a time. Invocations do
# not need it (tailor_local.sandbox gives each thread its function's environment and log), so they run side by side.
_IMPORT_LOCK = threading.RLock()
# Execution environments a function gets at most, as a reserved concurrency would cap them: more invocations at once
# wait for one to be free.
DEFAULT_MAX_ENVIRONMENTS = 10
# An invocation that finds no environment free waits this long for one whose extension is finishing the invocation
# before (work after the response, milliseconds) rather than start another: a warm environment, as Lambda prefers.
FINISHING_WAIT_S = 0.25


@dataclass
class LambdaContext:
    """The context object Lambda passes to a Python handler."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float  # time.monotonic() at which the invocation times out
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One invocation's outcome: the JSON response, or the error as Lambda reports it."""

    request_id: str
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class LocalFunction:
    """A function that runs in this process: its handler, environment, import paths and limits.

    As in Lambda, an execution environment serves one invocation at a time: invocations at the same time get
    environments of their own (each its own import of the handler module, so module-level state such as a batch
    processor is never shared), up to `max_environments`; invocations of different functions run side by side.
    """

    logical_id: str
    name: str
    arn: str
    handler_path: str
    code_dir: Path | None = None
    layer_dirs: list[Path] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 128
    timeout_s: float = 3.0
    role_arn: str = ""
    log_stream: TextIO | None = None  # where the handler's stdout and stderr go; None leaves them alone
    handler: Handler | None = None  # the first environment's handler: loaded on first invocation unless given
    max_environments: int = DEFAULT_MAX_ENVIRONMENTS
    isolation: str = "thread"  # "process": each environment is a process of its own (see tailor_local.environments)
    niceness: int = 0  # of those processes: above 0, they give way to the rest of the machine
    _given: bool = field(default=False, init=False, repr=False)  # the handler is a callable, not a module to import
    _idle: list[Handler] = field(default_factory=list, init=False, repr=False)
    _environments: int = field(default=0, init=False, repr=False)
    _started: int = field(default=0, init=False, repr=False)  # environments ever started: each one's number
    _free: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _removed: set[str] = field(default_factory=set, init=False, repr=False)  # variables a handler deleted
    _processes: list[EnvironmentProcess] = field(default_factory=list, init=False, repr=False)
    # Each thread environment's Extensions API (AWS_LAMBDA_RUNTIME_API in its init), by id() of its handler.
    _extensions: dict[int, ExtensionsApi] = field(default_factory=dict, init=False, repr=False)
    _finishing: int = field(default=0, init=False, repr=False)  # environments whose extension has yet to finish

    def __post_init__(self) -> None:
        self._given = self.handler is not None
        if self.isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', not {self.isolation!r}")

    @classmethod
    def from_handler(cls, name: str, handler: Handler, *, region: str = "us-east-1", **options: Any) -> LocalFunction:
        """A function around a Python callable: for handlers that are not in the template, such as tests' fakes."""
        arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        return cls(logical_id=name, name=name, arn=arn, handler_path=getattr(handler, "__name__", name),
                   handler=handler, **options)

    @property
    def environments(self) -> int:
        """Execution environments set up so far (the most invocations that have run at once, up to the limit)."""
        return self._environments

    def invoke(self, event: Any) -> Invocation:
        """Run the handler once on a JSON copy of `event`, as Lambda would, and capture its answer or error."""
        request_id = str(uuid.uuid4())
        try:
            handler, init_ms = self._acquire()
        except Exception as exc:  # an import error is an invocation error (Runtime.ImportModuleError in Lambda)
            self.note(f"INIT failed: {type(exc).__name__}: {exc}")
            return Invocation(request_id, None, _error_of(exc), 0.0)
        extensions = self._extensions.get(id(handler))
        extended = False  # a registered extension has this invocation's event
        try:
            extended = extensions is not None and extensions.begin(seconds=self.timeout_s, request_id=request_id)
            with sandbox.entered(self._sandbox(extensions)):
                # The clock starts once this invocation has an environment, as Lambda's starts once it has a
                # sandbox; initialisation (the import) does not count either.
                started = time.monotonic()
                try:
                    context = LambdaContext(
                        function_name=self.name,
                        invoked_function_arn=self.arn,
                        memory_limit_in_mb=self.memory_mb,
                        aws_request_id=request_id,
                        deadline=started + self.timeout_s,
                        log_group_name=f"/aws/lambda/{self.name}",
                        log_stream_name=f"local/{self.name}",
                    )
                    response = handler(json.loads(json.dumps(event)), context)
                    payload, error = self._marshal(response), None
                except Exception as exc:  # the handler's failure is the invocation's result, as in Lambda
                    payload, error = None, _error_of(exc)
                duration_ms = (time.monotonic() - started) * 1000
        finally:
            if not extended:
                self._release(handler)
            else:
                # The response is the caller's at once; the environment serves again once the extension is done
                # with this invocation (work it does after the response), as Lambda ends the invocation only then.
                with self._free:
                    self._finishing += 1
                threading.Thread(target=self._release_after, args=(handler, extensions), daemon=True).start()
        if error is None and duration_ms > self.timeout_s * 1000:
            # Lambda would have stopped it; the result must not count as a success.
            payload, error = None, {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {self.timeout_s:.2f} seconds",
            }
        # Lambda's REPORT line, so the log tells how long each invocation took and which ones started cold.
        self.note(f"REPORT RequestId: {request_id} Duration: {duration_ms:.1f} ms"
                  + (f" Init Duration: {init_ms:.1f} ms" if init_ms is not None else "")
                  + (f" Error: {error['errorType']}" if error else ""))
        return Invocation(request_id, payload, error, duration_ms)

    def load(self) -> Handler:
        """The first execution environment's handler, importing its module if that has not happened yet."""
        if self.handler is not None:
            return self.handler
        handler, _ = self._acquire()
        self._release(handler)
        assert self.handler is not None
        return self.handler

    def settled(self, timeout: float = 30.0) -> bool:
        """Wait until no environment is still finishing an invocation (its extension's work after the response, such
        as the API's exposure logs); True once none is."""
        with self._free:
            return self._free.wait_for(lambda: self._finishing == 0, timeout=timeout)

    def close(self) -> None:
        """Stop the processes of process-isolated environments, and thread environments' Extensions APIs."""
        with self._free:
            processes, self._processes = self._processes, []
            self._idle = [h for h in self._idle if not isinstance(h, EnvironmentProcess)]
            extensions, self._extensions = list(self._extensions.values()), {}
        for process in processes:
            process.close()
        for api in extensions:
            api.close()

    def note(self, text: str) -> None:
        """A line in the function's log from the platform around it (the event source, say), not from the handler."""
        if self.log_stream is not None:
            sandbox.write(self.log_stream, f"{dt.datetime.now(dt.UTC):%H:%M:%S} {self.logical_id}: {text}\n")

    def _acquire(self) -> tuple[Handler, float | None]:
        """An idle environment's handler, or a new environment's with how long its init took (ms), waiting for one
        when there are max_environments."""
        with self._free:
            waiting_until = time.monotonic() + FINISHING_WAIT_S
            while True:
                if self._idle:
                    return self._idle.pop(), None
                if self._given:
                    return self.handler, None  # type: ignore[return-value]  # a callable has no module to keep apart
                if self._finishing and time.monotonic() < waiting_until:
                    self._free.wait(timeout=max(0.0, waiting_until - time.monotonic()))
                    continue
                if self._environments < max(1, self.max_environments):
                    self._environments += 1
                    self._started += 1
                    index = self._started  # never a live environment's, whose module holds its number
                    break
                self._free.wait()
        started = time.monotonic()
        try:
            handler = self._import(index)
        except BaseException:
            with self._free:
                self._environments -= 1  # Lambda discards an environment whose init failed; the next one retries
                self._free.notify_all()
            raise
        if self.handler is None:
            self.handler = handler
        return handler, (time.monotonic() - started) * 1000

    def _release(self, handler: Handler) -> None:
        if self._given:
            return
        with self._free:
            if isinstance(handler, EnvironmentProcess) and not handler.alive:
                self._environments -= 1  # a process that timed out or died is gone; the next invocation starts one
                if handler in self._processes:
                    self._processes.remove(handler)
                if self.handler is handler:
                    self.handler = None
            else:
                self._idle.append(handler)
            self._free.notify_all()

    def _release_after(self, handler: Handler, extensions: ExtensionsApi) -> None:
        ended = extensions.ended(timeout=self.timeout_s + 1)
        if ended:
            self._release(handler)
        else:
            self.note("the environment's extension did not ask for its next event: environment discarded")
        with self._free:
            self._finishing -= 1
            if not ended:
                self._environments -= 1
                self._extensions.pop(id(handler), None)
                if self.handler is handler:
                    self.handler = self._idle[0] if self._idle else None
            self._free.notify_all()
        if not ended:
            extensions.close()

    def _import(self, index: int) -> Handler:
        """Import the handler module from CodeUri under a name of its own (every function's module is `app`, and each
        environment has its own copy)."""
        if self.code_dir is None:
            raise TemplateError(f"{self.logical_id} has no local code (CodeUri)")
        if self.isolation == "process":
            process = EnvironmentProcess(self.handler_path, self._paths(), self.environment,
                                         log_stream=self.log_stream, niceness=self.niceness, cwd=self.code_dir)
            with self._free:
                self._processes.append(process)
            return process
        module_path, _, attribute = self.handler_path.rpartition(".")
        relative = Path(*module_path.split("."))
        source = next(
            (p for p in (self.code_dir / f"{relative}.py", self.code_dir / relative / "__init__.py") if p.is_file()),
            None,
        )
        if source is None:
            raise TemplateError(f"{self.logical_id}: no module {module_path!r} in {self.code_dir}")
        unique_name = "tailor_local_fn_" + re.sub(r"\W", "_", f"{self.logical_id}_{module_path}")
        if index > 1:
            unique_name += f"_env{index}"
        spec = importlib.util.spec_from_file_location(unique_name, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        extensions = ExtensionsApi()
        with _IMPORT_LOCK, sandbox.entered(self._sandbox(extensions)):
            sandbox.per_thread_library_state()
            saved_path = list(sys.path)
            sys.path[:0] = [p for p in self._paths() if p not in sys.path]
            before = set(sys.modules)
            sys.modules[unique_name] = module
            try:
                spec.loader.exec_module(module)
                handler = getattr(module, attribute)
            except BaseException:
                sys.modules.pop(unique_name, None)
                extensions.close()
                raise
            finally:
                self._set_aside_sibling_modules(before)
                sys.path[:] = saved_path
        with self._free:
            self._extensions[id(handler)] = extensions
        return handler

    def _sandbox(self, extensions: ExtensionsApi | None = None) -> sandbox.Sandbox:
        """The function's sandbox; with an environment's Extensions API, its address as AWS_LAMBDA_RUNTIME_API."""
        if extensions is None:
            return sandbox.Sandbox(self.environment, self._paths(), self.log_stream, self._removed)
        return sandbox.Sandbox(extensions.environ(self.environment), self._paths(), self.log_stream, self._removed)

    def _paths(self) -> list[str]:
        return [str(p) for p in ([self.code_dir] if self.code_dir else []) + self.layer_dirs]

    def _set_aside_sibling_modules(self, before: set[str]) -> None:
        # Modules imported from the function's own folder (`import schemas` beside app.py) stay with the module that
        # imported them, out of sys.modules: two functions with a sibling module of the same name, and two
        # environments of one function, each get their own.
        if self.code_dir is None:
            return
        root = str(self.code_dir.resolve())
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(root) and not name.startswith("tailor_local_fn_"):
                sys.modules.pop(name, None)

    def _marshal(self, response: Any) -> Any:
        try:
            return json.loads(json.dumps(response))
        except (TypeError, ValueError) as exc:
            raise _MarshalError(f"Unable to marshal response: {exc}") from None


class LambdaRuntime:
    """Every AWS::Serverless::Function of the template, ready to invoke in this process against the local AWS."""

    def __init__(self, template: Template, resources: Resources, aws: LocalAws, *, log_stream: TextIO | None = None,
                 processes: Collection[str] = (), niceness: int = 0):
        """`processes`: logical ids of the functions whose environments are processes of their own, at `niceness`."""
        self.template = template
        self.resources = resources
        self.functions: dict[str, LocalFunction] = {
            lid: _local_function(template, resources, aws, fn, log_stream)
            for lid, fn in template.functions().items()
        }
        for lid in processes:
            self.functions[lid].isolation = "process"
            self.functions[lid].niceness = niceness

    def close(self) -> None:
        """Stop every function's environment processes."""
        for function in self.functions.values():
            function.close()

    def find(self, name: str) -> LocalFunction:
        """A function by logical id (IngestFunction), short name (ingest) or local physical name."""
        wanted = _squash(name)
        for lid, fn in self.functions.items():
            if name in (lid, fn.name) or wanted in (_squash(lid), _squash(lid.removesuffix("Function"))):
                return fn
        known = ", ".join(sorted(self.functions)) or "none"
        raise TemplateError(f"no function {name!r} in the template (functions: {known})")


def _local_function(
    template: Template, resources: Resources, aws: LocalAws, fn: Function, log_stream: TextIO | None
) -> LocalFunction:
    props = template.resolve(fn.properties, resources)
    physical = resources[fn.logical_id]
    code_uri = props.get("CodeUri")
    if code_uri is not None and not isinstance(code_uri, str):
        raise TemplateError(f"{fn.logical_id}: the local runtime needs CodeUri to be a local folder")
    runtime = props.get("Runtime", "python3.12")
    variables = {k: _env_text(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()}
    environment = {
        "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon to send traces to locally
        **variables,
        **aws.environment(),
        "AWS_LAMBDA_FUNCTION_NAME": physical.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{physical.name}",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "_HANDLER": props["Handler"],
    }
    code_dir = (template.root / code_uri).resolve() if code_uri else None
    if code_dir is not None:
        environment["LAMBDA_TASK_ROOT"] = str(code_dir)
    return LocalFunction(
        logical_id=fn.logical_id,
        name=physical.name,
        arn=physical.arn,
        handler_path=props["Handler"],
        code_dir=code_dir,
        layer_dirs=_layer_dirs(template, resources, props.get("Layers") or [], runtime),
        environment=environment,
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=float(props.get("Timeout", 3)),
        role_arn=f"arn:aws:iam::{template.account_id}:role/{physical.name}-Role",
        log_stream=log_stream,
        max_environments=max(1, int(props.get("ReservedConcurrentExecutions") or DEFAULT_MAX_ENVIRONMENTS)),
    )


def _layer_dirs(template: Template, resources: Resources, layer_arns: list[str], runtime: str) -> list[Path]:
    """The import folders Lambda would mount from each layer (/opt/python and its site-packages).

    Layers from outside the template, and layers whose python/ folder is produced only by a build (the
    third-party runtime layer), contribute nothing: locally those packages come from the virtualenv.
    """
    dirs: list[Path] = []
    for arn in layer_arns:
        try:
            layer = resources.by_arn(arn)
        except KeyError:
            continue
        content_uri = (template.resources[layer.logical_id].get("Properties") or {}).get("ContentUri")
        if not isinstance(content_uri, str):
            continue
        python = (template.root / content_uri / "python").resolve()
        for folder in (python / "lib" / runtime / "site-packages", python):
            if folder.is_dir():
                dirs.append(folder)
    return dirs


class _MarshalError(Exception):
    """The handler returned something that is not JSON, which Lambda reports as Runtime.MarshalError."""


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, InvocationError):
        return exc.error
    error_type = "Runtime.MarshalError" if isinstance(exc, _MarshalError) else type(exc).__name__
    return {
        "errorType": error_type,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[1:],
    }


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())

