"""Apply one shard's batch of stream records to Tailor's state exactly once, one write per touched key.

Kinesis delivers at least once: a batch comes again after a timeout, and after a partial failure
the stream replays from the lowest failed record, possibly with new records behind it or cut in
halves. Every row therefore carries, per shard, the position of the last record it has absorbed
(its watermark), and every write is conditional on it:

* Session and shopper rows ("state rows") are read first, folded forward in Python over the
  records past their own watermark, and written whole with `watermark == what we read`.
* Shared counters (items, associations, query-item counts, referrers) are never read: each
  write adds the batch's increments only if the row's watermark is still below the first record
  that contributes to it. If it is not, the write is retried with the records past it.
* What a record adds to shared counters depends on its session as it was just before it. So state
  rows are written only after every counter write has landed, and only with the records below
  the first failure: on a replay, a state row never already holds a record whose counter effects
  are still missing, and records it does hold are known to be fully counted.
* The archive of valid events has a checkpoint row of its own: objects are named after the first
  record past the checkpoint, so a replay rewrites the same object rather than adding one.
* Quarantined records are stored under their own sequence number, so storing one twice is a no-op.
  Besides the records that fail validation, the walk quarantines a valid record it cannot apply: one whose
  session belongs to another shopper, one the fold fails on (a bug, an overflow), and one that would
  put a value DynamoDB cannot store (NaN, infinity, beyond 38 digits) into a counter or a row. The
  decision depends only on the record and the rows as they were before it, so a replayed batch
  quarantines the same records again, and the walk goes on with the rest: one bad record never fails
  a batch. Only what is not a record's fault (the store, S3, the network) makes records retried.
* An erased shopper's row is a tombstone (tailor.erasure). Their events timestamped up to the erasure are
  dropped, however often they come: no state row, no counter, no archive line; they are counted as erased.
  A later event starts a fresh shopper on the tombstone's row, which keeps `erased_at` (so that the same
  records are dropped on a replay, and earlier stragglers ever after) and clears its TTL. The decision needs
  only the shopper rows the batch reads anyway.

Within a shard batches run one at a time (ParallelizationFactor 1), so per-shard watermarks
order every write; records of other shards touch shared counters under their own watermark.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tailor.archive import archive_key, pack_lines
from tailor.events import Event, EventError, parse_event
from tailor.ingest.derive import Contribution, contributions
from tailor.ingest.intent import SessionIntent
from tailor.personas.online import PersonaTracker
from tailor.session import SessionState, fold_session
from tailor.shopper import EXPIRY_FIELD, ShopperState, erased_at, fold_shopper
from tailor.store.port import BlobStore, Conflict, StateStore

__all__ = ["BatchOutcome", "Ingestor", "StreamRecord", "position"]

logger = logging.getLogger(__name__)

ATTRIBUTES_PER_WRITE = 100  # keeps one UpdateItem expression well under DynamoDB's 4 KB limit
# What a DynamoDB number holds: 38 significant digits, magnitudes from 1e-130 to below 1e126.
DYNAMO_MAX_INTEGER = 10 ** 38
DYNAMO_MAX_MAGNITUDE = 1e126
DYNAMO_MIN_MAGNITUDE = 1e-130


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

    @property
    def position(self) -> str:
        return position(self.sequence)


@dataclass
class BatchOutcome:
    """What a batch did: `failed` lists the sequence numbers the stream must deliver again."""

    failed: list[str] = field(default_factory=list)
    records: int = 0
    accepted: int = 0
    quarantined: int = 0
    quarantines: list[tuple[str, str]] = field(default_factory=list)  # (sequence number, reason) of each quarantined
    unapplicable: int = 0  # of the quarantined, valid events the walk could not apply
    duplicates: int = 0
    erased: int = 0  # events of erased shoppers, up to their erasure: dropped
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
                 personas: PersonaTracker | None = None):
        """With `intent`, every touched session's intent is kept and association pairs are weighed by it
        (tailor.ingest.intent); without, pairs weigh their event type's base weight."""
        self.store = store
        self.blobs = blobs
        self.intent = intent
        self.personas = personas  # persona counters, traits and mixtures (tailor.personas.online)
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
        accepted, originals, rejected = _decode(records)

        try:
            rows = self.store.read_many({
                "sessions": {e.session_id for _, e in accepted},
                "shoppers": {e.user_id for _, e in accepted},
                "checkpoints": [_archive_id(shard)],
            })
            walk = self._walk(accepted, rows, shard, records, cutoff=None, poisoned={})
        except Exception:
            # Not a record's fault (the store, or a fault every record meets): the stream delivers them all again.
            logger.exception("batch not applied", extra={"shard": shard, "records": len(records)})
            outcome.failed = [r.sequence for r in records]
            return outcome
        by_position = {r.position: r for r in records}
        rejected += [(by_position[p], reason) for p, reason in walk.poisoned.items()]
        outcome.accepted, outcome.quarantined = len(accepted) - len(walk.poisoned), len(rejected)
        outcome.unapplicable = len(walk.poisoned)
        outcome.quarantines = [(record.sequence, reason) for record, reason in rejected]
        outcome.duplicates, outcome.erased = walk.duplicates, len(walk.erased)
        if walk.erased:
            logger.info("events of erased shoppers dropped", extra={"shard": shard, "erased": len(walk.erased)})

        # Phase 1: everything that state rows must not run ahead of.
        tasks: list[Callable[[], str | None]] = [
            partial(self._quarantine, shard, record, reason) for record, reason in rejected
        ]
        tasks += [partial(self._add, shard, table, key, parts, outcome)
                  for (table, key), parts in walk.grouped_contributions().items()]
        left_out = walk.erased | walk.poisoned.keys()
        archived = [(p, e) for p, e in accepted if p not in left_out] if left_out else accepted
        tasks.append(partial(self._archive, shard, archived, originals, rows["checkpoints"], outcome))
        failures = [p for p in self._run(tasks) if p is not None]

        # Phase 2: state rows, holding only the records below the first failure.
        cutoff = min(failures, default=None)
        if cutoff is not None:
            try:
                walk = self._walk(accepted, rows, shard, records, cutoff=cutoff, poisoned=walk.poisoned)
            except Exception:
                # The shorter walk went otherwise than the whole one did. No state row is written: the stream
                # delivers the whole batch again, whose counters and archive are in already.
                logger.exception("state rows not written", extra={"shard": shard})
                outcome.failed = [r.sequence for r in records]
                return outcome
        tasks = [partial(self._write_state, shard, table, key, row, outcome)
                 for table, key, row in walk.changed_rows()]
        failures += [p for p in self._run(tasks) if p is not None]

        cutoff = min(failures, default=None)
        if cutoff is not None:
            outcome.failed = [r.sequence for r in records if r.position >= cutoff]
        return outcome

    def _walk(self, accepted: list[tuple[str, Event]], rows: dict[str, dict[str, dict]], shard: str,
              records: Sequence[StreamRecord], *, cutoff: str | None, poisoned: Mapping[str, str]) -> _Walk:
        """The walk over `accepted` with every record it cannot apply left out and named in `walk.poisoned`.

        Without a cutoff, records are found and left out until the walk comes through; a fault no single record
        causes (the walk fails without any) is raised. With one, `poisoned` is what the walk without a cutoff left
        out, and a walk that does not come through with it is raised."""
        options = dict(ttl=self.session_ttl, arrivals={r.position: r.arrival for r in records},
                       intent=self.intent, personas=self.personas)
        poisoned = dict(poisoned)
        while True:
            walk = _Walk.over(accepted, rows, shard, cutoff=cutoff, poisoned=poisoned, **options)
            problem = walk.problem()
            if cutoff is not None and problem is None and walk.poisoned.keys() - poisoned.keys():
                problem = None, "the walk up to the cutoff left out records the whole walk applied"
            if problem is None:
                return walk
            position, reason = problem
            if cutoff is not None:
                raise _Unsettled(reason)
            poisoned = dict(walk.poisoned)
            if position is None:  # a fault of the batch's rows as a whole: find the record that brings it in
                position, reason = _culprit(accepted, rows, shard, poisoned, reason, options)
            poisoned[position] = reason

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

    def _archive(self, shard: str, accepted: list[tuple[str, Event]], originals: dict[str, str],
                 checkpoints: dict[str, dict], outcome: BatchOutcome) -> str | None:
        checkpoint_id = _archive_id(shard)
        watermark = f"sw:{shard}"
        done = checkpoints.get(checkpoint_id, {}).get(watermark)
        pending = [(p, e) for p, e in accepted if done is None or p > done]
        if not pending:
            return None
        by_day: dict[str, list[tuple[str, Event]]] = defaultdict(list)
        for p, e in pending:
            by_day[e.timestamp.astimezone(UTC).date().isoformat()].append((p, e))
        try:
            for day, part in by_day.items():
                # Named after its first record past the checkpoint: a replay rewrites the same object.
                first_sequence = part[0][0][3:]
                self.blobs.put(archive_key(day, shard, first_sequence),
                               pack_lines([originals[p] + "\n" for p, _ in part]), "application/gzip")
            self.store.write_state("checkpoints", checkpoint_id, {"archived_through": pending[-1][0][3:]},
                                   watermark=watermark, expected=done, new=pending[-1][0])
            outcome.wrote("checkpoints")
        except Exception:
            logger.exception("archive write failed", extra={"shard": shard})
            return pending[0][0]
        return None

    # -- phase 2 ------------------------------------------------------------------------------------

    def _write_state(self, shard: str, table: str, key: str, row: _Row, outcome: BatchOutcome) -> str | None:
        try:
            self.store.write_state(table, key, row.fields(), watermark=f"sw:{shard}",
                                   expected=row.expected, new=row.last)
            outcome.wrote(table)
        except Exception:
            logger.exception("state write failed", extra={"table": table, "key": key})
            return row.first
        return None

    def _run(self, tasks: list[Callable[[], str | None]]) -> list[str | None]:
        if self._pool is None or len(tasks) < 2:
            return [task() for task in tasks]
        return list(self._pool.map(lambda task: task(), tasks))


