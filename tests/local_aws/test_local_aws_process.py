"""The local AWS runs in a process of its own: it ends with the stack, can be paused, and keeps its own state."""

import os
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from moto import mock_aws

from tailor_local.aws import LocalAws, MotoServer


def test_it_serves_from_a_process_of_its_own_which_stop_ends():
    server = MotoServer(port=0).start()
    pid = server.pid
    try:
        assert pid is not None and pid != os.getpid()
        sqs = LocalAws(server.endpoint).client("sqs")
        assert sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    finally:
        server.stop()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_paused_local_aws_cuts_every_call_at_once_and_answers_again_with_its_state_intact():
    with MotoServer(port=0) as server:
        aws = LocalAws(server.endpoint)
        sqs = aws.client("sqs")
        url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="kept")
        single = client_trying_once(server.endpoint)  # to see the cut itself, not botocore's retries of it

        server.pause()
        began = time.monotonic()
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            single.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert time.monotonic() - began < 5  # cut, not left to time out
        assert server.resume() >= 1

        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_it_ends_when_the_process_that_started_it_is_killed():
    starter = subprocess.Popen(
        [sys.executable, "-c", "import time; from tailor_local.aws import MotoServer; "
                               "print(MotoServer(port=0).start().pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        pid = int(starter.stdout.readline())
    finally:
        starter.kill()
        starter.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail("the local AWS outlived the process that started it")


def test_moto_mocks_in_this_process_leave_its_state_alone():
    with MotoServer(port=0) as server:
        sqs = LocalAws(server.endpoint).client("sqs")
        name = f"q-{uuid.uuid4().hex[:8]}"
        sqs.create_queue(QueueName=name)
        with mock_aws():  # resets the in-process backends when it ends
            pass
        assert any(url.endswith(name) for url in sqs.list_queues().get("QueueUrls", []))


def client_trying_once(endpoint):
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    return session.client("sqs", endpoint_url=endpoint, config=Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=10))
