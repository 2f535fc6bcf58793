"""Reading the event archive back for the scheduled jobs: only the days asked for are listed and read, in key order."""

from __future__ import annotations

import json

from tailor.archive import archive_key, archived_events, pack_lines
from tailor.store.memory import MemoryBlobStore


class Counting(MemoryBlobStore):
    def __init__(self):
        super().__init__()
        self.listed, self.read = [], []

    def list(self, prefix):
        self.listed.append(prefix)
        return super().list(prefix)

    def describe(self, prefix):
        self.listed.append(prefix)
        return super().describe(prefix)

    def get(self, key):
        self.read.append(key)
        return super().get(key)


def _archive() -> Counting:
    blobs = Counting()
    for day in ("2025-01-01", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"):
        for shard, first in (("s-0", "001"), ("s-0", "002"), ("s-1", "001")):
            events = [{"event_id": f"{day}-{shard}-{first}-{k}", "timestamp": f"{day}T10:00:0{k}Z"} for k in range(3)]
            blobs.put(archive_key(day, shard, first), pack_lines([json.dumps(e) + "\n" for e in events]))
    blobs.put("archive/date=2026-11-30/shard=s-0/notes.txt", b"not an archive object")
    blobs.listed.clear()
    return blobs


def test_a_window_lists_and_reads_only_its_days_in_key_order():
    blobs = _archive()
    found = [e["event_id"] for e in archived_events(blobs, since="2026-11-30", until="2026-12-01", workers=4)]
    assert blobs.listed == ["archive/date=2026-11-30/", "archive/date=2026-12-01/"]
    assert {key.split("/")[1] for key in blobs.read} == {"date=2026-11-30", "date=2026-12-01"}
    assert len(found) == 2 * 3 * 3 and found == sorted(found)


def test_an_open_window_reads_the_whole_archive_from_one_listing():
    blobs = _archive()
    assert len(list(archived_events(blobs, until="2026-11-29"))) == 2 * 3 * 3
    assert len(list(archived_events(blobs))) == 5 * 3 * 3
    assert blobs.listed == ["archive/date=", "archive/date="]


def test_the_same_window_read_again_in_one_process_reads_it_all_again():
    blobs = _archive()
    first = list(archived_events(blobs, since="2026-11-29", until="2026-12-02"))
    blobs.listed.clear()
    assert list(archived_events(blobs, since="2026-11-29", until="2026-12-02")) == first and len(first) == 4 * 3 * 3
    assert len(blobs.listed) == 4  # listed again, not remembered
