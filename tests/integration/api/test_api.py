"""The API handler on a local stack holding a small crowd: every route's sample event from events/, filters, cold
start, 4xx naming the field at fault, events onto the stream, and erasure."""

import base64
import gzip
import json
import time

import pytest

from tailor.store.aws import from_dynamo
from tailor_local.stack import PutResult

from tests.helpers import EVENTS
from tests.helpers.api import SAMPLE_USERS, wait_until_processed
from tests.helpers.events import load_event

SOURCES = {"popular", "session", "query", "caller", "related"}


def items_table(api) -> dict[str, dict]:
    table = api.stack.resources.name("ItemsTable")
    pages = api.stack.aws.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return {row["item_id"]: row for page in pages for row in map(from_dynamo, page["Items"])}


def assert_ranking(body: dict, *, n: int, explained: bool) -> list[str]:
    assert body["feed_id"] and ":" in body["model"]
    assert len(body["items"]) <= n
    ids = [item["item_id"] for item in body["items"]]
    assert len(ids) == len(set(ids))
    for item in body["items"]:
        assert set(item["sources"]) <= SOURCES and item["sources"]
        assert isinstance(item["score"], float)
        assert (item["parts"] is not None) == explained
    return ids


# The sample events that change state have tests of their own below.
READ_ONLY_SAMPLES = sorted(p.name for p in EVENTS.glob("api-*.json") if p.name not in
                           ("api-post-events.json", "api-delete-user.json", "api-get-erasure.json",
                            "api-experiments-1-create.json", "api-experiments-2-start.json",
                            "api-experiments-4-report.json", "api-experiments-5-console.json",
                            "api-experiments-6-stop.json", "api-post-items.json"))


@pytest.mark.parametrize("name", READ_ONLY_SAMPLES)
def test_every_read_only_sample_event_is_answered_by_the_handler(api, name):
    status, body = api.invoke_file(name)
    assert status == 200, body
    event = load_event(name)
    if event["resource"] in ("/users/{user_id}/feed", "/search", "/rerank", "/items/{item_id}/related"):
        query = event["queryStringParameters"] or {}
        request = json.loads(event["body"]) if event["body"] else {}
        explained = query.get("explain") == "true" or request.get("explain") is True
        assert_ranking(body, n=int(query.get("n") or request.get("n") or 20), explained=explained)
    elif event["resource"] == "/docs":
        assert set(body["paths"]) >= {"/users/{user_id}/feed", "/search", "/rerank", "/events"}


def test_feeds_differ_per_request_and_keep_to_their_filters(api):
    items = items_table(api)
    status, first = api.invoke_file("api-get-feed.json", query={"n": 10, "category": "electronics"})
    assert status == 200
    _, second = api.invoke_file("api-get-feed.json", query={"n": 10, "category": "electronics"})
    assert first["feed_id"] != second["feed_id"]
    assert all(items[i["item_id"]].get("category") == "electronics" for i in first["items"])

    status, cheap = api.invoke_file("api-get-feed.json", query={"n": 20, "min_price": 10, "max_price": 60})
    assert status == 200 and cheap["items"]
    assert all(10 <= items[i["item_id"]]["price"] <= 60 for i in cheap["items"] if "price" in items[i["item_id"]])

    status, anything = api.invoke_file("api-get-feed.json", query={"n": 50, "available_only": "false"})
    assert status == 200 and anything["items"]


def test_exclude_purchased_leaves_out_what_the_shopper_bought(api):
    status, usual = api.invoke_file("api-get-feed.json", query={"n": 50})
    assert status == 200 and "i-101" in {i["item_id"] for i in usual["items"]}  # u-1001 bought it in the sample
    status, fresh = api.invoke_file("api-get-feed.json", query={"n": 50, "exclude_purchased": "true"})
    assert status == 200 and "i-101" not in {i["item_id"] for i in fresh["items"]}


def test_an_unknown_shopper_gets_a_cold_start_feed_and_no_profile(api):
    status, body = api.invoke_file("api-get-feed.json", query={"n": 5}, path_parameters={"user_id": "nobody-yet"})
    assert status == 200, body
    assert len(assert_ranking(body, n=5, explained=False)) == 5
    assert all("popular" in item["sources"] for item in body["items"])
    status, body = api.invoke_file("api-get-profile.json", path_parameters={"user_id": "nobody-yet"})
    assert status == 404 and "nobody-yet" in body["message"]


