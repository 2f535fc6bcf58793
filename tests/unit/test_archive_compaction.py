"""Compacting the event archive: a shard-day's objects, once old and archived, merged into small parts in sequence
order, and deleted an hour later; the archive reads the same, event for event and in order, before, during and after,
whatever step a run stops at; runs never overlap; and an erasure racing a compaction, or resumed after one, leaves
none of the shopper's events anywhere."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from tailor.archive import (
    COMPACT_AFTER_SECONDS,
    DELETE_AFTER_SECONDS,
    archive_checkpoint_id,
    archived_events,
    compact_archive,
    days_of,
    is_part,
)
from tailor.erasure import ErasureIncomplete, complete_erasure, request_erasure
from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryQueue, MemoryStateStore

from tests.helpers.events import SHARD, random_events, to_records

WRITTEN = 1_800_000_000.0  # when Ingest wrote the objects
LATER = WRITTEN + COMPACT_AFTER_SECONDS + 60  # old enough to merge
SETTLED = LATER + DELETE_AFTER_SECONDS + 60  # the parts written at LATER old enough for their objects to go


class Clocked(MemoryBlobStore):
    """A memory store whose objects are written at `now`, and which can stop (as a run dies) after `budget` writes or
    deletes, or call `hook(operation)` before a read, write, copy or delete."""

    def __init__(self):
        self.now = WRITTEN
        super().__init__(clock=lambda: self.now)
        self.budget: int | None = None
        self.hook = None

    def _spend(self, operation: str) -> None:
        if self.hook is not None:
            self.hook(operation)
        if self.budget is not None:
            if self.budget <= 0:
                raise _Died()
            self.budget -= 1

    def put(self, key, body, content_type="application/octet-stream"):
        if key.startswith("archive/"):
            self._spend("put")
        return super().put(key, body, content_type)

    def get_tagged(self, key):
        if self.hook is not None:
            self.hook("read")
        return super().get_tagged(key)

    def copy_if(self, source, target, tag):
        self._spend("copy")
        return super().copy_if(source, target, tag)

    def delete_many(self, keys):
        self._spend("delete")
        return super().delete_many(keys)


class _Died(BaseException):
    """The run's process dying."""


def _archive(events=None, *, batch: int = 7, young: int = 0) -> tuple[MemoryStateStore, Clocked]:
    """The events ingested in batches of `batch`, the last `young` of them written just before the compaction."""
    store, blobs = MemoryStateStore(), Clocked()
    records = to_records(events or random_events(11, 300))
    for start in range(0, len(records), batch):
        if start >= len(records) - young:
            blobs.now = LATER
        assert Ingestor(store, blobs, max_workers=1).ingest(records[start:start + batch]).failed == []
    return store, blobs


def _compact(blobs: Clocked, store, *, now: float, **options):
    """A compaction run at `now` over the whole archive (the events' days are long before `now`): what it writes is
    written then."""
    blobs.now = now
    return compact_archive(blobs, store, now=now, **{"days": 0, **options})


def _read(blobs) -> list[str]:
    return [e["event_id"] for e in archived_events(blobs, workers=2)]


def _lines(blobs) -> list[dict]:
    """Every line of every archive object, parts pending or committed and objects merged alike."""
    return [json.loads(line) for key in blobs.list("archive/") if key.endswith(".jsonl.gz")
            for line in gzip.decompress(blobs.get(key)).splitlines()]


def _only_parts(blobs) -> bool:
    return all(key.rsplit("/", 1)[1].startswith("c-") for key in blobs.list("archive/"))


def _three_shoppers(days: tuple[str, ...] = ("2026-11-02",)) -> list[dict]:
    return [{"event_id": f"e{day}-{n}", "event_type": "view", "user_id": ("alice", "bob", "carol")[n % 3],
             "session_id": f"s{n % 3}", "item_id": f"i{n}", "timestamp": f"{day}T11:{n // 60:02d}:{n % 60:02d}Z"}
            for day in days for n in range(90)]


