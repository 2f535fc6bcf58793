"""Erasing a shopper: their state rows, their sessions, and their events in the event archive, asynchronously.

An erasure has two steps. `request_erasure` (the API's DELETE) replaces the shopper row with a tombstone at once and
queues the rest; `complete_erasure` (the Erase function, fed by the queue) deletes their sessions and the lists
experiments served them, and rewrites the archive without their events, then marks the erasure done. `erasure_status` says where it is.

The tombstone is {user_id, erased_at, expires_at, erasure_id, erasure}. From the moment it is written, Ingest drops
every event of the shopper timestamped up to `erased_at`, however often the stream delivers it (no state, no counters,
not archived; counted as erased), and a later event starts a fresh shopper on the row (tailor.ingest.service). Every
reader of shopper rows takes a tombstone for no shopper (tailor.shopper.ShopperState.from_row). `erasure` is the
record of the latest erasure: its status (pending, done, nothing_to_erase), when it was asked for and finished, what
it removed, and what the worker still has to visit: the archive index the shopper row kept (tailor.archive: the days,
or coarser periods, and the shards of their archived events), so the worker lists only those parts of the archive
and never the whole span of the shopper's history. Their sessions it finds through the sessions table's index on
`user_id`, and what experiments served them through the exposures table's index on `unit`, whatever their number.

The archive's compaction (tailor.archive) may merge an object between the worker's listing of it and its rewrite,
from what it read before: the worker lists again each shard-day where it found the shopper or an object had gone,
and rewrites what came meanwhile, until nothing new comes.

The worker may run more than once for an erasure (the queue delivers at least once, and retries a run that failed or
ran out of time): it saves its progress on the record after every few periods of the archive, picks up where a
previous run stopped, and a run on a finished erasure changes nothing. A DELETE while an erasure is pending replaces it with
one that also covers what the pending one had left (and keeps what it had removed); the superseded one's messages
then do nothing. Counts are of what was removed, except that a run stopped between deleting sessions and saving
their count leaves those sessions uncounted.

A shopper who comes back after the erasure keeps what they do afterwards: the worker deletes only sessions that
started up to `erased_at` and archived events timestamped up to it; or up to the latest event their erased row knew,
if a clock ahead dated one later (the record's `until`).

An id Tailor has never seen (no row in the shoppers table) is answered as such, and still gets a tombstone, with the
status nothing_to_erase: a shop erases an account when its owner asks, and that shopper's first events may still be
on the stream, unread; the tombstone drops them as it drops anyone's. Nothing is queued.

What is left afterwards, and for how long: the tombstone, which holds the user id, the time of the erasure and its
record, until the table's TTL removes it (TOMBSTONE_SECONDS after the erasure: longer than the stream keeps records,
and no shorter than the erasure queue and its dead-letter queue keep a message, so a retried or redriven erasure
finds its record); the shoppers table's point-in-time recovery, which can restore a row as it was up to 35 days back;
the previous versions of the archive objects rewritten here, or merged and deleted by the archive's compaction (the
bucket keeps the archive's replaced versions a day); quarantined records, including any of the shopper's that arrive after the erasure (they
expire under their own lifecycle rule); and the records still on the event stream (its retention period), which
Ingest drops. Item, association, query and trend counters are sums over every shopper and hold nothing that
identifies one; a referral counter another shopper's event adds to the erased shopper's row lands on the tombstone
and goes with it, and the referred shopper's row keeps only that a shopper referred them, not who. The referral
event in the referred shopper's archive still names the referrer: it is theirs, and goes with their erasure.

An Ingest batch that read the shopper's row before the tombstone replaced it may archive events of theirs on a day
the tombstone's index does not name, or after the worker rewrote that day. Its write to the shopper row then fails
against the tombstone, so it writes none of the shopper's session rows either (Ingest writes them once their
shopper's row has landed), and its replay drops the events and takes out of the archive what the first delivery put
there (`take_out_archived`, over the objects the archive's checkpoint names as its latest deliveries'). A shopper
write holds only over the erasure its batch read (`erased_at` as read, or none), so this holds too where the batch read
no row at all, or a row no batch of its shard had written (after a reshard), whose watermarks a tombstone would not
have contradicted. A batch the stream gives up on (the failure queue) keeps what it archived: a redrive comes after
later deliveries, whose objects the checkpoint names instead, so it stays until the shopper is erased again with that
day indexed.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from tailor.archive import (
    covering_parts,
    indexed_objects,
    is_part,
    pack_lines,
    periods_between,
    shard_day_of,
    unpack_lines,
    with_period,
    with_shard,
)
from tailor.experiments.assignment import SESSION_UNIT, USER_UNIT
from tailor.shopper import ERASED_FIELD, EXPIRY_FIELD, ShopperState, erased_at
from tailor.store.port import TABLES, BlobStore, Conflict, Queue, StateStore

__all__ = ["DONE", "ERASURE_FIELD", "ERASURE_ID_FIELD", "NOTHING_TO_ERASE", "PENDING", "TOMBSTONE_SECONDS",
           "ErasureIncomplete", "complete_erasure", "erasure_status", "request_erasure", "take_out_archived",
           "tombstone"]

# How long a tombstone outlives its erasure: twice the event stream's retention (template.yaml, EventStream
# RetentionPeriodHours: 168), so no record sent before the erasure can still be delivered when it goes, and no longer
# than SQS keeps a message (14 days), so no message of the erasure outlives its record. Tests hold both.
TOMBSTONE_SECONDS = 14 * 86400

PENDING, DONE, NOTHING_TO_ERASE = "pending", "done", "nothing_to_erase"
ERASURE_FIELD = "erasure"
ERASURE_ID_FIELD = "erasure_id"
# A run stops this long before its deadline and saves its progress: a run cut off by its timeout loses what it did
# since it last saved (at most PERIODS_PER_SAVE periods of the archive, which it does again).
STOP_BEFORE_DEADLINE_SECONDS = 30.0
PERIODS_PER_SAVE = 8
OBJECTS_PER_SAVE = 2000  # archive objects rewritten between saves of the erasure's progress
REWRITE_TRIES = 5  # reads and conditional rewrites of an archive object that other writers keep changing
_COUNTS = ("sessions_deleted", "exposures_deleted", "archive_objects_rewritten", "archive_events_removed",
           "archive_days_searched")
_TIMESTAMP = TypeAdapter(AwareDatetime)


class ErasureIncomplete(Exception):
    """The run stopped before its deadline with part of the archive still to visit; its progress is saved, and a
    run for the same message carries on."""


def tombstone(user_id: str, erased: float, erasure_id: str | None = None,
              erasure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shopper row an erasure leaves: who, when (rounded up to the second), when the table's TTL removes it
    (epoch seconds), and the erasure's record."""
    erased = math.ceil(erased)
    row: dict[str, Any] = {TABLES["shoppers"]: user_id, ERASED_FIELD: erased, EXPIRY_FIELD: erased + TOMBSTONE_SECONDS}
    if erasure_id is not None:
        row.update({ERASURE_ID_FIELD: erasure_id, ERASURE_FIELD: erasure})
    return row


