"""Erasure through the real handlers on moto, a fresh state for each test: the sample batch ingested, the DELETE and GET of
events/ through the API handler, the queued message through the Erase handler as events/erase-sqs-batch.json: the
tombstone first, then sessions and archived events gone, the status done; a message delivered again changes nothing,
a run short of time saves its progress for the next, a message that is no erasure goes back to the queue."""

import copy
import gzip
import json
from types import SimpleNamespace

import boto3
import pytest

from tailor.store.aws import from_dynamo

from tests.helpers.events import load_event
from tests.helpers.lambdas import MotoFunctions, functions_on_moto

USER = "u-2002"  # the shopper events/api-delete-user.json and events/api-get-erasure.json name


class Stack:
    """The template's Ingest, API and Erase functions on moto, each imported once (warm after the first call)."""

    ingest, api, erase = "IngestFunction", "ApiFunction", "EraseFunction"

    def __init__(self, functions: MotoFunctions):
        self.functions = functions
        self.handlers = {name: functions.handler(name) for name in (self.ingest, self.api, self.erase)}
        self.queue = functions.names["ErasureQueue"]

    def call(self, function: str, event, context=None) -> dict:
        # As Lambda hands it over: the event as JSON, the answer as JSON.
        answer = self.functions.invoke(function, json.loads(json.dumps(event)), handler=self.handlers[function],
                                       context=context)
        return json.loads(json.dumps(answer))

    def api_call(self, name: str) -> tuple[int, dict]:
        answer = self.call(self.api, load_event(name))
        return answer["statusCode"], json.loads(answer["body"])

    def queued(self) -> list[dict]:
        """The messages on the erasure queue, received (and so hidden for its visibility timeout)."""
        return boto3.client("sqs").receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                                   AttributeNames=["All"]).get("Messages", [])

    def rows(self, logical_id: str) -> list[dict]:
        return [from_dynamo(i) for i in boto3.client("dynamodb").scan(TableName=logical_id)["Items"]]

    def archived(self) -> list[dict]:
        bucket, s3 = self.functions.names["DataBucket"], boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="archive/").get("Contents", [])]
        return [json.loads(line) for key in keys
                for line in gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).splitlines()]


@pytest.fixture
def local():
    with functions_on_moto() as functions:
        yield Stack(functions)


def sqs_event(message: dict) -> dict:
    """events/erase-sqs-batch.json carrying `message` as SQS delivered it."""
    event = load_event("erase-sqs-batch.json")
    record = event["Records"][0]
    record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"])
    return event


def test_delete_answers_at_once_and_the_erase_handler_finishes_the_erasure(local):
    assert local.call(local.ingest, load_event("ingest-kinesis-batch.json")) == {"batchItemFailures": []}
    sessions = {r["session_id"] for r in local.rows("SessionsTable") if r["user_id"] == USER}
    assert sessions and [e for e in local.archived() if e["user_id"] == USER]

    status, requested = local.api_call("api-delete-user.json")
    assert status == 202 and requested["status"] == "pending" and requested["user_id"] == USER
    assert requested["status_url"] == f"/dev/users/{USER}/erasure"
    (tombstone,) = [r for r in local.rows("ShoppersTable") if r["user_id"] == USER]
    assert "first_seen" not in tombstone and tombstone["erasure"]["status"] == "pending"
    (message,) = local.queued()
    assert json.loads(message["Body"]) == {"user_id": USER, "erasure_id": requested["erasure_id"]}
    assert local.api_call("api-get-erasure.json")[1]["status"] == "pending"

    event = sqs_event(message)
    assert local.call(local.erase, event) == {"batchItemFailures": []}

    status, done = local.api_call("api-get-erasure.json")
    assert status == 200 and done["status"] == "done" and done["erasure_id"] == requested["erasure_id"]
    assert done["removed"]["sessions"] == len(sessions) and done["removed"]["archive_events"] > 0
    assert not [r for r in local.rows("SessionsTable") if r["user_id"] == USER]
    assert not [e for e in local.archived() if e["user_id"] == USER]
    assert [e for e in local.archived() if e["user_id"] == "u-1001"], "other shoppers' events are kept"

    # The queue delivers the message again: nothing changes.
    rows, archived = local.rows("ShoppersTable"), local.archived()
    assert local.call(local.erase, event) == {"batchItemFailures": []}
    assert local.rows("ShoppersTable") == rows and local.archived() == archived
    assert local.api_call("api-get-erasure.json")[1] == done


def test_a_run_short_of_time_saves_its_progress_and_its_next_delivery_finishes(local):
    local.call(local.ingest, load_event("ingest-kinesis-batch.json"))
    local.api_call("api-delete-user.json")
    (message,) = local.queued()
    almost_out = SimpleNamespace(function_name="EraseFunction", function_version="$LATEST", memory_limit_in_mb=512,
                                 invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:Erase",
                                 aws_request_id="00000000-0000-0000-0000-000000000001",
                                 get_remaining_time_in_millis=lambda: 1_000)
    event = sqs_event(message)
    answer = local.call(local.erase, copy.deepcopy(event), almost_out)
    assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    status, pending = local.api_call("api-get-erasure.json")
    assert pending["status"] == "pending" and pending["removed"]["sessions"] > 0 and pending["archive_days_left"]

    assert local.call(local.erase, event) == {"batchItemFailures": []}
    assert local.api_call("api-get-erasure.json")[1]["status"] == "done"
    assert not [e for e in local.archived() if e["user_id"] == USER]


def test_the_sample_message_of_no_erasure_on_record_does_nothing_and_a_malformed_one_goes_back(local):
    assert local.call(local.erase, load_event("erase-sqs-batch.json")) == {"batchItemFailures": []}
    assert local.rows("ShoppersTable") == []
    event = load_event("erase-sqs-batch.json")
    bad = copy.deepcopy(event["Records"][0])
    bad.update(messageId="bad-1", body=json.dumps({"user_id": USER}))
    event["Records"].append(bad)
    assert local.call(local.erase, event) == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}


def test_an_unknown_shopper_is_answered_404_and_tombstoned_with_nothing_queued(local):
    status, answer = local.api_call("api-delete-user.json")
    assert status == 404 and answer["status"] == "nothing_to_erase" and "never seen" in answer["message"]
    assert local.queued() == []
    status, found = local.api_call("api-get-erasure.json")
    assert status == 200 and found["status"] == "nothing_to_erase"
    (tombstone,) = local.rows("ShoppersTable")
    assert tombstone["user_id"] == USER and tombstone["expires_at"] > tombstone["erased_at"]