@dataclass
class _Row:
    """A state row during a walk: its state, the watermark it was read with, what this batch applied."""

    state: Any
    expected: str | None
    first: str | None = None
    last: str | None = None
    erased_at: float | None = None  # a shopper's: when they were erased, from the row's tombstone
    _fields: dict[str, Any] | None = field(default=None, repr=False)  # the row as written, once the walk is done

    def applies(self, pos: str) -> bool:
        return self.expected is None or pos > self.expected

    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            self._fields = self.state.to_row()
            if self.erased_at is not None:
                self._fields[EXPIRY_FIELD] = None  # a shopper back after their erasure: the table's TTL leaves them be
        return self._fields

    def absorbed(self, pos: str) -> None:
        self.first = self.first or pos
        self.last = pos


@dataclass
class _Walk:
    """The records folded, in stream order, into their session and shopper rows, but for those it cannot apply."""

    sessions: dict[str, _Row]
    shoppers: dict[str, _Row]
    contributions: list[tuple[str, Contribution]]
    duplicates: int
    erased: set[str] = field(default_factory=set)  # positions of events of erased shoppers, up to their erasure
    poisoned: dict[str, str] = field(default_factory=dict)  # position -> why the record cannot be applied
    broken: tuple[str | None, str] | None = None  # the fault that stopped the walk: (record position or None, why)

    @classmethod
    def over(cls, accepted: list[tuple[str, Event]], rows: dict[str, dict[str, dict]], shard: str,
             *, cutoff: str | None, ttl: int, arrivals: dict[str, float],
             intent: SessionIntent | None = None, personas: PersonaTracker | None = None,
             poisoned: Mapping[str, str] | None = None) -> _Walk:
        """The walk leaving out the records in `poisoned`, and those it finds it cannot apply before it changes
        anything for them (added to `walk.poisoned`). A fault after that, or of the batch as a whole, stops it:
        `walk.broken` says which."""
        watermark = f"sw:{shard}"
        sessions = {k: _Row(SessionState.from_row(v), v.get(watermark)) for k, v in rows["sessions"].items()}
        shoppers = {k: _Row(ShopperState.from_row(v), v.get(watermark), erased_at=erased_at(v))
                    for k, v in rows["shoppers"].items()}
        walk = cls(sessions, shoppers, [], 0, poisoned=dict(poisoned or {}))
        pending = intent.pairs() if intent is not None else None
        for pos, event in accepted:
            if cutoff is not None and pos >= cutoff:
                break
            if pos in walk.poisoned:
                continue
            shopper = shoppers.setdefault(event.user_id, _Row(None, None))
            if shopper.erased_at is not None and event.epoch <= shopper.erased_at:
                walk.erased.add(pos)  # sent before the shopper was erased: as if it never came
                continue
            session = sessions.setdefault(event.session_id, _Row(None, None))
            if session.state is not None and session.state.user_id != event.user_id:
                walk.poisoned[pos] = f"session_id: session {event.session_id!r} belongs to another shopper"
                continue
            # A record already in either row had all its counter effects applied (see module doc).
            paired = None  # (item, session items before) of a record whose pairs wait for its intent weight
            if session.applies(pos) and shopper.applies(pos):
                if shopper.state is not None and shopper.state.has_seen(event.event_id):
                    walk.duplicates += 1
                else:
                    try:
                        added = [(pos, c) for c in contributions(event, session.state, associate=pending is None)]
                        if personas is not None:
                            added += [(pos, c) for c in personas.counters(event, shopper.state)]
                        item_id = getattr(event, "item_id", None)
                        previous = [] if session.state is None else session.state.items
                        if pending is not None and item_id and pending.wants(event.event_type, previous):
                            paired = (item_id, previous)
                    except Exception as exc:
                        _reraise_if_infrastructure(exc)
                        walk.poisoned[pos] = _failure("counters", exc)  # nothing of the walk changed yet
                        continue
                    problem = _unstorable_contributions(c for _, c in added)
                    if problem is not None:
                        walk.poisoned[pos] = problem
                        continue
                    walk.contributions += added
            try:
                if session.applies(pos):
                    session.state = fold_session(session.state, event, ttl_seconds=ttl, received_at=arrivals[pos])
                    session.absorbed(pos)
                    if paired is not None:
                        pending.add(pos, paired[0], event.event_type, paired[1], session.state)
                if shopper.applies(pos):
                    shopper.state = fold_shopper(shopper.state, event, shard=shard)
                    shopper.absorbed(pos)
            except Exception as exc:
                _reraise_if_infrastructure(exc)
                walk.broken = (pos, _failure("fold", exc))  # its rows are half folded: walk again without it
                return walk
        try:
            if personas is not None:
                personas.settle([r.state for r in sessions.values() if r.last is not None],
                                [r.state for r in shoppers.values() if r.last is not None])
            if pending is not None:
                # One model call for the batch: the pending records' weights and every touched session's intent.
                resolved = pending.resolve(row.state for row in sessions.values() if row.last is not None)
                walk.contributions += resolved
        except Exception as exc:
            _reraise_if_infrastructure(exc)
            walk.broken = (None, _failure("batch step", exc))
            return walk
        if pending is not None:
            by_record: dict[str, list[Contribution]] = defaultdict(list)
            for pos, c in resolved:
                by_record[pos].append(c)
            for pos, parts in by_record.items():
                problem = _unstorable_contributions(parts)
                if problem is not None:
                    walk.broken = (pos, problem)  # its rows are folded already: walk again without it
                    return walk
        return walk

    def problem(self) -> tuple[str | None, str] | None:
        """Why the walk cannot be written, and the record at fault when one is known: the fault that stopped it, or
        a row holding what DynamoDB cannot store; None when it can be written."""
        if self.broken is not None:
            return self.broken
        for table, key, row in self.changed_rows():
            problem = _unstorable(row.fields())
            if problem is not None:
                return None, f"{table} row {key!r}: {problem}"
        return None

    def grouped_contributions(self) -> dict[tuple[str, str], list[tuple[str, Contribution]]]:
        grouped: dict[tuple[str, str], list[tuple[str, Contribution]]] = defaultdict(list)
        for pos, c in self.contributions:
            grouped[(c.table, c.key)].append((pos, c))
        return grouped

    def changed_rows(self) -> Iterable[tuple[str, str, _Row]]:
        for table, rows in (("sessions", self.sessions), ("shoppers", self.shoppers)):
            for key, row in rows.items():
                if row.last is not None:
                    yield table, key, row


