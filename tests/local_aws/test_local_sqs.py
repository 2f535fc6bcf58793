"""The local SQS event source mapping on moto with fake handlers: batches, deletion of what succeeded, partial batch
failures, redelivery after the visibility timeout, the queue's redrive to its dead-letter queue; and the template's
SQS events read as Lambda reads them."""

import json
import textwrap
import time
import uuid

import pytest

from tailor_local.aws import LocalAws, MotoServer, create_resources, plan_resources
from tailor_local.runtime import LocalFunction
from tailor_local.sqs import SqsMapping, SqsSource, sqs_event, sqs_sources
from tailor_local.template import Template, TemplateError

from tests.helpers import ROOT

VISIBILITY_S = 1


@pytest.fixture(scope="module")
def aws():
    with MotoServer(port=0) as server:
        yield LocalAws(server.endpoint)


@pytest.fixture
def queue(aws):
    """A fresh queue (visibility timeout of a second) whose messages go to a dead-letter queue after 3 receives."""
    sqs = aws.client("sqs")
    name = f"q-{uuid.uuid4().hex[:8]}"
    dead_url = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(VISIBILITY_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 3})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    class Queue:
        def __init__(self):
            self.url, self.arn, self.dead_url = url, arn, dead_url

        def send(self, *numbers):
            for n in numbers:
                sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}),
                                 MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}})

        def source(self, **settings):
            return SqsSource(function_id="Fake", queue_url=url, queue_arn=arn, **settings)

        def depth(self, which=None):
            attributes = sqs.get_queue_attributes(QueueUrl=which or url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            return int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"])

    return Queue()


class FakeHandler:
    """Records the numbers of every batch; fails those in `fail` (by batchItemFailures, or by raising)."""

    def __init__(self, fail=(), *, raise_error=False, respond=None):
        self.fail, self.raise_error, self.respond = set(fail), raise_error, respond
        self.calls: list[list[int]] = []
        self.events: list[dict] = []

    def __call__(self, event, context):
        numbers = [json.loads(r["body"])["n"] for r in event["Records"]]
        self.calls.append(numbers)
        self.events.append(event)
        if self.respond is not None:
            return self.respond
        if self.raise_error and self.fail & set(numbers):
            raise ValueError("poison message")
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r, n in zip(event["Records"], numbers)
                                      if n in self.fail]}


def mapping(aws, queue, handler, **settings):
    return SqsMapping(queue.source(**settings), LocalFunction.from_handler("Fake", handler), aws, idle_poll_s=0.05)


def test_batches_of_up_to_batch_size_are_delivered_as_lambdas_sqs_event_and_deleted(aws, queue):
    queue.send(*range(25))
    handler = FakeHandler()
    poller = mapping(aws, queue, handler, batch_size=10, report_batch_item_failures=True)
    poller.drain()

    assert sorted(n for call in handler.calls for n in call) == list(range(25))
    assert all(len(call) <= 10 for call in handler.calls) and len(handler.calls) >= 3
    record = handler.events[0]["Records"][0]
    assert set(record) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                           "eventSource", "eventSourceARN", "awsRegion"}
    assert (record["eventSource"], record["eventSourceARN"]) == ("aws:sqs", queue.arn)
    assert record["attributes"]["ApproximateReceiveCount"] == "1" and "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert queue.depth() == 0 and poller.stats.deleted == 25 and poller.stats.failed == 0


def test_reported_failures_stay_on_the_queue_come_back_after_the_visibility_timeout_and_then_go_to_the_dlq(aws, queue):
    queue.send(*range(5))
    handler = FakeHandler(fail={3})
    poller = mapping(aws, queue, handler, batch_size=10, report_batch_item_failures=True)
    poller.drain()
    assert poller.stats.deleted == 4 and poller.stats.failed == 1 and queue.depth() == 1
    poller.drain()
    assert handler.calls[1:] == []  # invisible until its visibility timeout passes

    for _ in range(3):
        time.sleep(VISIBILITY_S + 0.2)
        poller.drain()
    # Received three times (maxReceiveCount), failed each time: the queue's redrive policy moved it.
    assert sorted(handler.calls[0]) == [0, 1, 2, 3, 4] and handler.calls[1:] == [[3], [3]]
    assert queue.depth() == 0 and queue.depth(queue.dead_url) == 1


