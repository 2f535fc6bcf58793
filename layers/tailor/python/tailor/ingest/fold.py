"""Ingest's fold: a batch of one shard's events folded, in stream order, into their session and shopper rows, and
what each record adds to shared counters. Rows and events in, new rows and contributions out: no store, no S3, no
clock. Ingest (tailor.ingest.service) writes what it gives; training, evaluations and benchmarks replay events
through it too, so there is one way to fold state.

* A state row absorbs the records past its own watermark (`sw:<shard>`, the last record it holds). A record already
  in either of its rows added its counter contributions before (tailor.ingest.service says why), so it adds none
  again, and neither does a producer's duplicate that the shopper row remembers (`duplicates`).
* A record's contributions depend on its session as it was just before it (tailor.ingest.derive). With session
  intent, association pairs wait for their intent weight and every touched session's intent is kept, with one
  model call at the end of the batch (tailor.ingest.intent); with personas, their counters and mixtures likewise
  (tailor.personas.online). With item vectors, each session's and shopper's vector takes the records its row
  absorbs at the end of the batch, an engagement weighed by the intent factor its association pairs take
  (tailor.embeddings.online). That factor needs the session as it was at the record, so Ingest writes a session
  row only once its shopper's row has landed: a replay whose shopper row holds a record its session row does not scores
  the record again for its factor alone.
* An erased shopper's row is a tombstone (tailor.erasure): their events timestamped up to the erasure are left out
  (`erased`); a later event starts a fresh shopper on the tombstone's row.
* Besides the records that fail validation, Ingest quarantines a valid record the fold cannot apply: one whose
  session belongs to another shopper, one the fold fails on (a bug, an overflow), and one that would put a value
  DynamoDB cannot store (NaN, infinity, beyond 38 digits) into a counter or a row (`poisoned`). The decision depends
  only on the record and the rows as they were before it, so a replayed batch leaves out the same records again.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tailor.clusters.session import SessionClusters
from tailor.contribution import Contribution
from tailor.events import Event
from tailor.experiments.attribution import Attribution
from tailor.ingest.derive import contributions
from tailor.ingest.intent import SessionIntent
from tailor.personas.online import PersonaTracker
from tailor.session import SessionState, fold_session
from tailor.shopper import EXPIRY_FIELD, ShopperState, erased_at, fold_shopper, predicted_ltv

if TYPE_CHECKING:
    from tailor.embeddings.online import OnlineVectors

__all__ = ["BatchFold", "FoldedRow", "Unsettled", "fold_batch"]

# What a DynamoDB number holds: 38 significant digits, magnitudes from 1e-130 to below 1e126.
DYNAMO_MAX_INTEGER = 10 ** 38
DYNAMO_MAX_MAGNITUDE = 1e126
DYNAMO_MIN_MAGNITUDE = 1e-130
# A row whose JSON text is longer is refused before DynamoDB's item limit (400 KB) would refuse its write on every
# delivery and hold up the shard: the text is at least the item's size (names and strings as they are, a number's
# digits a character each where DynamoDB keeps two a byte, more for quotes and separators), with room to spare.
MAX_ROW_JSON = 350_000


def fold_batch(accepted: Sequence[tuple[str, Event]], rows: Mapping[str, Mapping[str, Mapping[str, Any]]],
               shard: str | None, *, ttl: int, arrivals: Mapping[str, float], cutoff: str | None = None,
               intent: SessionIntent | None = None, personas: PersonaTracker | None = None,
               poisoned: Mapping[str, str] | None = None, attribution: Attribution | None = None,
               clusters: SessionClusters | None = None, vectors: OnlineVectors | None = None) -> BatchFold:
    """The fold of `accepted` ((position, event) in stream order) into `rows` (the "sessions" and "shoppers" rows of
    their keys as read; an absent or empty row is no state yet), with every record it cannot apply left out and
    named in `fold.poisoned`. `shard`: the stream shard the records came on (None: none, events replayed outside a
    stream); `arrivals`: when the stream received each position, which a session's expiry (`ttl` seconds on) is
    counted from at the latest.

    Without a cutoff, records are found and left out until the fold comes through; a fault no single record causes
    (the fold fails without any) raises Unsettled. With one, only the records before it are folded, `poisoned` is
    what the fold without a cutoff left out, and a fold that does not come through with it raises Unsettled."""
    options: dict[str, Any] = dict(ttl=ttl, arrivals=arrivals, intent=intent, personas=personas,
                                   attribution=attribution, clusters=clusters, vectors=vectors)
    poisoned = dict(poisoned or {})
    while True:
        fold = BatchFold.over(accepted, rows, shard, cutoff=cutoff, poisoned=poisoned, **options)
        problem = fold.problem()
        if cutoff is not None and problem is None and fold.poisoned.keys() - poisoned.keys():
            problem = None, "the fold up to the cutoff left out records the whole fold applied"
        if problem is None:
            return fold
        position, reason = problem
        if cutoff is not None:
            raise Unsettled(reason)
        poisoned = dict(fold.poisoned)
        if position is None:  # a fault of the batch's rows as a whole: find the record that brings it in
            position, reason = _culprit(accepted, rows, shard, poisoned, reason, options)
        poisoned[position] = reason


class Unsettled(Exception):
    """A fold that does not come through, and no single record is at fault."""


@dataclass
class FoldedRow:
    """A state row during a fold: its state, the watermark it was read with, what this batch applied."""

    state: Any
    expected: str | None
    first: str | None = None
    last: str | None = None
    erased_at: float | None = None  # a shopper's: when they were erased, from the row's tombstone
    _fields: dict[str, Any] | None = field(default=None, repr=False)  # the row as written, once the fold is done

    def applies(self, pos: str) -> bool:
        return self.expected is None or pos > self.expected

    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            # The state's fields as they are, not deep-copied as RowState.to_row does (a tenth of the batch's time):
            # the fold is done with them, and whoever takes the row copies or serializes it.
            self._fields = {f.name: getattr(self.state, f.name) for f in dataclasses.fields(self.state)}
            if self.erased_at is not None:
                self._fields[EXPIRY_FIELD] = None  # a shopper back after their erasure: the table's TTL leaves them be
        return self._fields

    def absorbed(self, pos: str) -> None:
        self.first = self.first or pos
        self.last = pos


@dataclass
class BatchFold:
    """The records folded, in stream order, into their session and shopper rows, but for those it cannot apply."""

    sessions: dict[str, FoldedRow]
    shoppers: dict[str, FoldedRow]
    contributions: list[tuple[str, Contribution]]  # (position, contribution), in record order; intent pairs last
    duplicates: int
    erased: set[str] = field(default_factory=set)  # positions of events of erased shoppers, up to their erasure
    poisoned: dict[str, str] = field(default_factory=dict)  # position -> why the record cannot be applied
    broken: tuple[str | None, str] | None = None  # the fault that stopped the fold: (record position or None, why)

    @classmethod
    def over(cls, accepted: Sequence[tuple[str, Event]], rows: Mapping[str, Mapping[str, Mapping[str, Any]]],
             shard: str | None, *, cutoff: str | None, ttl: int, arrivals: Mapping[str, float],
             intent: SessionIntent | None = None, personas: PersonaTracker | None = None,
             poisoned: Mapping[str, str] | None = None, attribution: Attribution | None = None,
             clusters: SessionClusters | None = None, vectors: OnlineVectors | None = None) -> BatchFold:
        """One fold leaving out the records in `poisoned`, and those it finds it cannot apply before it changes
        anything for them (added to `fold.poisoned`). A fault after that, or of the batch as a whole, stops it:
        `fold.broken` says which."""
        watermark = f"sw:{shard}"
        sessions = {k: FoldedRow(SessionState.from_row(v), v.get(watermark)) for k, v in rows["sessions"].items()}
        shoppers = {k: FoldedRow(ShopperState.from_row(v), v.get(watermark), erased_at=erased_at(v))
                    for k, v in rows["shoppers"].items()}
        fold = cls(sessions, shoppers, [], 0, poisoned=dict(poisoned or {}))
        pending = intent.pairs() if intent is not None else None
        noted = vectors.batch() if vectors is not None else None  # session and shopper vectors, applied at the end
        kept = clusters.batch() if clusters is not None else None  # the sessions' cluster posteriors, written at the end
        for pos, event in accepted:
            if cutoff is not None and pos >= cutoff:
                break
            if pos in fold.poisoned:
                continue
            shopper = shoppers.setdefault(event.user_id, FoldedRow(None, None))
            if shopper.erased_at is not None and event.epoch <= shopper.erased_at:
                fold.erased.add(pos)  # sent before the shopper was erased: as if it never came
                continue
            session = sessions.setdefault(event.session_id, FoldedRow(None, None))
            if session.state is not None and 0 < session.state.expires_at < arrivals[pos] and session.applies(pos):
                # Expired when the record came: the table's TTL removes such a row at a time of its own, and the
                # record starts a session whether or not the row is still there to read (its watermark stays). What
                # the batch noted of the old session's vector goes with it, as at a batch boundary.
                session.state = None
                if noted is not None:
                    noted.forget(session)
            if session.state is not None and session.state.user_id != event.user_id:
                fold.poisoned[pos] = f"session_id: session {event.session_id!r} belongs to another shopper"
                continue
            # An experiment's unit totals live in the shopper row: they move whenever it absorbs the record, and the
            # statistics rows get their increments when the counters do (tailor.experiments.attribution).
            attributed = None
            if attribution is not None and shopper.applies(pos) and attribution.wants(
                    event, None if shopper.state is None else shopper.state.experiments) and not (
                    shopper.state is not None and shopper.state.has_seen(event.event_id)):
                try:
                    attributed = _attribute(attribution, event, shopper.state, rows["shoppers"].get(event.user_id))
                except Exception as exc:
                    _reraise_if_infrastructure(exc)
                    fold.poisoned[pos] = _failure("attribution", exc)  # nothing of the fold changed yet
                    continue
            # A record already in either row had all its counter effects applied (see module doc).
            paired = None  # (item, session items before) of a record whose pairs wait for its intent weight
            counted = True  # whether they are added, or only its factor kept
            if session.applies(pos) and shopper.applies(pos):
                if shopper.state is not None and shopper.state.has_seen(event.event_id):
                    fold.duplicates += 1
                else:
                    try:
                        added = [(pos, c) for c in contributions(event, session.state, associate=pending is None)]
                        if personas is not None:
                            added += [(pos, c) for c in personas.counters(event, shopper.state)]
                        if attributed is not None:
                            added += [(pos, c) for c in attributed[1]]
                        paired = _waiting_pair(pending, event, session.state)
                    except Exception as exc:
                        _reraise_if_infrastructure(exc)
                        fold.poisoned[pos] = _failure("counters", exc)  # nothing of the fold changed yet
                        continue
                    problem = _unstorable_contributions(c for _, c in added)
                    if problem is not None:
                        fold.poisoned[pos] = problem
                        continue
                    fold.contributions += added
            if paired is None and session.applies(pos) and noted is not None and not (
                    session.state is not None and session.state.has_seen(event.event_id)):
                # Not counted now (its shopper row holds it: taken before, or a producer's copy under another
                # session), yet its session folds it: the session's vector wants its factor alone, the same either way.
                paired, counted = _waiting_pair(pending, event, session.state), False
            try:
                if session.applies(pos):
                    repeated = session.state is not None and session.state.has_seen(event.event_id)
                    recent = None if session.state is None else session.state.items
                    session.state = fold_session(session.state, event, ttl_seconds=ttl, received_at=arrivals[pos],
                                                 intent_filter=None if intent is None else intent.model.filter)
                    if kept is not None and not repeated:  # the session's cluster posteriors, once per event
                        kept.fold(session.state, event)
                    if noted is not None and not repeated:
                        noted.note(session, recent, pos, event)
                    session.absorbed(pos)
                    if paired is not None:
                        pending.add(pos, paired[0], event.event_type, paired[1], session.state, counted)
                if shopper.applies(pos):
                    repeated = shopper.state is not None and shopper.state.has_seen(event.event_id)
                    recent = None if shopper.state is None else shopper.state.recent_items
                    shopper.state = fold_shopper(shopper.state, event, shard=shard)
                    if noted is not None and not repeated:
                        noted.note(shopper, recent, pos, event)
                    if attributed is not None:
                        shopper.state.experiments = attributed[0]
                    shopper.absorbed(pos)
            except Exception as exc:
                _reraise_if_infrastructure(exc)
                fold.broken = (pos, _failure("fold", exc))  # its rows are half folded: fold again without it
                return fold
        try:
            if kept is not None:
                kept.settle()
            if personas is not None:
                personas.settle([r.state for r in sessions.values() if r.last is not None],
                                [r.state for r in shoppers.values() if r.last is not None])
            if pending is not None:
                # One model call for the batch: the pending records' weights and every touched session's intent.
                resolved = pending.resolve(row.state for row in sessions.values() if row.last is not None)
                fold.contributions += resolved
            if noted is not None:
                noted.apply(None if pending is None else lambda pos, kind: pending.factors.get(pos, 1.0))
        except Exception as exc:
            _reraise_if_infrastructure(exc)
            fold.broken = (None, _failure("batch step", exc))
            return fold
        if pending is not None:
            by_record: dict[str, list[Contribution]] = defaultdict(list)
            for pos, c in resolved:
                by_record[pos].append(c)
            for pos, parts in by_record.items():
                problem = _unstorable_contributions(parts)
                if problem is not None:
                    fold.broken = (pos, problem)  # its rows are folded already: fold again without it
                    return fold
        return fold

    def problem(self) -> tuple[str | None, str] | None:
        """Why the fold cannot be written, and the record at fault when one is known: the fault that stopped it, or
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

    def changed_rows(self) -> Iterable[tuple[str, str, FoldedRow]]:
        for table, rows in (("sessions", self.sessions), ("shoppers", self.shoppers)):
            for key, row in rows.items():
                if row.last is not None:
                    yield table, key, row


