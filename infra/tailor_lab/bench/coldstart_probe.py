"""Run by `tailor bench coldstart` as a fresh interpreter, a Lambda execution environment's first moments: import a
function's handler module as Lambda's init does, answer one event, and write when each phase began and ended, how
long import statements took within it, and the answer.

    python coldstart_probe.py CODE_DIR MODULE HANDLER EVENT_FILE RESULT_FILE

Times are on time.monotonic()'s clock, the one the latency endpoint logs its calls on. The probe imports nothing
before the clock starts that the interpreter has not already: what the handler module imports, it pays for.
"""

import builtins
import importlib
import importlib.machinery
import os
import sys
import time

# Set to a file name, the start is profiled (cProfile, from before the import to the answer) into it: an untimed start.
PROFILE_VARIABLE = "TAILOR_COLDSTART_PROFILE"
# Comma-separated top-level modules the function would not find in AWS: importing one fails, as it would there.
HIDDEN_VARIABLE = "TAILOR_COLDSTART_HIDDEN"
# Comma-separated top-level modules compiled from their source at every import, their bytecode files ignored: as in
# Lambda, whose layers are read-only and carry none.
FROM_SOURCE_VARIABLE = "TAILOR_COLDSTART_FROM_SOURCE"


def main() -> None:
    code_dir, module_name, handler_name, event_file, result_file = sys.argv[1:6]
    sys.path[0] = code_dir  # where Lambda puts the task root, in place of this file's folder
    hidden = frozenset(filter(None, os.environ.get(HIDDEN_VARIABLE, "").split(",")))
    if hidden:
        sys.meta_path.insert(0, _Hidden(hidden))
    from_source = frozenset(filter(None, os.environ.get(FROM_SOURCE_VARIABLE, "").split(",")))
    if from_source:
        sys.meta_path.insert(0, _FromSource(from_source))
    load = importlib.import_module
    clock = _ImportClock()
    builtins.__import__ = clock.timed(builtins.__import__)
    importlib.import_module = clock.timed(importlib.import_module)
    profile = _profiler(os.environ.get(PROFILE_VARIABLE))
    begun = time.monotonic()
    module = load(module_name)
    initialised = time.monotonic()
    init_imports = clock.take()
    import json  # after the clock, so that a module that does not need it does not pay for it

    with open(event_file) as f:
        event = json.load(f)
    handler = getattr(module, handler_name)
    clock.take()
    started = time.monotonic()
    response = handler(event, _Context())
    answered = time.monotonic()
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ[PROFILE_VARIABLE])
    with open(result_file, "w") as f:
        json.dump({"begun": begun, "initialised": initialised, "started": started, "answered": answered,
                   "init_imports_s": init_imports, "request_imports_s": clock.take(), "modules": len(sys.modules),
                   "response": response}, f, default=str)


def _profiler(path):
    if not path:
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


class _Hidden:
    """A finder that finds the hidden modules absent: optional imports (botocore's of awscrt and pyOpenSSL) take
    the path they take where those are not installed."""

    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


class _FromSource:
    """A finder that finds modules as the path finder does, and has those named compiled from source."""

    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _SourceLoader(spec.loader.name, spec.loader.path)
        return spec


class _SourceLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        return self.source_to_code(self.get_data(self.path), self.path)


class _ImportClock:
    """Time spent in import statements (and importlib.import_module), the outermost one of a nest counted."""

    def __init__(self):
        self.spent = 0.0
        self.depth = 0

    def timed(self, real):
        def timed_import(*args, **kwargs):
            if self.depth:
                return real(*args, **kwargs)
            self.depth += 1
            started = time.monotonic()
            try:
                return real(*args, **kwargs)
            finally:
                self.spent += time.monotonic() - started
                self.depth -= 1

        return timed_import

    def take(self) -> float:
        """Seconds spent importing since the last take."""
        spent, self.spent = self.spent, 0.0
        return spent


class _Context:
    """What Lambda passes a handler as its context, as far as Powertools reads it."""

    def __init__(self):
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = "coldstart"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "coldstart"
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


if __name__ == "__main__":
    main()
