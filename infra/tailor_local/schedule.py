"""Schedule and ScheduleV2 events run locally: the event EventBridge would send, fired on demand or on a rate timer."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from .runtime import Invocation, LocalFunction
from .template import Template, TemplateError

__all__ = ["ScheduleSource", "ScheduleTimer", "rate_seconds", "schedule_sources", "scheduled_event"]

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class ScheduleSource:
    """One Schedule or ScheduleV2 event of a function."""

    function_id: str
    event_name: str
    expression: str  # rate(...) or cron(...)
    input: str | None = None  # the JSON text EventBridge sends instead of the scheduled event, if set
    enabled: bool = True


def schedule_sources(template: Template) -> list[ScheduleSource]:
    """Every Schedule and ScheduleV2 event of every function in the template."""
    sources = []
    for function_id, fn in template.functions().items():
        for event_name, raw in fn.events_of_type("Schedule", "ScheduleV2").items():
            props = template.resolve(raw)
            expression = props.get("Schedule") or props.get("ScheduleExpression")
            if not expression:
                raise TemplateError(f"{function_id}.{event_name} has no schedule expression")
            enabled = props.get("Enabled", True) not in (False, "false") and props.get("State", "ENABLED") != "DISABLED"
            sources.append(ScheduleSource(function_id, event_name, expression, props.get("Input"), enabled))
    return sources


def scheduled_event(source: ScheduleSource, *, region: str, account_id: str, stack_name: str,
                    now: dt.datetime | None = None) -> Any:
    """What the function receives when the schedule fires: its Input, or EventBridge's "Scheduled Event"."""
    if source.input is not None:
        return json.loads(source.input)
    now = now or dt.datetime.now(dt.UTC)
    rule = f"{stack_name}-{source.function_id}{source.event_name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{rule}"],
        "detail": {},
    }


def rate_seconds(expression: str) -> int | None:
    """The period of a rate(...) expression in seconds; None for cron(...), which fires on demand only locally."""
    match = _RATE.match(expression.strip())
    if match is None:
        if expression.strip().startswith("cron("):
            return None
        raise TemplateError(f"not a schedule expression: {expression!r}")
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    return count * _UNIT_SECONDS[unit]


class ScheduleTimer:
    """Invokes a function every period of its rate schedule, from a background thread, until stopped."""

    def __init__(self, source: ScheduleSource, function: LocalFunction, period_s: float, *, region: str,
                 account_id: str, stack_name: str):
        self.source = source
        self.function = function
        self.period_s = period_s
        self.fired = 0
        self.last: Invocation | None = None
        self._event_args = {"region": region, "account_id": account_id, "stack_name": stack_name}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{source.function_id}-{source.event_name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """No more firings; an invocation under way is waited for, with `timeout` at most that long. True when the
        timer's thread has ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def fire(self) -> Invocation:
        """Invoke now with the scheduled event."""
        self.last = self.function.invoke(scheduled_event(self.source, **self._event_args))
        self.fired += 1
        if not self.last.ok:
            log.error("%s.%s: %s: %s", self.source.function_id, self.source.event_name,
                      self.last.error.get("errorType"), self.last.error.get("errorMessage"))  # type: ignore[union-attr]
        return self.last

    def _run(self) -> None:
        # EventBridge fires a new rate rule one period after it is created, not at once.
        while not self._stop.wait(self.period_s):
            self.fire()
