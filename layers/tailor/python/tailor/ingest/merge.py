"""The merge: the counter slots Ingest buffered (tailor.ingest.buffer) added to the items, associations, queries and
trends rows, each exactly once. A scheduled function runs it every minute, so those rows are a minute or two
behind the stream; each row gets one write per run however many batches touched it.

A run works in generations, written in the merge row of the checkpoints table:

* Plan. For each shard, the slots after those of the last generation, up to the last one written (the slot its
  cursor names, or past it the slots found there: slots never change once written), become generation g, written
  into the merge row conditionally on the generation before it: of two runs planning at once, one does.
* Carry out. Each row gets its sum over the plan's slots in one write (or a few, for a row with many counters),
  conditional on its merge watermark (`mw`) being below g's, which the write moves to g's: a row that has g already
  is left alone. A write that fails fails the run.
* Done. Once every row has g, g is marked done. A run that finds the last generation planned but not done carries
  it out again before planning: the slots are the same, so the sums are, and the rows that have them are left
  alone. A run still carrying out g while a faster one has moved on finds every row the faster one gave g + 1
  holding g already, because g was done, every row having it, before g + 1 was planned.

Latest values (an item's category, price, last event) are the last slot's to hold them, slots taken in the order
their last records arrived; a row's counters are sums, the same in whatever order and generations they come.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tailor.ingest.buffer import CURSOR_WATERMARK, Cursor, Slot, cursor_id, slot_id
from tailor.store.port import Conflict, StateStore, every_row

__all__ = ["MERGE_ID", "ROW_WATERMARK", "CounterMerge", "MergeFailed", "MergeReport", "merge_slots"]

logger = logging.getLogger(__name__)

MERGE_ID = "merge"  # the merge row, in the checkpoints table
ROW_WATERMARK = "mw"  # on a counter row: the last generation (and part) added to it
PLAN_WATERMARK = "mg"  # on the merge row: the last generation planned
DONE_WATERMARK = "md"  # on the merge row: the last generation every row has
MAX_SLOTS_PER_GENERATION = 2000  # after a pause, the backlog is merged a bounded generation at a time
ATTRIBUTES_PER_WRITE = 100  # as Ingest's own counter writes (tailor.ingest.service)
_CURSOR_PREFIX = cursor_id("")


class MergeFailed(Exception):
    """Rows of a generation were not written: the next run carries it out again."""


@dataclass
class MergeReport:
    generations: int = 0
    slots: int = 0
    writes: Counter = field(default_factory=Counter)  # table -> counter-row writes made
    already: int = 0  # row writes left out, their row holding the generation already
    missing: int = 0  # slots the cursor reached but not found: expired unmerged, their counts lost

    def as_dict(self) -> dict[str, Any]:
        return {"generations": self.generations, "slots": self.slots, "writes": dict(self.writes),
                "already": self.already, "missing": self.missing}


@dataclass(frozen=True)
class _Plan:
    number: int
    ranges: dict[str, tuple[int, int]]  # shard -> (last slot before, last slot of the generation)
    done: str | None  # the done watermark the merge row had when planned


class CounterMerge:
    def __init__(self, store: StateStore, *, max_slots: int = MAX_SLOTS_PER_GENERATION, max_workers: int = 16):
        self.store = store
        self.max_slots = max_slots
        self._pool = ThreadPoolExecutor(max_workers=max_workers) if max_workers > 1 else None

    def run(self, *, remaining_seconds: Callable[[], float] | None = None, margin_seconds: float = 30.0) -> MergeReport:
        """Merge generation after generation until no slot waits (or fewer than `margin_seconds` remain)."""
        report = MergeReport()
        while (plan := self._plan()) is not None:
            self._carry_out(plan, report)
            if remaining_seconds is not None and remaining_seconds() < margin_seconds:
                break
        return report

    def _plan(self) -> _Plan | None:
        """The last generation if it is not done, else the next one, written; None when no slot waits."""
        row = self.store.read("checkpoints", [MERGE_ID]).get(MERGE_ID) or {}
        planned, done = row.get(PLAN_WATERMARK), row.get(DONE_WATERMARK)
        if planned is not None and planned != done:
            return _Plan(_number(planned), {s: (int(a), int(b)) for s, (a, b) in row["plan"].items()}, done)
        merged: dict[str, int] = {s: int(n) for s, n in row.get("merged", {}).items()}
        cursors = {r["id"][len(_CURSOR_PREFIX):]: Cursor.from_row(r)
                   for r in every_row(self.store, "checkpoints", ["id", "slot", "through", CURSOR_WATERMARK])
                   if r["id"].startswith(_CURSOR_PREFIX)}
        written = self._written({shard: max(cursor.slot, merged.get(shard, 0)) for shard, cursor in cursors.items()})
        ranges: dict[str, tuple[int, int]] = {}
        budget = self.max_slots
        for shard in sorted(cursors):
            start = merged.get(shard, 0)
            end = min(written[shard], start + budget)
            if end > start:
                ranges[shard] = (start, end)
                budget -= end - start
            if budget <= 0:
                break
        if not ranges:
            return None
        number = (_number(planned) if planned is not None else 0) + 1
        fields = {"plan": {s: list(r) for s, r in ranges.items()},
                  "merged": {**merged, **{s: end for s, (_, end) in ranges.items()}}}
        try:
            self.store.write_state("checkpoints", MERGE_ID, fields, watermark=PLAN_WATERMARK, expected=planned,
                                   new=_generation(number))
        except Conflict:
            logger.info("another merge planned the generation", extra={"generation": number})
            return None
        return _Plan(number, ranges, done)

    def _written(self, known: dict[str, int]) -> dict[str, int]:
        """Each shard's last slot known written: from `known` (its cursor's, or the last merged), on through the
        slots found after it. Those are slots whose cursor write failed or is on its way (tailor.ingest.service moves
        the cursor beside the state rows): written once, they never change, so they are merged as any other."""
        known = dict(known)
        probe = set(known)
        while probe:
            found = self.store.read("buffers", [slot_id(shard, known[shard] + 1) for shard in sorted(probe)])
            probe = {shard for shard in probe if slot_id(shard, known[shard] + 1) in found}
            for shard in probe:
                known[shard] += 1
        return known

    def _carry_out(self, plan: _Plan, report: MergeReport) -> None:
        wanted = [(shard, n) for shard, (start, end) in sorted(plan.ranges.items()) for n in range(start + 1, end + 1)]
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            rows.update(self.store.read("buffers", [slot_id(s, n) for s, n in wanted[start:start + 100]]))
        slots = []
        for shard, n in wanted:
            row = rows.get(slot_id(shard, n))
            if row is None:
                logger.error("buffered counters missing", extra={"shard": shard, "slot": n})
                report.missing += 1
                continue
            slots.append(Slot.from_row(shard, n, row))
        generation = _generation(plan.number)
        tasks = [partial(self._write, table, key, increments, latest, generation, report)
                 for (table, key), (increments, latest) in merge_slots(slots).items()]
        if self._pool is None or len(tasks) < 2:
            results = [task() for task in tasks]
        else:
            results = list(self._pool.map(lambda task: task(), tasks))
        if not all(results):
            raise MergeFailed(f"generation {plan.number}: {results.count(False)} of {len(results)} rows not written")
        try:
            self.store.write_state("checkpoints", MERGE_ID, {}, watermark=DONE_WATERMARK, expected=plan.done,
                                   new=generation)
        except Conflict:
            pass  # another run carried it out too, and marked it
        report.generations += 1
        report.slots += len(slots)

    def _write(self, table: str, key: str, increments: dict[str, float], latest: dict[str, Any], generation: str,
               report: MergeReport) -> bool:
        """Add the generation's sums to the row, part by part (each part under its own watermark, in order, so the
        row holds a prefix of them); False if a write failed."""
        for part, (adds, sets) in enumerate(_parts(increments, latest)):
            mark = f"{generation}.{part:04d}"
            try:
                self.store.add(table, key, adds, sets, watermark=ROW_WATERMARK, first=mark, last=mark)
                report.writes[table] += 1
            except Conflict:
                report.already += 1
            except Exception:
                logger.exception("merge write failed", extra={"table": table, "key": key})
                return False
        return True


def merge_slots(slots: Iterable[Slot]) -> dict[tuple[str, str], tuple[dict[str, float], dict[str, Any]]]:
    """(table, key) -> the slots' increments summed and their latest values, the last-arrived slot's winning."""
    totals: dict[tuple[str, str], tuple[dict[str, float], dict[str, Any]]] = {}
    for slot in sorted(slots, key=lambda s: (s.arrived, s.shard, s.number)):
        for row, (increments, latest) in slot.counters.items():
            summed, last = totals.setdefault(row, ({}, {}))
            for name, amount in increments.items():
                summed[name] = summed.get(name, 0) + amount
            last.update(latest)
    return totals


def _parts(increments: Mapping[str, float], latest: Mapping[str, Any]) -> list[tuple[dict[str, float], dict[str, Any]]]:
    """A row's sums in writes of at most ATTRIBUTES_PER_WRITE attributes, the same parts on every run."""
    names = sorted(increments)
    room = max(1, ATTRIBUTES_PER_WRITE - len(latest))
    parts = [({n: increments[n] for n in names[:room]}, dict(latest))]
    for start in range(room, len(names), ATTRIBUTES_PER_WRITE):
        parts.append(({n: increments[n] for n in names[start:start + ATTRIBUTES_PER_WRITE]}, {}))
    return parts


def _generation(number: int) -> str:
    return f"{number:012d}"


def _number(generation: str) -> int:
    return int(generation.split(".")[0])
