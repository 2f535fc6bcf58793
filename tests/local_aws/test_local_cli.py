"""The `tailor` command against a running local stack with a stand-in function: state, quarantine, dlq, replay."""

import argparse
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from decimal import Decimal

import pytest

import tailor_cli.main as cli
from tailor_cli.main import main
from tailor_local.stack import LocalStack, StackHandle, all_processed, put_events, state_path

TEMPLATE = textwrap.dedent("""\
    Transform: AWS::Serverless-2016-10-31
    Globals:
      Function:
        Environment:
          Variables: {DATA_BUCKET: !Ref DataBucket, SHOPPERS_TABLE: !Ref ShoppersTable}
    Resources:
      EventStream:
        Type: AWS::Kinesis::Stream
        Properties: {ShardCount: 1}
      IngestFailureQueue:
        Type: AWS::SQS::Queue
      DataBucket:
        Type: AWS::S3::Bucket
      ShoppersTable:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions: [{AttributeName: user_id, AttributeType: S}]
          KeySchema: [{AttributeName: user_id, KeyType: HASH}]
      SessionsTable:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions: [{AttributeName: session_id, AttributeType: S}]
          KeySchema: [{AttributeName: session_id, KeyType: HASH}]
      ItemsTable:
        Type: AWS::DynamoDB::Table
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions: [{AttributeName: item_id, AttributeType: S}]
          KeySchema: [{AttributeName: item_id, KeyType: HASH}]
      IngestFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/ingest
          Handler: app.lambda_handler
          Events:
            Stream:
              Type: Kinesis
              Properties:
                Stream: !GetAtt EventStream.Arn
                StartingPosition: TRIM_HORIZON
                BatchSize: 10
                FunctionResponseTypes: [ReportBatchItemFailures]
                BisectBatchOnFunctionError: true
                MaximumRetryAttempts: 0
                DestinationConfig:
                  OnFailure: {Type: SQS, Destination: !GetAtt IngestFailureQueue.Arn}
    """)

# A stand-in for Ingest that talks to the local AWS the way the real one does: through the SDK and the
# environment the runtime gives it.
STAND_IN = textwrap.dedent("""\
    import base64, json, os
    import boto3

    s3 = boto3.client("s3")
    shoppers = boto3.resource("dynamodb").Table(os.environ["SHOPPERS_TABLE"])

    def lambda_handler(event, context):
        for record in event["Records"]:
            text = base64.b64decode(record["kinesis"]["data"]).decode()
            body = json.loads(text)
            if body.get("poison"):
                raise ValueError("cannot digest this")
            if body.get("bad"):
                sequence = record["kinesis"]["sequenceNumber"]
                s3.put_object(Bucket=os.environ["DATA_BUCKET"], Key=f"quarantine/{sequence}.json", Body=json.dumps(
                    {"reason": "bad: it says so itself", "shard": record["eventID"].split(":")[0],
                     "sequence_number": sequence, "data": text}))
                continue
            # A set of what it saw, so a batch delivered again (bisect replays records) changes nothing.
            shoppers.update_item(Key={"user_id": body["user_id"]}, UpdateExpression="ADD seen :n",
                                 ExpressionAttributeValues={":n": {str(body["n"])}})
        return {"batchItemFailures": []}
    """)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / "template.yaml").write_text(TEMPLATE)
    (repo / "functions" / "ingest").mkdir(parents=True)
    (repo / "functions" / "ingest" / "app.py").write_text(STAND_IN)
    with open(repo / "functions.log", "w") as log, \
            LocalStack(repo / "template.yaml", port=0, stack_name="tailor-cli-test", function_log=log) as stack:
        stack.write_state(state_path(repo / "template.yaml"), every_s=0.1)
        events = [{"user_id": "ann", "n": 1}, {"user_id": "ann", "n": 2}, {"user_id": "bob", "bad": True},
                  {"user_id": "cid", "poison": True}, {"user_id": "bob", "n": 3}]
        put = put_events(stack.aws, stack.stream_name(), events)
        deadline = time.monotonic() + 60
        while not all_processed(stack.progress(), stack.stream_name(), put):
            assert time.monotonic() < deadline, stack.progress()
            time.sleep(0.05)
        yield repo / "template.yaml"


def tailor(template, *args):
    return main(["--template", str(template), *args])