def test_a_known_shopper_has_a_profile(api):
    status, body = api.invoke_file("api-get-profile.json")
    assert status == 200, body
    # u-1001 of the sample batch: one session in which they clicked, viewed, carted and bought i-101.
    assert body["user_id"] == "u-1001" and body["current_session"]["session_id"] == "s-1001-a"
    assert body["counts"]["purchase"] == 1 and body["rfm"]["frequency"] == 1 and body["rfm"]["monetary"] > 0
    assert "i-101" in body["recent_items"]


def test_rerank_keeps_to_the_callers_items(api):
    request = json.loads(load_event("api-post-rerank.json")["body"])
    status, body = api.invoke_file("api-post-rerank.json", body={**request, "n": None, "explain": False})
    assert status == 200, body
    assert sorted(i["item_id"] for i in body["items"]) == sorted(request["items"])


VIEW_EVENT = {"event_id": "e-array-1", "user_id": "u-1", "session_id": "s-1", "event_type": "view", "item_id": "i-101",
              "timestamp": "2026-11-02T12:00:00Z"}


@pytest.mark.parametrize(("name", "changes", "field"), [
    ("api-get-feed.json", {"query": {"n": 0}}, "query n"),
    ("api-get-feed.json", {"query": {"n": 101}}, "query n"),
    ("api-get-feed.json", {"query": {"n": "ten"}}, "query n"),
    ("api-get-feed.json", {"query": {"n": ["5", "500"]}}, "query n"),
    ("api-get-search.json", {"query": {"q": ["lamp", "coat"]}}, "query q"),
    ("api-get-feed.json", {"query": {"min_price": -1}}, "query min_price"),
    ("api-get-feed.json", {"query": {"min_price": "nan"}}, "query min_price"),
    ("api-get-feed.json", {"query": {"min_price": 50, "max_price": 10}}, "query max_price"),
    ("api-get-feed.json", {"query": {"available_only": "perhaps"}}, "query available_only"),
    ("api-get-feed.json", {"query": {"category": [f"c{k}" for k in range(21)]}}, "query category"),
    ("api-get-search.json", {"query": {"user_id": "u-1001"}}, "query q"),
    ("api-get-search.json", {"query": {"q": "   "}}, "query q"),
    ("api-get-related.json", {"query": {"explain": "sometimes"}}, "query explain"),
    ("api-post-rerank.json", {"body": {"items": ["a", "b"], "base_scores": [1.0]}}, "body base_scores"),
    ("api-post-rerank.json", {"body": {"items": []}}, "body items"),
    ("api-post-rerank.json", {"body": {"items": ["a"], "top": 3}}, "body top"),
    ("api-post-rerank.json", {"body": "{not json"}, "body"),
    ("api-post-related.json", {"body": {"session_data": [{"event_type": "view", "item_id": "i-1"}]}},
     "body session_data.0.view.event_id"),
    ("api-post-related.json", {"body": {"filters": {"min_price": 9, "max_price": 1}}}, "body filters.max_price"),
    ("api-post-events.json", {"body": {"events": []}}, "body events"),
    ("api-post-events.json", {"body": {"events": [{}] * 501}}, "body events"),
    # A body is one JSON object: an array is refused whole, not read as its first element.
    ("api-post-events.json", {"body": [{"event_type": "view"}]}, "body"),
    ("api-post-events.json", {"body": [{"events": [VIEW_EVENT]}, "junk"]}, "body"),
    ("api-post-rerank.json", {"body": [{"items": ["i-101"]}, "junk", 42]}, "body"),
    ("api-post-related.json", {"body": [{"n": 3}, {"n": -1}]}, "body"),
    ("api-post-items.json", {"body": '{"items": [{"item_id": "i-1", "price": NaN}]}'}, "body items.0.price"),
])
def test_malformed_requests_get_a_422_naming_the_field(api, name, changes, field):
    status, body = api.invoke_file(name, **changes)
    assert status == 422, body
    if field == "body":
        assert "must be a JSON object" in body["message"] or "not valid JSON" in body["message"], body["message"]
    if isinstance(changes.get("query", {}).get(field.split()[-1]), list) and field != "query category":
        assert f"{field}: given 2 times: give it once" in body["message"], body["message"]
    assert any(f"{field}:" in part for part in body["message"].split("; ")), body["message"]
    assert all({"loc", "msg", "type"} <= set(d) for d in body["detail"])


