"""Erasing a shopper: their state rows, their sessions, and their events in the event archive.

What is left afterwards, and for how long: the previous versions of the archive objects rewritten here
(the bucket keeps replaced versions for its noncurrent-version lifetime), quarantined records (they expire
under their own lifecycle rule), and the records still on the event stream (its retention period). Item,
association, query and trend counters are sums over every shopper and hold nothing that identifies one.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tailor.archive import day_prefix, pack_lines, unpack_lines
from tailor.shopper import ShopperState
from tailor.store.port import BlobStore, StateStore

__all__ = ["erase_shopper"]


def erase_shopper(store: StateStore, blobs: BlobStore, user_id: str) -> dict[str, Any]:
    """Delete `user_id`'s shopper row and sessions, and rewrite the archive objects of the days they were
    active (first_seen..last_seen) without their events. Returns what was removed, by kind.

    Running it again is harmless, and finishes an erasure that stopped part way: the shopper row, which says
    which days to clean, is deleted last."""
    shopper_row = store.read("shoppers", [user_id]).get(user_id)
    state = ShopperState.from_row(shopper_row) if shopper_row else None
    sessions = store.read("sessions", state.session_ids) if state and state.session_ids else {}
    # A session id is the producer's; never delete a session another shopper's events made.
    owned = sorted(sid for sid, row in sessions.items() if row.get("user_id") == user_id)

    objects_rewritten = events_removed = 0
    days = _active_days(state.first_seen, state.last_seen) if state else []
    for day in days:
        for key in blobs.list(day_prefix(day.isoformat())):
            kept, removed = _without_shopper(blobs.get(key), user_id)
            if removed:
                blobs.put(key, kept, "application/gzip")
                objects_rewritten += 1
                events_removed += removed

    for session_id in owned:
        store.delete("sessions", session_id)
    if shopper_row is not None:
        store.delete("shoppers", user_id)
    return {
        "user_id": user_id,
        "shopper_deleted": shopper_row is not None,
        "sessions_deleted": len(owned),
        "archive_days_searched": len(days),
        "archive_objects_rewritten": objects_rewritten,
        "archive_events_removed": events_removed,
    }


def _active_days(first_seen: float, last_seen: float) -> list[date]:
    first = datetime.fromtimestamp(first_seen, tz=timezone.utc).date()
    last = datetime.fromtimestamp(last_seen, tz=timezone.utc).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _without_shopper(body: bytes, user_id: str) -> tuple[bytes, int]:
    """An archive object (gzipped JSON lines) without the shopper's events, and how many it dropped."""
    lines = unpack_lines(body)
    kept = [line for line in lines if not _belongs_to(line, user_id)]
    removed = len(lines) - len(kept)
    return (pack_lines(kept) if removed else body), removed


def _belongs_to(line: str, user_id: str) -> bool:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    # Ingest archives events as they were sent; it compares user ids after stripping spaces.
    return isinstance(event, dict) and isinstance(event.get("user_id"), str) and event["user_id"].strip() == user_id