def test_a_function_error_leaves_the_whole_batch_and_so_does_a_response_naming_no_message_of_it(aws, queue):
    queue.send(1, 2)
    poller = mapping(aws, queue, FakeHandler(fail={2}, raise_error=True), batch_size=10,
                     report_batch_item_failures=True)
    poller.drain()
    assert poller.stats.deleted == 0 and poller.stats.failed == 2 and queue.depth() == 2

    time.sleep(VISIBILITY_S + 0.2)
    poller = mapping(aws, queue, FakeHandler(respond={"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}),
                     batch_size=10, report_batch_item_failures=True)
    poller.drain()
    assert poller.stats.deleted == 0 and queue.depth() == 2

    time.sleep(VISIBILITY_S + 0.2)
    # Without ReportBatchItemFailures a response is a success whatever it says.
    poller = mapping(aws, queue, FakeHandler(fail={1, 2}), batch_size=10)
    poller.drain()
    assert poller.stats.deleted == 2 and queue.depth() == 0


def test_the_poller_thread_delivers_what_arrives_until_stopped(aws, queue):
    handler = FakeHandler()
    poller = mapping(aws, queue, handler, batch_size=1, report_batch_item_failures=True)
    poller.start()
    try:
        queue.send(7, 8)
        deadline = time.monotonic() + 10
        while poller.stats.deleted < 2:
            assert time.monotonic() < deadline, poller.stats
            time.sleep(0.05)
    finally:
        poller.stop()
    assert sorted(handler.calls) == [[7], [8]]


def test_the_templates_sqs_events_resolve_to_their_queues_and_settings():
    template = Template.load(ROOT / "template.yaml", stack_name="sqs-test")
    resources = plan_resources(template, "http://127.0.0.1:1")
    (source,) = sqs_sources(template, resources)
    declared = template.functions()["EraseFunction"].events["Erasures"]["Properties"]
    assert (source.function_id, source.event_name) == ("EraseFunction", "Erasures")
    assert (source.queue_url, source.queue_arn) == (resources.ref("ErasureQueue"), resources["ErasureQueue"].arn)
    assert source.batch_size == declared["BatchSize"] and source.report_batch_item_failures


def test_the_local_stack_creates_the_erasure_queue_with_its_redrive_to_the_dead_letter_queue(aws):
    template = Template.load(ROOT / "template.yaml", stack_name=f"sqs-{uuid.uuid4().hex[:6]}")
    resources = create_resources(template, aws)
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=resources.ref("ErasureQueue"),
                                                        AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": resources["ErasureDeadLetterQueue"].arn,
                                                       "maxReceiveCount": 5}
    assert attributes["VisibilityTimeout"] == "960"
    (source,) = sqs_sources(template, resources)
    assert source.queue_url == resources.ref("ErasureQueue")


def test_an_sqs_event_on_something_that_is_not_a_queue_is_refused(tmp_path):
    (tmp_path / "template.yaml").write_text(textwrap.dedent("""\
        Resources:
          Stream:
            Type: AWS::Kinesis::Stream
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: functions/fn
              Handler: app.handler
              Events:
                Jobs:
                  Type: SQS
                  Properties: {Queue: !GetAtt Stream.Arn}
        """))
    template = Template.load(tmp_path / "template.yaml")
    with pytest.raises(TemplateError, match="not an SQS queue"):
        sqs_sources(template, plan_resources(template, "http://127.0.0.1:1"))


def test_sqs_event_carries_each_message_as_lambda_does():
    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
               "Attributes": {"ApproximateReceiveCount": "2"},
               "MessageAttributes": {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}}
    (record,) = sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")["Records"]
    assert record["messageAttributes"]["b"] == {"stringValue": None, "binaryValue": "AAE=", "stringListValues": [],
                                                "binaryListValues": [], "dataType": "Binary"}
    assert (record["messageId"], record["receiptHandle"], record["awsRegion"]) == ("m1", "r1", "us-east-1")
