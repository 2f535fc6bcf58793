"""The Ingest handler on moto: the sample batch, write calls per touched key, and DynamoDB failures mid-batch
that Kinesis replays from the lowest failed record, ending in the state of one clean pass."""

import contextlib
import copy
import itertools
import os
import sys
import uuid
from typing import Iterator

import pytest
from botocore.exceptions import ClientError

from conftest import ROOT, load_event
from tailor.store.aws import from_dynamo
from tailor_local.stack import LocalStack

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


def test_sample_batch_is_applied_with_one_write_per_touched_key(ingest):
    response = ingest.invoke(load_event(EVENT))
    assert response == {"batchItemFailures": []}
    tables = ingest.tables()
    rows = sum(len(r) for name, r in tables.items() if name != "CheckpointsTable")
    # One UpdateItem per row the batch touched, one for the archive checkpoint; reads are batched.
    assert ingest.calls.count("UpdateItem") == rows + 1
    assert ingest.calls.count("BatchGetItem") == 1
    assert set(ingest.calls) == {"UpdateItem", "BatchGetItem"}
    shopper = next(r for r in tables["ShoppersTable"] if r["user_id"] == "u-1001")
    assert (shopper["purchases"], shopper["events"], shopper["revenue"]) == (1, 12, 199)
    bucket = ingest.stack.resources["DataBucket"].name
    s3 = ingest.stack.aws.client("s3")
    quarantined = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["Contents"]
    archived = s3.list_objects_v2(Bucket=bucket, Prefix="archive/date=2026-11-02/")["Contents"]
    assert len(quarantined) == 5 and len(archived) == 1


@pytest.mark.parametrize("failing_calls", [(4,), (2, 11), (17, 18, 19, 30)])
def test_dynamodb_failures_mid_batch_replayed_from_the_lowest_failed_record_match_a_clean_pass(failing_calls):
    event = load_event(EVENT)
    with open(os.devnull, "w") as log, local_stack(log) as stack:
        clean = Ingest(stack)
        assert clean.invoke(event) == {"batchItemFailures": []}
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
        assert flaky.tables() == expected
