"""The store port's contract, held by the in-memory adapter and the DynamoDB/S3/SQS adapters alike (moto)."""

import json
import random
import threading
import time

import boto3
import pytest
from moto import mock_aws

from tailor.store.aws import DynamoStateStore, S3BlobStore, SqsQueue
from tailor.store.memory import MemoryBlobStore, MemoryQueue, MemoryStateStore
from tailor.store.port import INDEXES, Conflict, every_row
from tailor_local.aws import create_state_tables


@pytest.fixture(params=["memory", "dynamodb"])
def stores(request):
    if request.param == "memory":
        yield MemoryStateStore(), MemoryBlobStore()
        return
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        names = create_state_tables(dynamodb, "test")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="test-bucket")
        yield DynamoStateStore(dynamodb, names), S3BlobStore(s3, "test-bucket")


@pytest.fixture(params=["memory", "sqs"])
def queue(request):
    """A Queue adapter, and a way to read back what was sent."""
    if request.param == "memory":
        memory = MemoryQueue()
        yield memory, lambda: memory.sent
        return
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="test-queue")["QueueUrl"]

        def received():
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in messages]

        yield SqsQueue(sqs, url), received


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


def test_a_state_write_over_a_field_as_read_fails_once_that_field_changed(stores):
    store, _ = stores
    # A writer that read no row, or one without the field, finds it set since (a tombstone of another shard's row).
    store.replace("shoppers", "u1", {"erased_at": 100.5, "expires_at": 1309700})
    for read in (None, 99.0):
        with pytest.raises(Conflict):
            store.write_state("shoppers", "u1", {"events": 1}, watermark="sw:b", expected=None, new="0012",
                              unchanged=("erased_at", read))
    assert store.read("shoppers", ["u1"])["u1"] == {"user_id": "u1", "erased_at": 100.5, "expires_at": 1309700}
    store.write_state("shoppers", "u1", {"events": 1}, watermark="sw:b", expected=None, new="0012",
                      unchanged=("erased_at", 100.5))
    # Absent as read and absent now, on a new row and on a row without it; null counts as absent, as a read gives it.
    store.write_state("shoppers", "u2", {"events": 1}, watermark="sw:b", expected=None, new="0012",
                      unchanged=("erased_at", None))
    store.write_state("shoppers", "u2", {"events": 2}, watermark="sw:b", expected="0012", new="0013",
                      unchanged=("erased_at", None))
    store.write_state("shoppers", "u3", {"erased_at": None}, watermark="sw:a", expected=None, new="0001")
    store.write_state("shoppers", "u3", {"events": 1}, watermark="sw:b", expected=None, new="0012",
                      unchanged=("erased_at", None))
    with pytest.raises(Conflict):  # read as a tombstone, gone since (its TTL)
        store.write_state("shoppers", "u4", {"events": 1}, watermark="sw:b", expected=None, new="0012",
                          unchanged=("erased_at", 100.5))
    assert store.read("shoppers", ["u1", "u2", "u3", "u4"]) == {
        "u1": {"user_id": "u1", "erased_at": 100.5, "expires_at": 1309700, "events": 1, "sw:b": "0012"},
        "u2": {"user_id": "u2", "events": 2, "sw:b": "0013"},
        "u3": {"user_id": "u3", "erased_at": None, "events": 1, "sw:a": "0001", "sw:b": "0012"}}


def test_replace_leaves_only_the_fields_given_and_a_writer_that_read_before_finds_its_watermark_gone(stores):
    store, _ = stores
    store.write_state("shoppers", "u1", {"first_seen": 1.0, "events": 2}, watermark="sw:a", expected=None, new="0012")
    store.add("shoppers", "u1", {"referrals_sent": 1}, {}, watermark="wm:a", first="0013", last="0013")
    store.replace("shoppers", "u1", {"erased_at": 100, "expires_at": 1309700, "user_id": "u1"})
    store.replace("shoppers", "u2", {"erased_at": 100, "expires_at": 1309700})
    assert store.read("shoppers", ["u1", "u2"]) == {
        "u1": {"user_id": "u1", "erased_at": 100, "expires_at": 1309700},
        "u2": {"user_id": "u2", "erased_at": 100, "expires_at": 1309700}}
    with pytest.raises(Conflict) as caught:
        store.write_state("shoppers", "u1", {"events": 3}, watermark="sw:a", expected="0012", new="0020")
    assert caught.value.watermark is None
    # A null clears the TTL attribute of a row (DynamoDB's TTL passes over what is not a number).
    store.write_state("shoppers", "u1", {"first_seen": 200.0, "expires_at": None}, watermark="sw:a", expected=None,
                      new="0030")
    assert store.read("shoppers", ["u1"])["u1"] == {"user_id": "u1", "erased_at": 100, "expires_at": None,
                                                    "first_seen": 200.0, "sw:a": "0030"}


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
    with pytest.raises(KeyError):  # no such object: S3's NoSuchKey as the port says it
        blobs.get("quarantine/none.json")


