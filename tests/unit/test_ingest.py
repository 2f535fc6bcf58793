"""Ingest on the in-memory store: what a batch writes, and that replays and failures never count twice."""

import gzip
import json
import random
from collections import Counter

import pytest

from tailor.ingest.service import Ingestor, StreamRecord
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import kinesis_payloads, load_event, random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, TransientError, clean_run, deliver, state_rows


def sample_records() -> list[StreamRecord]:
    event = load_event("ingest-kinesis-batch.json")
    return [
        StreamRecord(shard=r["eventID"].split(":")[0], sequence=r["kinesis"]["sequenceNumber"], data=data,
                     partition_key=r["kinesis"]["partitionKey"], arrival=r["kinesis"]["approximateArrivalTimestamp"])
        for r, data in zip(event["Records"], kinesis_payloads(event))
    ]


def archived_events(blobs: MemoryBlobStore) -> Counter:
    lines = Counter()
    for key in blobs.list("archive/"):
        for line in gzip.decompress(blobs.get(key)).decode().splitlines():
            lines[json.loads(line)["event_id"]] += 1
    return lines


@pytest.fixture
def applied():
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    outcome = Ingestor(store, blobs, max_workers=1).ingest(sample_records())
    return store, blobs, outcome


def test_sample_batch_applies_valid_events_and_quarantines_the_rest(applied):
    store, blobs, outcome = applied
    assert outcome.failed == []
    assert (outcome.accepted, outcome.quarantined, outcome.duplicates) == (21, 5, 1)
    reasons = [json.loads(blobs.get(k))["reason"] for k in blobs.list("quarantine/")]
    assert len(reasons) == 5
    assert any("not valid JSON" in r for r in reasons)
    assert any(r.startswith("user_id: Field required") for r in reasons)
    assert any("unknown event type 'teleport'" in r for r in reasons)
    assert any(r.startswith("price:") for r in reasons)
    assert any(r.startswith("quantity:") for r in reasons)


def test_sample_batch_session_shopper_and_counters(applied):
    store, _, _ = applied
    tables = state_rows(store)
    shopper = tables["shoppers"]["u-1001"]
    assert shopper["events"] == 12  # the resent view is not counted again
    assert shopper["counts"]["view"] == 2
    assert (shopper["purchases"], shopper["units"], shopper["revenue"], shopper["transactions"]) == (1, 1, 199.0, 1)
    assert shopper["referral_sources"] == {"search_engine": 1}
    assert shopper["category_affinity"]["electronics"] == pytest.approx(1 + 1 + 0 + 1 + 3 + 5)
    session = tables["sessions"]["s-1001-a"]
    assert session["items"] == ["i-102", "i-101"]  # most recent last
    assert session["dwell_ms_max"] == 52000 and session["cart_units"] == 0 and session["revenue"] == 199.0
    assert session["expires_at"] > session["last_seen"]
    item = tables["items"]["i-101"]
    assert (item["views"], item["clicks"], item["carts"], item["purchases"], item["revenue"]) == (1, 1, 1, 1, 199.0)
    assert (item["impressions"], item["dwells"], item["dwell_ms"], item["spec_compares"]) == (1, 1, 52000, 1)
    assert item["category"] == "electronics" and item["brand"] == "Sonora"
    # Pairs weigh by event type: i-102 viewed and compared after i-101 (1 + 1), then i-101 read about,
    # carted and bought after i-102 (1 + 3 + 5); "n:" sums both orders, "f:" keeps the direction.
    first, second = tables["associations"]["i-101"], tables["associations"]["i-102"]
    assert first["n:i-102"] == second["n:i-101"] == 11
    assert (first["f:i-102"], second["f:i-101"]) == (2, 9)
    assert (first["f:i-101"], second["f:i-102"]) == (1 + 0.5 + 3 + 5, 1)  # returns to an item already seen
    query = tables["queries"]["noise cancelling headphones"]
    assert (query["searches"], query["c:i-101"], query["a:i-101"], query["p:i-101"]) == (1, 1, 1, 1)
    assert shopper["purchase_history"] == [["2026-11-02", 199.0, 1]]
    assert shopper["session_ids"] == ["s-1001-a"] and shopper["recent_items"] == ["i-102", "i-101"]
    other = tables["shoppers"]["u-2002"]
    assert other["profile"] == {"age": 34, "location": "Lisbon", "interests": ["home decor", "cooking"]}
    assert tables["sessions"]["s-2002-a"]["cart_units"] == 1