def test_old_objects_merge_into_parts_that_read_as_they_did_and_go_an_hour_later():
    store, blobs = _archive()
    before = _read(blobs)
    objects = blobs.list("archive/")
    report = _compact(blobs, store, now=LATER, part_bytes=2_000)
    assert report.objects_merged == len(objects) and 1 < report.parts_written < len(objects)
    assert report.objects_deleted == 0 and _read(blobs) == before  # read in place of the objects, which stay a while
    later = _compact(blobs, store, now=SETTLED, part_bytes=2_000)
    assert later.objects_deleted == len(objects) and later.objects_merged == 0
    assert _only_parts(blobs) and len(blobs.list("archive/")) == report.parts_written and _read(blobs) == before
    assert _compact(blobs, store, now=SETTLED + 3600).as_dict() == {
        "objects_merged": 0, "parts_written": 0, "objects_deleted": 0, "parts_abandoned": 0, "stopped": False,
        "leased": True}


def test_parts_hold_a_fraction_of_the_objects_and_stay_small():
    store, blobs = _archive(random_events(14, 600), batch=3)
    objects = len(blobs.list("archive/"))
    _compact(blobs, store, now=LATER, part_bytes=4_000)
    _compact(blobs, store, now=SETTLED, part_bytes=4_000)
    parts = blobs.list("archive/")
    assert len(parts) * 10 < objects and all(len(blobs.get(key)) <= 4_000 + 2_000 for key in parts)


def test_young_objects_and_objects_past_the_archive_checkpoint_wait_for_a_later_run():
    store, blobs = _archive(random_events(12, 210), young=70)
    before = _read(blobs)
    first = _compact(blobs, store, now=LATER)
    assert first.objects_merged and _read(blobs) == before and not _only_parts(blobs)
    # Ingest's checkpoint behind the newest objects (a batch whose archive write landed and whose checkpoint did not):
    # those may be written again, and wait.
    checkpoint = store.tables["checkpoints"][archive_checkpoint_id(SHARD)]
    newest = max(key for key in blobs.list("archive/") if not is_part(key))
    checkpoint[f"sw:{SHARD}"] = f"{len(newest.rsplit('/', 1)[1]) - 9:03d}" + "1" * 5
    assert _compact(blobs, store, now=SETTLED + COMPACT_AFTER_SECONDS).objects_merged == 0
    del store.tables["checkpoints"][archive_checkpoint_id(SHARD)]
    assert _compact(blobs, store, now=SETTLED + COMPACT_AFTER_SECONDS).objects_merged == 0
    _, fresh = _archive(random_events(12, 210))  # the same records, archived through the last
    store.tables["checkpoints"].update(_.tables["checkpoints"])
    second = _compact(blobs, store, now=SETTLED + COMPACT_AFTER_SECONDS)
    assert second.objects_merged and _read(blobs) == before == _read(fresh)
    _compact(blobs, store, now=SETTLED + COMPACT_AFTER_SECONDS + DELETE_AFTER_SECONDS + 60)
    assert _only_parts(blobs) and _read(blobs) == before


@pytest.mark.parametrize("budget", range(0, 12))
def test_a_run_stopped_at_any_step_reads_the_same_and_the_next_runs_finish(budget):
    store, blobs = _archive(random_events(13, 120), batch=9)
    before = _read(blobs)
    blobs.budget = budget
    try:
        _compact(blobs, store, now=LATER, part_bytes=1_500, workers=1)
    except _Died:
        pass
    blobs.budget = None
    assert _read(blobs) == before
    for now in (LATER + COMPACT_AFTER_SECONDS + 60, SETTLED + 2 * COMPACT_AFTER_SECONDS):
        store.tables["checkpoints"].pop("compact-archive", None)  # the dead run's lease, as if it had expired
        _compact(blobs, store, now=now, part_bytes=1_500)
        assert _read(blobs) == before
    assert _only_parts(blobs)
    assert sorted(e["event_id"] for e in _lines(blobs)) == sorted(before)  # nothing kept twice


