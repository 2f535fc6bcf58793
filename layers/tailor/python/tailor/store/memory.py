"""In-memory adapters of the store ports, with the same conditional semantics as DynamoDB and S3."""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from tailor.rows import copied
from tailor.store.port import INDEXES, TABLES, BlobInfo, Conflict, check_segment

__all__ = ["MemoryBlobStore", "MemoryQueue", "MemoryStateStore"]


class MemoryStateStore:
    """Tables as dicts; `calls` counts reads and writes the way the DynamoDB adapter makes them."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._key_order: dict[tuple[str, int, int], tuple[int, list[str]]] = {}  # (table, segment, segments)

    def read(self, table: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.read_many({table: keys})[table]

    def read_many(self, requests: Mapping[str, Iterable[str]]) -> dict[str, dict[str, dict[str, Any]]]:
        wanted = {table: list(dict.fromkeys(keys)) for table, keys in requests.items()}
        with self._lock:
            self.calls["read"] += -(-sum(map(len, wanted.values())) // 100)  # BatchGetItem takes 100 keys a call
            return {table: {k: copied(self.tables[table][k]) for k in keys if k in self.tables[table]}
                    for table, keys in wanted.items()}

    def write_state(self, table, key, fields, *, watermark, expected, new, unchanged=None) -> None:
        with self._lock:
            self.calls["write"] += 1
            row = self.tables[table].get(key)
            current = None if row is None else row.get(watermark)
            if current != expected or (unchanged is not None and (row or {}).get(unchanged[0]) != unchanged[1]):
                raise Conflict(table, key, current)
            if row is None:
                self._forget_order(table)
            row = self.tables[table].setdefault(key, {TABLES[table]: key})
            row.update(copied(dict(fields)))
            row[watermark] = new

    def add(self, table, key, increments: Mapping[str, float], latest: Mapping[str, Any], *, watermark, first, last) -> None:
        with self._lock:
            self.calls["write"] += 1
            row = self.tables[table].get(key)
            current = None if row is None else row.get(watermark)
            if current is not None and current >= first:
                raise Conflict(table, key, current)
            if row is None:
                self._forget_order(table)
            row = self.tables[table].setdefault(key, {TABLES[table]: key})
            for name, amount in increments.items():
                row[name] = row.get(name, 0) + amount
            row.update(copied(dict(latest)))
            row[watermark] = last

    def delete(self, table: str, key: str) -> None:
        with self._lock:
            self.calls["write"] += 1
            self.tables[table].pop(key, None)
            self._forget_order(table)

    def delete_many(self, table: str, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        with self._lock:
            self.calls["write"] += -(-len(keys) // 25)  # BatchWriteItem takes 25 requests a call
            for key in keys:
                self.tables[table].pop(key, None)
            self._forget_order(table)

    def replace(self, table: str, key: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self.calls["write"] += 1
            if key not in self.tables[table]:
                self._forget_order(table)
            self.tables[table][key] = {**copied(dict(fields)), TABLES[table]: key}

    def query(self, table: str, attribute: str, value: str) -> list[dict[str, Any]]:
        _, projected = INDEXES[(table, attribute)]
        names = (TABLES[table], attribute, *projected)
        with self._lock:
            self.calls["query"] += 1
            return [copied({a: row[a] for a in names if a in row})
                    for row in self.tables[table].values() if row.get(attribute) == value]

    def _forget_order(self, table: str) -> None:
        for cached in [c for c in self._key_order if c[0] == table]:
            del self._key_order[cached]

    def scan(self, table: str, *, limit: int, start: str | None = None,
             attributes: Sequence[str] | None = None, segment: int = 0,
             segments: int = 1) -> tuple[list[dict[str, Any]], str | None]:
        check_segment(segment, segments)
        with self._lock:
            self.calls["scan"] += 1
            rows = self.tables[table]
            # A job pages through a whole table: sort its keys once per job, not once per page.
            cached = self._key_order.get((table, segment, segments))
            if cached is None or cached[0] != len(rows):
                keys = sorted(rows) if segments == 1 else sorted(k for k in rows if _segment_of(k, segments) == segment)
                cached = self._key_order[(table, segment, segments)] = (len(rows), keys)
            keys = cached[1]
            first = 0 if start is None else bisect.bisect_right(keys, start)
            page = keys[first:first + limit]
            out = [copied({a: rows[k][a] for a in attributes if a in rows[k]} if attributes else rows[k])
                   for k in page]
            return out, (keys[first + limit - 1] if first + limit < len(keys) else None)

    def annotate(self, table: str, key: str, fields: Mapping[str, Any], *, requires: str, stamp: str,
                 at: str) -> bool:
        with self._lock:
            self.calls["write"] += 1
            row = self.tables[table].get(key)
            if row is None or requires not in row or (row.get(stamp) is not None and row[stamp] > at):
                return False
            row.update(copied(dict(fields)))
            row[stamp] = at
            return True

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every table's rows, deep-copied: what tests compare between runs."""
        with self._lock:
            return copied({t: dict(rows) for t, rows in self.tables.items() if rows})


class MemoryBlobStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.objects: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self.puts = 0
        self.clock = clock
        self._lock = threading.Lock()

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        with self._lock:
            self.puts += 1
            self.objects[key] = bytes(body)
            self.modified[key] = self.clock()

    def get(self, key: str) -> bytes:
        with self._lock:
            return self.objects[key]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        body = self.get(key)
        return body, _tag(body)

    def replace_if(self, key: str, body: bytes, tag: str, content_type: str = "application/octet-stream") -> bool:
        with self._lock:
            return self._write_if(key, tag, key, bytes(body))

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self.objects if k.startswith(prefix))

    def describe(self, prefix: str) -> Iterator[BlobInfo]:
        with self._lock:
            found = [BlobInfo(k, _tag(self.objects[k]), self.modified.get(k, 0.0), len(self.objects[k]))
                     for k in sorted(self.objects) if k.startswith(prefix)]
        yield from found

    def delete_many(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self.objects.pop(key, None)
                self.modified.pop(key, None)

    def copy_if(self, source: str, target: str, tag: str) -> bool:
        with self._lock:
            return self._write_if(source, tag, target, self.objects.get(source, b""))

    def _write_if(self, key: str, tag: str, target: str, body: bytes) -> bool:
        """Write `body` to `target` if object `key` is still the version `tag` names (the lock held)."""
        if key not in self.objects or _tag(self.objects[key]) != tag:
            return False
        self.puts += 1
        self.objects[target] = body
        self.modified[target] = self.clock()
        return True


class MemoryQueue:
    """The Queue port as a list: `sent` holds each message, JSON-copied, in the order sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            self.sent.append(json.loads(json.dumps(message)))


def _tag(body: bytes) -> str:
    """What S3's ETag is of an object written whole: its MD5."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _segment_of(key: str, segments: int) -> int:
    """The part of a table a key is in, when it is scanned in `segments` parts (as DynamoDB's, by a hash of the key)."""
    return zlib.crc32(key.encode()) % segments
