"""The local stack: embedded AWS with the template's resources, in-process functions fed by their event sources, the
REST API served over HTTP, and the state file through which other `tailor` commands find and inspect it."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from boto3.dynamodb.conditions import Attr

from . import appconfig
from .aws import BACKGROUND_APP_ID, DEFAULT_PORT, LocalAws, MotoServer, Resources, create_resources
from .http import ApiGateway, LocalApiServer, new_api_key, rest_apis
from .kinesis import KinesisMapping, kinesis_sources
from .runtime import LambdaRuntime
from .schedule import ScheduleTimer, rate_seconds, schedule_sources
from .sqs import SqsMapping, sqs_sources
from .template import Template, TemplateError

__all__ = [
    "LocalStack",
    "PutResult",
    "StackHandle",
    "StackNotRunning",
    "all_processed",
    "processed_count",
    "put_events",
    "records_done",
    "state_path",
]

STATE_DIR = ".tailor"
STATE_FILE = "local.json"
PUT_RECORDS_LIMIT = 500  # records per Kinesis PutRecords call
# Of the stream consumers' processes: on a laptop's few cores they give way to the API, whose calls in AWS would
# not share a CPU with theirs.
STREAM_NICENESS = 10
# Stream-triggered environments in processes at once, at most: every CPU but one, so that however many shards have
# records, Ingest's batches leave a CPU to the API and the embedded AWS, as Lambda runs them on CPUs of their own.
STREAM_ENVIRONMENTS = max(1, (os.cpu_count() or 2) - 1)
# On stop, how long invocations under way may take to finish before the local AWS goes away under them.
STOP_GRACE_S = 2.0
PEEK_HIDE_SECONDS = 30  # how long a peeked page of a queue stays hidden while the next pages are received


class StackNotRunning(RuntimeError):
    """No local stack answers for this template; start one with `tailor local up`."""


def state_path(template_path: Path) -> Path:
    """Where the running stack of this template writes its endpoint, names and progress."""
    return Path(template_path).resolve().parent / STATE_DIR / STATE_FILE


class LocalStack:
    """Starts the embedded AWS, creates the template's resources, loads its functions and runs their event sources."""

    def __init__(self, template_path: Path, *, port: int = DEFAULT_PORT, stack_name: str = "tailor-local",
                 region: str = "us-east-1", parameter_overrides: dict[str, str] | None = None,
                 function_log: TextIO | None = None, api_port: int = 0, api_key: str | None = None,
                 stream_processes: bool = False, stream_niceness: int = STREAM_NICENESS):
        """`api_port` is where the template's REST API answers (0: any free port); `api_key` is the key its usage
        plan asks for (default: a new random one). With `stream_processes`, the functions that stream sources
        trigger run each execution environment in a process of its own, at `stream_niceness`, as Lambda runs them
        apart from the API's, STREAM_ENVIRONMENTS of them at most; otherwise every function runs in this process, a
        thread per invocation."""
        self.template = Template.load(template_path, region=region, stack_name=stack_name,
                                      parameter_overrides=parameter_overrides)
        self.server = MotoServer(port=port)
        self.function_log = function_log
        self.aws: LocalAws | None = None
        self.resources: Resources | None = None
        self.runtime: LambdaRuntime | None = None
        self.mappings: dict[str, KinesisMapping] = {}
        self.queues: dict[str, SqsMapping] = {}
        self.timers: dict[str, ScheduleTimer] = {}
        self.api: LocalApiServer | None = None
        self.appconfig: appconfig.LocalAppConfigServer | None = None
        self.timings: dict[str, float] = {}  # seconds each phase of start() took: local AWS, resources, functions, API
        self.api_port = api_port
        self.api_key = api_key or new_api_key()
        self.stream_processes = stream_processes
        self.stream_niceness = stream_niceness
        self.started_at = ""
        self._state_writer: threading.Thread | None = None
        self._state_stop = threading.Event()

    def start(self, *, pollers: bool = True, schedules: bool = False) -> LocalStack:
        """Bring everything up; with `pollers`, stream and queue event sources deliver from background threads, and
        with `schedules`, rate schedules fire on their timers (cron schedules fire only on demand: `tailor invoke`)."""
        clock = time.monotonic()
        # The API's threads share this interpreter with the pollers handing Ingest its batches: they get its lock
        # within a millisecond rather than five.
        sys.setswitchinterval(0.001)
        self.server.start()
        clock = self._timed("local AWS", clock)
        try:
            self.aws = aws = LocalAws(self.server.endpoint, self.template.region)
            self.resources = create_resources(self.template, aws)
            self.appconfig = self._serve_appconfig()
            clock = self._timed("resources", clock)
            sources = kinesis_sources(self.template, self.resources)
            self.runtime = LambdaRuntime(
                self.template, self.resources, aws, log_stream=self.function_log,
                processes={source.function_id for source in sources} if self.stream_processes else (),
                niceness=self.stream_niceness)
            background = aws.in_background()
            for source in sources:
                function = self.runtime.functions[source.function_id]
                if self.stream_processes:
                    function.max_environments = min(function.max_environments, STREAM_ENVIRONMENTS)
                self.mappings[f"{source.function_id}.{source.event_name}"] = KinesisMapping(source, function, background)
            queues, timed = sqs_sources(self.template, self.resources), schedule_sources(self.template)
            for queue in queues:
                self.queues[f"{queue.function_id}.{queue.event_name}"] = SqsMapping(
                    queue, self.runtime.functions[queue.function_id], background)
            for schedule in timed:
                period = rate_seconds(schedule.expression)
                if schedule.enabled and period is not None:
                    self.timers[f"{schedule.function_id}.{schedule.event_name}"] = ScheduleTimer(
                        schedule, self.runtime.functions[schedule.function_id], period,
                        region=self.template.region, account_id=self.template.account_id,
                        stack_name=self.template.stack_name)
            # What the event sources and schedules run, the local AWS serves after the API's calls under way.
            for function_id in {source.function_id for source in (*sources, *queues, *timed)}:
                self.runtime.functions[function_id].environment["AWS_SDK_UA_APP_ID"] = BACKGROUND_APP_ID
            clock = self._timed("functions", clock)
            self.api = self._serve_api()
            self._timed("API", clock)
        except BaseException:
            if self.appconfig is not None:
                self.appconfig.stop()
            self.server.stop()
            raise
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if pollers:
            for mapping in self.mappings.values():
                mapping.start()
            for queue in self.queues.values():
                queue.start()
        if schedules:
            self.start_schedules()
        return self

    def start_schedules(self) -> None:
        """Rate schedules fire on their timers from now on."""
        for timer in self.timers.values():
            timer.start()

    def stop(self, *, grace_s: float = STOP_GRACE_S) -> None:
        """Stop event sources, timers and the API at once; give invocations under way `grace_s` to finish, then stop
        the local AWS. Threads still busy then are daemons and end with the process."""
        self._state_stop.set()
        stoppers = [timer.stop for timer in self.timers.values()]
        stoppers += [mapping.stop for mapping in self.mappings.values()]
        stoppers += [queue.stop for queue in self.queues.values()]
        if self.api is not None:
            stoppers.append(self.api.stop)
        if self._state_writer is not None:
            stoppers.append(self._state_writer.join)
        _all_within(stoppers, grace_s)
        if self.runtime is not None:
            _all_within([self.runtime.close], grace_s)
        _all_within([s.stop for s in (self.appconfig, self.server) if s is not None], grace_s)

    def __enter__(self) -> LocalStack:
        return self.start()

    def _timed(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.timings[phase] = now - since
        return now

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def handle(self) -> StackHandle:
        assert self.resources is not None, "start() the stack first"
        return StackHandle(
            endpoint=self.server.endpoint,
            region=self.template.region,
            stack_name=self.template.stack_name,
            template=str(self.template.path),
            resources=self.resources,
            pid=os.getpid(),
            started_at=self.started_at,
            mappings=self.progress(),
            api_url=self.api.url if self.api else "",
            api_key=self.api_key if self.api else "",
            service_endpoints=dict(self.aws.service_endpoints) if self.aws else {},
        )

    def stream_name(self, logical_id: str | None = None) -> str:
        """The local name of a Kinesis stream (the template's only one when not named)."""
        assert self.resources is not None
        streams = self.resources.of_type("AWS::Kinesis::Stream")
        if logical_id is None:
            if len(streams) != 1:
                raise ValueError(f"the template has {len(streams)} streams; name one of {sorted(streams)}")
            return next(iter(streams.values())).name
        return streams[logical_id].name

    def _serve_appconfig(self) -> appconfig.LocalAppConfigServer | None:
        """AppConfig's data plane for the configurations the template deploys; None if it deploys none."""
        assert self.resources is not None and self.aws is not None
        configurations = appconfig.hosted_configurations(self.template, self.resources)
        if not configurations:
            return None
        server = appconfig.LocalAppConfigServer(appconfig.AppConfigData(configurations)).start()
        self.aws.service_endpoints[appconfig.SERVICE] = server.url
        return server

    def _serve_api(self) -> LocalApiServer | None:
        """The template's REST API on 127.0.0.1, in front of the in-process functions; None if it has none."""
        assert self.resources is not None and self.runtime is not None
        apis = [api for api in rest_apis(self.template, self.resources).values() if api.routes]
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError(f"the local stack serves one REST API; the template has {len(apis)}: "
                                + ", ".join(api.logical_id for api in apis))
        functions = self.runtime.functions
        gateway = ApiGateway(apis[0], lambda function_id, event: functions[function_id].invoke(event),
                             api_key=self.api_key, region=self.template.region,
                             account_id=self.template.account_id, access_log=self.function_log)
        return LocalApiServer(gateway, port=self.api_port).start()

    def progress(self) -> dict[str, Any]:
        """Each event source's stream and per-shard stats (checkpoint, records done, invocations, ...)."""
        return {
            key: {"stream": mapping.source.stream_name, "shards": {s.shard_id: asdict(s) for s in mapping.stats()}}
            for key, mapping in self.mappings.items()
        }

    def write_state(self, path: Path, *, every_s: float | None = None) -> None:
        """Write the state file now, and with `every_s` keep it current from a background thread."""
        _write_json_atomically(path, self.handle.to_json())
        if every_s is not None and self._state_writer is None:
            def keep_writing() -> None:
                while not self._state_stop.wait(every_s):
                    _write_json_atomically(path, self.handle.to_json())

            self._state_writer = threading.Thread(target=keep_writing, daemon=True, name="tailor-state")
            self._state_writer.start()


@dataclass
class StackHandle:
    """A running local stack as seen from any process: where it answers, its resources, and what is in them."""

    endpoint: str
    region: str
    stack_name: str
    template: str
    resources: Resources
    pid: int = 0
    started_at: str = ""
    mappings: dict[str, Any] = field(default_factory=dict)  # progress of each event source, from the state file
    api_url: str = ""  # where the REST API answers, if the template has one
    api_key: str = ""  # the key it asks for in the x-api-key header
    service_endpoints: dict[str, str] = field(default_factory=dict)  # services answered beside the local AWS

    @cached_property
    def aws(self) -> LocalAws:
        return LocalAws(self.endpoint, self.region, service_endpoints=dict(self.service_endpoints))

    @classmethod
    def load(cls, path: Path) -> StackHandle:
        """The stack described by a state file, if it is still running."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StackNotRunning(f"no local stack is running (no {path})") from None
        handle = cls(**{**data, "resources": Resources.from_json(data["resources"])})
        if not handle.alive():
            raise StackNotRunning(f"the local stack in {path} is gone (pid {handle.pid})")
        return handle

    def alive(self) -> bool:
        url = urlparse(self.endpoint)
        try:
            with socket.create_connection((url.hostname, url.port), timeout=1):
                pass
        except OSError:
            return False
        if self.pid:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        return True

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"resources": self.resources.to_json()}

    # ---- what is in the stack ------------------------------------------------------------------

    def table(self, logical_id: str) -> Any:
        return self.aws.resource("dynamodb").Table(self.resources.name(logical_id))

    def get_row(self, logical_id: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.table(logical_id).get_item(Key=key).get("Item")

    def scan(self, logical_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Every row (where each given attribute equals its value): a full scan, fine for a local stack."""
        request: dict[str, Any] = {}
        if filters:
            condition = None
            for name, value in filters.items():
                clause = Attr(name).eq(value)
                condition = clause if condition is None else condition & clause
            request["FilterExpression"] = condition
        table = self.table(logical_id)
        rows: list[dict[str, Any]] = []
        while True:
            page = table.scan(**request)
            rows.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return rows
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def row_counts(self) -> dict[str, int]:
        """Rows per table, by logical id."""
        client = self.aws.client("dynamodb")
        counts = {}
        for lid, table in sorted(self.resources.of_type("AWS::DynamoDB::Table").items()):
            request: dict[str, Any] = {"TableName": table.name, "Select": "COUNT"}
            total = 0
            while True:
                page = client.scan(**request)
                total += page["Count"]
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            counts[lid] = total
        return counts

    def objects(self, bucket_logical_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        """The bucket's objects under a prefix (key, size, last modified), oldest key first."""
        paginator = self.aws.client("s3").get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.resources.name(bucket_logical_id), Prefix=prefix):
            yield from page.get("Contents", [])

    def read_object(self, bucket_logical_id: str, key: str) -> bytes:
        response = self.aws.client("s3").get_object(Bucket=self.resources.name(bucket_logical_id), Key=key)
        return response["Body"].read()

    def peek_messages(self, queue_logical_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Up to `limit` messages of a queue, left in the queue: received page by page, each page hidden for a while
        so the next receive gets others, then all made visible again."""
        sqs = self.aws.client("sqs")
        url = self.resources.ref(queue_logical_id)
        messages: dict[str, dict[str, Any]] = {}
        try:
            while len(messages) < limit:
                batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=max(1, min(10, limit - len(messages))),
                                            VisibilityTimeout=PEEK_HIDE_SECONDS, AttributeNames=["All"]
                                            ).get("Messages", [])
                fresh = [m for m in batch if m["MessageId"] not in messages]
                if not fresh:
                    break
                messages.update((m["MessageId"], m) for m in fresh)
        finally:
            found = list(messages.values())
            for start in range(0, len(found), 10):
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for k, m in enumerate(found[start:start + 10])])
        return found[:limit]

    def queue_depth(self, queue_logical_id: str) -> int:
        attributes = self.aws.client("sqs").get_queue_attributes(
            QueueUrl=self.resources.ref(queue_logical_id), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


@dataclass
class PutResult:
    """What a replay put on the stream: how many records, and the last sequence number per shard."""

    records: int = 0
    last_sequence: dict[str, str] = field(default_factory=dict)

    def add(self, shard_id: str, sequence_number: str) -> None:
        self.records += 1
        if shard_id not in self.last_sequence or int(sequence_number) > int(self.last_sequence[shard_id]):
            self.last_sequence[shard_id] = sequence_number


def put_events(aws: LocalAws, stream_name: str, events: Iterable[dict[str, Any]], *,
               on_progress: Callable[[int], None] | None = None) -> PutResult:
    """Put events on the stream as JSON records keyed by user_id, PUT_RECORDS_LIMIT per call, in order."""
    kinesis = aws.client("kinesis")
    result = PutResult()
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        pending = chunk[:]
        while pending:
            response = kinesis.put_records(StreamName=stream_name, Records=pending)
            retry = []
            for request, outcome in zip(pending, response["Records"]):
                if "ErrorCode" in outcome:
                    retry.append(request)
                else:
                    result.add(outcome["ShardId"], outcome["SequenceNumber"])
            if on_progress:
                on_progress(len(pending) - len(retry))
            if retry:
                time.sleep(0.2)  # throttled: Kinesis asks the producer to back off and resend the failed records
            pending = retry
        chunk.clear()

    for event in events:
        key = str(event.get("user_id") or event.get("event_id") or "anonymous")
        chunk.append({"Data": json.dumps(event, separators=(",", ":"), default=str).encode(), "PartitionKey": key})
        if len(chunk) == PUT_RECORDS_LIMIT:
            flush()
    if chunk:
        flush()
    return result


def processed_count(mappings: dict[str, Any], stream_name: str, put: PutResult, baseline: dict[str, int]) -> int:
    """How many of the records just put every event source of the stream has finished with."""
    counts = [
        sum(shard["records_done"] for shard in mapping["shards"].values()) - baseline.get(key, 0)
        for key, mapping in mappings.items()
        if mapping["stream"] == stream_name
    ]
    return min(counts, default=put.records)


def all_processed(mappings: dict[str, Any], stream_name: str, put: PutResult) -> bool:
    """True once every event source of the stream has checkpointed past the last record put on each shard."""
    for mapping in mappings.values():
        if mapping["stream"] != stream_name:
            continue
        for shard_id, last in put.last_sequence.items():
            checkpoint = mapping["shards"].get(shard_id, {}).get("checkpoint")
            if checkpoint is None or int(checkpoint) < int(last):
                return False
    return True


def records_done(mappings: dict[str, Any]) -> dict[str, int]:
    """Records each event source has finished with so far: the baseline before a replay."""
    return {key: sum(s["records_done"] for s in m["shards"].values()) for key, m in mappings.items()}


def _all_within(stoppers: list[Callable[[], Any]], seconds: float) -> None:
    """Call every stopper at once, each on a thread of its own, and wait for them at most `seconds`."""
    threads = [threading.Thread(target=stop, daemon=True, name="tailor-stop") for stop in stoppers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    temporary.replace(path)
