"""Compacting the event archive: a shard-day's objects, once old, merged into a few parts in sequence order and
deleted; the archive reads the same before, during and after, whatever step a run stops at; young objects wait; and
an erasure racing a compaction leaves none of the shopper's events anywhere."""

from __future__ import annotations

import gzip
import json

import pytest

from tailor.archive import COMPACT_AFTER_SECONDS, archived_events, compact_archive
from tailor.erasure import complete_erasure, request_erasure
from tailor.ingest.service import Ingestor
from tailor.store.memory import MemoryBlobStore, MemoryQueue, MemoryStateStore

from tests.helpers.events import random_events, to_records

WRITTEN = 1_800_000_000.0  # when Ingest wrote the objects
LATER = WRITTEN + COMPACT_AFTER_SECONDS + 60  # old enough to merge


class Clocked(MemoryBlobStore):
    """A memory store whose objects are written at `now`, and which can stop (as a run dies) after `budget` writes or
    deletes, or call `hook(operation)` before one."""

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


def _read(blobs) -> list[str]:
    return [e["event_id"] for e in archived_events(blobs, workers=2)]


def _lines(blobs) -> list[dict]:
    """Every line of every archive object, parts pending or committed and objects merged alike."""
    return [json.loads(line) for key in blobs.list("archive/") if key.endswith(".jsonl.gz")
            for line in gzip.decompress(blobs.get(key)).splitlines()]


def test_old_objects_merge_into_parts_that_read_as_they_did():
    _, blobs = _archive()
    before = _read(blobs)
    objects = len(blobs.list("archive/"))
    report = compact_archive(blobs, now=LATER, part_bytes=2_000)
    keys = blobs.list("archive/")
    assert _read(blobs) == before and len(before) >= 300
    assert report.objects_merged == objects == report.objects_deleted and report.parts_written == len(keys) < objects
    assert all(key.rsplit("/", 1)[1].startswith("c-") for key in keys)
    assert compact_archive(blobs, now=LATER + 3600).as_dict() == {
        "objects_merged": 0, "parts_written": 0, "objects_deleted": 0, "parts_abandoned": 0, "shard_days_left": 0}


def test_young_objects_wait_and_a_later_run_merges_them_after_the_first_parts():
    _, blobs = _archive(random_events(12, 210), young=70)
    before = _read(blobs)
    first = compact_archive(blobs, now=LATER)
    assert first.objects_merged and _read(blobs) == before
    assert any(not key.rsplit("/", 1)[1].startswith("c-") for key in blobs.list("archive/"))
    second = compact_archive(blobs, now=LATER + COMPACT_AFTER_SECONDS + 60)
    assert second.objects_merged and _read(blobs) == before
    assert all(key.rsplit("/", 1)[1].startswith("c-") for key in blobs.list("archive/"))


@pytest.mark.parametrize("budget", range(0, 12))
def test_a_run_stopped_at_any_step_reads_the_same_and_the_next_run_finishes(budget):
    _, blobs = _archive(random_events(13, 120), batch=9)
    before = _read(blobs)
    blobs.budget = budget
    try:
        compact_archive(blobs, now=LATER, part_bytes=1_500, workers=1)
    except _Died:
        pass
    blobs.budget = None
    assert _read(blobs) == before
    compact_archive(blobs, now=LATER + COMPACT_AFTER_SECONDS + 60, part_bytes=1_500)
    assert _read(blobs) == before
    assert all(key.rsplit("/", 1)[1].startswith("c-") for key in blobs.list("archive/"))
    assert sorted(e["event_id"] for e in _lines(blobs)) == sorted(before)  # nothing kept twice


@pytest.mark.parametrize("moment", ["put", "copy", "delete"])
def test_an_erasure_racing_a_compaction_leaves_none_of_the_shoppers_events_anywhere(moment):
    events = _three_shoppers()
    store, blobs = _archive(events, batch=6)
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent
    erased = []

    def erase_once(operation):
        # The erasure runs whole at this moment of the compaction: after its first pending part is written, at its
        # commit, or as it deletes what it merged.
        if operation == moment and not erased:
            blobs.hook = None
            erased.append(complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5))
            blobs.hook = erase_once

    blobs.hook = erase_once
    compact_archive(blobs, now=LATER, part_bytes=300)
    blobs.hook = None
    assert erased and erased[0]["status"] == "done"
    assert not [e for e in _lines(blobs) if e["user_id"] == "alice"]
    kept = sorted(e["event_id"] for e in events if e["user_id"] != "alice")
    assert sorted(_read(blobs)) == kept
    compact_archive(blobs, now=LATER + COMPACT_AFTER_SECONDS + 60)
    assert sorted(_read(blobs)) == kept and not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def test_a_compaction_between_an_erasures_listing_and_its_rewrites_is_found_by_listing_again():
    store, blobs = _archive(_three_shoppers(), batch=6)
    queue = MemoryQueue()
    request_erasure(store, queue, "alice", now=LATER)
    (message,) = queue.sent

    def compact_once(operation):
        # The erasure has listed the day; before it reads the first object, a compaction merges them all.
        blobs.hook = None
        assert compact_archive(blobs, now=LATER).objects_merged

    blobs.hook = compact_once
    done = complete_erasure(store, blobs, "alice", message["erasure_id"], now=lambda: LATER + 5, workers=1)
    assert done["status"] == "done" and done["removed"]["archive_events"] == 30
    assert not [e for e in _lines(blobs) if e["user_id"] == "alice"]


def _three_shoppers() -> list[dict]:
    return [{"event_id": f"e{n}", "event_type": "view", "user_id": ("alice", "bob", "carol")[n % 3],
             "session_id": f"s{n % 3}", "item_id": f"i{n}", "timestamp": f"2026-11-02T11:{n // 60:02d}:{n % 60:02d}Z"}
            for n in range(90)]


def test_a_run_out_of_time_leaves_the_rest_to_the_next():
    _, blobs = _archive()
    before = _read(blobs)
    report = compact_archive(blobs, now=LATER, seconds_left=lambda: 0.0)
    assert report.shard_days_left >= 1 and report.objects_merged == 0 and _read(blobs) == before