def _waiting_pair(pending: Any, event: Event, session: SessionState | None) -> tuple[str, list[str]] | None:
    """(item, the session's items before) of a record whose association pairs wait for its intent weight, or None."""
    item_id = vars(event).get("item_id")
    previous = [] if session is None else session.items
    return (item_id, previous) if pending is not None and item_id and pending.wants(event.event_type, previous) else None


def _attribute(attribution: Attribution, event: Event, shopper: ShopperState | None,
               row: Mapping[str, Any] | None) -> tuple[dict[str, list], list[Contribution]]:
    """The shopper's experiment units after `event`, and its statistics contributions, as of the rows read."""
    ltv = predicted_ltv(row) or {}
    return attribution.attribute(event, None if shopper is None else shopper.experiments,
                                 revenue_so_far=0.0 if shopper is None else shopper.revenue,
                                 predicted_ltv=float(ltv.get("expected_spend", 0.0) or 0.0))


def _culprit(accepted: Sequence[tuple[str, Event]], rows: Mapping[str, Mapping[str, Mapping[str, Any]]],
             shard: str | None, poisoned: Mapping[str, str], reason: str, options: dict[str, Any]) -> tuple[str, str]:
    """The record whose fold brings in a fault of the batch as a whole (a batch step failing, a row that cannot
    be stored): the last of the shortest run of the batch's records whose fold fails, found by bisection. Folds
    depend only on the records and the rows read, so a replay finds the same record. Raises Unsettled when even
    a fold over no record fails."""
    candidates = [pos for pos, _ in accepted if pos not in poisoned]

    def fault(n: int) -> str | None:
        """Why the fold over the first `n` candidates fails, or None."""
        cutoff = candidates[n] if n < len(candidates) else None
        problem = BatchFold.over(accepted, rows, shard, cutoff=cutoff, poisoned=poisoned, **options).problem()
        return None if problem is None else problem[1]

    if fault(0) is not None:
        raise Unsettled(reason)
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
            kind = type(value)
            if kind is str or value is None:
                continue
            if kind is float or kind is int:  # most latest values: checked as they are, without a JSON text
                problem = None if _storable_number(value) else f"{name}: {value!r} is not a number DynamoDB can store"
            else:
                problem = _unstorable({name: value})
            if problem is not None:
                return f"{c.table} {c.key!r} {problem}"
    return None


def _unstorable(fields: Mapping[str, Any]) -> str | None:
    """Where `fields` hold a number DynamoDB cannot store (not finite, too large or small, too many digits), or more
    than an item holds (MAX_ROW_JSON), or None. Every row a batch writes is checked, so the common answer is found at
    C speed: JSON refuses NaN and infinities and writes floats of 1e16 and more with an exponent ("e+"); only then
    are the numbers looked at one by one. Integers and tiny fractions are left to that: rows hold counts and sums of
    bounded amounts, and fractions rounded to a few places, far from DynamoDB's 38 digits and 1e-130."""
    try:
        text = json.dumps(fields, allow_nan=False, default=repr)
    except ValueError:
        pass
    else:
        if len(text) > MAX_ROW_JSON:
            return f"it would take {len(text):,} bytes, past the {MAX_ROW_JSON:,} a DynamoDB item has room for"
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
