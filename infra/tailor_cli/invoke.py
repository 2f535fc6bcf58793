"""`tailor invoke FUNCTION`: run a function once, in this process, against the running stack or a temporary one."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from tailor_local.runtime import LambdaRuntime
from tailor_local.schedule import schedule_sources, scheduled_event
from tailor_local.stack import LocalStack, StackHandle, StackNotRunning, state_path
from tailor_local.template import Template, find_template

from .common import say

__all__ = ["add_parser", "event_for", "k_choice"]


def add_parser(commands: Any) -> None:
    invoke = commands.add_parser("invoke", help="run a function once, in this process, against the local stack")
    invoke.add_argument("function", help="logical id (IngestFunction) or short name (ingest)")
    invoke.add_argument("-e", "--event", type=Path,
                        help="event JSON file (default: a scheduled function's schedule event, else {})")
    invoke.set_defaults(command=_invoke)


def event_for(template: Template, function_id: str, event_file: Path | None) -> Any:
    """The event file's content; without one, what the function's first schedule would send it, else {}."""
    if event_file is not None:
        return json.loads(event_file.read_text(encoding="utf-8"))
    for schedule in schedule_sources(template):
        if schedule.function_id == function_id:
            say(f"Firing {function_id}.{schedule.event_name} ({schedule.expression}).")
            return scheduled_event(schedule, region=template.region, account_id=template.account_id,
                                   stack_name=template.stack_name)
    return {}


def k_choice(payload: dict[str, Any]) -> str:
    """Why a persona rebuild chose as many personas as it did."""
    return f"How k was chosen: {payload.get('k_choice') or 'by BIC'}."


def _invoke(args: argparse.Namespace) -> int:
    template_path = args.template or find_template()
    try:
        handle = StackHandle.load(state_path(template_path))
    except StackNotRunning:
        say("No local stack is running; starting a temporary one for this invocation.")
        # Its own resource names: moto's state is per process, shared with any other stack started in it.
        with LocalStack(template_path, port=0, stack_name=f"tailor-invoke-{uuid.uuid4().hex[:8]}",
                        function_log=sys.stderr) as stack:
            assert stack.runtime is not None
            return _invoke_and_print(stack.runtime, args.function, args.event)
    template = Template.load(template_path, region=handle.region, stack_name=handle.stack_name)
    return _invoke_and_print(LambdaRuntime(template, handle.resources, handle.aws, log_stream=sys.stderr),
                             args.function, args.event)


def _invoke_and_print(runtime: LambdaRuntime, name: str, event_file: Path | None) -> int:
    function = runtime.find(name)
    invocation = function.invoke(event_for(runtime.template, function.logical_id, event_file))
    print(json.dumps(invocation.payload if invocation.ok else invocation.error, indent=2))
    outcome = "ok" if invocation.ok else f"error {invocation.error['errorType']}"  # type: ignore[index]
    say(f"{function.logical_id}: {outcome} in {invocation.duration_ms:.0f} ms (request {invocation.request_id})")
    if invocation.ok and isinstance(invocation.payload, dict) and "k_choice" in invocation.payload:
        say(k_choice(invocation.payload))  # a persona rebuild: why this many personas
    return 0 if invocation.ok else 1
