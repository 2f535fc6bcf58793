"""Events for the tests: the samples in events/, small random streams, and streams as Kinesis records."""

from __future__ import annotations

import base64
import json
import random
import time
from datetime import UTC, datetime, timedelta

from tailor.ingest.service import StreamRecord

from tests.helpers import EVENTS

SHARD = "shardId-000000000000"
_BASE_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def kinesis_payloads(event: dict) -> list[bytes]:
    return [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]


def random_events(seed: int, n: int, *, users: int = 12, items: int = 40) -> list[dict]:
    """`n` events of every common type across a few shoppers, with producer duplicates mixed in."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
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


def recent_simulated_day(shoppers: int, seed: int) -> list[dict]:
    """A simulated day of shoppers, moved to end a minute ago: for the scheduled jobs that read the archive's last
    weeks."""
    from tailor_lab.simulator import simulate

    events = simulate(shoppers=shoppers, days=1.0, seed=seed).events
    shift = time.time() - 60 - _epoch(events[-1]["timestamp"])
    return [dict(event, timestamp=datetime.fromtimestamp(_epoch(event["timestamp"]) + shift, tz=UTC).isoformat()
                 .replace("+00:00", "Z")) for event in events]