PRICE_RANGE = {"msg": "max_price is below min_price", "type": "price_range"}
VIEW = {"event_id": "e-1", "user_id": "u-1", "session_id": "s-1", "event_type": "view", "item_id": "i-101",
        "timestamp": "2026-11-02T12:00:00Z"}


@pytest.mark.parametrize(("name", "changes", "detail"), [
    ("api-get-feed.json", {"query": {"min_price": 50, "max_price": 10}}, {"loc": ["query", "max_price"], **PRICE_RANGE}),
    ("api-get-search.json", {"query": {"q": "lamp", "min_price": 5, "max_price": 1}},
     {"loc": ["query", "max_price"], **PRICE_RANGE}),
    ("api-get-related.json", {"query": {"min_price": 5, "max_price": 1}}, {"loc": ["query", "max_price"], **PRICE_RANGE}),
    ("api-post-related.json", {"body": {"filters": {"min_price": 9, "max_price": 1}}},
     {"loc": ["body", "filters", "max_price"], **PRICE_RANGE}),
    ("api-post-rerank.json", {"body": {"items": ["a", "b"], "base_scores": [1.0]}},
     {"loc": ["body", "base_scores"], "msg": "base_scores needs one score per item (2 items)", "type": "length_mismatch"}),
    ("api-post-rerank.json", {"body": {"items": [f"i-{k}" for k in range(1001)]}},
     {"loc": ["body", "items"], "msg": "List should have at most 1000 items after validation, not 1001", "type": "too_long"}),
    ("api-post-related.json", {"body": {"session_data": [VIEW] * 201}},
     {"loc": ["body", "session_data"], "msg": "List should have at most 200 items after validation, not 201",
      "type": "too_long"}),
])
def test_a_rule_of_the_domain_is_answered_where_the_client_sent_the_field(api, name, changes, detail):
    status, body = api.invoke_file(name, **changes)
    assert status == 422, body
    assert body["detail"] == [detail]
    assert body["message"] == f"invalid request: {detail['loc'][0]} {'.'.join(detail['loc'][1:])}: {detail['msg']}"


def test_a_body_refused_by_a_rule_of_the_domain_and_by_its_schema_names_both_fields(api):
    status, body = api.invoke_file("api-post-related.json", body={"n": 0, "filters": {"min_price": 9, "max_price": 1}})
    assert status == 422, body
    assert [d["loc"] for d in body["detail"]] == [["body", "n"], ["body", "filters", "max_price"]]


def test_catalog_entries_set_the_items_fields_over_the_events_and_never_undo_a_later_update(api):
    sent = json.loads(load_event("api-post-items.json")["body"])["items"]
    status, body = api.invoke_file("api-post-items.json")
    assert status == 200, body
    assert body == {"written": 3, "stale": []}
    rows = items_table(api)
    fields = ("name", "category", "brand", "price", "available")
    assert rows["i-900"]["catalog"] == {k: sent[0][k] for k in fields}
    assert rows["i-901"]["catalog"] == {"available": False}
    assert rows["i-901"]["catalog_at"] == {"available": "2026-11-02T10:05:00.000000Z"}
    assert rows["i-902"]["catalog"] == {"price": 24.5, "category": "shoes"}

    # An item shoppers met keeps its counters and what events said; a field updated before the row's stays.
    counted = next(item for item, row in rows.items() if row.get("views") and "catalog" not in row)
    status, body = api.invoke_file("api-post-items.json", body={"items": [
        {"item_id": counted, "available": False, "updated_at": "2026-11-03T00:00:00Z"},
        {"item_id": "i-901", "available": True, "price": 1.0, "updated_at": "2026-11-01T00:00:00Z"}]})
    assert status == 200, body
    assert body == {"written": 2, "stale": [{"index": 1, "item_id": "i-901", "fields": ["available"]}]}
    after = items_table(api)
    assert after[counted]["catalog"] == {"available": False}
    assert {k: after[counted][k] for k in rows[counted]} == rows[counted]
    assert after["i-901"]["catalog"] == {"available": False, "price": 1.0}


