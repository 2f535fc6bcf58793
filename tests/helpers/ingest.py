"""Ingest under trouble: stores whose writes fail at random, a driver that redelivers like Kinesis and crashes
part way, and a clean run to compare the outcome with; Ingest's fold on its own, batch by batch."""

from __future__ import annotations

import random
from typing import Any

from tailor.events import parse_event
from tailor.ingest.fold import BatchFold, fold_batch
from tailor.ingest.service import RECENT_KEYS, Ingestor, StreamRecord
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers.events import SHARD, to_records


class TransientError(Exception):
    """What a throttled or timed-out AWS call looks like to the ingest service."""


class FlakyStateStore:
    """A memory store whose writes fail at random: before applying, or after (a lost acknowledgement)."""

    def __init__(self, inner: MemoryStateStore, rng: random.Random, rate: float):
        self.inner, self.rng, self.rate = inner, rng, rate

    def read(self, table, keys):
        return self.inner.read(table, keys)

    def read_many(self, requests):
        return self.inner.read_many(requests)

    def scan(self, table, **kwargs):
        return self.inner.scan(table, **kwargs)

    def delete(self, table, key):
        return self.inner.delete(table, key)

    def replace(self, table, key, fields):
        return self.inner.replace(table, key, fields)

    def write_state(self, *args, **kwargs):
        return self._flaky(self.inner.write_state, *args, **kwargs)

    def add(self, *args, **kwargs):
        return self._flaky(self.inner.add, *args, **kwargs)

    def _flaky(self, call, *args, **kwargs):
        roll = self.rng.random()
        if roll < self.rate / 2:
            raise TransientError("throttled")
        result = call(*args, **kwargs)
        if roll < self.rate:
            raise TransientError("timed out after the write landed")
        return result


class FlakyBlobStore(MemoryBlobStore):
    def __init__(self, rng: random.Random, rate: float):
        super().__init__()
        self.rng, self.rate = rng, rate

    def put(self, key, body, content_type="application/octet-stream"):
        if self.rng.random() < self.rate:
            raise TransientError("S3 unavailable")
        super().put(key, body, content_type)


class UnreadableBlobs(MemoryBlobStore):
    """A memory store whose objects under `prefix` (by default the model registry's) cannot be read or listed while
    `failing`, as a store outage would."""

    failing = False

    def __init__(self, prefix: str = "models/"):
        super().__init__()
        self.prefix = prefix

    def get(self, key):
        self._answer(key)
        return super().get(key)

    def list(self, prefix):
        self._answer(prefix)
        return super().list(prefix)

    def _answer(self, key: str) -> None:
        if self.failing and key.startswith(self.prefix):
            raise ConnectionError("the store is not answering")


def deliver(ingestor: Ingestor, records: list[StreamRecord], rng: random.Random, *, max_batch: int = 25,
            crash_rate: float = 0.0, max_calls: int = 10_000) -> int:
    """Feed `records` to `ingestor` as a Kinesis event source mapping would: batches of varying size;
    after a partial failure, again from the lowest failed record; after a crash, the same batch again
    or its first half (bisect). Returns the number of invocations."""
    done = 0
    calls = 0
    pending_size: int | None = None
    while done < len(records):
        calls += 1
        if calls > max_calls:
            raise AssertionError("the stream made no progress")
        size = pending_size or rng.randint(1, max_batch)
        pending_size = None
        batch = records[done:done + size]
        if crash_rate and rng.random() < crash_rate:
            # The function dies part way: run the batch on a store that stops after some writes.
            _crash_midway(ingestor, batch, rng)
            pending_size = max(1, len(batch) // 2) if rng.random() < 0.5 else len(batch)
            continue
        outcome = ingestor.ingest(batch)
        if outcome.failed:
            lowest = min(outcome.failed, key=lambda s: (len(s), s))
            done = next(i for i, r in enumerate(records) if r.sequence == lowest)
        else:
            done += len(batch)
    return calls


class _Crash(BaseException):
    """The process dying: not an error the service can catch and report."""


def _crash_midway(ingestor: Ingestor, batch: list[StreamRecord], rng: random.Random) -> None:
    """Run `batch` on the same state until a random write, where the process dies: no write after it
    lands, whichever thread makes it."""
    budget = rng.randint(0, 8)

    def spend():
        nonlocal budget
        if budget <= 0:
            raise _Crash()
        budget -= 1

    class Dying:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            attr = getattr(self.inner, name)
            if name in ("write_state", "add", "put", "delete"):
                def dying(*a, **k):
                    spend()
                    return attr(*a, **k)
                return dying
            return attr

    doomed = Ingestor(Dying(ingestor.store), Dying(ingestor.blobs), max_workers=4, intent=ingestor.intent,
                      personas=ingestor.personas, buffer=bool(ingestor.buffered), attribution=ingestor.attribution,
                      clusters=ingestor.clusters, vectors=ingestor.vectors,
                      session_ttl_days=ingestor.session_ttl / 86400)
    try:
        doomed.ingest(batch)
    except _Crash:
        pass
    finally:
        doomed._pool.shutdown(wait=True)


def clean_run(events: list[dict]) -> tuple[MemoryStateStore, MemoryBlobStore]:
    store, blobs = MemoryStateStore(), MemoryBlobStore()
    Ingestor(store, blobs, max_workers=1).ingest(to_records(events))
    return store, blobs


def fold(events: list[dict], rows: dict, start: int, **options: Any) -> BatchFold:
    """The events folded as one batch onto `rows`, at stream positions from `start`, each arriving when it happened;
    `options` (intent, clusters, vectors, ...) go to fold_batch."""
    accepted = [(f"{start + n:08d}", parse_event(e)) for n, e in enumerate(events)]
    return fold_batch(accepted, rows, SHARD, ttl=86400, arrivals={p: e.epoch for p, e in accepted}, **options)


def written(folded: BatchFold, rows: dict | None = None) -> dict:
    """The "sessions" and "shoppers" rows of `rows` with those the fold changed written over them."""
    out = {"sessions": dict((rows or {}).get("sessions", {})), "shoppers": dict((rows or {}).get("shoppers", {}))}
    for table, key, row in folded.changed_rows():
        out[table][key] = row.fields()
    return out


def state_rows(store) -> dict:
    """The store's rows as runs are compared: the archive checkpoints without the objects their latest deliveries
    wrote, which name batches as they were delivered (as the archive's object keys do), not what was applied."""
    rows = store.snapshot()
    for row in rows.get("checkpoints", {}).values():
        row.pop(RECENT_KEYS, None)
    return rows