def run_as_printed(said, ending):
    """Run the command the output suggests whose line has `ending`, in a shell, as a reader would paste it."""
    line = next(line for line in said.splitlines() if f" {ending} " in line + " ")
    command = line.strip().split("  ")[0]
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command, done.stderr)
    return done


def test_state_shows_the_row_the_function_wrote(running, capsys):
    assert tailor(running, "state", "user", "ann") == 0
    row, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)
    assert row == {"user_id": "ann", "seen": ["1", "2"]}
    assert tailor(running, "state", "user", "nobody") == 1
    assert tailor(running, "state", "tables") == 0
    assert "ShoppersTable" in capsys.readouterr().out


def test_state_of_an_item_shows_its_row_and_the_catalog_fields_served(running, capsys):
    handle = StackHandle.load(state_path(running))
    handle.table("ItemsTable").put_item(Item={"item_id": "i-1", "views": 3, "available": True, "price": Decimal("9.5"),
                                              "catalog": {"available": False}})
    assert tailor(running, "state", "item", "i-1") == 0
    out = capsys.readouterr().out
    row, end = json.JSONDecoder().raw_decode(out)
    assert row["catalog"] == {"available": False}
    served, _ = json.JSONDecoder().raw_decode(out[end:].lstrip())
    assert served == {"price": 9.5, "available": False}
    assert tailor(running, "state", "item", "nobody") == 1


def test_quarantine_lists_the_rejected_record_with_its_reason(running, capsys):
    assert tailor(running, "quarantine") == 0
    out = capsys.readouterr().out
    assert "bad: it says so itself" in out and '"user_id":"bob"' in out


def test_dlq_shows_the_failed_batch_and_reads_its_records_back(running, capsys):
    assert tailor(running, "dlq", "--records") == 0
    captured = capsys.readouterr()
    assert "1 message(s) in" in captured.err
    assert "(1 records): RetryAttemptsExhausted" in captured.out
    assert '"poison":true' in captured.out and '"n":3' not in captured.out


def test_dlq_pages_through_more_than_ten_messages_and_leaves_them_all_in_the_queue(running, capsys):
    handle = StackHandle.load(state_path(running))
    sqs, url = handle.aws.client("sqs"), handle.resources.ref("IngestFailureQueue")
    body = {"KinesisBatchInfo": {"shardId": "shardId-000000000009", "startSequenceNumber": "1", "endSequenceNumber": "1",
                                 "batchSize": 1, "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/gone"},
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6}}
    for _ in range(24):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    try:
        assert tailor(running, "dlq", "--limit", "50", "--records") == 0  # a stream that is gone: said, not a crash
        captured = capsys.readouterr()
        assert "25 message(s) in" in captured.err
        assert captured.out.count("RetryAttemptsExhausted") == 25
        assert captured.out.count("cannot be read from the stream") == 24
        assert handle.queue_depth("IngestFailureQueue") == 25  # peeked, not taken
        assert tailor(running, "dlq", "--limit", "3") == 0
        assert "the first 3:" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            tailor(running, "dlq", "--limit", "0")
    finally:
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                if "shardId-000000000009" in message["Body"]:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                                  VisibilityTimeout=0)
            if all("shardId-000000000009" not in m["Body"] for m in messages):
                break


def test_replay_waits_until_the_function_has_the_new_events(running, capsys, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"user_id": "dee", "n": n}) for n in range(25)) + "\n")
    assert tailor(running, "replay", "jsonl", "--path", str(events)) == 0
    shown = run_as_printed(capsys.readouterr().err, "state user dee")
    row, _ = json.JSONDecoder().raw_decode(shown.stdout)
    assert row["seen"] == sorted(str(n) for n in range(25))


def test_replay_of_a_missing_file_says_so(running, capsys, tmp_path):
    assert tailor(running, "replay", "cdnow", "--path", str(tmp_path / "missing.txt")) == 1
    assert "no data file" in capsys.readouterr().err


def test_commands_without_a_running_stack_say_how_to_start_one(tmp_path, capsys):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    assert tailor(tmp_path / "template.yaml", "state", "user", "ann") == 1
    said = capsys.readouterr().err
    command = re.search(r"start one with `(.+)`", said).group(1)
    assert command.endswith(f"--template {tmp_path / 'template.yaml'} local up"), said
    assert subprocess.run(f"{command} --help", shell=True, capture_output=True).returncode == 0


