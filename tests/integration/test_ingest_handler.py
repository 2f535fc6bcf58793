"""The Ingest handler on moto: the sample batch, write calls per touched key, DynamoDB failures mid-batch
that Kinesis replays from the lowest failed record, ending in the state of one clean pass, and the events of a
shopper erased through the API handler, which bring nothing of them back."""

import base64
import contextlib
import copy
import gzip
import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from tailor.store.aws import from_dynamo
from tailor_local.stack import LocalStack

from tests.helpers import ROOT
from tests.helpers.events import load_event

EVENT = "ingest-kinesis-batch.json"


class Ingest:
    """The template's IngestFunction on its own local stack, with hooks on its AWS clients."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.function = stack.runtime.find("IngestFunction")
        self.function.load()
        self.module = sys.modules[self.function.handler.__module__]
        self.dynamodb = self.module.processor.ingestor.store.client
        self.calls: list[str] = []
        self.dynamodb.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model, **_):
        self.calls.append(model.name)

    def invoke(self, event: dict) -> dict:
        invocation = self.function.invoke(event)
        assert invocation.ok, invocation.error
        return invocation.payload

    def merge(self) -> dict:
        """What the merge's schedule does a minute later: the buffered counters into the counter tables."""
        invocation = self.stack.runtime.find("MergeCountersFunction").invoke(load_event("merge-counters-schedule.json"))
        assert invocation.ok, invocation.error
        return invocation.payload

    def tables(self) -> dict:
        """Every row of every table, in a stable order."""
        snapshot = {}
        for logical_id, resource in self.stack.resources.of_type("AWS::DynamoDB::Table").items():
            items = self.stack.aws.client("dynamodb").scan(TableName=resource.name, ConsistentRead=True)["Items"]
            snapshot[logical_id] = sorted((from_dynamo(item) for item in items), key=repr)
        return snapshot


@contextlib.contextmanager
def local_stack(log) -> Iterator[LocalStack]:
    """A fresh local stack whose event sources stay idle: the tests invoke the handler themselves."""
    stack = LocalStack(ROOT / "template.yaml", port=0, stack_name=f"tailor-it-{uuid.uuid4().hex[:8]}",
                       function_log=log).start(pollers=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def ingest():
    with open(os.devnull, "w") as log, local_stack(log) as stack:
        yield Ingest(stack)


COUNTER_TABLES = ("ItemsTable", "AssociationsTable", "QueriesTable", "TrendsTable")


def test_sample_batch_is_applied_with_one_write_per_state_row_and_one_for_its_counters(ingest):
    response = ingest.invoke(load_event(EVENT))
    assert response == {"batchItemFailures": []}
    tables = ingest.tables()
    assert not any(tables[name] for name in COUNTER_TABLES)  # buffered until the merge
    rows = len(tables["ShoppersTable"]) + len(tables["SessionsTable"])
    # One UpdateItem per state row the batch touched, one for its counters' slot, one each for the buffer's cursor and
    # the archive checkpoint; reads are batched.
    assert len(tables["BuffersTable"]) == 1
    assert ingest.calls.count("UpdateItem") == rows + 3
    assert ingest.calls.count("BatchGetItem") == 1
    assert set(ingest.calls) == {"UpdateItem", "BatchGetItem"}
    assert ingest.merge()["slots"] == 1
    tables = ingest.tables()
    assert tables["ItemsTable"] and tables["AssociationsTable"] and tables["QueriesTable"]
    shopper = next(r for r in tables["ShoppersTable"] if r["user_id"] == "u-1001")
    assert (shopper["purchases"], shopper["events"], shopper["revenue"]) == (1, 12, 199)
    bucket = ingest.stack.resources["DataBucket"].name
    s3 = ingest.stack.aws.client("s3")
    quarantined = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["Contents"]
    archived = s3.list_objects_v2(Bucket=bucket, Prefix="archive/date=2026-11-02/")["Contents"]
    assert len(quarantined) == 5 and len(archived) == 1


@pytest.mark.parametrize("failing_calls", [(4,), (2, 11), (1, 2, 3, 9)])
def test_dynamodb_failures_mid_batch_replayed_from_the_lowest_failed_record_match_a_clean_pass(failing_calls):
    event = load_event(EVENT)
    with open(os.devnull, "w") as log, local_stack(log) as stack:
        clean = Ingest(stack)
        assert clean.invoke(event) == {"batchItemFailures": []}
        clean.merge()
        expected = clean.tables()

    with open(os.devnull, "w") as log, local_stack(log) as stack:
        flaky = Ingest(stack)
        updates = itertools.count(1)

        def throttle(model, **_):
            if model.name == "UpdateItem" and next(updates) in failing_calls:
                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                             "Message": "injected"}}, "UpdateItem")

        flaky.dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", throttle)
        records = event["Records"]
        deliveries = 0
        while records:
            deliveries += 1
            assert deliveries < 10
            failures = flaky.invoke({"Records": copy.deepcopy(records)})["batchItemFailures"]
            if not failures:
                break
            lowest = min(int(f["itemIdentifier"]) for f in failures)
            # Kinesis redelivers from the lowest failed sequence number onward.
            records = [r for r in records if int(r["kinesis"]["sequenceNumber"]) >= lowest]
        assert deliveries > 1
        flaky.merge()
        assert flaky.tables() == expected


