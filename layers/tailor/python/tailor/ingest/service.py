"""Apply one shard's batch of stream records to Tailor's state exactly once, one write per touched key.

Kinesis delivers at least once: a batch comes again after a timeout, and after a partial failure
the stream replays from the lowest failed record, possibly with new records behind it or cut in
halves. Every row therefore carries, per shard, the position of the last record it has absorbed
(its watermark), and every write is conditional on it:

* Session and shopper rows ("state rows") are read first, folded forward in Python over the
  records past their own watermark, and written whole with `watermark == what we read` (a shopper
  row also with its `erased_at` as read: see the erasure below).
* Shared counters (items, associations, query-item counts, referrers) are never read: each
  write adds the batch's increments only if the row's watermark is still below the first record
  that contributes to it. If it is not, the write is retried with the records past it.
* What a record adds to shared counters depends on its session as it was just before it. So state
  rows are written only after every counter write has landed, and only with the records below
  the first failure: on a replay, a state row never already holds a record whose counter effects
  are still missing, and records it does hold are known to be fully counted.
* Shopper rows are written before session rows, and a session row only once its shopper's row has landed. A
  shopper's vector weighs a record by its session's intent at the record, which only the session as it was then
  tells: a replay finds a record in the session row only when the shopper row holds it too.
* With a counter buffer (the deployed Ingest), the contributions to items, associations, queries and trends rows go
  into one new row of the shard's buffer per batch instead, which the merge adds to those rows within a minute or
  two (tailor.ingest.buffer says how a record lands in exactly one such row, tailor.ingest.merge how each is added
  once). To the state rows, a record's counter effects are written once its buffer row is.
* The archive of valid events has a checkpoint row of its own: objects are named after the first
  record past the checkpoint, so a replay rewrites the same object rather than adding one.
* Quarantined records are stored under their own sequence number, so storing one twice is a no-op.
  Besides the records that fail validation, a valid record the fold cannot apply is quarantined: one whose
  session belongs to another shopper, one the fold fails on (a bug, an overflow), and one that would
  put a value DynamoDB cannot store (NaN, infinity, beyond 38 digits) into a counter or a row. The
  decision depends only on the record and the rows as they were before it, so a replayed batch
  quarantines the same records again, and the fold goes on with the rest: one bad record never fails
  a batch. Only what is not a record's fault (the store, S3, the network) makes records retried.
* An erased shopper's row is a tombstone (tailor.erasure). Their events timestamped up to the erasure are
  dropped, however often they come: no state row, no counter, no archive line; they are counted as erased. An
  earlier delivery may have archived them (it read the row before the tombstone came): a delivery that drops events
  the archive's checkpoint had passed takes them out of the objects the latest deliveries wrote, which the
  checkpoint names, and fails its records from theirs on if it cannot; objects are named after their day's first
  record past the checkpoint, left out or not, so a delivery again from the same checkpoint writes over them.
  A later event starts a fresh shopper on the tombstone's row, which keeps `erased_at` (so that the same
  records are dropped on a replay, and earlier stragglers ever after) and clears its TTL. The decision needs
  only the shopper rows the batch reads anyway.

Within a shard batches run one at a time (ParallelizationFactor 1), so per-shard watermarks
order every write; records of other shards touch shared counters under their own watermark.

What the records make of the rows is Ingest's fold (tailor.ingest.fold), pure; this module reads, writes and
retries around it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from tailor.archive import archive_checkpoint_id, archive_day, archive_key, objects_up_to, pack_lines
from tailor.clusters.session import SessionClusters
from tailor.erasure import take_out_archived
from tailor.events import MAX_EVENT_DEPTH, MAX_ID_LENGTH, Event, EventError, event_from_json, load_json, parse_event
from tailor.experiments.attribution import Attribution
from tailor.ingest.buffer import (
    BUFFERED_TABLES,
    CURSOR_WATERMARK,
    SLOT_WATERMARK,
    Cursor,
    cursor_id,
    slot_chunks,
    slot_id,
)
from tailor.ingest.derive import Contribution
from tailor.ingest.fold import BatchFold, FoldedRow, fold_batch
from tailor.ingest.intent import SessionIntent
from tailor.personas.online import PersonaTracker
from tailor.shopper import ERASED_FIELD, erased_at
from tailor.store.port import BlobStore, Conflict, StateStore

if TYPE_CHECKING:
    from tailor.embeddings.online import OnlineVectors

__all__ = ["BatchOutcome", "Ingestor", "StreamRecord", "position"]

logger = logging.getLogger(__name__)

ATTRIBUTES_PER_WRITE = 100  # keeps one UpdateItem expression well under DynamoDB's 4 KB limit
RECENT_KEYS = "recent_keys"  # the archive checkpoint's field: the objects the latest deliveries wrote, newest first
# Objects kept there besides the latest delivery's own (all of which are kept): the deliveries of one failed batch, its
# replays and bisections, each an object a day of its records.
RECENT_ARCHIVE_KEYS = 64
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # an archive line; made once, not per event
_NOT_JSON = object()  # a record whose data is not JSON text (see _load)


def position(sequence: str) -> str:
    """A sequence number as a string that sorts like the number (length first, then digits)."""
    return f"{len(sequence):03d}{sequence}"


@dataclass(frozen=True)
class StreamRecord:
    shard: str
    sequence: str
    data: bytes
    partition_key: str = ""
    arrival: float = 0.0

    @cached_property
    def position(self) -> str:  # asked for a few times per record and batch
        return position(self.sequence)


@dataclass
class BatchOutcome:
    """What a batch did: `failed` lists the sequence numbers the stream must deliver again."""

    failed: list[str] = field(default_factory=list)
    records: int = 0
    accepted: int = 0
    quarantined: int = 0
    quarantines: list[tuple[str, str]] = field(default_factory=list)  # (sequence number, reason) of each quarantined
    unapplicable: int = 0  # of the quarantined, valid events the fold could not apply
    duplicates: int = 0
    erased: int = 0  # events of erased shoppers, up to their erasure: dropped
    touched: int = 0  # rows the batch changes: state rows, counter rows (buffered or not) and the archive checkpoint
    rows_written: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def wrote(self, table: str) -> None:
        with self._lock:
            self.rows_written[table] += 1

    @property
    def writes(self) -> int:
        return sum(self.rows_written.values())


class Ingestor:
    def __init__(self, store: StateStore, blobs: BlobStore, *, session_ttl_days: float = 7,
                 max_workers: int = 16, intent: SessionIntent | None = None,
                 personas: PersonaTracker | None = None, buffer: bool = False,
                 attribution: Attribution | None = None, clusters: SessionClusters | None = None,
                 vectors: OnlineVectors | None = None):
        """With `intent`, every touched session's intent is kept and association pairs are weighed by it
        (tailor.ingest.intent); without, pairs weigh their event type's base weight. With `buffer`, the shared
        counters go through the shard's counter buffer (tailor.ingest.buffer), to be merged by
        tailor.ingest.merge; without, every batch adds to their rows itself (what replays outside a stream use).
        With `attribution`, events that echo an experiment's feed id add to its statistics rows
        (tailor.experiments.attribution). With `clusters`, sessions keep their cluster posteriors from feeds' impressions
        and clicks (tailor.clusters.session). With `vectors`, sessions and shoppers keep their vectors in their rows
        (tailor.embeddings.online), whose item vectors the first batch reads beside its rows."""
        self.store = store
        self.buffered = BUFFERED_TABLES if buffer else frozenset()
        self.blobs = blobs
        self.intent = intent
        self.personas = personas  # persona counters, traits and mixtures (tailor.personas.online)
        self.attribution = attribution
        self.clusters = clusters
        self.vectors = vectors
        self.session_ttl = int(session_ttl_days * 86400)
        self._pool = ThreadPoolExecutor(max_workers=max_workers) if max_workers > 1 else None

    def ingest(self, records: Sequence[StreamRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        if not records:
            return outcome
        shard = records[0].shard
        if any(r.shard != shard for r in records):
            raise ValueError("a batch holds the records of one shard")
        records = sorted(records, key=lambda r: r.position)
        outcome.records = len(records)
        loaded = [_load(record) for record in records]
        checkpoints = [archive_checkpoint_id(shard), *([cursor_id(shard)] if self.buffered else [])]
        # The rows are read while the events are validated: by the ids their JSON holds, the few that validation
        # changes or refuses aside (_read reads what is missing).
        ahead = {"sessions": _ids(loaded, "session_id"), "shoppers": _ids(loaded, "user_id"),
                 "checkpoints": set(checkpoints)}
        early = None if self._pool is None else (ahead, self._pool.submit(self.store.read_many, ahead))
        # The item vectors are read once per container, by its first batch, while its rows are read.
        vectors = None if self.vectors is None or self.vectors.ready or self._pool is None else \
            self._pool.submit(self.vectors.vectors)
        accepted, originals, rejected = _decode(records, loaded)

        try:
            if vectors is not None:
                vectors.result()
            rows = self._read(early, {"sessions": {e.session_id for _, e in accepted},
                                      "shoppers": {e.user_id for _, e in accepted}, "checkpoints": set(checkpoints)})
            fold = self._fold(accepted, rows, shard, records)
        except Exception:
            # Not a record's fault (the store, or a fault every record meets): the stream delivers them all again.
            logger.exception("batch not applied", extra={"shard": shard, "records": len(records)})
            outcome.failed = [r.sequence for r in records]
            return outcome
        by_position = {r.position: r for r in records}
        rejected += [(by_position[p], reason) for p, reason in fold.poisoned.items()]
        outcome.accepted, outcome.quarantined = len(accepted) - len(fold.poisoned), len(rejected)
        outcome.unapplicable = len(fold.poisoned)
        outcome.quarantines = [(record.sequence, reason) for record, reason in rejected]
        outcome.duplicates, outcome.erased = fold.duplicates, len(fold.erased)
        if fold.erased:
            logger.info("events of erased shoppers dropped", extra={"shard": shard, "erased": len(fold.erased)})

        # Phase 1: everything that state rows must not run ahead of.
        tasks: list[Callable[[], str | None]] = [
            partial(self._quarantine, shard, record, reason) for record, reason in rejected
        ]
        grouped = fold.grouped_contributions()
        outcome.touched = len(grouped) + sum(1 for _ in fold.changed_rows()) + 1
        tasks += [partial(self._add, shard, table, key, parts, outcome)
                  for (table, key), parts in grouped.items() if table not in self.buffered]
        cursor: list[tuple[Cursor, Cursor]] = []  # the buffer's cursor as read and as the slots written move it
        if self.buffered:
            # In record order: the fold adds the pairs that wait for the batch's intent step at its end.
            buffered = sorted(((p, c) for p, c in fold.contributions if c.table in self.buffered), key=lambda x: x[0])
            arrivals = {r.position: r.arrival for r in records}
            tasks.append(partial(self._buffer, shard, buffered, arrivals, rows["checkpoints"].get(cursor_id(shard)),
                                 cursor, outcome))
        left_out = fold.erased | fold.poisoned.keys()
        archive_checkpoint = rows["checkpoints"].get(archive_checkpoint_id(shard), {})
        tasks.append(partial(self._archive, shard, accepted, left_out, originals, archive_checkpoint, outcome))
        done = archive_checkpoint.get(f"sw:{shard}")
        archived_erased = [(p, e) for p, e in accepted if p in fold.erased and done is not None and p <= done]
        if archived_erased:
            tasks.append(partial(self._take_out_archived, archived_erased, archive_checkpoint.get(RECENT_KEYS, []),
                                 rows["shoppers"]))
        failures = [p for p in self._run(tasks) if p is not None]

        # Phase 2: state rows, holding only the records below the first failure.
        cutoff = min(failures, default=None)
        if cutoff is not None:
            try:
                fold = self._fold(accepted, rows, shard, records, cutoff=cutoff, poisoned=fold.poisoned)
            except Exception:
                # The shorter fold went otherwise than the whole one did. No state row is written: the stream
                # delivers the whole batch again, whose counters and archive are in already.
                logger.exception("state rows not written", extra={"shard": shard})
                outcome.failed = [r.sequence for r in records]
                return outcome
        shoppers = [(key, row) for key, row in fold.shoppers.items() if row.last is not None]
        landed = self._run([partial(self._write_state, shard, "shoppers", key, row, rows["shoppers"].get(key), outcome)
                            for key, row in shoppers])
        unwritten = {key for (key, _), failed in zip(shoppers, landed) if failed is not None}
        failures += [p for p in landed if p is not None]
        tasks = []
        for key, row in fold.sessions.items():
            if row.last is None:
                continue
            if row.state.user_id in unwritten:
                # A session row waits for its shopper's (module doc): the stream delivers its records again.
                failures.append(row.first)
            else:
                tasks.append(partial(self._write_state, shard, "sessions", key, row, rows["sessions"].get(key), outcome))
        # The cursor moves beside the state rows rather than before them: its slots are written, whatever it says.
        tasks += [partial(self._move_cursor, shard, read, moved, outcome) for read, moved in cursor if moved != read]
        failures += [p for p in self._run(tasks) if p is not None]

        cutoff = min(failures, default=None)
        if cutoff is not None:
            outcome.failed = [r.sequence for r in records if r.position >= cutoff]
        return outcome

    def _read(self, early: tuple[dict[str, set[str]], Future] | None,
              wanted: dict[str, set[str]]) -> dict[str, dict[str, dict[str, Any]]]:
        """The rows of `wanted` ({table: keys}): those read ahead (`early`: what was asked, and the read), and in one
        more round trip any it did not ask for (or all of them, if it failed)."""
        rows: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in wanted}
        asked: dict[str, set[str]] = {table: set() for table in wanted}
        if early is not None:
            try:
                found = early[1].result()
            except Exception:
                logger.warning("rows not read ahead; reading them again", exc_info=True)
            else:
                for table, keys in found.items():
                    rows[table].update(keys)
                asked = early[0]
        missing = {table: keys - asked[table] for table, keys in wanted.items() if keys - asked[table]}
        if missing:
            for table, found in self.store.read_many(missing).items():
                rows[table].update(found)
        return {table: {k: row for k, row in rows[table].items() if k in wanted[table]} for table in wanted}

    def _fold(self, accepted: list[tuple[str, Event]], rows: dict[str, dict[str, dict]], shard: str,
              records: Sequence[StreamRecord], *, cutoff: str | None = None,
              poisoned: dict[str, str] | None = None) -> BatchFold:
        """The batch's fold (tailor.ingest.fold.fold_batch) with this Ingestor's session TTL, intent and personas."""
        return fold_batch(accepted, rows, shard, cutoff=cutoff, poisoned=poisoned, ttl=self.session_ttl,
                          arrivals={r.position: r.arrival for r in records}, intent=self.intent,
                          personas=self.personas, attribution=self.attribution, clusters=self.clusters,
                          vectors=self.vectors)

    # -- phase 1 ------------------------------------------------------------------------------------

    def _quarantine(self, shard: str, record: StreamRecord, reason: str) -> str | None:
        arrived = datetime.fromtimestamp(record.arrival or 0, tz=UTC).date().isoformat()
        body = {
            "reason": reason,
            "shard": shard,
            "sequence_number": record.sequence,
            "partition_key": record.partition_key,
            "approximate_arrival": record.arrival,
            "data": record.data.decode("utf-8", errors="replace"),
        }
        try:
            self.blobs.put(f"quarantine/date={arrived}/shard={shard}/{record.sequence}.json",
                           json.dumps(body).encode(), "application/json")
        except Exception:
            logger.exception("quarantine write failed", extra={"sequence_number": record.sequence})
            return record.position
        return None

    def _add(self, shard: str, table: str, key: str, parts: list[tuple[str, Contribution]],
             outcome: BatchOutcome) -> str | None:
        watermark = f"wm:{shard}"
        for chunk in _chunks_by_record(parts, ATTRIBUTES_PER_WRITE):
            for attempt in (1, 2):
                increments, latest = _merge(c for _, c in chunk)
                try:
                    self.store.add(table, key, increments, latest, watermark=watermark,
                                   first=chunk[0][0], last=chunk[-1][0])
                    outcome.wrote(table)
                    break
                except Conflict as conflict:
                    # Part of this chunk was absorbed by an earlier delivery: add only the rest.
                    chunk = [(p, c) for p, c in chunk if conflict.watermark is None or p > conflict.watermark]
                    if not chunk:
                        break
                    if attempt == 2:
                        return chunk[0][0]
                except Exception:
                    logger.exception("counter write failed", extra={"table": table, "key": key})
                    return chunk[0][0]
        return None

    def _buffer(self, shard: str, parts: list[tuple[str, Contribution]], arrivals: dict[str, float],
                cursor_row: dict[str, Any] | None, cursor_out: list[tuple[Cursor, Cursor]],
                outcome: BatchOutcome) -> str | None:
        """Write the contributions of the records past the shard's cursor into its next slots (tailor.ingest.buffer);
        the first record whose contributions are not known written, or None. The cursor as read and as the slots
        written move it go into `cursor_out`, for phase 2 to write (_move_cursor)."""
        read = cursor = Cursor.from_row(cursor_row)
        pending = cursor.pending(parts)
        failed: str | None = None
        while pending and failed is None:
            chunk, fields = slot_chunks(pending, arrivals, time.time())[0]
            slot = cursor.slot + 1
            try:
                self.store.write_state("buffers", slot_id(shard, slot), fields, watermark=SLOT_WATERMARK, expected=None,
                                       new=chunk[-1][0])
                outcome.wrote("buffers")
                cursor = Cursor(slot, chunk[-1][0])
            except Conflict as conflict:
                if conflict.watermark is None:
                    logger.error("buffer slot without its watermark", extra={"shard": shard, "slot": slot})
                    failed = chunk[0][0]
                    break
                # An earlier delivery wrote this slot and its cursor did not move: the slot holds every contribution
                # of the records up to its own `through`.
                cursor = Cursor(slot, conflict.watermark)
            except Exception:
                logger.exception("buffer write failed", extra={"shard": shard, "slot": slot})
                failed = chunk[0][0]
            pending = cursor.pending(pending)
        cursor_out.append((read, cursor))
        return failed

    def _move_cursor(self, shard: str, read: Cursor, moved: Cursor, outcome: BatchOutcome) -> None:
        """Move the shard's cursor past the slots this batch wrote or found. If the write fails, no record is failed:
        the slots are written, and they never change. The next batch on the shard finds them where it writes its own
        (taking them as written, as above), and the merge finds them past the cursor (tailor.ingest.merge)."""
        try:
            self.store.write_state("checkpoints", cursor_id(shard), moved.fields(), watermark=CURSOR_WATERMARK,
                                   expected=read.mark, new=moved.mark)  # type: ignore[arg-type]
            outcome.wrote("checkpoints")
        except Exception:
            logger.exception("buffer cursor write failed", extra={"shard": shard})

    def _archive(self, shard: str, accepted: list[tuple[str, Event]], left_out: set[str], originals: dict[str, str],
                 checkpoint: dict[str, Any], outcome: BatchOutcome) -> str | None:
        """The records past the archive's `checkpoint` (its row as read) archived, but those `left_out`."""
        checkpoint_id = archive_checkpoint_id(shard)
        watermark = f"sw:{shard}"
        done = checkpoint.get(watermark)
        pending = [(p, e) for p, e in accepted if done is None or p > done]
        if not pending:
            return None
        by_day: dict[str, list[tuple[str, Event]]] = defaultdict(list)
        for p, e in pending:
            by_day[archive_day(e.epoch)].append((p, e))
        try:
            written = []
            for day, part in by_day.items():
                # Named after its first record past the checkpoint, whether archived or left out: a replay rewrites
                # the same object, whatever it leaves out then (an erasure since may leave out more).
                key = archive_key(day, shard, part[0][0][3:])
                lines = [originals[p] + "\n" for p, _ in part if p not in left_out]
                if lines or _exists(self.blobs, key):
                    self.blobs.put(key, pack_lines(lines), "application/gzip")
                    written.append(key)
            if not written:  # every record left out, none over an earlier delivery's object: nothing to keep
                return None
            # The latest deliveries' objects: where a replay that drops an erased shopper's events finds those an
            # earlier delivery archived before the tombstone came (_take_out_archived). A delivery none of whose
            # records the checkpoint has passed is no replay: no delivery after it holds a record an earlier one
            # archived, so only its own objects can be wanted again.
            earlier = [] if done is None or accepted[0][0] > done else checkpoint.get(RECENT_KEYS, [])
            recent = [*written, *(k for k in earlier if k not in written)][:max(RECENT_ARCHIVE_KEYS, len(written))]
            self.store.write_state("checkpoints", checkpoint_id,
                                   {"archived_through": pending[-1][0][3:], RECENT_KEYS: recent},
                                   watermark=watermark, expected=done, new=pending[-1][0])
            outcome.wrote("checkpoints")
        except Exception:
            logger.exception("archive write failed", extra={"shard": shard})
            return pending[0][0]
        return None

    def _take_out_archived(self, erased: list[tuple[str, Event]], recent: list[str],
                           shoppers: dict[str, dict]) -> str | None:
        """Events of erased shoppers that the archive's checkpoint had passed, taken out of the latest deliveries'
        objects: an earlier delivery may have archived them, having read their rows before the tombstone came, on a
        day the erasure's index does not name or after its worker went through (tailor.erasure.take_out_archived)."""
        keys = objects_up_to(recent, (archive_day(e.epoch) for _, e in erased), max(int(p[3:]) for p, _ in erased))
        try:
            take_out_archived(self.blobs, {e.user_id: erased_at(shoppers[e.user_id]) for _, e in erased}, keys)
        except Exception:
            logger.exception("archived events of an erased shopper not taken out", extra={"records": len(erased)})
            return min(p for p, _ in erased)
        return None

    # -- phase 2 ------------------------------------------------------------------------------------

    def _write_state(self, shard: str, table: str, key: str, row: FoldedRow, read: dict[str, Any] | None,
                     outcome: BatchOutcome) -> str | None:
        # A shopper row only over the erasure it was read with: a DELETE since (a tombstone where the batch read none,
        # or one a batch of another shard wrote) fails the write, and the delivery again drops what it must.
        unchanged = (ERASED_FIELD, None if read is None else read.get(ERASED_FIELD)) if table == "shoppers" else None
        try:
            self.store.write_state(table, key, _changed(row.fields(), read), watermark=f"sw:{shard}",
                                   expected=row.expected, new=row.last, unchanged=unchanged)
            outcome.wrote(table)
        except Exception:
            logger.exception("state write failed", extra={"table": table, "key": key})
            return row.first
        return None

    def _run(self, tasks: list[Callable[[], str | None]]) -> list[str | None]:
        if self._pool is None or len(tasks) < 2:
            return [task() for task in tasks]
        # The first in this thread, which would only wait otherwise: a hand-over fewer (most phases have two or three).
        futures = [self._pool.submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first, *(future.result() for future in futures)]


