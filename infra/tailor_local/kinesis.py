"""Kinesis event source mappings run as Lambda runs them: shards in order, batches, retries, bisect, destination."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws import LocalAws, Resources
from .runtime import Invocation, LocalFunction
from .template import Template, TemplateError

__all__ = [
    "KinesisMapping",
    "KinesisSource",
    "ShardPoller",
    "ShardStats",
    "kinesis_event",
    "kinesis_sources",
]

log = logging.getLogger(__name__)

# Lambda's limit on an invocation's payload; a batch is cut short before it would exceed it.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Bytes an event record takes beside its data (keys, ids, ARNs), for the payload estimate.
_RECORD_OVERHEAD_BYTES = 600
_SETTINGS_NOT_APPLIED_LOCALLY = ("FilterCriteria", "TumblingWindowInSeconds", "KmsKeyArn", "MetricsConfig")


@dataclass(frozen=True)
class KinesisSource:
    """One Kinesis event of a function and the settings that govern its delivery; defaults are Lambda's."""

    function_id: str
    stream_name: str
    stream_arn: str
    event_name: str = "Stream"
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_position_timestamp: dt.datetime | None = None
    report_batch_item_failures: bool = False
    bisect_on_function_error: bool = False
    maximum_retry_attempts: int = -1  # -1: until the records expire
    maximum_record_age_s: int = -1  # -1: no limit
    on_failure_queue_url: str | None = None


def kinesis_sources(template: Template, resources: Resources) -> list[KinesisSource]:
    """Every enabled Kinesis event of every function in the template, with its settings resolved."""
    sources = []
    for function_id, fn in template.functions().items():
        for event_name, raw in fn.events_of_type("Kinesis").items():
            props = template.resolve(raw, resources)
            if props.get("Enabled", True) in (False, "false"):
                continue
            for setting in _SETTINGS_NOT_APPLIED_LOCALLY:
                if setting in props:
                    log.warning("%s.%s: the local stack does not apply %s", function_id, event_name, setting)
            stream = resources.by_arn(props["Stream"])
            destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            sources.append(
                KinesisSource(
                    function_id=function_id,
                    event_name=event_name,
                    stream_name=stream.name,
                    stream_arn=stream.arn,
                    batch_size=int(props.get("BatchSize", 100)),
                    batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=props.get("StartingPosition", "TRIM_HORIZON"),
                    starting_position_timestamp=_timestamp(props.get("StartingPositionTimestamp")),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    bisect_on_function_error=props.get("BisectBatchOnFunctionError") in (True, "true"),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    maximum_record_age_s=int(props.get("MaximumRecordAgeInSeconds", -1)),
                    on_failure_queue_url=_queue_url(resources, destination) if destination else None,
                )
            )
    return sources


def kinesis_event(records: Sequence[dict[str, Any]], shard_id: str, stream_arn: str, region: str,
                  role_arn: str) -> dict[str, Any]:
    """The event Lambda passes for a batch of GetRecords records from one shard."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record["PartitionKey"],
                    "sequenceNumber": record["SequenceNumber"],
                    "data": base64.b64encode(record["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{record['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": role_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for record in records
        ]
    }


@dataclass
class ShardStats:
    """What one shard's poller has done; `checkpoint` is the last sequence number it is finished with."""

    shard_id: str
    checkpoint: str | None = None
    records_done: int = 0
    batches: int = 0
    invocations: int = 0
    retries: int = 0
    bisections: int = 0
    records_discarded: int = 0


@dataclass
class _Attempt:
    records: list[dict[str, Any]]
    retries: int = 0  # retries already spent on these records; splitting a batch spends none
    invocations: int = 0


@dataclass
class _Outcome:
    invocation: Invocation
    failed_from: int | None = None  # index of the first record to retry; None when the batch succeeded

    @property
    def function_error(self) -> bool:
        return not self.invocation.ok