def test_commands_of_other_modules_get_their_arguments(monkeypatch):
    seen = []
    module = types.ModuleType("tailor_local_fake_tool")
    module.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "tailor_local_fake_tool", module)
    monkeypatch.setitem(cli.DELEGATED, ("fake", "tool"), "tailor_local_fake_tool")
    assert main(["fake", "tool", "--out", "x.csv"]) == 3
    assert seen == [["--out", "x.csv"]]


def verbs(parser, words=()):
    """Every command line `tailor --help` leads to: tailor local, tailor local up, tailor bench ingest, ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name)
                yield from verbs(sub, (*words, name))


def test_every_command_tailor_lists_has_help(capsys):
    listed = list(verbs(cli.parser()))
    assert {("bench",), ("train",), ("evaluate",), ("local", "up"), ("bench", "ingest")} <= set(listed)
    for words in [(), *listed]:
        with pytest.raises(SystemExit) as leaving:
            main([*words, "--help"])
        assert leaving.value.code == 0, words
        assert "usage:" in capsys.readouterr().out, words


def test_status_goes_to_stdout(running, capsys):
    assert tailor(running, "local", "status") == 0
    captured = capsys.readouterr()
    assert "Local stack tailor-cli-test at http://" in captured.out and "rows:" in captured.out
    assert captured.err == ""


def test_a_reader_that_goes_away_ends_the_command_quietly(running):
    command = [sys.executable, "-m", "tailor_cli", "--template", str(running), "state", "user", "ann"]
    reading = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reading.stdout.close()  # as `| head` does once it has what it wants
    said = reading.stderr.read()
    assert reading.wait(timeout=60) == 1
    assert "Broken pipe" not in said and "Errno" not in said and "Traceback" not in said, said


def test_state_cluster_shows_a_published_clusters_traits_and_top_items(running, capsys):
    import numpy as np

    from tailor.clusters import FORMAT, MODEL_NAME, ItemClusters
    from tailor.clusters.model import TRAIT_NAMES
    from tailor.models import ModelRegistry
    from tailor.store.aws import S3BlobStore
    from tailor_local.stack import StackHandle

    assert tailor(running, "state", "cluster", "c0000") == 1
    assert "no item clusters published" in capsys.readouterr().err
    handle = StackHandle.load(state_path(running))
    registry = ModelRegistry(S3BlobStore(handle.aws.client("s3"), handle.resources.name("DataBucket")))
    descriptors = np.full((2, len(TRAIT_NAMES)), 0.25)
    clusters = ItemClusters(ids=("c0000", "c0001"), centroids=np.eye(2), descriptors=descriptors,
                            global_ctr=np.array([0.05, 0.02]), members={"lamp": "c0000", "tent": "c0001"},
                            top_items={"c0000": ("lamp",), "c0001": ("tent",)},
                            neighbours={"c0000": (("c0001", 0.1),), "c0001": (("c0000", 0.1),)})
    registry.publish(MODEL_NAME, clusters.to_json().encode(), {"format": FORMAT})
    assert tailor(running, "state", "cluster", "c0001") == 0
    shown, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)
    assert shown["top_items"] == ["tent"] and shown["traits"][TRAIT_NAMES[0]] == 0.25 and shown["size"] == 1
    assert tailor(running, "state", "cluster", "c0404") == 1
    assert "they are c0000, c0001" in capsys.readouterr().err


def test_quarantine_lists_the_most_recent_last_by_day_then_sequence_number():
    from tailor_cli.quarantine import _arrival

    keys = ["quarantine/date=2026-12-02/shard=s-1/999.json", "quarantine/date=2026-12-02/shard=s-0/1000.json",
            "quarantine/date=2026-12-01/shard=s-1/5000.json", "quarantine/date=2026-12-02/shard=s-1/1001.json"]
    ordered = [o["Key"] for o in sorted(({"Key": k} for k in keys), key=_arrival)]
    assert ordered == [keys[2], keys[0], keys[1], keys[3]]


def test_ctrl_c_that_the_system_hands_another_thread_still_stops_the_stack():
    """`tailor local up` waits for Ctrl-C on its main thread, where Python runs the handler; a SIGINT delivered to one
    of its other threads interrupts no wait there, and is acted on within a wake."""
    from tailor_cli.local import wait_until_interrupted

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        def elsewhere():
            time.sleep(0.2)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not the main one

        threading.Thread(target=elsewhere, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            wait_until_interrupted(wake_seconds=0.1)
        assert time.monotonic() - started < 2
    finally:
        signal.signal(signal.SIGINT, previous)
