"""Ingest with the counter buffer and the merge: the counter rows come out as Ingest writing them itself makes them,
whatever replays, failures and crashes come between, and each batch makes a few writes instead of one per row."""

import random

import pytest

from tailor.ingest.buffer import BUFFERED_TABLES, cursor_id, slot_id
from tailor.ingest.merge import MERGE_ID, CounterMerge, MergeFailed, MergeReport
from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, TransientError, clean_run, deliver

SHARD = "shardId-000000000000"
OTHER = "shardId-000000000001"


LATEST = ("category", "price", "brand", "available", "last_event_at")


def counters(store: MemoryStateStore, *, latest: bool = True) -> dict[str, dict[str, dict]]:
    """The shared counter tables' rows without their watermarks (and without their latest values, unless
    `latest`: which shard's come last depends on the order of the shards' writes)."""
    tables = store.snapshot()
    left_out = ("wm:", "mw") if latest else ("wm:", "mw", *LATEST)
    return {table: {key: {name: value for name, value in row.items() if not name.startswith(left_out)}
                    for key, row in tables.get(table, {}).items()}
            for table in sorted(BUFFERED_TABLES)}


def assert_same_counters(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table].keys() == expected[table].keys(), table
        for key, row in expected[table].items():
            assert got[table][key].keys() == row.keys(), (table, key)
            for name, value in row.items():
                same = value == pytest.approx(got[table][key][name], rel=1e-12) if type(value) is float else \
                    got[table][key][name] == value
                assert same, (table, key, name, got[table][key][name], value)


def merge_until_done(store, rng: random.Random | None = None) -> MergeReport:
    """Run the merge until a run goes through, as the schedule would, a run a minute."""
    for _ in range(200):
        try:
            return CounterMerge(store, max_workers=4).run()
        except (TransientError, MergeFailed):
            continue
    raise AssertionError("the merge never went through")


def buffered_in_batches(events: list[dict], size: int) -> MemoryStateStore:
    """A store after Ingest has buffered `events` in batches of `size`, nothing merged yet."""
    store = MemoryStateStore()
    ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1, buffer=True)
    records = to_records(events)
    for start in range(0, len(records), size):
        ingestor.ingest(records[start:start + size])
    return store


def second_shard(events: list[dict]) -> list[dict]:
    for e in events:  # other shoppers, same catalog
        e["user_id"] = "x" + e["user_id"]
        e["session_id"] = "x" + e["session_id"]
        if "referrer_user_id" in e:
            e["referrer_user_id"] = "x" + e["referrer_user_id"]
    return events


def test_a_batch_writes_one_slot_and_the_cursor_instead_of_a_write_per_counter_row():
    events = random_events(1, 200)
    direct, _ = clean_run(events)
    store = MemoryStateStore()
    outcome = Ingestor(store, MemoryBlobStore(), max_workers=1, buffer=True).ingest(to_records(events))
    assert outcome.failed == []
    assert outcome.rows_written["buffers"] == 1
    assert not any(outcome.rows_written[table] for table in BUFFERED_TABLES)
    assert outcome.rows_written["checkpoints"] == 2  # the archive's and the buffer's cursor
    assert counters(store) == {table: {} for table in BUFFERED_TABLES}  # nothing merged yet

    report = CounterMerge(store, max_workers=1).run()
    assert (report.generations, report.slots, report.missing) == (1, 1, 0)
    assert sum(report.writes.values()) == sum(len(rows) for rows in counters(direct).values())
    assert_same_counters(counters(store), counters(direct))


def test_a_batch_delivered_again_after_its_merge_adds_nothing():
    records = to_records(random_events(2, 120))
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1, buffer=True)
    ingestor.ingest(records)
    CounterMerge(store, max_workers=1).run()
    before = counters(store)
    again = ingestor.ingest(records[:70])
    assert again.failed == [] and again.writes == 0
    assert CounterMerge(store, max_workers=1).run().generations == 0
    assert counters(store) == before


def test_a_slot_written_by_a_delivery_that_died_before_its_cursor_is_taken_as_written():
    events = random_events(3, 150)
    direct, _ = clean_run(events)
    records = to_records(events)
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    ingestor = Ingestor(store, blobs, max_workers=1, buffer=True)
    ingestor.ingest(records[:100])
    cursor_before = store.tables["checkpoints"][cursor_id(SHARD)]
    ingestor.ingest(records[100:])
    # The second delivery's slot landed, its cursor did not; then the stream sends the batch again, cut in half.
    store.tables["checkpoints"][cursor_id(SHARD)] = cursor_before
    for part in (records[100:120], records[120:]):
        assert ingestor.ingest(part).failed == []
    assert store.tables["checkpoints"][cursor_id(SHARD)]["slot"] == 2
    assert slot_id(SHARD, 3) not in store.tables["buffers"]  # nothing was left to buffer
    CounterMerge(store, max_workers=1).run()
    assert_same_counters(counters(store), counters(direct))