def test_one_write_per_touched_key_plus_the_archive_checkpoint(applied):
    store, _, outcome = applied
    keys = sum(len(rows) for name, rows in state_rows(store).items() if name != "checkpoints")
    assert store.calls["write"] == keys + 1
    assert outcome.writes == keys + 1
    assert store.calls["read"] == 1  # sessions, shoppers and the checkpoint in one batched read


def test_whole_batch_delivered_twice_changes_nothing(applied):
    store, blobs, _ = applied
    before = (state_rows(store), dict(blobs.objects))
    again = Ingestor(store, blobs, max_workers=1).ingest(sample_records())
    assert again.failed == []
    assert (state_rows(store), dict(blobs.objects)) == before


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_replays_after_failures_and_crashes_leave_the_state_of_one_clean_pass(seed):
    events = random_events(seed, 400)
    expected_store, expected_blobs = clean_run(events)

    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    blobs = FlakyBlobStore(rng, rate=0.05)
    calls = deliver(Ingestor(store, blobs, max_workers=4), to_records(events), rng, crash_rate=0.15)

    assert calls > 20  # failures really happened and were retried
    assert state_rows(store.inner) == state_rows(expected_store)
    assert archived_events(blobs) == archived_events(expected_blobs)
    assert blobs.list("quarantine/") == expected_blobs.list("quarantine/")


def test_rows_are_read_while_the_events_are_validated_and_again_if_that_read_failed():
    events = random_events(9, 200)
    expected, _ = clean_run(events)
    records = to_records(events)
    store = MemoryStateStore()
    reads = []

    class Reads:
        """The store, counting its reads; the first of batch `fail` fails."""

        fail: int | None = None

        def __getattr__(self, name):
            return getattr(store, name)

        def read_many(self, requests):
            reads.append(self.batch)
            if self.batch == self.fail and reads.count(self.batch) == 1:
                raise TransientError("throttled")
            return store.read_many(requests)

    reader = Reads()
    ingestor = Ingestor(reader, MemoryBlobStore(), max_workers=4)
    for reader.batch, reader.fail, part in ((1, None, records[:100]), (2, 2, records[100:])):
        assert ingestor.ingest(part).failed == []
    assert reads == [1, 2, 2]  # a round trip a batch, and one more after the read ahead failed
    assert state_rows(store) == state_rows(expected)


def test_two_shards_touching_the_same_items_add_up():
    first, second = random_events(10, 200), random_events(11, 200)
    for e in second:  # other shoppers, same catalog
        e["user_id"] = "x" + e["user_id"]
        e["session_id"] = "x" + e["session_id"]
        if "referrer_user_id" in e:
            e["referrer_user_id"] = "x" + e["referrer_user_id"]
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1)
    rng = random.Random(0)
    records_a = to_records(first, "shardId-000000000000")
    records_b = to_records(second, "shardId-000000000001")
    for start in range(0, max(len(records_a), len(records_b)), 20):
        for records in (records_a, records_b):  # interleaved shards, each batch delivered twice
            ingestor.ingest(records[start:start + 20])
            ingestor.ingest(records[start:start + rng.randint(1, 20)])
    # Producer duplicates carry the same event id and must not count.
    deduped = {}
    for e in first + second:
        deduped.setdefault(e["event_id"], e)
    views = Counter(e["item_id"] for e in deduped.values() if e["event_type"] == "view")
    items = state_rows(store)["items"]
    assert {k: v.get("views", 0) for k, v in items.items() if v.get("views")} == dict(views)


def test_a_record_with_another_partition_key_is_quarantined():
    event = random_events(3, 1)[0]
    record = StreamRecord(shard="shardId-000000000000", sequence="1", data=json.dumps(event).encode(),
                          partition_key="someone-else")
    blobs = MemoryBlobStore()
    outcome = Ingestor(MemoryStateStore(), blobs, max_workers=1).ingest([record])
    assert outcome.quarantined == 1
    assert "partition_key" in json.loads(blobs.get(blobs.list("quarantine/")[0]))["reason"]


