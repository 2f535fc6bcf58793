"""Functions' boto3 clients: `max_attempts` is every attempt a call gets, the first one included."""

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from tailor.aws_clients import client


class _Headers(dict):
    def get_all(self, name, default=None):  # what botocore asks of raw response headers
        return [self[name]] if name in self else default


class _Raw:
    headers = _Headers()

    def stream(self, **_):
        yield b""


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_call_the_service_keeps_failing_is_made_max_attempts_times(monkeypatch, max_attempts):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    kinesis = client("kinesis", connect_timeout=1, read_timeout=1, max_attempts=max_attempts)
    attempts = []

    def answer_500(request, **_):  # in place of the network: the service fails every attempt
        attempts.append(request)
        return AWSResponse(request.url, 500, {"x-amzn-ErrorType": "InternalFailure"}, _Raw())

    kinesis.meta.events.register("before-send.kinesis.PutRecords", answer_500)
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # botocore's backoff between attempts
    with pytest.raises(ClientError):
        kinesis.put_records(StreamName="s", Records=[{"Data": b"x", "PartitionKey": "k"}])
    assert len(attempts) == max_attempts


def test_requests_go_to_the_service_unchecked_which_answers_a_bad_parameter_itself(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    dynamodb = client("dynamodb", connect_timeout=1, read_timeout=1, max_attempts=1)
    sent = []

    def answer_400(request, **_):
        sent.append(request)
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ValidationException"}, _Raw())

    dynamodb.meta.events.register("before-send.dynamodb.GetItem", answer_400)
    with pytest.raises(ClientError):
        dynamodb.get_item(TableName="t", Key={"id": {"S": "k"}}, ConsistentRead="yes")  # a string for a boolean
    assert len(sent) == 1  # botocore did not refuse it before sending