def test_runs_never_overlap_while_one_holds_the_lease():
    store, blobs = _archive(random_events(15, 150), batch=5)
    before = _read(blobs)
    overlapping = []

    def second_run(operation):
        if operation == "put" and not overlapping:
            overlapping.append(_compact(blobs, store, now=LATER + 30, part_bytes=800))

    blobs.hook = second_run
    first = _compact(blobs, store, now=LATER, part_bytes=1_000)
    blobs.hook = None
    assert first.parts_written and not overlapping[0].leased and overlapping[0].parts_written == 0
    assert _read(blobs) == before
    assert _compact(blobs, store, now=LATER + 60, part_bytes=800).leased  # released


@pytest.mark.parametrize("moment", ["put", "copy", "delete"])
def test_an_erasure_racing_a_compaction_leaves_none_of_the_shoppers_events_anywhere(moment):
    events = _three_shoppers()
    store, blobs = _archive(events, batch=6)
    kept = [e["event_id"] for e in events if e["user_id"] != "alice"]
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent
    erased = []

    def erase_once(operation):
        # The erasure runs whole at this moment of the compaction: as its first pending part is written, at its first
        # commit, or as it deletes the pending parts it committed.
        if operation == moment and not erased:
            blobs.hook = None
            erased.append(complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5))
            blobs.hook = erase_once

    blobs.hook = erase_once
    _compact(blobs, store, now=LATER, part_bytes=800)
    blobs.hook = None
    assert erased and erased[0]["status"] == "done"
    assert not [e for e in _lines(blobs) if e["user_id"] == "alice"]
    assert _read(blobs) == kept  # each once, in order
    for now in (LATER + COMPACT_AFTER_SECONDS, SETTLED + COMPACT_AFTER_SECONDS):
        _compact(blobs, store, now=now)
        assert _read(blobs) == kept and not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def test_a_compaction_between_an_erasures_listing_and_its_rewrites_is_found_by_listing_again():
    store, blobs = _archive(_three_shoppers(), batch=6)
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent

    def compact_once(operation):
        # The erasure has listed the day; before it reads the first object, compactions merge them all and delete them.
        blobs.hook = None
        assert _compact(blobs, store, now=LATER).objects_merged
        assert _compact(blobs, store, now=SETTLED).objects_deleted

    blobs.hook = compact_once
    done = complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5, workers=1)
    assert done["status"] == "done" and done["removed"]["archive_events"] == 30
    assert not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def test_an_erasure_resumed_after_a_compaction_merged_what_it_had_not_rewritten_rewrites_the_parts(monkeypatch):
    import tailor.erasure as erasure_module

    monkeypatch.setattr(erasure_module, "OBJECTS_PER_SAVE", 4)
    store, blobs = _archive(_three_shoppers(("2026-11-02", "2026-11-03")), batch=30)  # three objects a day
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent

    def compact_once(operation):
        blobs.hook = None
        _compact(blobs, store, now=LATER)
        _compact(blobs, store, now=SETTLED)

    blobs.hook = compact_once
    clock = iter([900.0, 900.0, 0.0])  # time for the first four objects, then the run is out of time
    with pytest.raises(ErasureIncomplete):
        complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5, workers=1,
                         seconds_left=lambda: next(clock, 0.0))
    assert [e for e in _lines(blobs) if e["user_id"] == "alice"]  # merged into the first day's part meanwhile
    done = complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5, workers=1)
    assert done["status"] == "done" and not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def test_objects_left_on_both_sides_of_a_part_merge_into_parts_of_their_own_and_read_in_order():
    events = _three_shoppers()
    store, blobs = _archive(events, batch=6, young=30)  # the last five objects written at LATER
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent
    erased = []

    def erase_at_first_part(operation):
        # The first chunk's objects rewritten after it read them: its part is abandoned, the next ones committed.
        if operation == "put" and not erased:
            blobs.hook = None
            erased.append(complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5))

    blobs.hook = erase_at_first_part
    first = _compact(blobs, store, now=LATER, part_bytes=800)
    assert first.parts_abandoned and first.parts_written
    kept = [e["event_id"] for e in events if e["user_id"] != "alice"]
    # The abandoned objects before the committed parts, and the young ones after them, merge apart.
    _compact(blobs, store, now=SETTLED, part_bytes=10_000)
    assert _read(blobs) == kept