def test_a_conditional_replace_writes_only_over_the_version_it_read(stores):
    _, blobs = stores
    blobs.put("archive/o.jsonl.gz", b"first")
    body, tag = blobs.get_tagged("archive/o.jsonl.gz")
    assert body == b"first"
    assert blobs.replace_if("archive/o.jsonl.gz", b"second", tag)
    assert not blobs.replace_if("archive/o.jsonl.gz", b"third", tag)  # another writer's version is there now
    assert blobs.get("archive/o.jsonl.gz") == b"second"
    with pytest.raises(KeyError):
        blobs.get_tagged("archive/none.jsonl.gz")


def test_blobs_are_described_with_their_tags_and_times_copied_only_from_the_version_read_and_deleted_in_bulk(stores):
    _, blobs = stores
    started = time.time()
    for n in range(3):
        blobs.put(f"archive/d/{n}.jsonl.gz", b"body-%d" % n)
    described = list(blobs.describe("archive/d/"))
    assert [i.key for i in described] == [f"archive/d/{n}.jsonl.gz" for n in range(3)]
    assert [i.tag for i in described] == [blobs.get_tagged(i.key)[1] for i in described]
    assert all(started - 5 <= i.modified <= time.time() + 5 and i.size == 6 for i in described)
    tag = described[0].tag
    assert blobs.copy_if("archive/d/0.jsonl.gz", "archive/d/c.jsonl.gz", tag)
    assert blobs.get("archive/d/c.jsonl.gz") == b"body-0"
    blobs.put("archive/d/0.jsonl.gz", b"changed")
    assert not blobs.copy_if("archive/d/0.jsonl.gz", "archive/d/c2.jsonl.gz", tag)  # the source changed since
    assert not blobs.copy_if("archive/d/none.jsonl.gz", "archive/d/c3.jsonl.gz", tag)
    blobs.delete_many(["archive/d/0.jsonl.gz", "archive/d/1.jsonl.gz", "archive/d/gone.jsonl.gz"])
    assert blobs.list("archive/d/") == ["archive/d/2.jsonl.gz", "archive/d/c.jsonl.gz"]


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


def test_scan_visits_every_row_once_page_by_page(stores):
    store, _ = stores
    for i in range(23):
        store.write_state("shoppers", f"u{i:02d}", {"first_seen": float(i)}, watermark="sw:a", expected=None, new="1")
    seen, start, pages = [], None, 0
    while True:
        rows, start = store.scan("shoppers", limit=5, start=start)
        seen += [row["user_id"] for row in rows]
        pages += 1
        assert len(rows) <= 5 and pages <= 6
        if start is None:
            break
    assert sorted(seen) == [f"u{i:02d}" for i in range(23)] and len(seen) == 23



def test_a_scan_in_segments_reads_every_row_once_across_its_parts(stores):
    store, _ = stores
    for i in range(23):
        store.write_state("shoppers", f"u{i:02d}", {"first_seen": float(i)}, watermark="sw:a", expected=None, new="1")
    parts = []
    for segment in range(3):
        seen, start = [], None
        while True:
            rows, start = store.scan("shoppers", limit=4, start=start, segment=segment, segments=3)
            assert len(rows) <= 4
            seen += [row["user_id"] for row in rows]
            if start is None:
                break
        parts.append(seen)
    assert sorted(sum(parts, [])) == [f"u{i:02d}" for i in range(23)]  # every row, once
    assert sum(1 for part in parts if part) >= 2  # split, not all in one part


