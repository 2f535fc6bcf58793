"""A shop's catalog in the items' rows: what an item is and whether it can be sold, known before any shopper meets it.

Item events carry catalog fields too (tailor.ingest.derive); a catalog entry sets them from the shop's own records,
so a new item has its category, brand, price and name for filters and for the item vectors' metadata, and an item
that sold out leaves feeds without waiting for a shopper's event to say so. Entries are stamped (`catalog_at`): an
entry never replaces one updated later, so a retried or late request cannot bring back an old price or stock level.
Counters, and the fields events set, live beside them in the same row; the later write of a field wins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tailor.events import EARLIEST_TIMESTAMP, ID_PATTERN, MAX_CLOCK_SKEW_SECONDS, Id, Money
from tailor.store.port import StateStore, every_row

__all__ = ["CATALOG_FIELDS", "CATALOG_STAMP", "MAX_CATALOG_ENTRIES", "CatalogEntry", "CatalogLoad",
           "catalog_attributes", "load_catalog"]

CATALOG_FIELDS = ("category", "brand", "price", "name", "available")
CATALOG_STAMP = "catalog_at"
MAX_CATALOG_ENTRIES = 500  # entries in one request: a page of a catalog feed, written in well under a second
MAX_NAME_LENGTH = 512
# A catalog write is one conditional update per item; this many at once keeps a full request's round trips short.
WRITERS = 8


class CatalogEntry(BaseModel):
    """One item's catalog fields; those left out stay as they were."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    item_id: Id
    category: Id | None = None
    brand: Id | None = None
    price: Money | None = Field(None, description="per unit, in the shop's currency")
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=ID_PATTERN)] | None = Field(
        None, description="the item's title: its words join its metadata for the item vectors")
    available: bool | None = Field(None, description="false: left out of feeds, search results and related items")
    updated_at: AwareDatetime | None = Field(
        None, description="when the shop's records last changed the item (default: when the entry is received); an "
                          "entry never replaces one updated later")

    @field_validator("updated_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        if value < EARLIEST_TIMESTAMP:
            raise PydanticCustomError("timestamp_too_early", "before {earliest}, the earliest date Tailor takes",
                                      {"earliest": EARLIEST_TIMESTAMP.date().isoformat()})
        ahead = value.timestamp() - time.time()
        if ahead > MAX_CLOCK_SKEW_SECONDS:
            raise PydanticCustomError("timestamp_in_future", "{ahead} s from now; at most {skew} s of clock skew is "
                                      "allowed", {"ahead": round(ahead), "skew": MAX_CLOCK_SKEW_SECONDS})
        return value

    @model_validator(mode="after")
    def _says_something(self) -> CatalogEntry:
        if not self.fields():
            raise PydanticCustomError("empty_entry", "sets none of {fields}", {"fields": ", ".join(CATALOG_FIELDS)})
        return self

    def fields(self) -> dict[str, Any]:
        """The catalog fields this entry sets."""
        return {name: getattr(self, name) for name in CATALOG_FIELDS if getattr(self, name) is not None}


@dataclass
class CatalogLoad:
    """What a load wrote: items whose row now holds their entry, and those a later update had already reached."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def load_catalog(store: StateStore, entries: Sequence[CatalogEntry], *, received_at: float) -> CatalogLoad:
    """Write each entry's fields into its item's row (made if new), unless the row holds an entry updated later.
    Entries of one item are written in the order of their update, then of the request."""
    by_item: dict[str, list[tuple[str, int, CatalogEntry]]] = {}
    for index, entry in enumerate(entries):
        moment = entry.updated_at.timestamp() if entry.updated_at is not None else received_at
        by_item.setdefault(entry.item_id, []).append((_stamp(moment), index, entry))

    def write(item_entries: list[tuple[str, int, CatalogEntry]]) -> bool:
        written = False
        for at, _, entry in sorted(item_entries, key=lambda e: e[:2]):
            written = store.annotate("items", entry.item_id, entry.fields(), requires=None, stamp=CATALOG_STAMP,
                                     at=at) or written
        return written

    loaded = CatalogLoad()
    with ThreadPoolExecutor(max_workers=min(WRITERS, max(len(by_item), 1))) as pool:
        for item, written in zip(by_item, pool.map(write, by_item.values())):
            (loaded.written if written else loaded.stale).append(item)
    return loaded


def catalog_attributes(store: StateStore) -> dict[str, dict[str, Any]]:
    """Every item's catalog fields as its row holds them (from entries and from events), for the item vectors'
    metadata: {item_id: {field: value}}, items without any left out."""
    out: dict[str, dict[str, Any]] = {}
    for row in every_row(store, "items", ["item_id", *CATALOG_FIELDS]):
        found = {name: row[name] for name in CATALOG_FIELDS if row.get(name) is not None}
        if found:
            out[row["item_id"]] = found
    return out


# -- helpers --------------------------------------------------------------------------------------------------------


def _stamp(moment: float) -> str:
    """An ISO time to the microsecond, fixed width, so that stamps order as text as they do in time."""
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