def test_a_reader_that_listed_before_a_compaction_reads_every_event_once():
    store, blobs = _archive(batch=2)  # more objects than a reader reads ahead
    before = _read(blobs)
    reading = archived_events(blobs, workers=1)
    first = [next(reading)["event_id"]]
    _compact(blobs, store, now=LATER, part_bytes=2_000)
    _compact(blobs, store, now=LATER + DELETE_AFTER_SECONDS / 2, part_bytes=2_000)  # within the hour: kept
    assert first + [e["event_id"] for e in reading] == before


def test_a_run_looks_at_the_last_days_of_events_unless_told_to_look_at_all():
    store, blobs = _archive(_three_shoppers(("2026-11-01", "2026-11-02")), batch=6)
    before = _read(blobs)
    day_after = datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp() + COMPACT_AFTER_SECONDS
    for key in blobs.list("archive/"):
        blobs.modified[key] = day_after - 2 * COMPACT_AFTER_SECONDS  # written well before
    recent = _compact(blobs, store, now=day_after, days=2)  # the 2nd and 3rd of November
    assert recent.objects_merged == 15 and _read(blobs) == before
    assert not [key for key in blobs.list("archive/date=2026-11-01/") if is_part(key)]
    assert _compact(blobs, store, now=day_after + 60).objects_merged == 15 and _read(blobs) == before


def test_a_firings_days_are_a_whole_number_within_the_listing_limit():
    assert days_of({"job": "compact-archive"}, 3) == 3 and days_of({"days": 0}, 3) == 0
    for bad in (True, 2.0, None, -1, "all", 10**7):
        with pytest.raises(ValueError, match="days: "):
            days_of({"days": bad}, 3)


def test_a_run_out_of_time_leaves_the_rest_to_the_next():
    store, blobs = _archive()
    before = _read(blobs)
    report = _compact(blobs, store, now=LATER, seconds_left=lambda: 0.0)
    assert report.stopped and report.objects_merged == 0 and _read(blobs) == before
    assert _compact(blobs, store, now=LATER + 60).objects_merged  # its lease released


def test_the_benchmark_reads_a_day_back_the_same_from_far_fewer_objects(tmp_path, capsys):
    from tailor_lab.bench.archive import main, measure

    report = measure(objects=60, events=5, latency=0.0, workers=2)
    before, after = report["rows"]
    assert before["events"] == after["events"] == 300 and before["objects"] == before["reads"] == 60
    assert after["objects"] == after["reads"] == report["compaction"]["parts_written"] < 60
    assert report["compaction"]["objects_merged"] == report["compaction"]["objects_deleted"] == 60
    assert main(["--objects", "20", "--events", "2", "--latency-ms", "0", "--out", str(tmp_path / "a.json")]) == 0
    assert "compacted" in capsys.readouterr().out and (tmp_path / "a.json").exists()


class _Hooked(MemoryBlobStore):
    """A memory store that calls `on_read[key]` once before that key's first read, and `on_list[prefix]` before every
    listing of that prefix."""

    def __init__(self):
        super().__init__(clock=lambda: LATER)
        self.on_read, self.on_list = {}, {}

    def get_tagged(self, key):
        hook = self.on_read.pop(key, None)
        if hook is not None:
            hook(key)
        return super().get_tagged(key)

    def list(self, prefix):
        if prefix in self.on_list:
            self.on_list[prefix](prefix)
        return super().list(prefix)


def _two_shoppers(days: list[str]) -> list[dict]:
    return [{"event_id": f"e{day}-{user}-{n}", "event_type": "view", "user_id": user, "session_id": f"s-{user}",
             "item_id": f"i{n}", "timestamp": f"{day}T11:00:{n:02d}Z"}
            for day in days for user in ("alice", "bob") for n in range(3)]