class _Watched:
    """A store whose scans are counted, may wait a moment each, and are seen in flight: how many at once at most."""

    def __init__(self, store, delay=None, fail_segment=None):
        self.store, self.delay, self.fail_segment = store, delay, fail_segment
        self.scans, self.in_flight, self.most_in_flight = 0, 0, 0
        self._lock = threading.Lock()

    def scan(self, table, **kw):
        with self._lock:
            self.scans += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay is not None:
                time.sleep(self.delay())
            if kw.get("segment") == self.fail_segment:
                raise TimeoutError("the table did not answer")
            return self.store.scan(table, **kw)
        finally:
            with self._lock:
                self.in_flight -= 1


def _shoppers(store, count):
    for i in range(count):
        store.write_state("shoppers", f"u{i:02d}", {"first_seen": float(i)}, watermark="sw:a", expected=None, new="1")


def test_every_row_reads_the_parts_at_once_and_gives_the_same_order_however_they_answer(stores):
    store, _ = stores
    _shoppers(store, 40)
    rng = random.Random(3)
    orders, most = [], []
    for _ in range(3):
        watched = _Watched(store, delay=lambda: rng.random() * 0.01)
        orders.append([row["user_id"] for row in every_row(watched, "shoppers", ("user_id",), page_size=3,
                                                           segments=4)])
        most.append(watched.most_in_flight)
    assert sorted(orders[0]) == [f"u{i:02d}" for i in range(40)]
    assert orders[1] == orders[0] and orders[2] == orders[0]
    assert max(most) >= 2  # the parts are read at once