def _decode(records: Sequence[StreamRecord]) -> tuple[list[tuple[str, Event]], dict[str, str], list[tuple[StreamRecord, str]]]:
    """Valid events by position, their original JSON as one line each (for the archive), and the rest."""
    accepted, originals, rejected = [], {}, []
    for record in records:
        try:
            # Dated past the clock skew of its arrival on the stream: a wrong clock (as at the API's door). The
            # arrival is the record's own, so a replay decides the same; a record without one is not held to it.
            event = parse_event(record.data, received_at=record.arrival or None)
        except EventError as err:
            rejected.append((record, err.reason))
            continue
        if record.partition_key and record.partition_key != event.user_id:
            # Another partition key could put the shopper's events on two shards, out of order.
            rejected.append((record, f"partition_key: {record.partition_key!r} is not the event's user_id"))
            continue
        accepted.append((record.position, event))
        originals[record.position] = json.dumps(json.loads(record.data), separators=(",", ":"), ensure_ascii=False)
    return accepted, originals, rejected


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


def _archive_id(shard: str) -> str:
    return f"archive:{shard}"


class _Unsettled(Exception):
    """A walk that does not come through, and no single record is at fault."""


def _culprit(accepted: list[tuple[str, Event]], rows: dict[str, dict[str, dict]], shard: str,
             poisoned: Mapping[str, str], reason: str, options: dict[str, Any]) -> tuple[str, str]:
    """The record whose walk brings in a fault of the batch as a whole (a batch step failing, a row that cannot
    be stored): the last of the shortest run of the batch's records whose walk fails, found by bisection. Walks
    depend only on the records and the rows read, so a replay finds the same record. Raises _Unsettled when even
    a walk over no record fails."""
    candidates = [pos for pos, _ in accepted if pos not in poisoned]

    def fault(n: int) -> str | None:
        """Why the walk over the first `n` candidates fails, or None."""
        cutoff = candidates[n] if n < len(candidates) else None
        problem = _Walk.over(accepted, rows, shard, cutoff=cutoff, poisoned=poisoned, **options).problem()
        return None if problem is None else problem[1]

    if fault(0) is not None:
        raise _Unsettled(reason)
    good, bad = 0, len(candidates)
    while bad - good > 1:
        middle = (good + bad) // 2
        found = fault(middle)
        if found is None:
            good = middle
        else:
            bad, reason = middle, found
    return candidates[bad - 1], reason


