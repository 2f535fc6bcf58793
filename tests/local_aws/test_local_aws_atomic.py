"""The local AWS applies each call whole, as AWS does, however many threads call it at once."""

import io
import json
import threading
import time
import uuid

import pytest

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
    from tailor_local.aws import _AtomicCalls

    gates = {name: threading.Event() for name in ("change-1", "change-2", "read")}
    started = []

    def app(environ, start_response):
        name = environ["name"]
        started.append(name)
        assert gates[name].wait(10)
        return [name.encode()]

    guard = _AtomicCalls(app)

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
    from tailor_local.aws import _AtomicCalls

    together = threading.Barrier(3, timeout=10)
    guard = _AtomicCalls(lambda environ, start_response: [str(together.wait()).encode()])
    reads = [threading.Thread(target=guard, args=({"HTTP_X_AMZ_TARGET": "Kinesis_20131202.GetRecords"}, None))
             for _ in range(3)]
    for read in reads:
        read.start()
    for read in reads:
        read.join(15)
    assert not together.broken


def test_a_change_is_not_starved_by_reads_that_keep_coming():
    from tailor_local.aws import _AtomicCalls

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

    guard = _AtomicCalls(app)

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
    from tailor_local.aws import _AtomicCalls

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

    guard = _AtomicCalls(app)

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


def _dynamodb_call(operation, body):
    data = json.dumps(body).encode()
    return {"HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{operation}", "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data)}


def _key(user_id):
    return {"user_id": {"S": user_id}}


@pytest.mark.parametrize(("read", "change", "waits"), [
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("UpdateItem", {"TableName": "shoppers", "Key": _key("b")}), False),
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("UpdateItem", {"TableName": "shoppers", "Key": _key("a")}), True),
    (("BatchGetItem", {"RequestItems": {"shoppers": {"Keys": [_key("a"), _key("b")]}, "items": {"Keys": []}}}),
     ("UpdateItem", {"TableName": "shoppers", "Key": _key("b")}), True),
    (("BatchGetItem", {"RequestItems": {"shoppers": {"Keys": [_key("a"), _key("b")]}}}),
     ("UpdateItem", {"TableName": "sessions", "Key": _key("a")}), False),
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("PutItem", {"TableName": "shoppers", "Item": {**_key("a"), "n": {"N": "1"}}}), True),
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("PutItem", {"TableName": "shoppers", "Item": {**_key("b"), "n": {"N": "1"}}}), False),
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("BatchWriteItem", {"RequestItems": {"shoppers": [{"DeleteRequest": {"Key": _key("a")}}]}}), True),
    (("Query", {"TableName": "shoppers", "KeyConditionExpression": "user_id = :u"}),
     ("UpdateItem", {"TableName": "shoppers", "Key": _key("b")}), True),
    (("Scan", {"TableName": "sessions"}),
     ("UpdateItem", {"TableName": "shoppers", "Key": _key("b")}), False),
    (("GetItem", {"TableName": "shoppers", "Key": _key("a")}),
     ("UpdateItem", "not json"), True),
], ids=["other-item", "same-item", "batch-get-holding-it", "other-table", "put-same-key", "put-other-key",
        "batch-write-same-key", "query-of-the-table", "scan-of-another-table", "unreadable-change"])
def test_a_read_waits_only_for_a_change_to_what_it_reads(read, change, waits):
    from tailor_local.aws import _AtomicCalls

    changing, release, read_done = threading.Event(), threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["HTTP_X_AMZ_TARGET"].endswith((".UpdateItem", ".PutItem", ".BatchWriteItem")):
            changing.set()
            assert release.wait(10)
        return [b""]

    guard = _AtomicCalls(app)
    guard(_dynamodb_call("CreateTable", {"TableName": "shoppers", "KeySchema": [
        {"AttributeName": "user_id", "KeyType": "HASH"}]}), None)
    change_call = _dynamodb_call(*change) if isinstance(change[1], dict) else {
        "HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{change[0]}", "CONTENT_LENGTH": "8", "wsgi.input": io.BytesIO(b"not json")}
    changer = threading.Thread(target=guard, args=(change_call, None))
    changer.start()
    assert changing.wait(10)
    reader = threading.Thread(target=lambda: (guard(_dynamodb_call(*read), None), read_done.set()))
    reader.start()
    try:
        assert read_done.wait(0.5) is not waits
    finally:
        release.set()
        changer.join(10)
        reader.join(10)
    assert read_done.is_set()


def test_a_change_reads_its_request_and_leaves_it_for_the_backend_whole():
    from tailor_local.aws import _AtomicCalls

    seen = []
    guard = _AtomicCalls(lambda environ, start_response: [seen.append(environ["wsgi.input"].read()) or b""])
    body = {"TableName": "shoppers", "Key": _key("a"), "UpdateExpression": "SET n = :n"}
    guard(_dynamodb_call("UpdateItem", body), None)
    assert json.loads(seen[0]) == body


