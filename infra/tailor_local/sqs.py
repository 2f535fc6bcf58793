"""SQS event source mappings run as Lambda runs them: batches of received messages, deletion of those that succeeded,
partial batch failures; a failed message is received again once its visibility timeout passes, and the queue's own
redrive policy moves it to its dead-letter queue after maxReceiveCount receives."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws import LocalAws, Resources
from .runtime import Invocation, LocalFunction
from .template import Template, TemplateError

__all__ = ["QueueStats", "SqsMapping", "SqsSource", "sqs_event", "sqs_sources"]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's limit on an invocation's payload
_RECEIVE_LIMIT = 10  # messages one ReceiveMessage call returns at most
_RECORD_OVERHEAD_BYTES = 1000  # what an event record takes beside its body (ids, receipt handle, attributes)
_SETTINGS_NOT_APPLIED_LOCALLY = ("FilterCriteria", "ScalingConfig", "MetricsConfig", "KmsKeyArn")


@dataclass(frozen=True)
class SqsSource:
    """One SQS event of a function and the settings that govern its delivery; defaults are Lambda's."""

    function_id: str
    queue_url: str
    queue_arn: str
    event_name: str = "Queue"
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False


def sqs_sources(template: Template, resources: Resources) -> list[SqsSource]:
    """Every enabled SQS event of every function in the template, with its settings resolved."""
    sources = []
    for function_id, fn in template.functions().items():
        for event_name, raw in fn.events_of_type("SQS").items():
            props = template.resolve(raw, resources)
            if props.get("Enabled", True) in (False, "false"):
                continue
            for setting in _SETTINGS_NOT_APPLIED_LOCALLY:
                if setting in props:
                    log.warning("%s.%s: the local stack does not apply %s", function_id, event_name, setting)
            try:
                queue = resources.by_arn(props["Queue"])
            except KeyError:
                raise TemplateError(f"{function_id}.{event_name}: queue {props['Queue']} is not a resource of the "
                                    "template") from None
            if queue.type != "AWS::SQS::Queue":
                raise TemplateError(f"{function_id}.{event_name}: {queue.logical_id} is not an SQS queue")
            sources.append(SqsSource(
                function_id=function_id,
                event_name=event_name,
                queue_url=queue.ref,
                queue_arn=queue.arn,
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            ))
    return sources


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda passes for a batch of messages as ReceiveMessage returned them (with all attributes)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes") or {}),
                "messageAttributes": {name: _message_attribute(value)
                                      for name, value in (message.get("MessageAttributes") or {}).items()},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


@dataclass
class QueueStats:
    """What one SQS event source has done."""

    received: int = 0
    deleted: int = 0
    failed: int = 0  # messages left on the queue after an invocation, to be received again
    invocations: int = 0


