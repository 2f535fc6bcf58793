"""The local Kinesis event source mapping on moto with fake handlers: batching, retries, bisect, destination, order."""

import base64
import io
import json
import logging
import random
import threading
import time
import uuid

import pytest

from tailor_local.aws import LocalAws, MotoServer
from tailor_local.kinesis import KinesisMapping, KinesisSource, ShardPoller
from tailor_local.runtime import LocalFunction


@pytest.fixture(scope="module")
def aws():
    with MotoServer(port=0) as server:
        yield LocalAws(server.endpoint)


@pytest.fixture
def stream(aws):
    """A fresh one-shard stream and failure queue; `put(n)` writes records {"n": 0..n-1}, one partition key."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    aws.client("kinesis").create_stream(StreamName=name, ShardCount=1)
    queue_url = aws.client("sqs").create_queue(QueueName=f"{name}-failures")["QueueUrl"]
    arn = aws.client("kinesis").describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]

    class Stream:
        def __init__(self):
            self.name, self.arn, self.queue_url = name, arn, queue_url
            self.sequence: dict[int, str] = {}

        def put(self, count, start=0, key="user-1"):
            numbers = range(start, start + count)
            records = [{"Data": json.dumps({"n": n}).encode(), "PartitionKey": key} for n in numbers]
            response = aws.client("kinesis").put_records(StreamName=name, Records=records)
            for n, outcome in zip(numbers, response["Records"]):
                self.sequence[n] = outcome["SequenceNumber"]

        def source(self, **settings):
            return KinesisSource(function_id="Fake", stream_name=name, stream_arn=arn, on_failure_queue_url=queue_url,
                                 **settings)

        def failure_records(self):
            messages = aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                                         VisibilityTimeout=0).get("Messages", [])
            return [json.loads(m["Body"]) for m in messages]

    return Stream()


class FakeHandler:
    """Records every batch it is given (as the list of record numbers) and fails on cue.

    `raise_on`: numbers whose presence in a batch makes the handler raise, every time.
    `report`: number -> how many times to report it in batchItemFailures (None: every time).
    `respond`: a fixed response for the first invocation, overriding the above.
    """

    def __init__(self, raise_on=(), report=None, respond=None):
        self.raise_on, self.report, self.respond = set(raise_on), dict(report or {}), respond
        self.calls: list[list[int]] = []
        self.events: list[dict] = []

    def __call__(self, event, context):
        numbers = [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in event["Records"]]
        self.calls.append(numbers)
        self.events.append(event)
        if self.respond is not None and len(self.calls) == 1:
            return self.respond
        if self.raise_on & set(numbers):
            raise ValueError(f"poison record {sorted(self.raise_on & set(numbers))}")
        failed = []
        for record, n in zip(event["Records"], numbers):
            if n in self.report and (self.report[n] is None or self.report[n] > 0):
                if self.report[n] is not None:
                    self.report[n] -= 1
                failed.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failed}


def poller(aws, stream, handler, clock=time.time, **settings):
    function = LocalFunction.from_handler("fake", handler)
    shard = aws.client("kinesis").list_shards(StreamName=stream.name)["Shards"][0]["ShardId"]
    return ShardPoller(stream.source(**settings), shard, function, aws, clock=clock)


def test_the_event_is_shaped_like_lambdas_kinesis_event(aws, stream):
    stream.put(2)
    handler = FakeHandler()
    shard_poller = poller(aws, stream, handler)
    shard_poller.drain()

    (event,) = handler.events
    first = event["Records"][0]
    assert set(first) == {"kinesis", "eventSource", "eventVersion", "eventID", "eventName", "invokeIdentityArn",
                          "awsRegion", "eventSourceARN"}
    assert first["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert first["kinesis"]["partitionKey"] == "user-1"
    assert first["kinesis"]["sequenceNumber"] == stream.sequence[0]
    assert json.loads(base64.b64decode(first["kinesis"]["data"])) == {"n": 0}
    assert abs(first["kinesis"]["approximateArrivalTimestamp"] - time.time()) < 60
    assert first["eventID"] == f"{shard_poller.shard_id}:{stream.sequence[0]}"
    assert first["eventSource"] == "aws:kinesis" and first["eventName"] == "aws:kinesis:record"
    assert first["eventVersion"] == "1.0"
    assert first["eventSourceARN"] == stream.arn and first["awsRegion"] == "us-east-1"


def test_batches_hold_at_most_batch_size_records_in_sequence_order(aws, stream):
    stream.put(25)
    handler = FakeHandler()
    shard_poller = poller(aws, stream, handler, batch_size=10)
    shard_poller.drain()
    assert handler.calls == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    assert shard_poller.stats.checkpoint == stream.sequence[24] and shard_poller.stats.records_done == 25


def test_a_partial_batch_failure_is_retried_from_the_lowest_failed_sequence_number(aws, stream):
    stream.put(10)
    handler = FakeHandler(report={6: 1, 3: 1})
    shard_poller = poller(aws, stream, handler, batch_size=10, report_batch_item_failures=True)
    shard_poller.drain()
    assert handler.calls == [list(range(10)), list(range(3, 10))]
    assert shard_poller.stats.retries == 1 and shard_poller.stats.checkpoint == stream.sequence[9]
    assert stream.failure_records() == []


def test_batch_item_failures_are_ignored_without_report_batch_item_failures(aws, stream):
    stream.put(5)
    handler = FakeHandler(report={2: 1})
    poller(aws, stream, handler, batch_size=10, report_batch_item_failures=False).drain()
    assert handler.calls == [list(range(5))]


@pytest.mark.parametrize("bad_identifier", ["", None, "no-such-sequence-number"])
def test_an_unusable_item_identifier_fails_the_whole_batch(aws, stream, bad_identifier):
    stream.put(4)
    handler = FakeHandler(respond={"batchItemFailures": [{"itemIdentifier": bad_identifier}]})
    poller(aws, stream, handler, batch_size=10, report_batch_item_failures=True).drain()
    assert handler.calls == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_partial_failures_use_up_the_retries_then_go_to_the_destination(aws, stream):
    stream.put(5)
    handler = FakeHandler(report={2: None})
    shard_poller = poller(aws, stream, handler, batch_size=10, report_batch_item_failures=True,
                          maximum_retry_attempts=2)
    shard_poller.drain()
    assert handler.calls == [[0, 1, 2, 3, 4], [2, 3, 4], [2, 3, 4]]
    (failure,) = stream.failure_records()
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert "functionError" not in failure["responseContext"]
    info = failure["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        stream.sequence[2], stream.sequence[4], 3)
    assert shard_poller.stats.checkpoint == stream.sequence[4] and shard_poller.stats.records_discarded == 3


def test_a_function_error_bisects_down_to_the_poison_record_which_alone_goes_to_the_destination(aws, stream):
    stream.put(8)
    handler = FakeHandler(raise_on={5})
    shard_poller = poller(aws, stream, handler, batch_size=8, report_batch_item_failures=True,
                          bisect_on_function_error=True, maximum_retry_attempts=2)
    shard_poller.drain()
    # Halves are retried in order and splitting spends no retries; the single poison record then gets its 2 retries.
    assert handler.calls == [
        [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [5], [5], [6, 7],
    ]
    (failure,) = stream.failure_records()
    info = failure["KinesisBatchInfo"]
    assert info == {
        "shardId": shard_poller.shard_id,
        "startSequenceNumber": stream.sequence[5],
        "endSequenceNumber": stream.sequence[5],
        "approximateArrivalOfFirstRecord": info["approximateArrivalOfFirstRecord"],
        "approximateArrivalOfLastRecord": info["approximateArrivalOfLastRecord"],
        "batchSize": 1,
        "streamArn": stream.arn,
    }
    assert failure["requestContext"]["functionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:fake"
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert shard_poller.stats.bisections == 3 and shard_poller.stats.checkpoint == stream.sequence[7]


def test_without_bisect_the_whole_batch_is_retried_then_discarded_and_the_shard_moves_on(aws, stream):
    stream.put(8)
    handler = FakeHandler(raise_on={1})
    shard_poller = poller(aws, stream, handler, batch_size=4, maximum_retry_attempts=2)
    shard_poller.drain()
    assert handler.calls == [[0, 1, 2, 3]] * 3 + [[4, 5, 6, 7]]
    (failure,) = stream.failure_records()
    info = failure["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        stream.sequence[0], stream.sequence[3], 4)
    assert failure["requestContext"]["approximateInvokeCount"] == 3


def test_the_batching_window_holds_a_partial_batch_until_it_passes(aws, stream):
    now = [1000.0]
    stream.put(3)
    handler = FakeHandler()
    shard_poller = poller(aws, stream, handler, clock=lambda: now[0], batch_size=10, batching_window_s=5)
    shard_poller.step()
    assert handler.calls == [] and shard_poller.seconds_until_ready() == 5
    now[0] += 5
    shard_poller.step()
    assert handler.calls == [[0, 1, 2]]

    stream.put(10, start=3)
    shard_poller.step()  # a full batch does not wait for the window
    assert handler.calls[-1] == list(range(3, 13))


def test_records_older_than_the_maximum_age_are_discarded_without_an_invocation(aws, stream):
    stream.put(3)
    handler = FakeHandler()
    shard_poller = poller(aws, stream, handler, clock=lambda: time.time() + 120, maximum_record_age_s=60)
    shard_poller.drain()
    assert handler.calls == []
    (failure,) = stream.failure_records()
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["KinesisBatchInfo"]["batchSize"] == 3


def test_order_is_kept_per_shard_and_every_record_succeeds_once_through_random_failures(aws):
    name = f"s-{uuid.uuid4().hex[:8]}"
    kinesis = aws.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    records = [{"Data": json.dumps({"n": n, "key": f"u{n % 7}"}).encode(), "PartitionKey": f"u{n % 7}"}
               for n in range(300)]
    for start in range(0, len(records), 100):
        kinesis.put_records(StreamName=name, Records=records[start:start + 100])

    rng = random.Random(11)
    succeeded: dict[str, list[tuple[int, str]]] = {}  # shard -> (sequence number, key) in the order they succeeded

    def flaky(event, context):
        if rng.random() < 0.2:
            raise RuntimeError("flaky")
        failed_at = len(event["Records"])
        if rng.random() < 0.3:
            failed_at = rng.randrange(len(event["Records"]))
        for record in event["Records"][:failed_at]:
            shard = record["eventID"].split(":")[0]
            key = json.loads(base64.b64decode(record["kinesis"]["data"]))["key"]
            succeeded.setdefault(shard, []).append((int(record["kinesis"]["sequenceNumber"]), key))
        failures = [{"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in event["Records"][failed_at:]]
        return {"batchItemFailures": failures}

    source = KinesisSource(function_id="Flaky", stream_name=name, stream_arn=arn, batch_size=25,
                           report_batch_item_failures=True, bisect_on_function_error=True)
    mapping = KinesisMapping(source, LocalFunction.from_handler("flaky", flaky), aws)
    mapping.drain()

    assert sum(len(done) for done in succeeded.values()) == len(records)
    for shard, done in succeeded.items():
        sequence_numbers = [seq for seq, _ in done]
        assert sequence_numbers == sorted(set(sequence_numbers)), f"{shard} out of order or repeated"
    assert sum(s.retries + s.bisections for s in mapping.stats()) > 0  # the failures did happen


def test_the_mapping_delivers_from_background_threads_until_stopped(aws, stream):
    handler = FakeHandler()
    mapping = KinesisMapping(stream.source(batch_size=50), LocalFunction.from_handler("fake", handler), aws,
                             idle_poll_s=0.05)
    mapping.start()
    try:
        stream.put(120)
        deadline = time.monotonic() + 30
        while mapping.stats()[0].checkpoint != stream.sequence[119] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mapping.stop()
    assert [n for call in handler.calls for n in call] == list(range(120))


def test_retries_bisections_and_discards_are_told_as_they_happen_in_the_log_and_the_function_log(aws, stream, caplog):
    stream.put(4)
    function_log = io.StringIO()
    function = LocalFunction.from_handler("fake", FakeHandler(raise_on={2}), log_stream=function_log)
    shard = aws.client("kinesis").list_shards(StreamName=stream.name)["Shards"][0]["ShardId"]
    shard_poller = ShardPoller(stream.source(batch_size=4, bisect_on_function_error=True, maximum_retry_attempts=1),
                               shard, function, aws)
    with caplog.at_level(logging.WARNING, logger="tailor_local.kinesis"):
        shard_poller.drain()
    told = [record.getMessage() for record in caplog.records]
    noted = [line for line in function_log.getvalue().splitlines() if "REPORT RequestId" not in line]
    for lines in (told, noted):
        assert sum("bisecting" in line for line in lines) == 2, lines
        assert sum("retry 1 of 1" in line for line in lines) == 1, lines
        assert sum(f"discarding 1 records ({stream.sequence[2]} to {stream.sequence[2]}): RetryAttemptsExhausted"
                   in line for line in lines) == 1, lines
    assert all("ValueError: poison record [2]" in line for line in noted if "discarding" not in line)


def test_stopping_waits_for_the_batch_in_flight_at_most_the_time_given(aws, stream):
    release = threading.Event()
    started = threading.Event()

    def stuck(event, context):
        started.set()
        release.wait(10)
        return None

    mapping = KinesisMapping(stream.source(), LocalFunction.from_handler("stuck", stuck, timeout_s=30), aws,
                             idle_poll_s=0.05)
    mapping.start()
    try:
        stream.put(1)
        assert started.wait(10)
        began = time.monotonic()
        assert mapping.stop(timeout=0.3) is False
        assert time.monotonic() - began < 1
    finally:
        release.set()
    assert mapping.stop(timeout=5) is True
