"""The store port's contract, held by the in-memory adapter and the DynamoDB/S3 adapters alike (moto)."""

import boto3
import pytest
from moto import mock_aws

from tailor.store.aws import DynamoStateStore, S3BlobStore
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor.store.port import TABLES, Conflict


@pytest.fixture(params=["memory", "dynamodb"])
def stores(request):
    if request.param == "memory":
        yield MemoryStateStore(), MemoryBlobStore()
        return
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        names = {}
        for table, key in TABLES.items():
            names[table] = f"test-{table}"
            dynamodb.create_table(TableName=names[table], BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="test-bucket")
        yield DynamoStateStore(dynamodb, names), S3BlobStore(s3, "test-bucket")


def test_state_write_moves_the_watermark_only_from_what_was_read(stores):
    store, _ = stores
    store.write_state("shoppers", "u1", {"events": 1, "counts": {"view": 1}, "revenue": 9.5},
                      watermark="sw:a", expected=None, new="0012")
    with pytest.raises(Conflict) as caught:
        store.write_state("shoppers", "u1", {"events": 5}, watermark="sw:a", expected=None, new="0013")
    assert caught.value.watermark == "0012"
    store.write_state("shoppers", "u1", {"events": 2}, watermark="sw:a", expected="0012", new="0020")
    assert store.read("shoppers", ["u1", "nobody"]) == {
        "u1": {"user_id": "u1", "events": 2, "counts": {"view": 1}, "revenue": 9.5, "sw:a": "0020"}
    }


def test_add_applies_once_per_watermark_and_reports_where_the_row_is(stores):
    store, _ = stores
    store.add("items", "i1", {"views": 2, "revenue": 1.25}, {"category": "c"}, watermark="wm:a", first="0010", last="0015")
    with pytest.raises(Conflict) as caught:
        store.add("items", "i1", {"views": 2}, {}, watermark="wm:a", first="0012", last="0018")
    assert caught.value.watermark == "0015"
    store.add("items", "i1", {"views": 1, "n:i2": 3}, {"category": "d"}, watermark="wm:a", first="0016", last="0018")
    store.add("items", "i1", {"views": 1}, {}, watermark="wm:b", first="0001", last="0001")  # another shard
    row = store.read("items", ["i1"])["i1"]
    assert (row["views"], row["revenue"], row["n:i2"], row["category"]) == (4, 1.25, 3, "d")
    assert (row["wm:a"], row["wm:b"]) == ("0018", "0001")


def test_read_many_keys_in_pages(stores):
    store, _ = stores
    for i in range(250):
        store.add("items", f"i{i}", {"views": 1}, {}, watermark="wm:a", first="1", last="1")
    assert len(store.read("items", [f"i{i}" for i in range(260)])) == 250


def test_blobs_round_trip_and_list_by_prefix(stores):
    _, blobs = stores
    blobs.put("archive/date=2026-11-02/a.jsonl.gz", b"x")
    blobs.put("quarantine/b.json", b"y")
    assert blobs.list("archive/") == ["archive/date=2026-11-02/a.jsonl.gz"]
    assert blobs.get("quarantine/b.json") == b"y"


def test_read_many_fetches_several_tables_in_one_round_trip(stores):
    store, _ = stores
    store.add("items", "i1", {"views": 1}, {}, watermark="wm:a", first="1", last="1")
    store.write_state("shoppers", "u1", {"events": 1}, watermark="sw:a", expected=None, new="1")
    before = store.calls["read"]
    rows = store.read_many({"items": ["i1", "i2"], "shoppers": ["u1"], "sessions": []})
    assert store.calls["read"] - before == 1
    assert set(rows) == {"items", "shoppers", "sessions"}
    assert rows["items"]["i1"]["views"] == 1 and "i2" not in rows["items"]
    assert rows["shoppers"]["u1"]["events"] == 1 and rows["sessions"] == {}
