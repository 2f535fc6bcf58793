"""Rows of the shared tables as the ranking pipeline uses them: parsed once, kept in a short-lived cache.

Ingest writes items, associations, queries and trends as counters (tailor.ingest.derive); these
types hold what ranking needs from each row in a form that is cheap to gather per request.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from tailor.associations import parse_associations
from tailor.catalog import catalog_view
from tailor.popularity import decayed_popularity

__all__ = ["COUNT_FIELDS", "ITEM_FIELDS", "ItemRecord", "Partners", "Popularity", "QueryCounts", "RowCache",
           "item_record", "partners", "popularity", "query_counts", "QUERY_OUTCOME_WEIGHTS"]

# The numeric columns of an item row, in this order; missing values are NaN.
ITEM_FIELDS: tuple[str, ...] = ("views", "clicks", "carts", "purchases", "wishlists", "impressions", "revenue",
                                "price", "available", "last_event_at")
COUNT_FIELDS = ITEM_FIELDS[:7]  # the counters Ingest adds to an items row
# How much a click, cart add or purchase after a search says about the item answering the query.
QUERY_OUTCOME_WEIGHTS: dict[str, float] = {"c:": 1.0, "a:": 2.0, "p:": 4.0}


@dataclass(frozen=True, slots=True)
class ItemRecord:
    item_id: str
    values: np.ndarray  # float64, ITEM_FIELDS order
    category: str | None
    brand: str | None
    found: bool  # False: the items table has no row for it


@dataclass(frozen=True, slots=True)
class Partners:
    """An item's co-occurrence counts with other items (associations row "n:<item>") and what followed it ("f:")."""

    counts: dict[str, float]
    total: float
    ranked: tuple[str, ...]  # most co-occurring first
    commits: dict[str, float] = field(default_factory=dict)  # the part of counts cart adds and purchases made ("c:")
    follows: dict[str, float] = field(default_factory=dict)  # engaged after the item ("f:"), itself included
    follows_total: float = 0.0


@dataclass(frozen=True, slots=True)
class QueryCounts:
    """What shoppers did after a search: item -> weighted clicks, cart adds and purchases."""

    weights: dict[str, float]
    total: float
    ranked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Popularity:
    """Item popularity with time decay over the trend rows of the days up to `day`."""

    day: date
    scores: dict[str, float]
    ranked: tuple[str, ...]


def item_record(item_id: str, row: Mapping[str, Any] | None) -> ItemRecord:
    """The ranking view of an items row (None: an item Tailor holds nothing about)."""
    found = row is not None
    row = catalog_view(row) if row is not None else {}
    values = np.empty(len(ITEM_FIELDS), dtype=np.float64)
    for i, name in enumerate(COUNT_FIELDS):
        values[i] = float(row.get(name, 0) or 0)
    price = row.get("price")
    values[7] = float(price) if isinstance(price, (int, float)) and math.isfinite(price) else math.nan
    available = row.get("available")
    values[8] = math.nan if available is None else float(bool(available))
    last = row.get("last_event_at")
    values[9] = float(last) if isinstance(last, (int, float)) else math.nan
    category, brand = row.get("category"), row.get("brand")
    return ItemRecord(item_id, values, category if isinstance(category, str) else None,
                      brand if isinstance(brand, str) else None, found)


def partners(item_id: str, row: Mapping[str, Any] | None) -> Partners:
    """The associations row as tailor.associations reads it, with the partners ranked."""
    found = parse_associations(item_id, row)
    counts = dict(found.near)
    commits = {item: weight for item, weight in found.commits.items() if item in counts}
    return Partners(counts, float(found.near_total), tuple(sorted(counts, key=lambda k: (-counts[k], k))),
                    commits, dict(found.follows), float(found.follows_total))


def query_counts(row: Mapping[str, Any] | None) -> QueryCounts:
    weights: dict[str, float] = {}
    for name, value in (row or {}).items():
        weight = QUERY_OUTCOME_WEIGHTS.get(name[:2])
        if weight and value:
            weights[name[2:]] = weights.get(name[2:], 0.0) + weight * float(value)
    return QueryCounts(weights, float(sum(weights.values())), tuple(sorted(weights, key=lambda k: (-weights[k], k))))