def resent(event: dict, records: list[dict], *, after: int, changes: dict | None = None) -> dict:
    """A Kinesis event of `records` as the stream delivers them again, put on it once more: sequence numbers past
    `after`, and each record's data with `changes` applied."""
    out = []
    for n, record in enumerate(copy.deepcopy(records), start=1):
        sequence = str(after + n * 1000)
        record["kinesis"]["sequenceNumber"] = sequence
        record["eventID"] = f"{record['eventID'].split(':')[0]}:{sequence}"
        if changes:
            data = {**json.loads(base64.b64decode(record["kinesis"]["data"])), **changes}
            record["kinesis"]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
        out.append(record)
    return {**event, "Records": out}


def test_an_erased_shopper_stays_erased_when_the_stream_delivers_their_events_again(ingest):
    """The sample batch, the DELETE of u-2002 through the API handler, then u-2002's events once more through the
    Ingest handler, replayed and sent again: no shopper row, session, counter or archived event of theirs comes back;
    an event after the erasure starts them afresh."""
    event, user = load_event(EVENT), "u-2002"
    assert ingest.invoke(event) == {"batchItemFailures": []}
    api = ingest.stack.runtime.find("ApiFunction")
    erased = api.invoke(load_event("api-delete-user.json"))
    assert erased.ok and erased.payload["statusCode"] == 202, erased
    assert json.loads(erased.payload["body"])["removed"]["shopper_state"] is True
    ingest.stack.queues["EraseFunction.Erasures"].drain()  # the rest of the erasure, queued for the Erase function
    tables, objects = ingest.tables(), archive(ingest)
    tombstone = next(r for r in tables["ShoppersTable"] if r["user_id"] == user)
    assert set(tombstone) == {"user_id", "erased_at", "expires_at", "erasure_id", "erasure"}
    assert tombstone["erasure"]["status"] == "done"
    assert not any(e["user_id"] == user for e in objects.values() for e in e)

    mine = [r for r in event["Records"] if r["kinesis"]["partitionKey"] == user]
    last = max(int(r["kinesis"]["sequenceNumber"]) for r in event["Records"])
    for delivery in (event, resent(event, mine, after=last)):
        assert ingest.invoke(delivery) == {"batchItemFailures": []}
        assert ingest.tables() == tables and archive(ingest) == objects
    profile = json.loads(api.invoke(with_user(load_event("api-get-profile.json"), user)).payload["body"] or "{}")
    assert "events" not in profile

    later = datetime.fromtimestamp(tombstone["erased_at"] + 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    back = resent(event, mine[:1], after=last + 10_000, changes={"event_id": "back-1", "timestamp": later,
                                                                "session_id": "s-2002-back"})
    for record in back["Records"]:  # on the stream when it happened: Ingest holds an event to its arrival's clock
        record["kinesis"]["approximateArrivalTimestamp"] = float(tombstone["erased_at"]) + 60
    assert ingest.invoke(back) == {"batchItemFailures": []}
    row = next(r for r in ingest.tables()["ShoppersTable"] if r["user_id"] == user)
    assert row["events"] == 1 and row["session_ids"] == ["s-2002-back"] and row["expires_at"] is None
    answer = api.invoke(with_user(load_event("api-get-profile.json"), user)).payload
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["events"] == 1


def archive(ingest: Ingest) -> dict[str, list[dict]]:
    bucket = ingest.stack.resources["DataBucket"].name
    s3 = ingest.stack.aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="archive/").get("Contents", [])]
    return {key: [json.loads(line) for line in gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                  .splitlines()] for key in keys}