def test_a_dynamodb_read_runs_beside_a_change_of_another_service():
    from tailor_local.aws import _AtomicCalls

    together = threading.Barrier(2, timeout=10)
    guard = _AtomicCalls(lambda environ, start_response: [str(together.wait()).encode()])
    calls = [threading.Thread(target=guard, args=({"HTTP_X_AMZ_TARGET": "Kinesis_20131202.PutRecords"}, None)),
             threading.Thread(target=guard, args=(_dynamodb_call("GetItem", {"TableName": "t", "Key": _key("a")}),
                                                  None))]
    for call in calls:
        call.start()
    for call in calls:
        call.join(15)
    assert not together.broken


@pytest.mark.parametrize("expression", [
    "SET #a = :a",
    "SET #wm = :last, #s0 = :s0, #s1 = :s1 ADD #a0 :a0, #a1 :a1, #a2 :a2",
    "REMOVE #r, #q SET #a = list_append(#a, :v), #b = if_not_exists(#b, :z) + :one ADD #n :one DELETE #set :s",
    "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(150)) + " ADD " + ", ".join(f"#a{i} :a{i}" for i in range(150)),
])
def test_update_clauses_are_found_as_moto_finds_them(expression):
    from moto.dynamodb.parsing import ast_nodes
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    from tailor_local.aws import _update_clauses

    tree = UpdateExpressionParser.make(expression)
    kinds = [ast_nodes.UpdateExpressionSetAction, ast_nodes.UpdateExpressionAddAction,
             ast_nodes.UpdateExpressionRemoveAction, ast_nodes.UpdateExpressionDeleteAction]
    for wanted in (kinds, kinds[:1], [ast_nodes.UpdateExpressionAddClause, ast_nodes.UpdateExpressionSetClause]):
        expected = ast_nodes.Node.find_clauses(tree, wanted)
        assert expected and [id(c) for c in _update_clauses(tree, wanted)] == [id(c) for c in expected]


def test_an_update_that_would_pass_the_item_size_limit_is_refused_whole():
    from botocore.exceptions import ClientError

    with MotoServer(port=0) as server:
        dynamodb = LocalAws(server.endpoint).client("dynamodb")
        dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
        big = "x" * 250_000
        dynamodb.update_item(TableName="t", Key={"k": {"S": "a"}}, UpdateExpression="SET a = :v, n = :one",
                             ExpressionAttributeValues={":v": {"S": big}, ":one": {"N": "1"}})
        with pytest.raises(ClientError, match="size"):
            dynamodb.update_item(TableName="t", Key={"k": {"S": "a"}}, UpdateExpression="SET b = :v ADD n :one",
                                 ExpressionAttributeValues={":v": {"S": big}, ":one": {"N": "1"}})
        assert dynamodb.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"] == {
            "k": {"S": "a"}, "a": {"S": big}, "n": {"N": "1"}}
        with pytest.raises(ClientError, match="size"):
            dynamodb.update_item(TableName="t", Key={"k": {"S": "new"}}, UpdateExpression="SET a = :v, b = :v",
                                 ExpressionAttributeValues={":v": {"S": big}})
        assert "Item" not in dynamodb.get_item(TableName="t", Key={"k": {"S": "new"}})
        with pytest.raises(ClientError, match="size"):
            dynamodb.put_item(TableName="t", Item={"k": {"S": "p"}, "a": {"S": big}, "b": {"S": big}})
        assert "Item" not in dynamodb.get_item(TableName="t", Key={"k": {"S": "p"}})


@pytest.mark.parametrize("expression", [
    "SET #a = :a",
    "REMOVE #r[2], q SET b.c[1] = list_append(#x, :y), d = if_not_exists(d, :z) + :one ADD #n :one DELETE #s :s",
])
def test_an_expression_tree_is_copied_as_deepcopy_copies_it(expression):
    import copy

    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    from tailor_local.aws import _copy_expression

    def shape(node, parent=None):
        assert node.parent is parent
        return (type(node), node.type, [shape(c, node) if isinstance(c, Node) else c for c in node.children or []])

    def nodes(node):
        return [node, *(n for c in node.children or [] if isinstance(c, Node) for n in nodes(c))]

    tree = UpdateExpressionParser.make(expression)
    copied = _copy_expression(tree)
    assert shape(copied) == shape(copy.deepcopy(tree)) == shape(tree)
    assert not {id(n) for n in nodes(copied)} & {id(n) for n in nodes(tree)}
    inner = tree.children[0]  # a node with a parent is copied with it, as deepcopy does
    assert shape(_copy_expression(inner).parent) == shape(tree)