def _load(record: StreamRecord) -> Any:
    """A record's JSON as Python (what parse_event decodes it to), or _NOT_JSON."""
    try:
        return load_json(record.data.decode("utf-8"), max_depth=MAX_EVENT_DEPTH)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _NOT_JSON


def _ids(loaded: list[Any], name: str) -> set[str]:
    """The ids named `name` in the records' JSON that could be a row's key, as validation would leave them."""
    ids = set()
    for value in loaded:
        if isinstance(value, dict) and isinstance(value.get(name), str):
            found = value[name].strip()
            if 0 < len(found) <= MAX_ID_LENGTH:
                ids.add(found)
    return ids


def _decode(records: Sequence[StreamRecord],
            loaded: list[Any]) -> tuple[list[tuple[str, Event]], dict[str, str], list[tuple[StreamRecord, str]]]:
    """Valid events by position, their original JSON as one line each (for the archive), and the rest."""
    accepted, originals, rejected = [], {}, []
    for record, value in zip(records, loaded):
        try:
            # Dated past the clock skew of its arrival on the stream: a wrong clock (as at the API's door). The
            # arrival is the record's own, so a replay decides the same; a record without one is not held to it.
            received_at = record.arrival or None
            if value is _NOT_JSON:
                event = parse_event(record.data, received_at=received_at)  # raises, saying why
                value = json.loads(record.data)
            else:
                event = event_from_json(value, received_at=received_at)
        except EventError as err:
            rejected.append((record, err.reason))
            continue
        if record.partition_key and record.partition_key != event.user_id:
            # Another partition key could put the shopper's events on two shards, out of order.
            rejected.append((record, f"partition_key: {record.partition_key!r} is not the event's user_id"))
            continue
        accepted.append((record.position, event))
        originals[record.position] = _COMPACT.encode(value)
    return accepted, originals, rejected


