"""Item popularity with time decay: daily trend counters that Ingest adds to and rankers read back."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["TREND_BUCKETS", "TREND_RETENTION_DAYS", "TREND_WEIGHTS", "decayed_popularity", "trend_expiry",
           "trend_key", "trend_keys"]

# What one event says about an item's current popularity.
TREND_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 2.0, "wishlist": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
# A day's counters are spread over this many rows, so no row nears DynamoDB's 400 KB item limit.
TREND_BUCKETS = 4
TREND_RETENTION_DAYS = 30


def trend_key(day: str, item_id: str) -> str:
    """The trend row that counts `item_id` on `day` (an ISO date)."""
    bucket = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=2).digest(), "big") % TREND_BUCKETS
    return f"{day}#{bucket}"


def trend_keys(today: date, days: int) -> list[str]:
    """Every trend row of the `days` days up to and including `today`."""
    return [f"{(today - timedelta(days=d)).isoformat()}#{b}" for d in range(days) for b in range(TREND_BUCKETS)]


def trend_expiry(day: str) -> int:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return int((start + timedelta(days=TREND_RETENTION_DAYS)).timestamp())


def decayed_popularity(rows: Mapping[str, Mapping[str, Any]], today: date, *, half_life_days: float = 2.0) -> dict[str, float]:
    """Item -> sum of its daily trend counts, each halved for every `half_life_days` of age."""
    scores: dict[str, float] = {}
    for key, row in rows.items():
        age = (today - date.fromisoformat(key.split("#", 1)[0])).days
        if age < 0:
            continue
        decay = 0.5 ** (age / half_life_days)
        for name, value in row.items():
            if name.startswith("n:"):
                scores[name[2:]] = scores.get(name[2:], 0.0) + float(value) * decay
    return scores