class ShardPoller:
    """Reads one shard in sequence order and delivers it to the function with Lambda's retry semantics."""

    def __init__(
        self,
        source: KinesisSource,
        shard_id: str,
        function: LocalFunction,
        aws: LocalAws,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.source = source
        self.shard_id = shard_id
        self.function = function
        self.aws = aws
        self.stats = ShardStats(shard_id)
        self.finished = False  # the shard is closed and read to its end
        self.stopping = threading.Event()  # set to abandon a batch that is still being retried, e.g. on shutdown
        self._clock = clock
        self._kinesis = aws.client("kinesis")
        self._iterator: str | None = None
        self._last_fetched: str | None = None
        self._buffer: deque[dict[str, Any]] = deque()
        self._buffered_since: float | None = None

    def step(self, *, flush: bool = False) -> bool:
        """Fetch what the shard has and deliver a batch once one is ready; False when there was nothing to do.

        A batch is ready at BatchSize records, at the payload limit, or when the batching window has passed
        since its first record arrived; `flush` delivers whatever is buffered without waiting.
        """
        fetched = self._fetch() if len(self._buffer) < self.source.batch_size else 0
        if self._buffer and (flush or self._batch_ready()):
            self.deliver(self._take_batch())
            return True
        return fetched > 0

    def drain(self) -> None:
        """Deliver everything the shard holds now, without waiting for batching windows."""
        while self.step(flush=True):
            pass

    def seconds_until_ready(self) -> float | None:
        """How long the batching window still holds a partial batch back; None when nothing is buffered."""
        if not self._buffer or self._buffered_since is None:
            return None
        return max(0.0, self._buffered_since + self.source.batching_window_s - self._clock())

    def deliver(self, records: list[dict[str, Any]]) -> None:
        """Invoke until every record succeeded or was discarded to the on-failure destination, in order."""
        self.stats.batches += 1
        pending: deque[_Attempt] = deque([_Attempt(records)])
        while pending:
            if self.stopping.is_set():
                return  # unfinished: the checkpoint stays before this batch
            attempt = pending.popleft()
            attempt.records = self._discard_expired(attempt)
            if not attempt.records:
                continue
            outcome = self._invoke(attempt)
            if outcome.failed_from is None:
                continue
            if outcome.function_error and self.source.bisect_on_function_error and len(attempt.records) > 1:
                half = len(attempt.records) // 2
                self.stats.bisections += 1
                self._report(logging.WARNING, f"{_describe(outcome.invocation)} on {len(attempt.records)} records; "
                                              "bisecting")
                pending.extendleft([
                    _Attempt(attempt.records[half:], attempt.retries, attempt.invocations),
                    _Attempt(attempt.records[:half], attempt.retries, attempt.invocations),
                ])
                continue
            remaining = attempt.records[outcome.failed_from:]
            limit = self.source.maximum_retry_attempts
            if 0 <= limit <= attempt.retries:
                self._discard(remaining, "RetryAttemptsExhausted", attempt.invocations, outcome.invocation)
                continue
            if self.stopping.is_set():
                return  # shutting down: the checkpoint stays before this batch, and there is no retry to announce
            self.stats.retries += 1
            self._report(logging.WARNING, f"{_describe(outcome.invocation)} from sequence number "
                                          f"{remaining[0]['SequenceNumber']}; retry {attempt.retries + 1} of "
                                          f"{limit if limit >= 0 else 'unlimited'}")
            pending.appendleft(_Attempt(remaining, attempt.retries + 1, attempt.invocations))
        self.stats.checkpoint = records[-1]["SequenceNumber"]
        self.stats.records_done += len(records)

    # ---- reading the shard -----------------------------------------------------------------------

    def _fetch(self) -> int:
        if self.finished:
            return 0
        try:
            if self._iterator is None:
                self._iterator = self._new_iterator()
            response = self._kinesis.get_records(
                ShardIterator=self._iterator, Limit=max(1, min(10_000, self.source.batch_size - len(self._buffer)))
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExpiredIteratorException":
                self._iterator = None
                return 0
            self._fetch_failed(exc)
            return 0
        except BotoCoreError as exc:
            self._fetch_failed(exc)
            return 0
        records = response.get("Records") or []
        self._iterator = response.get("NextShardIterator")
        self.finished = self._iterator is None
        if records:
            if not self._buffer:
                self._buffered_since = self._clock()
            self._buffer.extend(records)
            self._last_fetched = records[-1]["SequenceNumber"]
        return len(records)

    def _fetch_failed(self, exc: Exception) -> None:
        if not self.stopping.is_set():  # on shutdown the local AWS may stop first
            log.warning("%s %s: GetRecords failed (%s); will retry", self.function.logical_id, self.shard_id, exc)

    def _new_iterator(self) -> str:
        request: dict[str, Any] = {"StreamName": self.source.stream_name, "ShardId": self.shard_id}
        if self._last_fetched is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self._last_fetched)
        elif self.source.starting_position == "AT_TIMESTAMP":
            request.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=self.source.starting_position_timestamp)
        else:
            request.update(ShardIteratorType=self.source.starting_position)
        return self._kinesis.get_shard_iterator(**request)["ShardIterator"]

    def _batch_ready(self) -> bool:
        if len(self._buffer) >= self.source.batch_size or _payload_bytes(self._buffer) >= MAX_PAYLOAD_BYTES:
            return True
        waiting = self.seconds_until_ready()
        return waiting is not None and waiting <= 0

    def _take_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        while self._buffer and len(batch) < self.source.batch_size:
            record_size = _payload_bytes([self._buffer[0]])
            if batch and size + record_size > MAX_PAYLOAD_BYTES:
                break
            batch.append(self._buffer.popleft())
            size += record_size
        self._buffered_since = self._clock() if self._buffer else None
        return batch

    # ---- invoking and judging the response ---------------------------------------------------------

    def _invoke(self, attempt: _Attempt) -> _Outcome:
        event = kinesis_event(attempt.records, self.shard_id, self.source.stream_arn, self.aws.region,
                              self.function.role_arn)
        invocation = self.function.invoke(event)
        attempt.invocations += 1
        self.stats.invocations += 1
        if not invocation.ok:
            return _Outcome(invocation, failed_from=0)
        if not self.source.report_batch_item_failures:
            return _Outcome(invocation)
        return _Outcome(invocation, failed_from=_first_failed_index(invocation.payload, attempt.records))

    def _discard_expired(self, attempt: _Attempt) -> list[dict[str, Any]]:
        """Records older than MaximumRecordAgeInSeconds go to the destination uninvoked (they are oldest first)."""
        max_age = self.source.maximum_record_age_s
        if max_age < 0:
            return attempt.records
        now = self._clock()
        expired = 0
        while expired < len(attempt.records) and (
            now - attempt.records[expired]["ApproximateArrivalTimestamp"].timestamp() > max_age
        ):
            expired += 1
        if expired:
            self._discard(attempt.records[:expired], "RecordAgeExceeded", attempt.invocations, None)
        return attempt.records[expired:]

    def _discard(self, records: list[dict[str, Any]], condition: str, invocations: int,
                 invocation: Invocation | None) -> None:
        self.stats.records_discarded += len(records)
        self._report(logging.ERROR, f"discarding {len(records)} records ({records[0]['SequenceNumber']} to "
                                    f"{records[-1]['SequenceNumber']}): {condition}")
        if self.source.on_failure_queue_url is None:
            return
        message = self._failure_record(records, condition, invocations, invocation)
        try:
            self.aws.client("sqs").send_message(QueueUrl=self.source.on_failure_queue_url,
                                                MessageBody=json.dumps(message))
        except (ClientError, BotoCoreError) as exc:
            log.error("%s %s: could not send the failure record to %s: %s", self.function.logical_id,
                      self.shard_id, self.source.on_failure_queue_url, exc)

    def _report(self, level: int, text: str) -> None:
        """Retries, bisections and discards: to whoever watches the stack (the logger) and to the function's log."""
        log.log(level, "%s %s: %s", self.function.logical_id, self.shard_id, text)
        self.function.note(f"{self.shard_id}: {text}")

    def _failure_record(self, records: list[dict[str, Any]], condition: str, invocations: int,
                        invocation: Invocation | None) -> dict[str, Any]:
        """The on-failure message Lambda sends for a stream batch: where the records are, not the records."""
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if invocation is not None and not invocation.ok:
            response_context["functionError"] = "Unhandled"
        return {
            "requestContext": {
                "requestId": invocation.request_id if invocation else str(uuid.uuid4()),
                "functionArn": self.function.arn,
                "condition": condition,
                "approximateInvokeCount": invocations,
            },
            "responseContext": response_context if invocation is not None else {},
            "version": "1.0",
            "timestamp": _iso(self._clock()),
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": records[0]["SequenceNumber"],
                "endSequenceNumber": records[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(records[0]["ApproximateArrivalTimestamp"].timestamp()),
                "approximateArrivalOfLastRecord": _iso(records[-1]["ApproximateArrivalTimestamp"].timestamp()),
                "batchSize": len(records),
                "streamArn": self.source.stream_arn,
            },
        }


