"""Support for the API tests: a local stack whose state holds a small crowd of shoppers, with the API function in it
and its gateway callable in-process."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from werkzeug.test import Client

from tailor_lab.simulator import simulate
from tailor_local.stack import LocalStack, PutResult, all_processed, put_events

from tests.helpers import ROOT
from tests.helpers.events import load_event

PROCESSING_TIMEOUT_S = 300
SAMPLE_USERS = ("u-1001", "u-2002")  # the shoppers of events/ingest-kinesis-batch.json, whom events/api-*.json ask about


class ApiStack:
    """The template's ApiFunction on a local stack: invoked with proxy events, or over its gateway in-process."""

    def __init__(self, stack: LocalStack, simulated: list[dict[str, Any]]):
        assert stack.api is not None and stack.runtime is not None
        self.stack = stack
        self.simulated = simulated
        self.function = stack.runtime.find("ApiFunction")
        self.function.load()
        self.module = sys.modules[self.function.handler.__module__]
        self.key = stack.api_key
        self.http = Client(stack.api.gateway)

    def invoke(self, event: dict[str, Any]) -> tuple[int, Any]:
        """Status and decoded JSON body of the handler's answer to a proxy event (once the invocation has ended: its
        work after the response, exposure logs, done too; so the other requests)."""
        invocation = self.function.invoke(event)
        assert self.function.settled()
        assert invocation.ok, invocation.error
        payload = invocation.payload
        return payload["statusCode"], json.loads(payload["body"]) if payload.get("body") else None

    def invoke_file(self, name: str, **changes: Any) -> tuple[int, Any]:
        """The sample event `name` from events/, with some of its query parameters or its body replaced."""
        return self.invoke(with_changes(load_event(name), **changes))

    def get(self, path: str, *, key: bool = True, settle: bool = True, **kwargs: Any) -> Any:
        answer = self.http.get(path, headers=self._headers(key), **kwargs)
        assert not settle or self.function.settled()
        return answer

    def post(self, path: str, body: Any, *, key: bool = True) -> Any:
        answer = self.http.post(path, headers=self._headers(key), data=json.dumps(body),
                                content_type="application/json")
        assert self.function.settled()
        return answer

    def _headers(self, key: bool) -> dict[str, str]:
        return {"x-api-key": self.key} if key else {}


def with_changes(event: dict[str, Any], *, query: dict[str, Any] | None = None, body: Any = None,
                 path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of a proxy event with its query parameters, JSON body or path parameters (and path) replaced."""
    event = json.loads(json.dumps(event))
    if query is not None:
        multi = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in query.items()}
        event["multiValueQueryStringParameters"] = multi or None
        event["queryStringParameters"] = {k: v[-1] for k, v in multi.items()} or None
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        event["isBase64Encoded"] = False
    if path_parameters is not None:
        path = event["resource"]
        for name, value in path_parameters.items():
            path = path.replace("{" + name + "}", value)
        event["pathParameters"], event["path"] = dict(path_parameters), path
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
    return event


@contextlib.contextmanager
def seeded_stack(log: TextIO, *, shoppers: int = 12, days: float = 0.5, seed: int = 11) -> Iterator[ApiStack]:
    """A local stack (its API on a free port) that has ingested the sample batch and a simulated crowd whose last
    events are from now, so popularity is current."""
    start = datetime.now(UTC) - timedelta(days=days)
    simulated = simulate(shoppers=shoppers, days=days, seed=seed, start=start).events
    with LocalStack(ROOT / "template.yaml", port=0, stack_name=f"tailor-api-{uuid.uuid4().hex[:8]}",
                    function_log=log) as stack:
        put_and_wait(stack, load_event("ingest-kinesis-batch.json")["Records"], simulated)
        yield ApiStack(stack, simulated)


def put_and_wait(stack: LocalStack, records: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[bytes]:
    """Put the records of a Kinesis event as they are, then `events`, on the stack's stream, wait until Ingest has
    processed them all, and merge their counters; the records' data as put."""
    put = PutResult()
    raw = [{"Data": base64.b64decode(r["kinesis"]["data"]), "PartitionKey": r["kinesis"]["partitionKey"]}
           for r in records]
    for outcome in stack.aws.client("kinesis").put_records(StreamName=stack.stream_name(), Records=raw)["Records"]:
        put.add(outcome["ShardId"], outcome["SequenceNumber"])
    for shard, sequence in put_events(stack.aws, stack.stream_name(), events).last_sequence.items():
        put.add(shard, sequence)
    wait_until_processed(stack, put)
    merge_counters(stack)
    return [r["Data"] for r in raw]


def merge_counters(stack: LocalStack) -> None:
    """What MergeCounters' schedule does within a minute: Ingest's buffered counters into the counter tables."""
    invocation = stack.runtime.find("MergeCountersFunction").invoke(load_event("merge-counters-schedule.json"))
    assert invocation.ok, invocation.error


def repo_copy(folder: Path) -> Path:
    """A checkout in `folder` (template, functions, layers, events) whose .tailor state stays out of the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.yaml").write_text((ROOT / "template.yaml").read_text())
    for name in ("functions", "layers", "events"):
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder / "template.yaml"


def wait_until_processed(stack: LocalStack, put: PutResult) -> None:
    deadline = time.monotonic() + PROCESSING_TIMEOUT_S
    while not all_processed(stack.progress(), stack.stream_name(), put):
        assert time.monotonic() < deadline, f"not processed in {PROCESSING_TIMEOUT_S} s: {stack.progress()}"
        time.sleep(0.1)