def request_erasure(store: StateStore, queue: Queue, user_id: str, *, now: float | None = None,
                    new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> dict[str, Any]:
    """Replace `user_id`'s shopper row with a tombstone erased at `now` (default: the clock; never earlier than an
    erasure before), holding the record of a new erasure, then queue {user_id, erasure_id} for the worker. Returns the
    erasure's status (see erasure_status); nothing_to_erase, with nothing queued, if Tailor holds nothing of the id
    (no row, and no list an experiment served it: a shopper who was shown feeds but sent no event has those).

    If the queue refuses the message the tombstone stays, pending: requesting again starts an erasure that covers it."""
    now = time.time() if now is None else now
    row = store.read("shoppers", [user_id]).get(user_id)
    erased = max(now, erased_at(row) or 0.0)
    erasure_id = new_id()
    if row is None and not _lists_served(store, user_id, USER_UNIT):
        record = _record(NOTHING_TO_ERASE, now, math.ceil(erased), [], [], shopper_state=False)
        record["finished_at"] = now
        store.replace("shoppers", user_id, tombstone(user_id, erased, erasure_id, record))
        return _status(user_id, erasure_id, record)
    row = row or {}

    # Whatever state the row holds says where to look: a shopper's who came back since an earlier erasure, or that of
    # a batch which raced one (see the module doc).
    state = ShopperState.from_row({k: v for k, v in row.items() if k != ERASED_FIELD}) if row else None
    periods, shards = _archive_index(state)
    # Anything but a tombstone's own fields: state, or counters other shoppers' events added to the row.
    shopper_state = bool(row) and bool(set(row) - set(tombstone(user_id, 0, "", {})))
    # Events sent before the erasure but timestamped after it (a clock ahead) are theirs too.
    until = max(math.ceil(erased), state.last_seen if state else 0.0)
    record = _record(PENDING, now, until, periods, shards, shopper_state=shopper_state)
    unfinished = row.get(ERASURE_FIELD)
    if unfinished and unfinished.get("status") == PENDING:
        for period in unfinished.get("archive_days", []):
            record["archive_days"] = with_period(record["archive_days"], period)
        for shard in unfinished.get("archive_shards", []):
            record["archive_shards"] = with_shard(record["archive_shards"], shard)
        record["shopper_state"] = record["shopper_state"] or bool(unfinished.get("shopper_state"))
        record.update({name: unfinished.get(name, 0) for name in _COUNTS})
        record["until"] = max(record["until"], unfinished.get("until", 0.0))
    store.replace("shoppers", user_id, tombstone(user_id, erased, erasure_id, record))
    queue.send({"user_id": user_id, "erasure_id": erasure_id})
    return _status(user_id, erasure_id, record)


def complete_erasure(store: StateStore, blobs: BlobStore, user_id: str, erasure_id: str, *,
                     now: Callable[[], float] = time.time, seconds_left: Callable[[], float] | None = None,
                     workers: int = 16) -> dict[str, Any]:
    """Carry erasure `erasure_id` of `user_id` through: delete their sessions that started up to the erasure, rewrite
    the archive objects of the periods its record still names without their events up to the erasure (or up to the
    latest event their row knew, if that is later), and mark it done. Returns its status; "superseded" if the record on the row is another erasure's (a later DELETE, whose own
    message does the work) or there is none. With `seconds_left`, stops STOP_BEFORE_DEADLINE_SECONDS before the
    deadline and raises ErasureIncomplete, its progress saved. `workers` objects are read and rewritten at once."""
    row = store.read("shoppers", [user_id]).get(user_id)
    if row is None or row.get(ERASURE_ID_FIELD) != erasure_id:
        return {"erasure_id": erasure_id, "user_id": user_id, "status": "superseded"}
    record = dict(row[ERASURE_FIELD])
    if record["status"] != PENDING:
        return _status(user_id, erasure_id, record)
    until = float(record["until"])

    def save() -> bool:
        try:
            store.write_state("shoppers", user_id, {ERASURE_FIELD: record}, watermark=ERASURE_ID_FIELD,
                              expected=erasure_id, new=erasure_id)
        except Conflict:
            return False
        return True

    sessions = store.query("sessions", "user_id", user_id)
    # A session that started after the erasure is one of a shopper who came back: theirs to keep.
    doomed = [s[TABLES["sessions"]] for s in sessions if float(s.get("started_at", until)) <= until]
    # What experiments served them: by their id, and by their sessions' ids where a session was the unit (served
    # before the shop knew who they were). Found before the sessions go, so a retry finds them again.
    served = [e for unit, kind in [(user_id, USER_UNIT), *((session, SESSION_UNIT) for session in doomed)]
              for e in _lists_served(store, unit, kind) if float(e.get("served_at", until)) <= until]
    store.delete_many("exposures", [e[TABLES["exposures"]] for e in served])
    record["exposures_deleted"] = record.get("exposures_deleted", 0) + len(served)
    store.delete_many("sessions", doomed)
    record["sessions_deleted"] += len(doomed)
    if not save():
        return {"erasure_id": erasure_id, "user_id": user_id, "status": "superseded"}

    def rewrite(key: str) -> int | None:
        try:
            return _taken_out(blobs, key, {user_id: until})
        except ErasureIncomplete as changing:
            raise ErasureIncomplete(f"erasure {erasure_id}: {changing}") from None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        while record["archive_days"]:
            if seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
                raise ErasureIncomplete(f"erasure {erasure_id}: {len(record['archive_days'])} archive periods left")
            periods = record["archive_days"][:PERIODS_PER_SAVE]
            shards = record["archive_shards"]
            keys = sorted(key for found in pool.map(lambda p: indexed_objects(blobs, p, shards), periods)
                          for key in found)
            # A busy shop's periods hold more objects than a run rewrites: progress is saved every OBJECTS_PER_SAVE
            # objects (the last one done, in key order), so that every run moves the erasure on.
            after = record.get("archive_after")
            # A resumed run rewrites again the parts of the shard-days where the stopped one found the shopper, or an
            # object gone, wherever they sort: a compaction may have merged there what it read before the rewrite.
            recheck = set(record.get("archive_recheck") or ())
            left = [key for key in keys
                    if after is None or key > after or (is_part(key) and shard_day_of(key) in recheck)]
            done = set(keys) - set(left)
            # Shard-days where the shopper's events were, or an object went, to list again after this pass: the
            # stopped run's on the first pass, then only the pass's own (a busy shard-day always has new objects).
            touched: set[str] = set(recheck)
            while left:
                for start in range(0, len(left), OBJECTS_PER_SAVE):
                    if start and seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
                        raise ErasureIncomplete(f"erasure {erasure_id}: {len(left) - start} archive objects of "
                                                f"{len(periods)} periods left, then {len(record['archive_days'])}")
                    chunk = left[start:start + OBJECTS_PER_SAVE]
                    outcomes = list(pool.map(rewrite, chunk))
                    removed = [n for n in outcomes if n]
                    touched.update(shard_day_of(key) for key, n in zip(chunk, outcomes) if n != 0)
                    recheck |= touched  # kept with the progress: a resumed run rewrites their parts again
                    record["archive_objects_rewritten"] += len(removed)
                    record["archive_events_removed"] += sum(removed)
                    record["archive_after"] = max(chunk[-1], record.get("archive_after") or "")
                    record["archive_recheck"] = sorted(recheck)
                    if start + OBJECTS_PER_SAVE < len(left) and not save():
                        return {"erasure_id": erasure_id, "user_id": user_id, "status": "superseded"}
                # Where it found the shopper, a compaction may have merged an object it read before this run rewrote
                # it: such a shard-day is listed again, and what came meanwhile rewritten too (tailor.archive).
                done.update(left)
                left = sorted(key for found in pool.map(blobs.list, sorted(touched)) for key in found
                              if key.endswith(".jsonl.gz") and key not in done)
                touched = set()
                if left and seconds_left is not None and seconds_left() < STOP_BEFORE_DEADLINE_SECONDS:
                    raise ErasureIncomplete(f"erasure {erasure_id}: {len(left)} archive objects come since listed, "
                                            f"of {len(periods)} periods, then {len(record['archive_days'])}")
            record["archive_after"], record["archive_recheck"] = None, []
            record["archive_days"] = record["archive_days"][len(periods):]
            record["archive_days_searched"] += len(periods)
            if not save():
                return {"erasure_id": erasure_id, "user_id": user_id, "status": "superseded"}

    record.update(status=DONE, finished_at=now(), archive_shards=[])
    if not save():
        return {"erasure_id": erasure_id, "user_id": user_id, "status": "superseded"}
    return _status(user_id, erasure_id, record)


def take_out_archived(blobs: BlobStore, shoppers: Mapping[str, float], keys: Iterable[str]) -> int:
    """Each shopper's events up to their time (`shoppers`: user id -> until) taken out of these archive objects, or
    of the parts a compaction merged one into; the events removed. For Ingest, whose replay drops events an earlier
    delivery archived before the tombstone came: on a day the erasure's index may not name, or after its worker went
    through. Those objects are minutes old, where a compaction merges objects an hour old; one it merged all the
    same is followed into the parts that cover it."""
    left = sorted(set(keys))
    seen, removed = set(left), 0
    while left:
        key = left.pop()
        taken = _taken_out(blobs, key, shoppers)
        removed += taken or 0
        if taken != 0:  # gone, or it held their events: a compaction may have merged what it read before the rewrite
            parts = [part for part in covering_parts(blobs, key) if part not in seen]
            seen.update(parts)
            left += parts
    return removed


def erasure_status(store: StateStore, user_id: str) -> dict[str, Any] | None:
    """The latest erasure of `user_id`, JSON-ready: its id and status, when it was asked for and finished (ISO UTC),
    up to when the shopper's events are erased, what it removed, and how many archive periods it has searched and has
    left; None if there is none on record (never erased, or the tombstone has expired)."""
    row = store.read("shoppers", [user_id]).get(user_id)
    if not row or not row.get(ERASURE_FIELD):
        return None
    return _status(user_id, row[ERASURE_ID_FIELD], row[ERASURE_FIELD])


def _record(status: str, requested: float, until: float, periods: list[str], shards: list[str], *,
            shopper_state: bool) -> dict[str, Any]:
    return {"status": status, "requested_at": requested, "until": until, "finished_at": None,
            "shopper_state": shopper_state, "archive_days": periods, "archive_shards": shards,
            **{name: 0 for name in _COUNTS}}


def _lists_served(store: StateStore, unit: str, kind: str) -> list[dict[str, Any]]:
    """The exposure logs of what experiments served `unit` as a unit of `kind` (a user id or a session id)."""
    return [e for e in store.query("exposures", "unit", unit) if e.get("unit_kind") == kind]


def _archive_index(state: ShopperState | None) -> tuple[list[str], list[str]]:
    if state is None:
        return [], []
    if not state.archive_days:
        # Folded before shopper rows kept an index: their events may be on any day they were active, on any shard.
        return periods_between(state.first_seen, state.last_seen), with_shard([], None)
    return list(state.archive_days), list(state.archive_shards)


def _status(user_id: str, erasure_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "erasure_id": erasure_id,
        "user_id": user_id,
        "status": record["status"],
        "requested_at": _iso(record["requested_at"]),
        "erased_until": _iso(record["until"]),
        "finished_at": _iso(record.get("finished_at")),
        "removed": {"shopper_state": bool(record["shopper_state"]), "sessions": record["sessions_deleted"],
                    "exposures": record.get("exposures_deleted", 0),
                    "archive_objects_rewritten": record["archive_objects_rewritten"],
                    "archive_events": record["archive_events_removed"]},
        "archive_days_searched": record["archive_days_searched"],
        "archive_days_left": len(record.get("archive_days") or []),
    }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _taken_out(blobs: BlobStore, key: str, shoppers: Mapping[str, float]) -> int | None:
    """The shoppers' events (user id -> until) taken out of the object; None if it is gone (merged into a part since it
    was listed)."""
    # Conditionally: an object holds a batch of many shoppers' events, and another erasure may be rewriting it at the
    # same time; written over, its rewrite would put back what this one took out (or the other way).
    for _ in range(REWRITE_TRIES):
        try:
            body, tag = blobs.get_tagged(key)
        except KeyError:
            return None
        kept, removed = _without_shoppers(body, shoppers)
        if not removed or blobs.replace_if(key, kept, tag, "application/gzip"):
            return removed
    raise ErasureIncomplete(f"{key} kept changing while it was rewritten")


def _without_shoppers(body: bytes, shoppers: Mapping[str, float]) -> tuple[bytes, int]:
    """An archive object (gzipped JSON lines) without the shoppers' events (user id -> until), and how many it
    dropped."""
    lines = unpack_lines(body)
    kept = [line for line in lines if not _erased_line(line, shoppers)]
    removed = len(lines) - len(kept)
    return (pack_lines(kept) if removed else body), removed


def _erased_line(line: str, shoppers: Mapping[str, float]) -> bool:
    if "\\" not in line and not any(user_id in line for user_id in shoppers):
        return False  # a line without escapes spells a user id as it is: without theirs, the line is someone else's
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    # Ingest archives events as they were sent; it compares user ids after stripping spaces.
    user_id = event.get("user_id") if isinstance(event, dict) else None
    until = shoppers.get(user_id.strip()) if isinstance(user_id, str) else None
    if until is None:
        return False
    try:
        return _TIMESTAMP.validate_python(event.get("timestamp")).timestamp() <= until
    except ValidationError:
        return True  # Ingest archives only valid events; if this one is not, it goes rather than stays