class KinesisMapping:
    """One Kinesis event source of a function: a poller per shard, each in a thread of its own, so shards are
    delivered side by side, each to an execution environment of its own.

    Each shard has one batch in flight at a time, which is ParallelizationFactor 1.
    """

    def __init__(self, source: KinesisSource, function: LocalFunction, aws: LocalAws, *,
                 idle_poll_s: float = 0.5, clock: Callable[[], float] = time.time):
        self.source = source
        self.function = function
        shards = aws.client("kinesis").list_shards(StreamName=source.stream_name)["Shards"]
        self.pollers = [ShardPoller(source, s["ShardId"], function, aws, clock=clock) for s in shards]
        self._idle_poll_s = idle_poll_s
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for poller in self.pollers:
            thread = threading.Thread(target=self._run, args=(poller,), daemon=True,
                                      name=f"{self.source.function_id}-{poller.shard_id}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every poller once its batch in flight is done (a batch still being retried is abandoned, unfinished);
        with `timeout`, wait at most that long. True when every poller has stopped."""
        for poller in self.pollers:
            poller.stopping.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        return not self._threads

    def drain(self) -> None:
        """Deliver everything the stream holds now, shard after shard, in this thread (for tests and scripts)."""
        for poller in self.pollers:
            poller.drain()

    def stats(self) -> list[ShardStats]:
        return [poller.stats for poller in self.pollers]

    def _run(self, poller: ShardPoller) -> None:
        while not poller.stopping.is_set() and not poller.finished:
            try:
                busy = poller.step()
            except Exception:  # a broken poller must say so, not die silently and stall its shard
                if poller.stopping.is_set():
                    return  # the local AWS may be gone already
                log.exception("%s %s: poller failed; retrying", self.source.function_id, poller.shard_id)
                busy = False
            if not busy:
                waiting = poller.seconds_until_ready()
                poller.stopping.wait(self._idle_poll_s if waiting is None else min(waiting, self._idle_poll_s))


def _first_failed_index(response: Any, records: Sequence[dict[str, Any]]) -> int | None:
    """Where a partial batch response says to resume: the lowest failed sequence number, or 0 for the whole batch.

    As in Lambda, a missing or empty list is a success, and an identifier that is empty, null or names no record
    of the batch makes the whole batch a failure.
    """
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if not failures:
        return None
    if not isinstance(failures, list):
        return 0
    positions = {record["SequenceNumber"]: index for index, record in enumerate(records)}
    failed = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in positions:
            return 0
        failed.append(positions[identifier])
    return min(failed)


def _queue_url(resources: Resources, destination_arn: str) -> str:
    try:
        target = resources.by_arn(destination_arn)
    except KeyError:
        raise TemplateError(f"on-failure destination {destination_arn} is not a resource of the template") from None
    if target.type != "AWS::SQS::Queue":
        raise TemplateError(f"the local stack sends on-failure records to SQS queues only, not {target.type}")
    return target.ref


def _payload_bytes(records: Sequence[dict[str, Any]] | deque[dict[str, Any]]) -> int:
    return sum(len(r["Data"]) * 4 // 3 + _RECORD_OVERHEAD_BYTES for r in records)


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return dt.datetime.fromisoformat(str(value))


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(invocation: Invocation) -> str:
    if invocation.error:
        return f"{invocation.error.get('errorType')}: {invocation.error.get('errorMessage')}"
    return "partial batch failure"