def _erasing(events: list[dict], batch: int) -> tuple[MemoryStateStore, _Hooked, str]:
    store, blobs = MemoryStateStore(), _Hooked()
    records = to_records(events)
    for start in range(0, len(records), batch):
        assert Ingestor(store, blobs, max_workers=1).ingest(records[start:start + batch]).failed == []
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    return store, blobs, queue.sent[0]["erasure_id"]


def _bobs_object(blobs, directory: str, sequence: int) -> None:
    """An object Ingest writes meanwhile, of another shopper's event."""
    line = json.dumps({"event_id": f"x{sequence}", "user_id": "bob", "timestamp": "2026-11-02T12:00:00Z"}) + "\n"
    MemoryBlobStore.put(blobs, f"{directory}{sequence}.jsonl.gz", gzip.compress(line.encode(), mtime=0))


def test_a_resumed_erasure_keeps_every_shard_day_a_stopped_run_found_the_shopper_in(monkeypatch):
    import tailor.erasure as erasure_module

    monkeypatch.setattr(erasure_module, "OBJECTS_PER_SAVE", 2)
    store, blobs, erasure_id = _erasing(_two_shoppers(["2026-11-01", "2026-11-02", "2026-11-03"]), batch=100)
    first, second, _ = keys = blobs.list("archive/")
    d1, d2 = (key.rsplit("/", 1)[0] + "/" for key in keys[:2])
    sequence = int(first.rsplit("/", 1)[1].split(".")[0])
    # While it reads the first day's object, Ingest writes two more there (a second pass lists them); while it reads
    # the second day's, a compaction that read that object before commits its part, with the shopper's events.
    blobs.on_read[first] = lambda key: [_bobs_object(blobs, d1, sequence + 10**6 + n) for n in (1, 2)]
    blobs.on_read[second] = lambda key: MemoryBlobStore.put(
        blobs, f"{d2}c-{key.rsplit('/', 1)[1].split('.')[0]}-{key.rsplit('/', 1)[1].split('.')[0]}.jsonl.gz",
        MemoryBlobStore.get(blobs, key))
    clock = iter([900.0, 900.0, 900.0, 0.0])
    with pytest.raises(ErasureIncomplete):
        complete_erasure(store, blobs, "alice", erasure_id, now=lambda: LATER + 5, workers=1,
                         seconds_left=lambda: next(clock, 0.0))
    done = complete_erasure(store, blobs, "alice", erasure_id, now=lambda: LATER + 5, workers=1)
    assert done["status"] == "done" and not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def test_a_resumed_erasure_finishes_though_its_shard_day_gets_new_objects_at_every_listing(monkeypatch):
    import tailor.erasure as erasure_module

    monkeypatch.setattr(erasure_module, "OBJECTS_PER_SAVE", 2)
    store, blobs, erasure_id = _erasing(_two_shoppers(["2026-11-02"]), batch=2)
    (directory,) = {key.rsplit("/", 1)[0] + "/" for key in blobs.list("archive/")}
    written = iter(range(1, 10**6))
    blobs.on_list[directory] = lambda prefix: _bobs_object(blobs, directory, 99 * 10**60 + next(written))
    clock = iter([900.0, 900.0, 0.0])  # the first run stops after its first save
    with pytest.raises(ErasureIncomplete):
        complete_erasure(store, blobs, "alice", erasure_id, now=lambda: LATER + 5, workers=1,
                         seconds_left=lambda: next(clock, 0.0))
    calls = iter(range(200))  # a run's worth of deadline checks
    done = complete_erasure(store, blobs, "alice", erasure_id, now=lambda: LATER + 5, workers=1,
                            seconds_left=lambda: 900.0 if next(calls, 200) < 199 else 0.0)
    assert done["status"] == "done" and not [e for e in _lines(blobs) if e["user_id"] == "alice"]
