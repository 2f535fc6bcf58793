"""The local AWS applies each call whole, as AWS does, however many threads call it at once."""

import threading
import time
import uuid

from tailor_local.aws import LocalAws, MotoServer


def test_records_put_from_many_threads_at_once_are_all_on_the_stream():
    with MotoServer(port=0) as server:
        aws = LocalAws(server.endpoint)
        kinesis = aws.client("kinesis")
        name = f"s-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=name)
        threads, calls = 8, 15

        def put(writer):
            for call in range(calls):
                kinesis.put_records(StreamName=name, Records=[
                    {"Data": f"{writer}-{call}-{n}".encode(), "PartitionKey": "k"} for n in range(20)])

        writers = [threading.Thread(target=put, args=(w,)) for w in range(threads)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()

        shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        assert len({r["Data"] for r in records}) == len(records) == threads * calls * 20


def test_a_long_poll_on_a_queue_holds_up_no_other_call():
    with MotoServer(port=0) as server:
        aws = LocalAws(server.endpoint)
        sqs = aws.client("sqs")
        url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        received = []
        polling = threading.Thread(target=lambda: received.extend(
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])))
        polling.start()
        time.sleep(0.5)
        began = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        assert time.monotonic() - began < 2
        polling.join()
        assert [m["Body"] for m in received] == ["hello"]
