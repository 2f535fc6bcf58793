"""The event archive Ingest writes to S3: one gzipped JSON-lines object per shard, day and batch, events as sent."""

from __future__ import annotations

import gzip
import json
from typing import Iterator

from tailor.store.port import BlobStore

__all__ = ["ARCHIVE_PREFIX", "archive_key", "archived_events", "day_prefix", "pack_lines", "unpack_lines"]

ARCHIVE_PREFIX = "archive/"


def archive_key(day: str, shard: str, first_sequence: str) -> str:
    """Where a batch's events of `day` (ISO date) go: named after the batch's first record, so a replay of the
    batch rewrites the same object."""
    return f"{day_prefix(day)}shard={shard}/{first_sequence}.jsonl.gz"


def day_prefix(day: str) -> str:
    return f"{ARCHIVE_PREFIX}date={day}/"


def archived_events(blobs: BlobStore, *, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """The archived events of the days from `since` to `until` (ISO dates, inclusive; open where None)."""
    for key in blobs.list(f"{ARCHIVE_PREFIX}date="):
        day = key[len(f"{ARCHIVE_PREFIX}date="):].split("/", 1)[0]
        if (since and day < since) or (until and day > until) or not key.endswith(".jsonl.gz"):
            continue
        for line in unpack_lines(blobs.get(key)):
            if line.strip():
                yield json.loads(line)


def pack_lines(lines: list[str]) -> bytes:
    """An archive object's body: the lines (each ending in a newline) gzipped, the same bytes for the same lines."""
    return gzip.compress("".join(lines).encode("utf-8"), mtime=0)


def unpack_lines(body: bytes) -> list[str]:
    return gzip.decompress(body).decode("utf-8").splitlines(keepends=True)