def test_a_change_lets_reads_of_other_items_under_way_finish_first_for_a_while():
    from tailor_local import aws

    release = threading.Event()
    order = []

    def app(environ, start_response):
        if environ["HTTP_X_AMZ_TARGET"].endswith("GetItem"):
            order.append("read begins")
            assert release.wait(10)
            order.append("read ends")
        else:
            order.append("change")
        return [b""]

    guard = aws._AtomicCalls(app)
    reader = threading.Thread(target=guard, args=(_dynamodb_call("GetItem", {"TableName": "t", "Key": _key("a")}), None))
    reader.start()
    until(lambda: order == ["read begins"])
    changer = threading.Thread(target=guard, args=(
        _dynamodb_call("UpdateItem", {"TableName": "t", "Key": _key("b")}), None))
    changer.start()
    time.sleep(aws.READS_FIRST_S / 4)
    release.set()
    changer.join(10)
    reader.join(10)
    assert order == ["read begins", "read ends", "change"]

    release.clear()
    order.clear()
    reader = threading.Thread(target=guard, args=(_dynamodb_call("GetItem", {"TableName": "t", "Key": _key("a")}), None))
    reader.start()
    until(lambda: order == ["read begins"])
    began = time.monotonic()
    guard(_dynamodb_call("UpdateItem", {"TableName": "t", "Key": _key("b")}), None)  # a read that lasts: not for long
    assert order == ["read begins", "change"] and time.monotonic() - began < 2
    release.set()
    reader.join(10)


def test_a_background_call_waits_for_the_calls_under_way_for_a_while_and_no_longer():
    from tailor_local import aws

    release = threading.Event()
    order = []

    def app(environ, start_response):
        if "background" in environ.get("HTTP_USER_AGENT", ""):
            order.append("background")
        else:
            order.append("foreground begins")
            assert release.wait(10)
            order.append("foreground ends")
        return [b""]

    guard = aws._AtomicCalls(app)
    background = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem",
                  "HTTP_USER_AGENT": f"Boto3/1 md/Botocore#1 app/{aws.BACKGROUND_APP_ID}"}
    foreground = threading.Thread(target=guard, args=({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem"}, None))
    foreground.start()
    until(lambda: order == ["foreground begins"])
    waiting = threading.Thread(target=guard, args=(background, None))
    waiting.start()
    time.sleep(aws.FOREGROUND_FIRST_S / 4)
    release.set()
    for thread in (waiting, foreground):
        thread.join(10)
    assert order == ["foreground begins", "foreground ends", "background"]

    release.clear()
    order.clear()
    foreground = threading.Thread(target=guard, args=({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem"}, None))
    foreground.start()
    until(lambda: order == ["foreground begins"])
    guard(background, None)  # a foreground call that lasts holds the background up for FOREGROUND_FIRST_S only
    assert order == ["foreground begins", "background"]
    release.set()
    foreground.join(10)


def test_a_background_call_begins_only_in_a_pause_of_the_other_calls():
    from tailor_local import aws

    ran = {}

    def app(environ, start_response):
        ran["background" if "background" in environ.get("HTTP_USER_AGENT", "") else "foreground"] = time.monotonic()
        return [b""]

    guard = aws._AtomicCalls(app)
    guard({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem"}, None)
    ended = time.monotonic()
    guard(_background_call("UpdateItem"), None)  # right after an API call: the API's next call may be on its way
    assert ran["background"] - ended >= aws.FOREGROUND_PAUSE_S * 0.9


def test_a_call_that_arrives_during_a_background_call_goes_before_its_answer():
    from tailor_local import aws

    release = threading.Event()
    order = []

    def app(environ, start_response):
        if "background" not in environ.get("HTTP_USER_AGENT", ""):
            order.append("foreground begins")
            assert release.wait(10)
            order.append("foreground ends")
            return [b""]
        order.append("background runs")
        other_item = _dynamodb_call("GetItem", {"TableName": "t", "Key": _key("b")})
        threading.Thread(target=guard, args=(other_item, None)).start()
        until(lambda: "foreground begins" in order)
        threading.Timer(aws.FOREGROUND_FIRST_S / 4, release.set).start()
        return [b""]

    guard = aws._AtomicCalls(app)
    guard(_background_call("UpdateItem"), None)
    order.append("background answered")
    assert order == ["background runs", "foreground begins", "foreground ends", "background answered"]


def _background_call(operation):
    from tailor_local import aws

    return _dynamodb_call(operation, {"TableName": "t", "Key": _key("a")}) | {
        "HTTP_USER_AGENT": f"Boto3/1 md/Botocore#1 app/{aws.BACKGROUND_APP_ID}"}


def test_background_calls_run_one_at_a_time():
    from tailor_local import aws

    lock = threading.Lock()
    running, most = [0], [0]

    def app(environ, start_response):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # reads of one service: without taking turns, the four would run side by side
        with lock:
            running[0] -= 1
        return [b""]

    guard = aws._AtomicCalls(app)
    background = {"HTTP_X_AMZ_TARGET": "Kinesis_20131202.GetRecords",
                  "HTTP_USER_AGENT": f"Boto3/1 md/Botocore#1 app/{aws.BACKGROUND_APP_ID}"}
    threads = [threading.Thread(target=guard, args=(dict(background), None)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == [1]


def test_the_event_sources_clients_name_the_background_app_in_their_user_agent():
    from tailor_local import aws

    with aws.MotoServer(port=0) as server:
        seen = []
        client = aws.LocalAws(server.endpoint).in_background().client("sqs")
        client.meta.events.register("before-send", lambda request, **kw: seen.append(request.headers["User-Agent"]))
        client.list_queues()
    user_agent = seen[0].decode() if isinstance(seen[0], bytes) else seen[0]
    assert f"app/{aws.BACKGROUND_APP_ID}" in user_agent