class RecordingStore(MemoryStateStore):
    """A memory store that keeps the fields of every state row write."""

    def __init__(self):
        super().__init__()
        self.written: list[tuple[str, str, dict]] = []

    def write_state(self, table, key, fields, **kwargs):
        self.written.append((table, key, dict(fields)))
        return super().write_state(table, key, fields, **kwargs)


def test_a_state_row_write_sends_only_what_changed_and_leaves_the_row_a_full_write_would(monkeypatch):
    events = random_events(7, 300, users=3)
    batches = [to_records(events)[start:start + 25] for start in range(0, 300, 25)]

    def run(store):
        ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1)
        for batch in batches:
            assert ingestor.ingest(batch).failed == []
        return store

    changed_only = run(RecordingStore())
    monkeypatch.setattr("tailor.ingest.service._changed", lambda fields, read: fields)
    everything = run(RecordingStore())

    assert state_rows(changed_only) == state_rows(everything)
    later = [(fields, full) for (_, _, fields), (_, _, full) in zip(changed_only.written, everything.written)
             if len(full) != len(fields)]
    assert later and all(set(fields) < set(full) for fields, full in later)


@pytest.mark.parametrize(("read", "value"), [(1, True), (3, 3.0), ({"a": 1}, {"a": True}), ([1], (1,)), (None, 0)])
def test_a_field_equal_in_value_but_not_in_type_is_written_again(read, value):
    from tailor.ingest.service import _changed

    assert _changed({"f": value, "same": "x"}, {"f": read, "same": "x"}) == {"f": value}


def test_an_event_after_its_session_expired_starts_a_session_whether_or_not_the_row_is_swept_yet():
    def view(n, item, when):
        return {"event_id": f"e-{n}", "user_id": "u-1", "session_id": "s-1", "event_type": "view", "item_id": item,
                "timestamp": when}

    early = to_records([view(1, "lamp-1", "2026-12-01T10:00:00Z"), view(2, "lamp-2", "2026-12-01T10:00:02Z")])
    late = to_records([view(3, "book-1", "2026-12-03T10:00:00Z")], start=2)  # a day past the session's expiry
    stores = []
    for swept in (False, True):
        store = MemoryStateStore()
        ingest = Ingestor(store, MemoryBlobStore(), max_workers=1, session_ttl_days=1)
        assert ingest.ingest(early).failed == []
        if swept:  # the table's TTL has removed the expired row by the time the late event comes
            store.delete("sessions", "s-1")
        assert ingest.ingest(late).failed == []
        stores.append(state_rows(store))
    kept, swept = stores
    assert kept["sessions"]["s-1"]["items"] == swept["sessions"]["s-1"]["items"] == ["book-1"]
    assert kept["associations"] == swept["associations"] and "book-1" not in kept["associations"]
    assert kept["shoppers"] == swept["shoppers"]


def test_a_session_row_is_written_only_once_its_shoppers_row_has_landed():
    class ShopperWritesFail(MemoryStateStore):
        failing = "*"

        def write_state(self, table, key, *args, **kwargs):
            self.order.append(table)
            if table == "shoppers" and self.failing in ("*", key):
                raise TransientError("throttled")
            return super().write_state(table, key, *args, **kwargs)

    store = ShopperWritesFail()
    store.order = []
    events = random_events(3, 40)
    records = to_records(events)
    outcome = Ingestor(store, MemoryBlobStore(), max_workers=4).ingest(records)
    # No session row runs ahead of its shopper's: the stream delivers every record of the batch's sessions again.
    assert "shoppers" in store.order and "sessions" not in store.order
    assert not state_rows(store).get("sessions") and outcome.failed == [r.sequence for r in records]
    # One shopper's row failing holds back that shopper's sessions only.
    store, one = ShopperWritesFail(), events[0]["user_id"]
    store.order, store.failing = [], one
    outcome = Ingestor(store, MemoryBlobStore(), max_workers=4).ingest(records)
    sessions = state_rows(store)["sessions"]
    assert sessions and all(row["user_id"] != one for row in sessions.values())
    assert {e["session_id"] for e in events if e["user_id"] != one and "session_id" in e} <= set(sessions)
    assert outcome.failed and outcome.failed[0] == records[0].sequence