def popularity(rows: Mapping[str, Mapping[str, Any]], day: date, half_life_days: float) -> Popularity:
    scores = decayed_popularity(rows, day, half_life_days=half_life_days)
    return Popularity(day, scores, tuple(sorted(scores, key=lambda k: (-scores[k], k))))


class RowCache:
    """Parsed rows for a short while (per-table TTL, in the caller's clock), at most `max_rows` of them and at most
    `max_weight` of their weights (a row's attribute count: an item's associations row can hold thousands, which
    a count of rows alone would let fill the container's memory), the longest-cached leaving first.

    A key read and found absent is cached too (as None), so an unknown item is not read again on
    every request. Keys a request needed but had no read budget left for are remembered
    (`want`) and read with the spare room of later requests' reads (`take_wanted`).
    """

    def __init__(self, ttl_seconds: Mapping[str, float] | float = 120.0, max_rows: int = 50_000,
                 max_wanted: int = 5_000, max_weight: int = 1_500_000):
        self._ttl = dict(ttl_seconds) if isinstance(ttl_seconds, Mapping) else None
        self._default_ttl = 0.0 if self._ttl is not None else float(ttl_seconds)
        self.max_rows = max_rows
        self.max_wanted = max_wanted
        self.max_weight = max_weight
        self.weight = 0
        self._rows: OrderedDict[tuple[str, str], tuple[float, Any, int]] = OrderedDict()  # (cached at, value, weight)
        self._wanted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def ttl(self, table: str) -> float:
        return self._default_ttl if self._ttl is None else self._ttl.get(table, 0.0)

    def get(self, table: str, key: str, now: float) -> tuple[bool, Any]:
        """(True, value) if the row is cached and fresh at `now`, else (False, None)."""
        with self._lock:
            entry = self._rows.get((table, key))
            if entry is None or now - entry[0] >= self.ttl(table) or now < entry[0]:
                self.misses += 1
                return False, None
            self.hits += 1
            return True, entry[1]

    def get_many(self, table: str, keys: list[str], now: float) -> tuple[dict[str, Any], list[str]]:
        """The fresh cached values among `keys`, and the keys that are not cached or not fresh."""
        ttl = self.ttl(table)
        found: dict[str, Any] = {}
        missing: list[str] = []
        with self._lock:
            rows = self._rows
            for key in keys:
                entry = rows.get((table, key))
                if entry is None or now - entry[0] >= ttl or now < entry[0]:
                    missing.append(key)
                else:
                    found[key] = entry[1]
            self.hits += len(found)
            self.misses += len(missing)
        return found, missing

    def put(self, table: str, key: str, value: Any, now: float, weight: int = 1) -> None:
        """Cache `value`, whose `weight` is about how much memory it holds (its row's attribute count)."""
        if self.ttl(table) <= 0:
            return
        weight = max(1, int(weight))
        with self._lock:
            replaced = self._rows.pop((table, key), None)
            self._rows[(table, key)] = (now, value, weight)
            self.weight += weight - (replaced[2] if replaced is not None else 0)
            self._wanted.pop((table, key), None)
            while len(self._rows) > 1 and (len(self._rows) > self.max_rows or self.weight > self.max_weight):
                self.weight -= self._rows.popitem(last=False)[1][2]

    def want(self, table: str, key: str) -> None:
        with self._lock:
            self._wanted[(table, key)] = None
            while len(self._wanted) > self.max_wanted:
                self._wanted.popitem(last=False)

    def take_wanted(self, n: int) -> list[tuple[str, str]]:
        """Up to `n` remembered keys, most recently wanted first; they leave the list."""
        taken: list[tuple[str, str]] = []
        with self._lock:
            while self._wanted and len(taken) < n:
                taken.append(self._wanted.popitem(last=True)[0])
        return taken

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._wanted.clear()
            self.weight = 0

    def __len__(self) -> int:
        return len(self._rows)