def _failure(step: str, exc: Exception) -> str:
    return f"ingest could not apply the event ({step}): {type(exc).__name__}: {exc}"


def _reraise_if_infrastructure(exc: Exception) -> None:
    """A fault of the network, a store or the machine is no record's: it fails the batch, which comes again."""
    if isinstance(exc, (OSError, MemoryError)) or type(exc).__module__.split(".")[0] in ("botocore", "boto3"):
        raise exc


def _unstorable_contributions(parts: Iterable[Contribution]) -> str | None:
    """Where a record's contributions hold a number DynamoDB cannot store, or None."""
    for c in parts:
        for name, amount in c.increments.items():
            if not _storable_number(amount):
                return f"{c.table} {c.key!r} {name}: adding {amount!r} is not a number DynamoDB can store"
        for name, value in c.latest.items():
            problem = None if type(value) is str else _unstorable({name: value})
            if problem is not None:
                return f"{c.table} {c.key!r} {problem}"
    return None


def _unstorable(fields: Mapping[str, Any]) -> str | None:
    """Where `fields` hold a number DynamoDB cannot store (not finite, too large or small, too many digits), or
    None. Every row a batch writes is checked, so the common answer is found at C speed: JSON refuses NaN and
    infinities and writes floats of 1e16 and more with an exponent ("e+"); only then are the numbers looked at one
    by one. Integers and tiny fractions are left to that: rows hold counts and sums of bounded amounts, and
    fractions rounded to a few places, far from DynamoDB's 38 digits and 1e-130."""
    try:
        text = json.dumps(fields, allow_nan=False, default=repr)
    except ValueError:
        pass
    else:
        if "e+" not in text:
            return None
    pending: list[tuple[str, Any]] = list(fields.items())
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{path}.{n}", v) for n, v in enumerate(value))
        elif not _storable_number(value):
            return f"{path}: {value!r} is not a number DynamoDB can store"
    return None


def _storable_number(value: Any) -> bool:
    """Whether DynamoDB stores `value`, when it is a number (NaN and infinities fail the comparisons)."""
    kind = type(value)
    if kind is float:
        return value == 0 or DYNAMO_MIN_MAGNITUDE <= abs(value) < DYNAMO_MAX_MAGNITUDE
    if kind is int:
        return -DYNAMO_MAX_INTEGER < value < DYNAMO_MAX_INTEGER
    if isinstance(value, (int, float)) and kind is not bool:  # subclasses (numpy's float64 is one)
        return _storable_number(float(value) if isinstance(value, float) else int(value))
    return True
