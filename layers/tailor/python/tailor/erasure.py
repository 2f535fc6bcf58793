"""Erasing a shopper: their state rows, their sessions, and their events in the event archive.

The shopper row is not deleted but replaced by a tombstone, {user_id, erased_at, expires_at}: the stream delivers
at least once, so events of the shopper may still arrive after the erasure (sent before it and not yet ingested,
or replayed after a failure). Ingest drops every event of theirs timestamped up to `erased_at` (no state, no
counters, not archived) and counts it as erased; a later event starts a fresh shopper (tailor.ingest.service).
Every reader of shopper rows takes a tombstone for no shopper (tailor.shopper.ShopperState.from_row).

What is left afterwards, and for how long: the tombstone, which holds the user id and the time of the erasure,
until the table's TTL removes it (TOMBSTONE_SECONDS after the erasure: longer than the stream keeps records);
the shoppers table's point-in-time recovery, which can restore it as it was up to 35 days back;
the previous versions of the archive objects rewritten here (the bucket keeps replaced versions for its
noncurrent-version lifetime); quarantined records, including any of the shopper's that arrive after the erasure
(they expire under their own lifecycle rule); and the records still on the event stream (its retention period),
which Ingest drops. Item, association, query and trend counters are sums over every shopper and hold nothing that
identifies one; a referral counter another shopper's event adds to the erased shopper's row lands on the
tombstone and goes with it.

One race is left open: an Ingest batch that read the shopper's row before the tombstone replaced it may archive
its events of theirs after the archive was rewritten, and write their sessions (which expire with the sessions'
TTL). Its write to the shopper row then fails against the tombstone and its replay drops the events; if it read
no row at all, its state lands beside the tombstone, where readers ignore it and erasing again removes it.
"""

from __future__ import annotations

import json
import math
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tailor.archive import day_prefix, pack_lines, unpack_lines
from tailor.shopper import ERASED_FIELD, EXPIRY_FIELD, ShopperState, erased_at
from tailor.store.port import TABLES, BlobStore, StateStore

__all__ = ["TOMBSTONE_SECONDS", "erase_shopper", "tombstone"]

# How long a tombstone outlives its erasure: twice the event stream's retention (template.yaml, EventStream
# RetentionPeriodHours: 168), so no record sent before the erasure can still be delivered when it goes. A test
# holds it above the template's retention.
TOMBSTONE_SECONDS = 14 * 86400


def tombstone(user_id: str, erased: float) -> dict[str, Any]:
    """The shopper row an erasure leaves: who, when, and when the table's TTL removes it (epoch seconds)."""
    erased = math.ceil(erased)
    return {TABLES["shoppers"]: user_id, ERASED_FIELD: erased, EXPIRY_FIELD: erased + TOMBSTONE_SECONDS}


def erase_shopper(store: StateStore, blobs: BlobStore, user_id: str, *, now: float | None = None) -> dict[str, Any]:
    """Delete `user_id`'s sessions, rewrite the archive objects of the days they were active (first_seen..last_seen)
    without their events, and replace their shopper row with a tombstone erased at `now` (default: the clock,
    rounded up to the second). Returns what was removed, by kind.

    Running it again is harmless, and finishes an erasure that stopped part way: the shopper row, which says
    which days to clean, is replaced last. On a tombstone it finds nothing to remove and only moves the time of the
    erasure on to `now`: events of the shopper sent up to the latest erasure are dropped."""
    shopper_row = store.read("shoppers", [user_id]).get(user_id)
    previous = erased_at(shopper_row)
    # Whatever state the row holds, a shopper's who came back since an earlier erasure or that of a batch which
    # raced one (see the module doc), says where to look.
    state = ShopperState.from_row({k: v for k, v in shopper_row.items() if k != ERASED_FIELD}) if shopper_row else None
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
    erased = max(time.time() if now is None else now, previous or 0.0)
    store.replace("shoppers", user_id, tombstone(user_id, erased))
    return {
        "user_id": user_id,
        # Anything but the tombstone: state, or counters other shoppers' events added to the row.
        "shopper_deleted": shopper_row is not None and not set(shopper_row) <= set(tombstone(user_id, 0)),
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
