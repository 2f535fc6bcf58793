"""Counter slots: what Ingest adds to shared counters, written once per batch into a row of its shard's buffer, for
the merge (tailor.ingest.merge) to add to the counter rows a minute later, instead of one write per touched row
per batch.

A shard's slots are numbered 1, 2, 3, ... Each holds the counter contributions of a run of the shard's records,
right after those of the slot before it; the shard's cursor row (in the checkpoints table) names the last slot
whose write Ingest has seen land and the last record it holds (`through`). Per batch, Ingest:

* leaves out the contributions of records up to the cursor's `through`: they are in a slot already;
* writes the rest into the next slot, only if that slot does not exist yet. If it exists, an earlier delivery
  wrote it and did not live to move the cursor: the slot holds every contribution of the records up to its own
  `through` (it was made from the same cursor, and a record adds the same on every delivery), so Ingest takes it
  as written and goes on with the records past it into the slot after;
* moves the cursor to the last slot written, conditionally on the cursor it read, beside the state rows (a round
  trip fewer than before them). Should that write fail, nothing is lost: the slots are written, the next batch
  finds them as above, and the merge reads them past the cursor.

A slot is written once and never changed, and records up to a written slot's `through` never enter another slot
(every delivery after it either reads a cursor at or past it, or finds it where it would write). The merge reads
the slots up to the cursor and those found past it, so each record's contributions are in exactly one slot the
merge will read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tailor.contribution import Contribution

__all__ = ["BUFFERED_TABLES", "CURSOR_WATERMARK", "MAX_SLOT_CHARACTERS", "SLOT_TTL_SECONDS", "SLOT_WATERMARK",
           "Cursor", "Slot", "cursor_id",
           "slot_chunks", "slot_fields", "slot_id"]

# The shared counter tables whose contributions go through the buffer (shoppers' referral counters do not:
# shopper rows are state rows that Ingest reads back every batch). An experiment's statistics rows (outcomes) are
# the hottest of all, every attributed event of a variant's day adding to a few rows: merged, each gets one write a run.
BUFFERED_TABLES = frozenset({"items", "associations", "queries", "trends", "outcomes"})
# A slot's counters as JSON stay well inside DynamoDB's 400 KB item limit; a batch with more writes several slots.
MAX_SLOT_CHARACTERS = 300_000
# Slots are dead once merged; they expire after this, long past any merge (a minute) and the stream's retention.
SLOT_TTL_SECONDS = 14 * 86400
CURSOR_WATERMARK = "bw"  # on the cursor row: "<slot>:<through>", which orders like the slot number
SLOT_WATERMARK = "through"  # on a slot row: the last record whose contributions it holds


def cursor_id(shard: str) -> str:
    return f"buffer:{shard}"


def slot_id(shard: str, slot: int) -> str:
    return f"{shard}:{slot:012d}"


@dataclass(frozen=True)
class Cursor:
    """A shard's last slot known written (0: none) and the last record it holds (None: none)."""

    slot: int = 0
    through: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> Cursor:
        if not row or CURSOR_WATERMARK not in row:
            return cls()
        return cls(int(row["slot"]), row["through"])

    @property
    def mark(self) -> str | None:
        return None if self.slot == 0 else f"{self.slot:012d}:{self.through}"

    def fields(self) -> dict[str, Any]:
        return {"slot": self.slot, "through": self.through}

    def pending(self, parts: Iterable[tuple[str, Contribution]]) -> list[tuple[str, Contribution]]:
        """The contributions of records past the cursor."""
        return [(p, c) for p, c in parts if self.through is None or p > self.through]


@dataclass(frozen=True)
class Slot:
    """One slot as the merge reads it: (table, key) -> (increments, latest), and when its last record arrived."""

    shard: str
    number: int
    counters: dict[tuple[str, str], tuple[dict[str, float], dict[str, Any]]]
    arrived: float

    @classmethod
    def from_row(cls, shard: str, number: int, row: Mapping[str, Any]) -> Slot:
        counters = {(table, key): (dict(parts[0]), dict(parts[1]))
                    for table, rows in json.loads(row["counters"]).items() for key, parts in rows.items()}
        return cls(shard, number, counters, float(row.get("arrived", 0.0)))


def slot_fields(parts: Sequence[tuple[str, Contribution]], arrivals: Mapping[str, float], now: float) -> dict[str, Any]:
    """A slot row's fields: the contributions summed per row (latest values: the last record's), as JSON."""
    counters: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for _, c in parts:
        increments, latest = counters.setdefault(c.table, {}).setdefault(c.key, [{}, {}])
        for name, amount in c.increments.items():
            increments[name] = increments.get(name, 0) + amount
        latest.update(c.latest)
    arrived = max((arrivals.get(p, 0.0) for p, _ in parts), default=0.0)
    # From the records' arrival, so that a slot written again is written the same; `now` for records without one.
    return {"counters": json.dumps(counters, separators=(",", ":"), ensure_ascii=False), "arrived": arrived,
            "expires_at": int(arrived or now) + SLOT_TTL_SECONDS}


def slot_chunks(parts: Sequence[tuple[str, Contribution]], arrivals: Mapping[str, float], now: float,
                limit: int = MAX_SLOT_CHARACTERS) -> list[tuple[list[tuple[str, Contribution]], dict[str, Any]]]:
    """Consecutive runs of whole records, each with its slot's fields, every run's counters within `limit`
    characters (a single record over it gets a slot of its own)."""
    records: list[list[tuple[str, Contribution]]] = []
    for p, c in parts:
        if records and records[-1][0][0] == p:
            records[-1].append((p, c))
        else:
            records.append([(p, c)])
    chunks: list[tuple[list[tuple[str, Contribution]], dict[str, Any]]] = []
    pending = records
    while pending:
        take = len(pending)
        while True:
            run = [x for record in pending[:take] for x in record]
            fields = slot_fields(run, arrivals, now)
            if take == 1 or len(fields["counters"]) <= limit:
                break
            take = max(1, take // 2)
        chunks.append((run, fields))
        pending = pending[take:]
    return chunks