def test_an_item_is_shown_as_served_with_where_each_field_comes_from(api):
    # An item shoppers met and no catalog entry has touched (other tests list some).
    item, row = next((item, row) for item, row in items_table(api).items()
                     if row.get("views") and "catalog" not in row and "available" in row)
    status, met = api.invoke_file("api-get-item.json", path_parameters={"item_id": item})
    assert status == 200, met
    assert met["item_id"] == item and met["counts"]["views"] == row["views"] > 0
    assert met["cluster"] is None and met["vector"] is None  # this stack has published neither
    assert met["fields"]["available"] == {"value": row["available"], "source": "events", "updated_at": None}
    assert isinstance(met["fields"]["available"]["value"], bool)  # not 1.0
    assert {name: field["value"] for name, field in met["fields"].items()} == {
        name: row[name] for name in ("category", "brand", "price", "available", "name") if name in row}

    # A name from the catalog (no filter reads it) over what events said; the other fields stay the events'.
    status, body = api.invoke_file("api-post-items.json", body={"items": [
        {"item_id": item, "name": "Desk lamp", "updated_at": "2026-11-03T08:00:00Z"},
        {"item_id": "i-960", "category": "lamps", "available": False}]})
    assert status == 200, body
    status, listed = api.invoke_file("api-get-item.json", path_parameters={"item_id": item})
    assert listed["fields"]["name"] == {"value": "Desk lamp", "source": "catalog",
                                        "updated_at": "2026-11-03T08:00:00.000000Z"}
    assert {k: v for k, v in listed["fields"].items() if k != "name"} == {
        k: v for k, v in met["fields"].items() if k != "name"}
    # Cleared, the name is the events' again (or none, where they never said one).
    status, body = api.invoke_file("api-post-items.json", body={"items": [
        {"item_id": item, "clear": ["name"], "updated_at": "2026-11-03T09:00:00Z"}]})
    assert (status, body) == (200, {"written": 1, "stale": []})
    assert api.invoke_file("api-get-item.json", path_parameters={"item_id": item})[1]["fields"] == met["fields"]
    status, new = api.invoke_file("api-get-item.json", path_parameters={"item_id": "i-960"})
    assert status == 200, new
    assert {k: v["value"] for k, v in new["fields"].items()} == {"category": "lamps", "available": False}
    assert set(new["counts"].values()) == {0.0}

    status, unknown = api.invoke_file("api-get-item.json", path_parameters={"item_id": "no such item"})
    assert (status, unknown["message"]) == (404, "no item 'no such item'")


@pytest.mark.parametrize(("items", "field"), [
    ([], "body items"),
    ([{"item_id": "i-1", "price": 1.0}] * 501, "body items"),
    ([{"item_id": "i-1", "price": -1}], "body items.0.price"),
    ([{"item_id": "i-1", "price": "nan"}], "body items.0.price"),
    ([{"item_id": "i-1"}], "body items.0"),
    ([{"item_id": "i-1", "available": True}, {"item_id": "", "available": True}], "body items.1.item_id"),
    ([{"item_id": "i-1", "available": "perhaps"}], "body items.0.available"),
    ([{"item_id": "i-1", "colour": "red"}], "body items.0.colour"),
    ([{"item_id": "i-1", "price": 3, "updated_at": "2026-11-02T10:05:00"}], "body items.0.updated_at"),
    ([{"item_id": "i-1", "price": 3, "updated_at": "2099-01-01T00:00:00Z"}], "body items.0.updated_at"),
])
def test_a_bad_catalog_entry_gets_a_422_naming_it_and_nothing_is_written(api, items, field):
    before = items_table(api)
    status, body = api.invoke_file("api-post-items.json", body={"items": items})
    assert status == 422, body
    assert any(part.startswith(f"{field}:") for part in body["message"].removeprefix("invalid request: ").split("; ")), (
        body["message"])
    assert items_table(api) == before
    if "2099" in json.dumps(items):
        assert "s from now; at most 300 s of clock skew is allowed" in body["message"]