def test_a_cursor_write_that_fails_fails_no_record_and_the_merge_finds_its_slot_past_the_cursor():
    events = random_events(8, 240)
    records = to_records(events)
    store = MemoryStateStore()

    class CursorFails:
        """The store, but for the shard's cursor, whose writes fail."""

        def __getattr__(self, name):
            return getattr(store, name)

        def write_state(self, table, key, *args, **kwargs):
            if (table, key) == ("checkpoints", cursor_id(SHARD)):
                raise TransientError("timed out")
            return store.write_state(table, key, *args, **kwargs)

    ingestor = Ingestor(store, MemoryBlobStore(), max_workers=1, buffer=True)
    assert ingestor.ingest(records[:80]).failed == []
    outcome = Ingestor(CursorFails(), ingestor.blobs, max_workers=1, buffer=True).ingest(records[80:160])
    assert outcome.failed == [] and outcome.rows_written["buffers"] == 1
    assert store.tables["checkpoints"][cursor_id(SHARD)]["slot"] == 1
    assert CounterMerge(store, max_workers=1).run().slots == 2  # the slot past the cursor too
    assert_same_counters(counters(store), counters(clean_run(events[:160])[0]))

    assert ingestor.ingest(records[160:]).failed == []  # takes slot 2 as written and writes slot 3
    assert store.tables["checkpoints"][cursor_id(SHARD)]["slot"] == 3
    assert CounterMerge(store, max_workers=1).run().slots == 1
    assert_same_counters(counters(store), counters(clean_run(events)[0]))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_replays_failures_and_crashes_with_merges_between_count_as_one_clean_pass(seed):
    first, second = random_events(seed, 300), second_shard(random_events(seed + 100, 300))
    direct = MemoryStateStore()
    plain = Ingestor(direct, MemoryBlobStore(), max_workers=1)
    plain.ingest(to_records(first, SHARD))
    plain.ingest(to_records(second, OTHER))

    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    ingestor = Ingestor(store, FlakyBlobStore(rng, rate=0.05), max_workers=4, buffer=True)
    records = {SHARD: to_records(first, SHARD), OTHER: to_records(second, OTHER)}
    calls = 0
    for start in range(0, max(map(len, records.values())), 60):  # the shards in turns, a merge (or an attempt) between
        for shard, shard_records in records.items():
            calls += deliver(ingestor, shard_records[start:start + 60], rng, crash_rate=0.15)
        try:
            CounterMerge(store, max_workers=4).run()
        except (TransientError, MergeFailed):
            pass  # the next run carries its generation out
    merge_until_done(store)

    assert calls > 20  # failures really happened and were retried
    assert_same_counters(counters(store.inner, latest=False), counters(direct, latest=False))
    merge = store.inner.tables["checkpoints"][MERGE_ID]
    written = {s: max(int(key.rsplit(":", 1)[1]) for key in store.inner.tables["buffers"] if key.startswith(s))
               for s in records}
    assert merge["mg"] == merge["md"] and merge["merged"] == written  # slots past a cursor that failed too


def test_a_merge_that_dies_part_way_is_carried_out_once_by_the_next_run_and_by_runs_at_once():
    events = random_events(6, 300)
    direct, _ = clean_run(events)
    store = buffered_in_batches(events, 50)

    class Dies(BaseException):  # the process gone: nothing the merge can catch
        pass

    class DyingStore:
        """The store until `budget` counter writes have landed; then the process is gone."""

        def __init__(self, inner, budget):
            self.inner, self.budget = inner, budget

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def add(self, *args, **kwargs):
            if self.budget <= 0:
                raise Dies()
            self.budget -= 1
            return self.inner.add(*args, **kwargs)

    with pytest.raises(Dies):
        CounterMerge(DyingStore(store, 25), max_workers=1).run()
    assert "md" not in store.tables["checkpoints"][MERGE_ID]  # planned, not done
    # Two runs carry the unfinished generation out side by side; every row gets it once.
    first, second = CounterMerge(store, max_workers=4), CounterMerge(store, max_workers=4)
    reports = [first.run(), second.run()]
    assert sum(r.generations for r in reports) >= 1
    assert sum(r.already for r in reports) >= 25  # the rows the dead run wrote were left alone
    assert_same_counters(counters(store), counters(direct))


def test_latest_values_are_the_last_arrived_slots():
    events = random_events(7, 200)
    direct, _ = clean_run(events)
    store = buffered_in_batches(events, 40)
    CounterMerge(store, max_workers=1).run()
    got, expected = store.snapshot()["items"], direct.snapshot()["items"]
    for item, row in expected.items():
        assert {k: got[item].get(k) for k in ("category", "price", "brand", "last_event_at")} == \
               {k: row.get(k) for k in ("category", "price", "brand", "last_event_at")}, item