def with_user(event: dict, user: str) -> dict:
    event = copy.deepcopy(event)
    event["pathParameters"]["user_id"] = user
    event["path"] = event["path"].replace("u-1001", user)
    event["requestContext"]["path"] = event["requestContext"]["path"].replace("u-1001", user)
    return event


def test_records_ingest_cannot_apply_are_quarantined_and_the_rest_of_their_batch_applied(ingest):
    """A shop writing to the stream directly: an order line too large to add up, a date past what dates hold, an event
    in another shopper's session, between valid events. The batch is applied with none to retry, the three are
    quarantined with their reasons, and delivering the batch again changes nothing."""
    event = load_event(EVENT)
    valid = [r for r in event["Records"] if b'"evt-0' in base64.b64decode(r["kinesis"]["data"])]  # the sample's valid
    last = max(int(r["kinesis"]["sequenceNumber"]) for r in event["Records"])
    purchase = next(r for r in valid if json.loads(base64.b64decode(r["kinesis"]["data"]))["event_type"] == "purchase")
    bad = [resent(event, [purchase], after=last, changes={"event_id": "x-1", "price": 1e308, "quantity": 10_000}),
           resent(event, [purchase], after=last + 1000, changes={"event_id": "x-2",
                                                                  "timestamp": "9999-12-31T00:00:00Z"}),
           resent(event, [valid[-1]], after=last + 2000, changes={"event_id": "x-3", "session_id": "s-1001-a"})]
    batch = {**event, "Records": valid[:10] + [r for b in bad for r in b["Records"]] + valid[10:]}

    assert ingest.invoke(copy.deepcopy(batch)) == {"batchItemFailures": []}
    bucket = ingest.stack.resources["DataBucket"].name
    s3 = ingest.stack.aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["Contents"]]
    reasons = {json.loads(body["data"])["event_id"]: body["reason"] for body in
               (json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys)}
    assert set(reasons) == {"x-1", "x-2", "x-3"}
    assert reasons["x-1"].startswith("price:") and reasons["x-2"].startswith("timestamp:")
    assert reasons["x-3"] == "session_id: session 's-1001-a' belongs to another shopper"
    tables = ingest.tables()
    shoppers = {r["user_id"]: r for r in tables["ShoppersTable"]}
    assert shoppers["u-1001"]["revenue"] == 199 and shoppers["u-2002"]["events"] == 8
    session = next(r for r in tables["SessionsTable"] if r["session_id"] == "s-1001-a")
    assert session["user_id"] == "u-1001" and session["events"] == 12

    assert ingest.invoke(copy.deepcopy(batch)) == {"batchItemFailures": []}
    assert ingest.tables() == tables
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["Contents"]) == 3
