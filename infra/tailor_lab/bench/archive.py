"""What compaction saves a reader of the event archive: a day of one shard read back before and after, its listing
pages, object reads and seconds behind S3-like latency per call, and the JSON of it.

    tailor bench archive [--objects 3600] [--events 40] [--latency-ms 20] [--workers 8] [--out F]

The day is `--objects` archive objects as Ingest writes them (one per batch of `--events` simulated-shape events),
on an in-memory store that waits `--latency-ms` per call whatever its size (a listing page of 1,000 keys, a read,
a write) with at most `--workers` calls at once, as `archived_events` reads; then the compaction's runs over it (its
own seconds and calls), and the same day read back from its parts, event for event.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tailor.archive import PART_BYTES, archive_checkpoint_id, archive_key, archived_events, compact_archive, pack_lines
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from .report import publish

__all__ = ["LatentBlobs", "main", "measure"]

SHARD = "shardId-000000000000"
DAY = "2026-11-02"
FIRST_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898


class LatentBlobs(MemoryBlobStore):
    """An in-memory blob store whose calls each take `latency` seconds (a listing, per page of 1,000 keys), with at
    most `concurrency` under way at once, counted by kind."""

    def __init__(self, latency: float, concurrency: int):
        super().__init__(clock=lambda: 0.0)  # written long ago: old enough to merge
        self.latency, self.calls = latency, Counter()
        self._slots = threading.Semaphore(concurrency)

    def _wait(self, kind: str, pages: int = 1) -> None:
        self.calls[kind] += pages
        with self._slots:
            time.sleep(self.latency * pages)

    def get(self, key):
        self._wait("read")
        return super().get(key)

    def put(self, key, body, content_type="application/octet-stream"):
        self._wait("write")
        super().put(key, body, content_type)

    def copy_if(self, source, target, tag):
        self._wait("write")
        return super().copy_if(source, target, tag)

    def delete_many(self, keys):
        self._wait("delete", max(1, -(-len(keys) // 1000)))
        super().delete_many(keys)

    def list(self, prefix):
        found = super().list(prefix)
        self._wait("list", max(1, -(-len(found) // 1000)))
        return found

    def describe(self, prefix):
        found = list(super().describe(prefix))
        self._wait("list", max(1, -(-len(found) // 1000)))
        yield from found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor bench archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=3600, help="archive objects in the day (3600: a batch a "
                                                                    "second for an hour)")
    parser.add_argument("--events", type=int, default=40, help="events per object (40)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="time per call (20 ms, about S3's)")
    parser.add_argument("--workers", type=int, default=8, help="calls at once (8, as the jobs read)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/archive.json"))
    args = parser.parse_args(argv)
    if args.objects < 2 or args.events < 1 or args.latency_ms < 0 or args.workers < 1:
        parser.error("--objects must be at least 2, --events and --workers at least 1, --latency-ms not negative")
    report = measure(objects=args.objects, events=args.events, latency=args.latency_ms / 1000, workers=args.workers)
    publish(report, format_table(report), args.out)
    return 0


def measure(*, objects: int, events: int, latency: float, workers: int) -> dict[str, Any]:
    blobs, store = LatentBlobs(latency, workers), MemoryStateStore()
    for n in range(objects):
        lines = [json.dumps(_event(n * events + k)) + "\n" for k in range(events)]
        MemoryBlobStore.put(blobs, archive_key(DAY, SHARD, str(FIRST_SEQUENCE + n * 1000)), pack_lines(lines))
    last = str(FIRST_SEQUENCE + (objects - 1) * 1000)
    store.write_state("checkpoints", archive_checkpoint_id(SHARD), {}, watermark=f"sw:{SHARD}", expected=None,
                      new=f"{len(last):03d}{last}")
    before, rows = _read(blobs, "as Ingest wrote it", workers)
    blobs.calls.clear()
    started = time.perf_counter()
    merged = compact_archive(blobs, store, now=10 * 86400.0, days=0, workers=workers)
    # The next run, two days on, once the parts are old enough: the objects they cover go.
    deleted = compact_archive(blobs, store, now=12 * 86400.0, days=0, workers=workers)
    compacted = {"seconds": round(time.perf_counter() - started, 2), "calls": dict(blobs.calls),
                 "parts_written": merged.parts_written, "objects_merged": merged.objects_merged,
                 "objects_deleted": deleted.objects_deleted}
    after, row = _read(blobs, "compacted", workers)
    rows = [rows, row]
    assert before == after and len(before) == objects * events, "the compacted day reads otherwise"
    return {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
            "python": platform.python_version(), "objects": objects, "events_per_object": events,
            "latency_ms": latency * 1000, "workers": workers, "part_bytes": PART_BYTES, "rows": rows,
            "compaction": compacted}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"A day of one shard's archive read back: {report['objects']:,} objects of {report['events_per_object']} "
             f"events, {report['latency_ms']:g} ms a call, {report['workers']} at once",
             f"{'archive':>20} {'objects':>8} {'list pages':>11} {'reads':>7} {'seconds':>8} {'events/s':>10}"]
    for row in report["rows"]:
        lines.append(f"{row['archive']:>20} {row['objects']:>8,} {row['list_pages']:>11,} {row['reads']:>7,} "
                     f"{row['seconds']:>8.2f} {row['events_per_second']:>10,}")
    c = report["compaction"]
    lines.append(f"compaction (two runs, the second once the parts are a day old): {c['seconds']:.2f} s, "
                 f"{c['parts_written']} parts of {c['objects_merged']:,} objects, {c['objects_deleted']:,} objects "
                 f"deleted, calls {c['calls']}")
    return "\n".join(lines)


def _read(blobs: LatentBlobs, label: str, workers: int) -> tuple[list[str], dict[str, Any]]:
    """The day's event ids as a reader gets them, and the row of what that took."""
    blobs.calls.clear()
    started = time.perf_counter()
    ids = [event["event_id"] for event in archived_events(blobs, since=DAY, until=DAY, workers=workers)]
    seconds = time.perf_counter() - started
    return ids, {"archive": label, "objects": len(MemoryBlobStore.list(blobs, "archive/")), "events": len(ids),
                 "list_pages": blobs.calls["list"], "reads": blobs.calls["read"], "seconds": round(seconds, 3),
                 "events_per_second": int(len(ids) / seconds) if seconds else 0}


def _event(n: int) -> dict[str, Any]:
    """An event of the archive's usual shape and size."""
    return {"event_id": f"e-{n:09d}", "user_id": f"u-{n % 997:05d}", "session_id": f"s-{n % 4999:06d}",
            "timestamp": f"{DAY}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z", "event_type": "view",
            "item_id": f"item-{n % 1500:05d}", "category": f"cat-{n % 23}", "price": round(5 + n % 200 * 0.75, 2),
            "dwell_ms": 1000 + n % 9000, "referrer": "search"}


if __name__ == "__main__":
    sys.exit(main())
