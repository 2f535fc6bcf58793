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


def test_a_read_waits_for_the_change_under_way_only_not_for_changes_queued_before_it():
    from tailor_local.aws import _OneCallAtATime

    gates = {name: threading.Event() for name in ("change-1", "change-2", "read")}
    started = []

    def app(environ, start_response):
        name = environ["name"]
        started.append(name)
        assert gates[name].wait(10)
        return [name.encode()]

    guard = _OneCallAtATime(app)

    def call(name, target):
        environ = {"name": name, "HTTP_X_AMZ_TARGET": target}
        thread = threading.Thread(target=lambda: guard(environ, None))
        thread.start()
        return thread

    first = call("change-1", "DynamoDB_20120810.UpdateItem")
    until(lambda: started == ["change-1"])
    second = call("change-2", "DynamoDB_20120810.UpdateItem")
    read = call("read", "DynamoDB_20120810.GetItem")
    time.sleep(0.2)
    assert started == ["change-1"]  # the change under way has the backends to itself
    gates["change-1"].set()
    until(lambda: len(started) == 2)
    time.sleep(0.2)
    assert started == ["change-1", "read"]  # before change-2, which waited longer
    gates["read"].set()
    until(lambda: len(started) == 3)
    gates["change-2"].set()
    for thread in (first, second, read):
        thread.join(10)
    assert sorted(started) == ["change-1", "change-2", "read"]


def test_reads_run_side_by_side():
    from tailor_local.aws import _OneCallAtATime

    together = threading.Barrier(3, timeout=10)
    guard = _OneCallAtATime(lambda environ, start_response: [str(together.wait()).encode()])
    reads = [threading.Thread(target=guard, args=({"HTTP_X_AMZ_TARGET": "Kinesis_20131202.GetRecords"}, None))
             for _ in range(3)]
    for read in reads:
        read.start()
    for read in reads:
        read.join(15)
    assert not together.broken


def test_a_change_is_not_starved_by_reads_that_keep_coming():
    from tailor_local.aws import _OneCallAtATime

    reading = threading.Event()
    stop = threading.Event()
    changed = []

    def app(environ, start_response):
        if environ["HTTP_X_AMZ_TARGET"].endswith("GetItem"):
            reading.set()
            time.sleep(0.02)
        else:
            changed.append(True)
        return [b""]

    guard = _OneCallAtATime(app)

    def keep_reading():
        while not stop.is_set():
            guard({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem"}, None)

    readers = [threading.Thread(target=keep_reading) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        assert reading.wait(10)
        began = time.monotonic()
        guard({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, None)
        assert changed and time.monotonic() - began < 2
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)


def until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_under_many_changes_and_reads_at_once_a_change_always_runs_alone_and_every_call_ends():
    from tailor_local.aws import _OneCallAtATime

    lock = threading.Lock()
    running = {"reads": 0, "changes": 0}
    overlaps = []

    def app(environ, start_response):
        kind = "reads" if environ["HTTP_X_AMZ_TARGET"].endswith("GetItem") else "changes"
        with lock:
            running[kind] += 1
            if running["changes"] > 1 or (running["changes"] and running["reads"]):
                overlaps.append(dict(running))
        time.sleep(0.001)
        with lock:
            running[kind] -= 1
        return [b""]

    guard = _OneCallAtATime(app)

    def calls(target, n):
        for _ in range(n):
            guard({"HTTP_X_AMZ_TARGET": target}, None)

    threads = [threading.Thread(target=calls, args=("DynamoDB_20120810.UpdateItem", 40)) for _ in range(16)]
    threads += [threading.Thread(target=calls, args=("DynamoDB_20120810.GetItem", 40)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not overlaps
