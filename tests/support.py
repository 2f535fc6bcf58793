"""Test support: small random event streams, flaky stores, and a driver that redelivers like Kinesis."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from tailor.ingest.service import Ingestor, StreamRecord
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

SHARD = "shardId-000000000000"
_BASE_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


class TransientError(Exception):
    """What a throttled or timed-out AWS call looks like to the ingest service."""


def random_events(seed: int, n: int, *, users: int = 12, items: int = 40) -> list[dict]:
    """`n` events of every common type across a few shoppers, with producer duplicates mixed in."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    sessions = {f"u{u}": f"u{u}-s0" for u in range(users)}
    out: list[dict] = []
    for i in range(n):
        user = f"u{rng.randrange(users)}"
        if rng.random() < 0.05:
            sessions[user] = f"{user}-s{i}"
        t = (start + timedelta(seconds=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        base = {"event_id": f"e{seed}-{i}", "user_id": user, "session_id": sessions[user], "timestamp": t}
        item = f"i{rng.randrange(items)}"
        category = f"c{int(item[1:]) % 5}"
        kind = rng.choices(["view", "click", "search", "add_to_cart", "purchase", "dwell", "impression",
                            "remove_from_cart", "referral"], [30, 12, 8, 6, 3, 6, 4, 2, 1])[0]
        if kind == "search":
            event = {**base, "event_type": kind, "query": rng.choice(["Red Shoes", "red shoes", "lamp", "tv"])}
        elif kind == "impression":
            event = {**base, "event_type": kind, "item_ids": rng.sample([f"i{k}" for k in range(items)], 3)}
        elif kind == "referral":
            event = {**base, "event_type": kind, "source": "friend", "referrer_user_id": f"u{rng.randrange(users)}"}
        else:
            event = {**base, "event_type": kind, "item_id": item, "category": category,
                     "price": float(10 + int(item[1:]))}
            if kind in ("add_to_cart", "purchase", "remove_from_cart"):
                event["quantity"] = rng.randint(1, 3)
            if kind == "dwell":
                event["dwell_ms"] = rng.randint(500, 60_000)
        out.append(event)
        if rng.random() < 0.03:
            out.append(dict(event))  # the producer sent it twice
    return out


def to_records(events: list[dict], shard: str = SHARD, *, start: int = 0) -> list[StreamRecord]:
    """The events as one shard's records, each arriving on the stream when it happened or later."""
    return [
        StreamRecord(shard=shard, sequence=str(_BASE_SEQUENCE + (start + n) * 1000),
                     data=json.dumps(e).encode(), partition_key=e.get("user_id", "x"),
                     arrival=max(1793613600.0 + n, _epoch(e.get("timestamp"))))
        for n, e in enumerate(events)
    ]


def _epoch(timestamp) -> float:
    if isinstance(timestamp, (int, float)):
        return float(timestamp)
    try:
        return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class FlakyStateStore:
    """A memory store whose writes fail at random: before applying, or after (a lost acknowledgement)."""

    def __init__(self, inner: MemoryStateStore, rng: random.Random, rate: float):
        self.inner, self.rng, self.rate = inner, rng, rate

    def read(self, table, keys):
        return self.inner.read(table, keys)

    def read_many(self, requests):
        return self.inner.read_many(requests)

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

    doomed = Ingestor(Dying(ingestor.store), Dying(ingestor.blobs), max_workers=4, intent=ingestor.intent)
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
