"""Events sent over HTTP onto the stream: validated one by one, keyed by user, within Kinesis's limits, throttled
records retried, and every event that is not on the stream reported with why."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from tailor.aws_clients import client
from tailor.producer import MAX_EVENTS_PER_SEND, PUT_RECORDS_CLIENT, EventProducer


def view(n: int, user: str = "u1", **extra) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "session_id": f"{user}-s", "timestamp": "2026-11-02T10:00:00Z",
            "event_type": "view", "item_id": f"i{n}", **extra}


class FakeKinesis:
    """PutRecords that accepts everything, unless a test's `fail` says which records fail, or raises."""

    def __init__(self, fail=None):
        self.calls: list[list[dict]] = []
        self.fail = fail or (lambda call, index, record: None)

    def put_records(self, StreamName, Records):
        assert StreamName == "stream"
        self.calls.append(Records)
        call = len(self.calls)
        if isinstance(self.fail, Exception):
            raise self.fail
        results = []
        for index, record in enumerate(Records):
            code = self.fail(call, index, record)
            results.append({"ErrorCode": code, "ErrorMessage": "slow down"} if code else
                           {"ShardId": "shardId-000000000000", "SequenceNumber": str(call * 1000 + index)})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}

    def sent(self) -> list[dict]:
        return [json.loads(r["Data"]) for call in self.calls for r in call]


def producer(client, **options) -> EventProducer:
    return EventProducer(client, "stream", sleep=lambda s: None, **options)


def test_valid_events_go_on_the_stream_as_sent_keyed_by_user_and_invalid_ones_are_reported():
    client = FakeKinesis()
    events = [view(1), {**view(2), "timestamp": "yesterday"}, view(3, user=" u2 "), "not an object", view(4, "u3")]
    outcome = producer(client).send(events)
    assert outcome.accepted == 3
    assert [r["PartitionKey"] for r in client.calls[0]] == ["u1", "u2", "u3"]
    assert client.sent() == [events[0], events[2], events[4]]
    reported = outcome.to_json()
    assert reported["accepted"] == 3 and reported["failed"] == 2
    assert [(f["index"], f["event_id"], f["retryable"]) for f in reported["failures"]] == [(1, "e2", False),
                                                                                           (3, None, False)]
    assert reported["failures"][0]["error"].startswith("timestamp:")
    assert "JSON object" in reported["failures"][1]["error"]


def test_throttled_records_are_sent_again_and_those_still_throttled_are_reported_as_retryable():
    def fail(call, index, record):
        user = json.loads(record["Data"])["user_id"]
        if user == "hot" or (user == "warm" and call == 1):
            return "ProvisionedThroughputExceededException"
        if user == "broken":
            return "InternalFailureNotRetried"
        return None

    client = FakeKinesis(fail)
    events = [view(1, "warm"), view(2, "hot"), view(3), view(4, "broken")]
    outcome = producer(client, attempts=3).send(events)
    assert outcome.accepted == 2
    assert len(client.calls) == 3 and [len(c) for c in client.calls] == [4, 2, 1]
    failures = {f["index"]: f for f in outcome.to_json()["failures"]}
    assert set(failures) == {1, 3}
    assert failures[1]["retryable"] and failures[1]["error"].startswith("ProvisionedThroughputExceededException")
    assert not failures[3]["retryable"]


@pytest.mark.parametrize(("error", "calls", "retryable"), [
    (ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no stream"}}, "PutRecords"), 1, False),
    (ClientError({"Error": {"Code": "ThrottlingException", "Message": "rate"}}, "PutRecords"), 3, True),
    (EndpointConnectionError(endpoint_url="https://kinesis"), 3, True),
])
def test_a_failed_call_reports_each_of_its_events(error, calls, retryable):
    client = FakeKinesis(error)
    outcome = producer(client, attempts=3).send([view(1), view(2)])
    assert outcome.accepted == 0 and len(client.calls) == calls
    assert [(r.index, r.retryable) for r in outcome.refused] == [(0, retryable), (1, retryable)]


def test_calls_keep_within_kinesis_limits_and_a_record_too_large_is_refused():
    client = FakeKinesis()
    assert producer(client).send([view(n) for n in range(MAX_EVENTS_PER_SEND)]).accepted == MAX_EVENTS_PER_SEND
    assert [len(c) for c in client.calls] == [MAX_EVENTS_PER_SEND]

    # Fields the schema does not know travel with the event, so events can be large.
    large = [view(n, note="x" * 900_000) for n in range(12)]
    client = FakeKinesis()
    assert producer(client).send(large).accepted == 12
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call) for call in client.calls]
    assert len(sizes) == 3 and all(size <= 5 * 1024 * 1024 for size in sizes)
    assert client.sent() == large

    outcome = producer(FakeKinesis()).send([view(7, note="y" * 1_100_000), view(8)])
    assert outcome.accepted == 1 and "1 MiB" in outcome.refused[0].error and not outcome.refused[0].retryable