def test_every_row_in_parts_stops_reading_when_the_caller_stops(stores):
    store, _ = stores
    _shoppers(store, 40)
    watched = _Watched(store)
    rows = every_row(watched, "shoppers", page_size=2, segments=4)
    next(rows), next(rows)
    rows.close()
    deadline = time.monotonic() + 5
    while any(thread.name.startswith("scan-shoppers-") for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the parts' readers go on after the caller stopped"
        time.sleep(0.02)
    assert watched.scans < 20  # 20 pages in all: not read to the end


def test_every_row_raises_what_a_parts_reader_raised(stores):
    store, _ = stores
    _shoppers(store, 12)
    raised = []

    def read_all():
        try:
            list(every_row(_Watched(store, fail_segment=2), "shoppers", page_size=2, segments=3))
        except TimeoutError as exc:
            raised.append(exc)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "every_row hung on a reader's error"
    assert raised and "did not answer" in str(raised[0])


def test_a_scan_of_a_part_that_is_not_one_is_refused(stores):
    store, _ = stores
    for segment, segments in ((2, 2), (-1, 2), (1, 1)):
        with pytest.raises(ValueError, match="segment"):
            store.scan("shoppers", limit=5, segment=segment, segments=segments)


def test_a_scans_rows_are_the_callers_to_change(stores):
    """What a scan gives nothing else holds (a job may take its rows' values as they are: RowState.from_row owned)."""
    store, _ = stores
    store.write_state("shoppers", "u1", {"first_seen": 1.0, "category_affinity": {"books": 2}, "recent_items": ["i1"]},
                      watermark="sw:a", expected=None, new="1")
    for attributes in (None, ("user_id", "category_affinity", "recent_items")):
        (row,), _ = store.scan("shoppers", limit=5, attributes=attributes)
        row["category_affinity"]["books"] = 99
        row["recent_items"].append("i2")
        (again,), _ = store.scan("shoppers", limit=5, attributes=attributes)
        assert again["category_affinity"] == {"books": 2} and again["recent_items"] == ["i1"]
    assert store.read("shoppers", ["u1"])["u1"]["category_affinity"] == {"books": 2}


def test_every_row_reads_a_changing_table_whole_with_only_the_attributes_asked(stores):
    store, _ = stores
    for i in range(7):
        store.write_state("shoppers", f"u{i}", {"events": i, "revenue": 2.0 * i}, watermark="sw:a", expected=None,
                          new="1")
    assert len(list(every_row(store, "shoppers", page_size=3))) == 7
    store.delete("shoppers", "u3")
    store.write_state("shoppers", "u9", {"events": 9}, watermark="sw:a", expected=None, new="1")
    rows = list(every_row(store, "shoppers", ["user_id", "events"], page_size=3))
    assert sorted(r["user_id"] for r in rows) == ["u0", "u1", "u2", "u4", "u5", "u6", "u9"]
    assert all(set(r) == {"user_id", "events"} for r in rows)

def test_annotate_sets_its_fields_beside_the_state_only_on_live_rows_and_never_back_in_time(stores):
    store, _ = stores
    store.write_state("shoppers", "u1", {"first_seen": 1.0, "events": 3}, watermark="sw:a", expected=None, new="0001")
    assert store.annotate("shoppers", "u1", {"ltv": {"spend": 12.5}}, requires="first_seen", stamp="ltv_as_of",
                          at="2026-11-02T00:00:00Z")
    store.write_state("shoppers", "u1", {"events": 4}, watermark="sw:a", expected="0001", new="0002")
    assert store.read("shoppers", ["u1"])["u1"] == {"user_id": "u1", "first_seen": 1.0, "events": 4, "sw:a": "0002",
                                                    "ltv": {"spend": 12.5}, "ltv_as_of": "2026-11-02T00:00:00Z"}
    # An older run's values do not replace a newer run's; the same run may write again.
    assert not store.annotate("shoppers", "u1", {"ltv": {"spend": 1.0}}, requires="first_seen", stamp="ltv_as_of",
                              at="2026-11-01T00:00:00Z")
    assert store.annotate("shoppers", "u1", {"ltv": {"spend": 13.0}}, requires="first_seen", stamp="ltv_as_of",
                          at="2026-11-02T00:00:00Z")
    # Rows without state (erased, or counters only) get nothing.
    store.add("shoppers", "u2", {"referrals_sent": 1}, {}, watermark="sw:b", first="0001", last="0001")
    assert not store.annotate("shoppers", "u2", {"ltv": {}}, requires="first_seen", stamp="ltv_as_of", at="x")
    assert not store.annotate("shoppers", "gone", {"ltv": {}}, requires="first_seen", stamp="ltv_as_of", at="x")
    assert "gone" not in store.read("shoppers", ["gone"]) and "ltv" not in store.read("shoppers", ["u2"])["u2"]


def test_query_finds_a_shoppers_sessions_through_the_index_with_only_the_projected_attributes(stores):
    store, _ = stores
    for i in range(30):
        store.write_state("sessions", f"s{i:02d}", {"user_id": f"u{i % 3}", "started_at": float(i), "events": i},
                          watermark="sw:a", expected=None, new="0001")
    store.write_state("sessions", "s-anonymous", {"started_at": 1.0}, watermark="sw:a", expected=None, new="0001")
    rows = store.query("sessions", "user_id", "u1")
    assert sorted(r["session_id"] for r in rows) == [f"s{i:02d}" for i in range(1, 30, 3)]
    _, projected = INDEXES[("sessions", "user_id")]
    assert all(set(r) == {"session_id", "user_id", *projected} for r in rows)
    assert {r["session_id"]: r["started_at"] for r in rows}["s07"] == 7.0
    store.delete("sessions", "s07")
    assert "s07" not in {r["session_id"] for r in store.query("sessions", "user_id", "u1")}
    assert store.query("sessions", "user_id", "nobody") == []


def test_delete_many_deletes_the_rows_of_the_keys_that_exist_in_batches(stores):
    store, _ = stores
    for i in range(60):
        store.write_state("sessions", f"s{i:02d}", {"user_id": "u1"}, watermark="sw:a", expected=None, new="0001")
    before = store.calls["write"]
    store.delete_many("sessions", [f"s{i:02d}" for i in range(0, 60, 2)] + ["s00", "nobody"])
    assert store.calls["write"] - before == 2  # 31 distinct keys, 25 a call
    assert sorted(r["session_id"] for r in store.query("sessions", "user_id", "u1")) == [
        f"s{i:02d}" for i in range(1, 60, 2)]
    store.delete_many("sessions", [])


def test_a_queue_delivers_what_was_sent_as_json(queue):
    sender, received = queue
    sender.send({"user_id": "u-1", "erasure_id": "e1"})
    sender.send({"user_id": "u é", "n": 2.5, "nested": {"a": [1, None]}})
    assert sorted(received(), key=json.dumps) == sorted([{"user_id": "u-1", "erasure_id": "e1"},
                                                         {"user_id": "u é", "n": 2.5, "nested": {"a": [1, None]}}],
                                                        key=json.dumps)
