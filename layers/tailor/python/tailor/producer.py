"""Events sent over HTTP: each validated on its own, then put on the event stream keyed by user_id; each one
accepted (on the stream) or refused, and why."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tailor.events import EventError, parse_event

__all__ = ["MAX_EVENTS_PER_SEND", "PUT_RECORDS_CLIENT", "EventProducer", "Refusal", "SendOutcome"]

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_SEND = 500  # what one Kinesis PutRecords call takes
MAX_RECORD_BYTES = 1_048_576  # Kinesis: a record's data and partition key together
MAX_CALL_BYTES = 5 * 1_048_576  # Kinesis: one PutRecords request
# The Kinesis client a producer needs (tailor.aws_clients.client settings). It makes each call once: botocore
# retries a call whole, after a read timeout too, and a PutRecords whose answer was only slow has put its records on
# the stream already, so sending the call again puts them there twice. The producer retries itself, and sends again
# only the records the stream said it did not take. The read timeout leaves room for a stream that is slow to answer
# (a busy local stack) within the API's 29 s.
PUT_RECORDS_CLIENT = {"connect_timeout": 2, "read_timeout": 12, "max_attempts": 1}
# Record and call failures that a later attempt may get past; anything else is reported as it is.
RETRYABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "InternalFailure", "ServiceUnavailable", "ThrottlingException",
    "LimitExceededException", "KMSThrottlingException", "ConnectionError",
})


@dataclass(frozen=True)
class Refusal:
    """An event that is not on the stream: where it was in the request, and why."""

    index: int
    event_id: str | None
    error: str
    retryable: bool  # sending the same event again later may succeed


@dataclass
class SendOutcome:
    accepted: int = 0
    refused: list[Refusal] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)  # of every event sent, in request order

    def to_json(self) -> dict[str, Any]:
        """The counts and the refusals, and every event's status in request order: `accepted` (on the stream, so
        Ingest will apply it) or `refused` with the reason."""
        refused = {r.index: r for r in self.refused}
        return {
            "accepted": self.accepted,
            "failed": len(self.refused),
            "failures": [vars(r) for r in sorted(self.refused, key=lambda r: r.index)],
            "events": [{"index": index, "event_id": event_id, "status": "accepted"} if index not in refused else
                       {"index": index, "event_id": event_id, "status": "refused", "error": refused[index].error,
                        "retryable": refused[index].retryable}
                       for index, event_id in enumerate(self.event_ids)],
        }


class EventProducer:
    """Validates events with the ingest schema and puts the valid ones on a Kinesis stream (PutRecords), retrying
    throttled records a few times, briefly, since a caller is waiting.

    A record is sent again only when the stream said it did not take it. A call that got no answer (a read timeout,
    a dropped connection, a server error) may have put its records on the stream: they are refused as retryable,
    not sent again here, and the caller decides (sending an event again is safe: Ingest counts each event once)."""

    def __init__(self, client: Any, stream_name: str, *, attempts: int = 3, backoff_s: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        if _retries_calls(client):
            raise ValueError("the Kinesis client retries whole calls, which puts records on the stream twice; build "
                             "it with tailor.producer.PUT_RECORDS_CLIENT")
        self.client = client
        self.stream_name = stream_name
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.clock = clock  # what "now" is, for the events' clock skew

    def send(self, events: Sequence[Any]) -> SendOutcome:
        """Put every valid event of `events` (decoded JSON objects) on the stream; the outcome lists each one that
        is not, and why. Each is validated as Ingest validates it, and as received now, so that what Ingest would
        quarantine is refused here instead."""
        if len(events) > MAX_EVENTS_PER_SEND:
            raise ValueError(f"at most {MAX_EVENTS_PER_SEND} events per send, got {len(events)}")
        outcome = SendOutcome(event_ids=[_event_id_of(raw) for raw in events])
        received_at = self.clock()
        pending: list[_Pending] = []
        for index, raw in enumerate(events):
            event_id = outcome.event_ids[index]
            if not isinstance(raw, dict):
                outcome.refused.append(Refusal(index, None, f"an event is a JSON object, not {type(raw).__name__}",
                                               retryable=False))
                continue
            try:
                event = parse_event(raw, received_at=received_at)
            except EventError as err:
                outcome.refused.append(Refusal(index, event_id, err.reason, retryable=False))
                continue
            data = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            if len(data) + len(event.user_id.encode("utf-8")) > MAX_RECORD_BYTES:
                outcome.refused.append(Refusal(index, event_id, "event is larger than the 1 MiB a stream record holds",
                                               retryable=False))
                continue
            pending.append(_Pending(index, event_id, {"Data": data, "PartitionKey": event.user_id}))
        for call in _calls(pending):
            self._put(call, outcome)
        return outcome

    def _put(self, call: list[_Pending], outcome: SendOutcome) -> None:
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.client.put_records(StreamName=self.stream_name, Records=[p.record for p in call])
            except Exception as exc:  # the whole call failed: throttled, unreachable, refused, or unanswered
                code = _error_code(exc)
                logger.warning("PutRecords failed: %s", code, exc_info=True)
                if _may_have_landed(exc):
                    # The records may be on the stream: sending them again here would put them there twice.
                    for p in call:
                        outcome.refused.append(Refusal(p.index, p.event_id, f"{code}: {exc}; whether the stream took "
                                                       "the event is not known, and sending it again is safe",
                                                       retryable=True))
                    return
                failed = [(p, code, str(exc)) for p in call]
            else:
                failed = [(p, r["ErrorCode"], r.get("ErrorMessage", ""))
                          for p, r in zip(call, response["Records"]) if r.get("ErrorCode")]
                outcome.accepted += len(call) - len(failed)
            last = attempt == self.attempts - 1
            call = []
            for p, code, message in failed:
                retryable = code in RETRYABLE_CODES
                if retryable and not last:
                    call.append(p)
                else:
                    outcome.refused.append(Refusal(p.index, p.event_id, f"{code}: {message}" if message else code,
                                                   retryable))
            if not call:
                return


@dataclass(frozen=True)
class _Pending:
    index: int
    event_id: str | None
    record: dict[str, Any]


def _calls(pending: list[_Pending]) -> list[list[_Pending]]:
    """The records in request order, cut where a call would pass Kinesis's count or size limit."""
    calls: list[list[_Pending]] = [[]]
    size = 0
    for p in pending:
        record_size = len(p.record["Data"]) + len(p.record["PartitionKey"].encode("utf-8"))
        if calls[-1] and (len(calls[-1]) == MAX_EVENTS_PER_SEND or size + record_size > MAX_CALL_BYTES):
            calls.append([])
            size = 0
        calls[-1].append(p)
        size += record_size
    return [c for c in calls if c]


def _event_id_of(raw: Any) -> str | None:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return event_id if isinstance(event_id, str) else None


def _retries_calls(client: Any) -> bool:
    """Whether a client makes a call more than once (botocore's retries); a stand-in without config does not."""
    retries = getattr(getattr(getattr(client, "meta", None), "config", None), "retries", None)
    if retries is None:
        return hasattr(getattr(client, "meta", None), "config")  # botocore's legacy default: several attempts
    return retries.get("total_max_attempts", 1 + retries.get("max_attempts", 4)) > 1


def _may_have_landed(exc: Exception) -> bool:
    """Whether a failed call may still have put its records on the stream: it was sent, and its answer is unknown or
    a server error. A call the stream refused in its answer (a 4xx) took nothing."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400) >= 500
    return type(exc).__name__ not in ("EndpointConnectionError", "ConnectTimeoutError")


def _error_code(exc: Exception) -> str:
    """The AWS error code of a failed call (botocore's ClientError carries it), else what kind of failure it was."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return str(response["Error"]["Code"])
    # botocore's errors for a call that never reached the stream: the stream may be fine, the network was not.
    if type(exc).__name__ in ("EndpointConnectionError", "ConnectTimeoutError"):
        return "ConnectionError"
    return type(exc).__name__