class SqsMapping:
    """One SQS event source of a function, polled from a thread of its own (one batch in flight at a time: the
    in-process runtime runs one invocation at a time anyway)."""

    def __init__(self, source: SqsSource, function: LocalFunction, aws: LocalAws, *, idle_poll_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.function = function
        self.aws = aws
        self.stats = QueueStats()
        self.stopping = threading.Event()
        self._sqs = aws.client("sqs")
        self._idle_poll_s = idle_poll_s
        self._clock = clock
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Receive a batch (up to BatchSize messages, waiting up to the batching window to fill it), invoke the
        function once with it, and delete the messages that succeeded; how many messages were received."""
        batch = self._receive_batch()
        if batch:
            self.deliver(batch)
        return len(batch)

    def drain(self) -> None:
        """Deliver everything the queue holds that is visible now, in this thread (for tests and scripts)."""
        while self.poll():
            pass

    def deliver(self, messages: list[dict[str, Any]]) -> Invocation:
        invocation = self.function.invoke(sqs_event(messages, self.source.queue_arn, self.aws.region))
        self.stats.invocations += 1
        failed = _failed_ids(invocation, messages, self.source.report_batch_item_failures)
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        self.stats.deleted += len(done)
        self.stats.failed += len(failed)
        if failed:
            log.warning("%s.%s: %d of %d messages failed (%s); they are received again after their visibility "
                        "timeout", self.source.function_id, self.source.event_name, len(failed), len(messages),
                        _describe(invocation))
        return invocation

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{self.source.function_id}-{self.source.event_name}")
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling once the batch in flight is done; with `timeout`, wait at most that long. True once stopped;
        a batch cut short is received again after its visibility timeout."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
        return self._thread is None

    # ---- receiving and deleting --------------------------------------------------------------------

    def _receive_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        deadline = self._clock() + self.source.batching_window_s
        while len(batch) < self.source.batch_size and not self.stopping.is_set():
            try:
                received = self._sqs.receive_message(
                    QueueUrl=self.source.queue_url, AttributeNames=["All"], MessageAttributeNames=["All"],
                    MaxNumberOfMessages=min(_RECEIVE_LIMIT, self.source.batch_size - len(batch)),
                ).get("Messages", [])
            except (ClientError, BotoCoreError) as exc:
                log.warning("%s.%s: ReceiveMessage failed (%s); will retry", self.source.function_id,
                            self.source.event_name, exc)
                break
            self.stats.received += len(received)
            for message in received:
                message_size = len(message["Body"].encode()) + _RECORD_OVERHEAD_BYTES
                if batch and size + message_size > MAX_PAYLOAD_BYTES:
                    self._release(message)  # for the next batch, as Lambda does with what does not fit
                    continue
                batch.append(message)
                size += message_size
            if not received and (not batch or self._clock() >= deadline):
                break
            if not received:
                self.stopping.wait(min(self._idle_poll_s, max(0.0, deadline - self._clock())))
            elif self._clock() >= deadline and len(received) < _RECEIVE_LIMIT:
                break
        return batch

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), _RECEIVE_LIMIT):
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                       for n, m in enumerate(messages[start:start + _RECEIVE_LIMIT])]
            try:
                response = self._sqs.delete_message_batch(QueueUrl=self.source.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                log.error("%s.%s: DeleteMessageBatch failed (%s); the messages will be delivered again",
                          self.source.function_id, self.source.event_name, exc)
                continue
            for failure in response.get("Failed", []):
                log.error("%s.%s: could not delete a message (%s); it will be delivered again",
                          self.source.function_id, self.source.event_name, failure.get("Message"))

    def _release(self, message: dict[str, Any]) -> None:
        try:
            self._sqs.change_message_visibility(QueueUrl=self.source.queue_url,
                                                ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        except (ClientError, BotoCoreError) as exc:
            log.warning("%s.%s: could not release a message (%s); it is received after its visibility timeout",
                        self.source.function_id, self.source.event_name, exc)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.poll() > 0
            except Exception:  # a broken poller must say so, not die silently and leave the queue unread
                log.exception("%s.%s: poller failed; retrying", self.source.function_id, self.source.event_name)
                busy = False
            if not busy:
                self.stopping.wait(self._idle_poll_s)


def _failed_ids(invocation: Invocation, messages: Sequence[dict[str, Any]], reports_failures: bool) -> set[str]:
    """The messages to leave on the queue. As in Lambda: every one after a function error; with
    ReportBatchItemFailures, those the response names, and every one if it names something that is not a message of
    the batch; a missing or empty list is a success."""
    every = {m["MessageId"] for m in messages}
    if not invocation.ok:
        return every
    response = invocation.payload
    if not reports_failures or not isinstance(response, dict) or not response.get("batchItemFailures"):
        return set()
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return every
    named = {failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures}
    return named if named <= every else every


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as ReceiveMessage returns it, written the way Lambda's SQS event writes it."""
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [base64.b64encode(b).decode("ascii") for b in value.get("BinaryListValues") or []],
        "dataType": value["DataType"],
    }


def _describe(invocation: Invocation) -> str:
    if invocation.error:
        return f"{invocation.error.get('errorType')}: {invocation.error.get('errorMessage')}"
    return "partial batch failure"