def _changed(fields: dict[str, Any], read: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a state row that differ from the row as read, value and type. The write holds only if the row's
    watermark is still the one read, so the row is still as read, and setting these makes it hold all of `fields`;
    a row's unchanged fields (most of a shopper's, between two events) are not sent again."""
    if not read:
        return fields
    return {name: value for name, value in fields.items() if name not in read or not _same(read[name], value)}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types throughout (1 and True, or 3 and 3.0, are stored differently)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _merge(parts: Iterable[Contribution]) -> tuple[dict[str, float], dict[str, Any]]:
    increments: dict[str, float] = {}
    latest: dict[str, Any] = {}
    for c in parts:
        for name, amount in c.increments.items():
            increments[name] = increments.get(name, 0) + amount
        latest.update(c.latest)
    return increments, latest


def _chunks_by_record(parts: list[tuple[str, Contribution]], limit: int) -> list[list[tuple[str, Contribution]]]:
    """Consecutive runs of whole records whose attributes fit one write."""
    chunks: list[list[tuple[str, Contribution]]] = [[]]
    names: set[str] = set()
    i = 0
    while i < len(parts):
        j = i
        record_names: set[str] = set()
        while j < len(parts) and parts[j][0] == parts[i][0]:
            record_names |= parts[j][1].increments.keys() | parts[j][1].latest.keys()
            j += 1
        if chunks[-1] and len(names | record_names) > limit:
            chunks.append([])
            names = set()
        chunks[-1].extend(parts[i:j])
        names |= record_names
        i = j
    return chunks


def _exists(blobs: BlobStore, key: str) -> bool:
    """Whether an archive object is there (asked only where a replay would leave it none of its lines): a listing of
    its own name, which costs one request and no body."""
    return any(info.key == key for info in blobs.describe(key))
