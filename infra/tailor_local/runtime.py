"""The in-process Lambda runtime: each function's handler, imported from CodeUri with its layers and environment."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .aws import LocalAws, Resources
from .template import Function, Template, TemplateError

__all__ = [
    "Invocation",
    "LambdaContext",
    "LambdaRuntime",
    "LocalFunction",
]

Handler = Callable[[Any, "LambdaContext"], Any]

# os.environ, sys.path and sys.modules belong to the whole process, so one invocation runs at a time,
# as one Lambda execution environment serves one request at a time.
_PROCESS_LOCK = threading.RLock()


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
    """A function that runs in this process: its handler, environment, import paths and limits."""

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
    handler: Handler | None = None  # loaded on first invocation unless given
    _own_modules: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_handler(cls, name: str, handler: Handler, *, region: str = "us-east-1", **options: Any) -> LocalFunction:
        """A function around a Python callable: for handlers that are not in the template, such as tests' fakes."""
        arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        return cls(logical_id=name, name=name, arn=arn, handler_path=getattr(handler, "__name__", name),
                   handler=handler, **options)

    def invoke(self, event: Any) -> Invocation:
        """Run the handler once on a JSON copy of `event`, as Lambda would, and capture its answer or error."""
        request_id = str(uuid.uuid4())
        try:
            handler = self.load()
        except Exception as exc:  # an import error is an invocation error (Runtime.ImportModuleError in Lambda)
            return Invocation(request_id, None, _error_of(exc), 0.0)
        with self._execution_environment():
            # The clock starts once this invocation has the process, as Lambda's starts once it has a sandbox;
            # initialisation (the import above) does not count either.
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
        if error is None and duration_ms > self.timeout_s * 1000:
            # Lambda would have stopped it; the result must not count as a success.
            payload, error = None, {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {self.timeout_s:.2f} seconds",
            }
        return Invocation(request_id, payload, error, duration_ms)

    def load(self) -> Handler:
        """Import the handler module from CodeUri under a name of its own (every function's module is `app`)."""
        if self.handler is not None:
            return self.handler
        if self.code_dir is None:
            raise TemplateError(f"{self.logical_id} has no local code (CodeUri)")
        module_path, _, attribute = self.handler_path.rpartition(".")
        relative = Path(*module_path.split("."))
        source = next(
            (p for p in (self.code_dir / f"{relative}.py", self.code_dir / relative / "__init__.py") if p.is_file()),
            None,
        )
        if source is None:
            raise TemplateError(f"{self.logical_id}: no module {module_path!r} in {self.code_dir}")
        unique_name = "tailor_local_fn_" + re.sub(r"\W", "_", f"{self.logical_id}_{module_path}")
        spec = importlib.util.spec_from_file_location(unique_name, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with self._execution_environment():
            before = set(sys.modules)
            sys.modules[unique_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(unique_name, None)
                raise
            self._adopt_sibling_modules(before)
        self.handler = getattr(module, attribute)
        return self.handler

    @contextlib.contextmanager
    def _execution_environment(self) -> Iterator[None]:
        """This function's variables, import paths, sibling modules and output, for the duration of one call."""
        with _PROCESS_LOCK:
            saved_environ = dict(os.environ)
            saved_path = list(sys.path)
            os.environ.update(self.environment)
            paths = [str(p) for p in ([self.code_dir] if self.code_dir else []) + self.layer_dirs]
            sys.path[:0] = [p for p in paths if p not in sys.path]
            sys.modules.update(self._own_modules)
            try:
                if self.log_stream is None:
                    yield
                else:
                    with contextlib.redirect_stdout(self.log_stream), contextlib.redirect_stderr(self.log_stream):
                        yield
                    self.log_stream.flush()
            finally:
                for name in self._own_modules:
                    sys.modules.pop(name, None)
                sys.path[:] = saved_path
                os.environ.clear()
                os.environ.update(saved_environ)

    def _adopt_sibling_modules(self, before: set[str]) -> None:
        # Modules imported from the function's own folder (`import schemas` beside app.py) are kept apart
        # per function, so two functions with a sibling module of the same name each get their own.
        if self.code_dir is None:
            return
        root = str(self.code_dir.resolve())
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(root) and not name.startswith("tailor_local_fn_"):
                self._own_modules[name] = sys.modules[name]

    def _marshal(self, response: Any) -> Any:
        try:
            return json.loads(json.dumps(response))
        except (TypeError, ValueError) as exc:
            raise _MarshalError(f"Unable to marshal response: {exc}") from None


class LambdaRuntime:
    """Every AWS::Serverless::Function of the template, ready to invoke in this process against the local AWS."""

    def __init__(self, template: Template, resources: Resources, aws: LocalAws, *, log_stream: TextIO | None = None):
        self.template = template
        self.resources = resources
        self.functions: dict[str, LocalFunction] = {
            lid: _local_function(template, resources, aws, fn, log_stream)
            for lid, fn in template.functions().items()
        }

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