def test_more_than_one_call_of_events_is_refused_outright():
    with pytest.raises(ValueError, match="at most 500"):
        producer(FakeKinesis()).send([view(n) for n in range(MAX_EVENTS_PER_SEND + 1)])


def test_every_event_gets_a_status_and_what_ingest_could_not_apply_is_refused_at_the_door():
    now = 1_793_613_600.0  # 2026-11-02T10:00:00Z, when view() events happen
    events = [
        view(1),
        {**view(2), "event_type": "purchase", "price": 1e308, "quantity": 10_000},
        {**view(3), "timestamp": "9999-12-31T00:00:00Z"},
        {**view(4), "timestamp": "2026-11-02T10:10:00Z"},  # ten minutes ahead of the clock
        {**view(5), "context": [[[[[[[["too deep"]]]]]]]]},
        {**view(6), "score": float("nan")},
        {**view(7), "timestamp": "2026-11-02T10:04:00Z"},  # within the clock skew
        view(8, user="hot"),
    ]
    fail = FakeKinesis(lambda call, index, record: "ProvisionedThroughputExceededException"
                       if json.loads(record["Data"])["user_id"] == "hot" else None)
    outcome = producer(fail, clock=lambda: now).send(events).to_json()
    statuses = outcome["events"]
    assert [s["status"] for s in statuses] == ["accepted", "refused", "refused", "refused", "refused", "refused",
                                               "accepted", "refused"]
    assert [s["index"] for s in statuses] == list(range(8)) and statuses[1]["event_id"] == "e2"
    reasons = {s["index"]: s["error"] for s in statuses if s["status"] == "refused"}
    assert reasons[1].startswith("price:") and reasons[2].startswith("timestamp:")
    assert reasons[3].startswith("timestamp: 600 s after the event was received")
    assert reasons[4].startswith("context.0.0.0.0.0.0.0: nested deeper") and reasons[5].startswith("score:")
    assert statuses[7]["retryable"] and not statuses[1]["retryable"]
    assert "error" not in statuses[0] and outcome["accepted"] == 2 and outcome["failed"] == 6
    assert [f["index"] for f in outcome["failures"]] == [1, 2, 3, 4, 5, 7]
    assert [e["event_id"] for e in fail.sent() if e["user_id"] != "hot"] == ["e1", "e7"]


@pytest.mark.parametrize("error", [
    ReadTimeoutError(endpoint_url="https://kinesis"),
    ConnectionClosedError(endpoint_url="https://kinesis"),
    ClientError({"Error": {"Code": "InternalFailure", "Message": "oops"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "PutRecords"),
])
def test_a_call_without_a_clear_answer_is_not_sent_again_and_its_events_are_refused_as_retryable(error):
    # The stream may have taken the records of a call whose answer is lost or a server error: sent again, they
    # would be on it twice.
    client = FakeKinesis(error)
    outcome = producer(client, attempts=3).send([view(1), view(2)])
    assert outcome.accepted == 0 and len(client.calls) == 1
    assert [(r.index, r.retryable) for r in outcome.refused] == [(0, True), (1, True)]
    assert "whether the stream took the event is not known" in outcome.refused[0].error


def test_a_put_records_call_is_made_once_by_the_client_the_producer_is_built_with(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    kinesis = client("kinesis", **PUT_RECORDS_CLIENT)
    sent = []

    def slow_answer(request, **_):  # the records reached the stream; the answer did not come in time
        sent.append(request)
        raise ReadTimeoutError(endpoint_url=request.url)

    kinesis.meta.events.register("before-send.kinesis.PutRecords", slow_answer)
    outcome = EventProducer(kinesis, "stream").send([view(1), view(2)])
    assert len(sent) == 1 and outcome.accepted == 0 and all(r.retryable for r in outcome.refused)


def test_a_client_that_retries_whole_calls_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ValueError, match="retries whole calls"):
        EventProducer(client("kinesis", connect_timeout=1, read_timeout=5, max_attempts=3), "stream")
    with pytest.raises(ValueError, match="retries whole calls"):
        EventProducer(boto3.client("kinesis"), "stream")