def test_posted_events_go_onto_the_stream_keyed_by_user_and_each_failure_is_reported(api):
    kinesis = api.stack.aws.client("kinesis")
    stream = api.stack.stream_name()
    before = {s["ShardId"]: s["SequenceNumberRange"]["StartingSequenceNumber"]
              for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    status, body = api.invoke_file("api-post-events.json")
    assert status == 200
    sent = json.loads(load_event("api-post-events.json")["body"])["events"]
    assert body["accepted"] == 2 and body["failed"] == 1
    (failure,) = body["failures"]
    assert failure["index"] == 2 and failure["event_id"] == "evt-5003" and not failure["retryable"]
    assert failure["error"].startswith("timestamp:")

    found, put = [], PutResult()
    for shard in before:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            if b'"u-5005"' in record["Data"]:
                found.append((record["PartitionKey"], json.loads(record["Data"])))
                put.add(shard, record["SequenceNumber"])
    assert found == [("u-5005", sent[0]), ("u-5005", sent[1])]
    # The stack's pollers ingest them: the tests after this one share the stack and must find it settled.
    wait_until_processed(api.stack, put)


def test_erasure_tombstones_the_shopper_at_once_and_the_erase_function_removes_their_sessions_and_events(api):
    user = SAMPLE_USERS[1]
    handle = api.stack.handle
    sessions = [r["session_id"] for r in handle.scan("SessionsTable", user_id=user)]
    assert sessions and handle.get_row("ShoppersTable", {"user_id": user})

    status, requested = api.invoke_file("api-delete-user.json")
    assert status == 202 and requested["status"] in ("pending", "done")
    assert requested["status_url"] == f"/dev/users/{user}/erasure" and requested["removed"]["shopper_state"]
    status, _ = api.invoke_file("api-get-profile.json", path_parameters={"user_id": user})
    assert status == 404  # the state went with the DELETE; the rest follows on the queue
    erased = wait_for_erasure(api, requested["erasure_id"])
    assert erased["removed"]["sessions"] == len(sessions) and erased["finished_at"]
    assert erased["removed"]["archive_events"] >= 8 and erased["removed"]["archive_objects_rewritten"] >= 1
    tombstone = handle.get_row("ShoppersTable", {"user_id": user})
    assert set(tombstone) == {"user_id", "erased_at", "expires_at", "erasure_id", "erasure"}
    assert tombstone["expires_at"] > tombstone["erased_at"] and tombstone["erasure_id"] == requested["erasure_id"]
    assert handle.scan("SessionsTable", user_id=user) == []
    assert not [e for e in archived(handle) if e["user_id"] == user]
    assert [e for e in archived(handle) if e["user_id"] == SAMPLE_USERS[0]], "other shoppers' events are kept"

    # Their events, delivered again by the stream after the erasure, bring nothing of them back.
    items, objects = items_table(api), archived(handle)
    batch = load_event("ingest-kinesis-batch.json")
    batch["Records"] = [r for r in batch["Records"] if r["kinesis"]["partitionKey"] == user]
    replayed = api.stack.runtime.find("IngestFunction").invoke(batch)
    assert replayed.ok and replayed.payload == {"batchItemFailures": []}
    assert handle.get_row("ShoppersTable", {"user_id": user}) == tombstone
    assert handle.scan("SessionsTable", user_id=user) == [] and items_table(api) == items and archived(handle) == objects

    status, again = api.invoke_file("api-delete-user.json")
    assert status == 202 and again["erasure_id"] != requested["erasure_id"]
    again = wait_for_erasure(api, again["erasure_id"])
    assert not again["removed"]["shopper_state"] and again["removed"]["archive_events"] == 0
    assert handle.get_row("ShoppersTable", {"user_id": user})["erased_at"] >= tombstone["erased_at"]


def test_erasing_an_id_never_seen_answers_404_and_refuses_its_events_all_the_same(api):
    status, answer = api.invoke_file("api-get-erasure.json", path_parameters={"user_id": "u-never-seen"})
    assert status == 404 and "u-never-seen" in answer["message"]
    status, answer = api.invoke_file("api-delete-user.json", path_parameters={"user_id": "u-never-seen"})
    assert status == 404 and answer["status"] == "nothing_to_erase"
    assert "never seen" in answer["message"] and "refused" in answer["message"]
    status, found = api.invoke_file("api-get-erasure.json", path_parameters={"user_id": "u-never-seen"})
    assert status == 200 and found["erasure_id"] == answer["erasure_id"] and found["status"] == "nothing_to_erase"
    assert api.stack.handle.get_row("ShoppersTable", {"user_id": "u-never-seen"})["erased_at"]


def wait_for_erasure(api, erasure_id: str, timeout_s: float = 60) -> dict:
    """The erasure's status once the Erase function, fed by the stack's queue poller, has finished it."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, found = api.invoke_file("api-get-erasure.json")
        assert status == 200 and found["erasure_id"] == erasure_id, found
        if found["status"] == "done":
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def archived(handle) -> list[dict]:
    return [json.loads(line) for obj in handle.objects("DataBucket", "archive/")
            for line in gzip.decompress(handle.read_object("DataBucket", obj["Key"])).splitlines()]


def test_a_body_that_is_base64_encoded_is_read_like_text(api):
    event = load_event("api-post-rerank.json")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    status, body = api.invoke(event)
    assert status == 200, body


@pytest.mark.parametrize(("content_type", "body", "encoded", "status"), [
    ("multipart/form-data", "items=a", False, 422),
    ("application/json", base64.b64encode(b"\xff\xfe{}").decode(), True, 422),
    ("text/plain", "items", False, 415),
])
def test_bodies_that_are_not_json_text_get_a_4xx(api, content_type, body, encoded, status):
    event = load_event("api-post-rerank.json")
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["body"], event["isBase64Encoded"] = body, encoded
    answer, detail = api.invoke(event)
    assert answer == status, detail


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("name", "body"), [
    ("api-post-events.json", DEEP),
    ("api-post-events.json", '{"events": [{"event_type": "view", "context": ' + DEEP + "}]}"),
    ("api-post-rerank.json", DEEP),
    ("api-post-rerank.json", '{"items": ["i-101"], "user_id": ' + DEEP + "}"),
    ("api-post-related.json", '{"session_data": ' + DEEP + "}"),
    ("api-post-related.json", '{"n": 5, "filters": {"categories": [' + "[" * 40 + "]" * 40 + "]}}"),
])
def test_a_body_nested_too_deep_gets_a_422_before_it_is_decoded(api, name, body):
    status, answer = api.invoke_file(name, body=body)
    assert status == 422, answer
    assert "body: not valid JSON at character" in answer["message"]
    assert "nested deeper than 32 levels" in answer["message"]


def test_events_ingest_could_not_apply_are_refused_at_the_door_each_with_its_status(api):
    now = time.time()

    def at(seconds: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + seconds))

    base = {"user_id": "u-6006", "session_id": "s-6006-a", "item_id": "i-101", "event_type": "view"}
    events = [
        {**base, "event_id": "evt-6001", "timestamp": at(-60)},
        {**base, "event_id": "evt-6002", "timestamp": at(-50), "event_type": "purchase", "price": 1e308,
         "quantity": 10_000},
        {**base, "event_id": "evt-6003", "timestamp": "9999-12-31T00:00:00Z"},
        {**base, "event_id": "evt-6004", "timestamp": at(3600)},
        {**base, "event_id": "evt-6005", "timestamp": at(-40), "context": [[[[[[[[[1]]]]]]]]]},
        {**base, "event_id": "evt-6006", "timestamp": at(-30), "event_type": "purchase", "price": 49.5,
         "quantity": 2},
        {**base, "event_id": "evt-6007", "timestamp": at(-20), "event_type": "purchase", "price": float("nan")},
        "not an event",
    ]
    status, body = api.invoke_file("api-post-events.json", body={"events": events})
    assert status == 200, body
    assert [(s["index"], s["event_id"], s["status"]) for s in body["events"]] == [
        (n, e["event_id"] if isinstance(e, dict) else None, "refused" if n in (1, 2, 3, 4, 6, 7) else "accepted")
        for n, e in enumerate(events)]
    errors = [s["error"] for s in body["events"]]
    assert errors[0] is None and errors[5] is None
    assert errors[1].startswith("price: Input should be less than or equal to 1000000")
    assert errors[2].startswith("timestamp: on or after 2100-01-01")
    assert errors[3].startswith("timestamp:") and "clock skew" in errors[3]
    assert errors[4].startswith("context.0.0.0.0.0.0.0: nested deeper than 8 levels")
    assert errors[6] == "price: nan is not a finite number"  # a NaN literal in the body: refused as that event's
    assert errors[7] == "an event is a JSON object, not str"  # refused on its own, the rest of the request served
    assert (body["accepted"], body["failed"]) == (2, 6) and [f["index"] for f in body["failures"]] == [1, 2, 3, 4, 6, 7]

    kinesis = api.stack.aws.client("kinesis")
    stream = api.stack.stream_name()
    found, put = [], PutResult()
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            if b'"u-6006"' in record["Data"]:
                found.append(json.loads(record["Data"])["event_id"])
                put.add(shard["ShardId"], record["SequenceNumber"])
    assert found == ["evt-6001", "evt-6006"]
    wait_until_processed(api.stack, put)
    # Ingest applied both: nothing accepted at the door is quarantined later.
    shopper = api.stack.handle.get_row("ShoppersTable", {"user_id": "u-6006"})
    assert shopper["events"] == 2 and shopper["revenue"] == 99.0
    assert not [key for key in api.stack.handle.objects("DataBucket", "quarantine/") if b"u-6006" in
                api.stack.handle.read_object("DataBucket", key["Key"])]
