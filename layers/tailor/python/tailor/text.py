"""Small text helpers shared by state folds: query normalization, event digests, bounded recency lists."""

from __future__ import annotations

import hashlib
import re

__all__ = ["event_digest", "normalize_query", "remember"]

_SPACES = re.compile(r"\s+")


def normalize_query(query: str) -> str:
    """The form a search query is counted under: lower case, single spaces, at most 200 characters."""
    return _SPACES.sub(" ", query.strip().lower())[:200]


def event_digest(event_id: str) -> str:
    """A 48-bit digest of an event id: enough to spot a resent event, small enough to keep many."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=6).hexdigest()


def remember(recent: list[str], value: str, limit: int) -> list[str]:
    """`recent` with `value` moved (or added) to the end, keeping the last `limit` distinct values."""
    kept = [v for v in recent if v != value]
    kept.append(value)
    return kept[-limit:]
