"""A shop's catalog in the items' rows: what an item is and whether it can be sold, known before any shopper meets it.

Item events carry catalog fields too (tailor.ingest.derive), as the shopper's page saw them. A catalog entry sets them
from the shop's own records, so a new item has its category, brand, price and name for filters and for the item
vectors' metadata, and an item that sold out leaves feeds without waiting for a shopper's event. A field the catalog
has set is the catalog's: events no longer change what readers see of it (`catalog_view`), so a page cached before the
item sold out cannot put it back, until an entry clears it and hands it back to events. Each field keeps when it was
last updated (`updated_at`, else when its entry was received), and an entry never replaces a field updated later, so
a late request cannot bring back an old price or stock level.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tailor.events import ID_PATTERN, MAX_CLOCK_SKEW_SECONDS, MAX_PRICE, Id, plausible_date
from tailor.store.port import Conflict, StateStore, every_row

__all__ = ["CATALOG_FIELDS", "MAX_CATALOG_ENTRIES", "CatalogBusy", "CatalogEntry", "CatalogField", "CatalogLoad",
           "CatalogSnapshot", "catalog_attributes", "catalog_view", "field_sources", "load_catalog", "read_catalog",
           "served_fields"]

CATALOG_FIELDS = ("category", "brand", "price", "name", "available")
CatalogField = Literal["category", "brand", "price", "name", "available"]
# An item row's catalog fields as entries set them, when each was updated, and the token a load swaps.
CATALOG, CATALOG_AT, CATALOG_WATERMARK = "catalog", "catalog_at", "catalog_wm"
MAX_CATALOG_ENTRIES = 500  # entries in one request: a page of a catalog feed
MAX_NAME_LENGTH = 512
# A catalog write is one conditional update per item; this many at once keeps a full request's round trips short.
WRITERS = 8
# Two loads of one item at the same moment: the one that finds the row changed reads it again and merges once more.
WRITE_TRIES = 5
_CLEARED = object()  # a field an entry clears, among those it sets


class CatalogEntry(BaseModel):
    """One item's catalog fields, and those it hands back to item events (`clear`); those left out stay as they were.
    Numbers and flags must be JSON numbers and booleans: a feed that sends "12.5" or "off" is refused, not guessed
    at."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    item_id: Id
    category: Id | None = None
    brand: Id | None = None
    price: Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, strict=True)] | None = Field(
        None, description="per unit, in the shop's currency")
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=ID_PATTERN)] | None = Field(
        None, description="the item's title: its words join its metadata for the item vectors")
    available: StrictBool | None = Field(None, description="false: left out of feeds, search results and related "
                                                           "items")
    clear: tuple[CatalogField, ...] = Field(
        (), max_length=len(CATALOG_FIELDS), description="fields the catalog no longer sets, handed back to what item "
                                                        "events say (events carry no name: a cleared name is gone) "
                                                        "until an entry updated later sets them")
    updated_at: AwareDatetime | None = Field(
        None, description="when the shop's records last changed these fields (default: when the entry is received); "
                          "a field is never set back to a value updated earlier. Send it, and a retried request is "
                          "harmless")

    @field_validator("clear", mode="before")
    @classmethod
    def _each_once(cls, value: Any) -> Any:
        if value is None:
            return ()
        return tuple(dict.fromkeys(value)) if isinstance(value, (list, tuple)) else value

    @field_validator("updated_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        ahead = plausible_date(value).timestamp() - time.time()
        if ahead > MAX_CLOCK_SKEW_SECONDS:
            raise PydanticCustomError("timestamp_in_future", "{ahead} s from now; at most {skew} s of clock skew is "
                                      "allowed", {"ahead": round(ahead), "skew": MAX_CLOCK_SKEW_SECONDS})
        return value

    @model_validator(mode="after")
    def _says_something(self) -> CatalogEntry:
        if not self.fields() and not self.clear:
            raise PydanticCustomError("empty_entry", "sets none of {fields}, and clears none",
                                      {"fields": ", ".join(CATALOG_FIELDS)})
        if both := [name for name in self.clear if name in self.fields()]:
            raise PydanticCustomError("set_and_cleared", "{fields} both set and cleared", {"fields": ", ".join(both)})
        return self

    def fields(self) -> dict[str, Any]:
        """The catalog fields this entry sets."""
        return {name: getattr(self, name) for name in CATALOG_FIELDS if getattr(self, name) is not None}


class CatalogBusy(Exception):
    """An item's catalog fields kept changing under a load (other loads of it at once): nothing of its entries was
    written, and the request may be sent again."""


@dataclass
class CatalogLoad:
    """What a load did: how many entries the rows now hold as they say (at least one field set or cleared), and each
    entry with fields left as they were because the row holds them updated later (index in the request, item, those
    fields)."""

    written: int = 0
    stale: list[tuple[int, str, list[str]]] = field(default_factory=list)


def load_catalog(store: StateStore, entries: Sequence[CatalogEntry], *, received_at: float) -> CatalogLoad:
    """Set or clear each entry's fields in its item's row (made if new), each field unless the row holds it updated
    later. Entries of one item apply in the order of their update, then of the request."""
    by_item: dict[str, list[tuple[str, int, CatalogEntry]]] = {}
    for index, entry in enumerate(entries):
        moment = entry.updated_at.timestamp() if entry.updated_at is not None else received_at
        by_item.setdefault(entry.item_id, []).append((_stamp(moment), index, entry))
    rows = store.read("items", by_item)

    def write(item: str) -> list[tuple[int, list[str], bool]]:
        row = rows.get(item) or {}
        for _ in range(WRITE_TRIES):
            values, stamps = dict(row.get(CATALOG) or {}), dict(row.get(CATALOG_AT) or {})
            outcomes = []
            for at, index, entry in sorted(by_item[item], key=lambda e: e[:2]):
                changes = {**entry.fields(), **dict.fromkeys(entry.clear, _CLEARED)}
                stale = [name for name in changes if stamps.get(name, "") > at]
                for name, value in changes.items():
                    if name in stale:
                        continue
                    if value is _CLEARED:  # its stamp stays: an entry updated earlier cannot set it again
                        values.pop(name, None)
                    else:
                        values[name] = value
                    stamps[name] = at
                outcomes.append((index, stale, len(stale) < len(changes)))
            if not any(written for *_, written in outcomes):
                return outcomes
            if not row and not values:  # clears of an item Tailor holds nothing about: no row to make
                return [(index, stale, False) for index, stale, _ in outcomes]
            if values == (row.get(CATALOG) or {}) and stamps == (row.get(CATALOG_AT) or {}):
                return outcomes  # the row says so already (a request sent again): no write
            try:
                store.write_state("items", item, {CATALOG: values, CATALOG_AT: stamps}, watermark=CATALOG_WATERMARK,
                                  expected=row.get(CATALOG_WATERMARK), new=uuid.uuid4().hex)
                return outcomes
            except Conflict:
                row = store.read("items", [item]).get(item) or {}
        raise CatalogBusy(f"item {item!r}: its catalog fields changed under {WRITE_TRIES} writes in a row")

    loaded = CatalogLoad()
    with ThreadPoolExecutor(max_workers=min(WRITERS, max(len(by_item), 1))) as pool:
        for item, outcomes in zip(by_item, pool.map(write, by_item)):
            for index, stale, written in outcomes:
                loaded.written += written
                if stale:
                    loaded.stale.append((index, item, stale))
    loaded.stale.sort()
    return loaded


def catalog_view(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """An items row as readers take it: the catalog's fields over those item events set."""
    catalog = row.get(CATALOG)
    return {**row, **catalog} if catalog else row


def served_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog fields of an items row as readers see them (catalog_view), those it holds none of left out."""
    seen = catalog_view(row)
    return {name: seen[name] for name in CATALOG_FIELDS if seen.get(name) is not None}


def field_sources(row: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each served field of an items row with where it comes from: the shop's catalog (and when its entry updated it)
    or shoppers' events (the latest that carried it)."""
    catalog, stamps = row.get(CATALOG) or {}, row.get(CATALOG_AT) or {}
    return {name: ({"value": value, "source": "catalog", "updated_at": stamps.get(name)} if name in catalog
                   else {"value": value, "source": "events"})
            for name, value in served_fields(row).items()}


@dataclass(frozen=True)
class CatalogSnapshot:
    """The items table as the training jobs read it: every item's served_fields (`attributes`, items without any left
    out), and the items catalog entries have set fields of, each with its latest entry's update (`listed`)."""

    attributes: dict[str, dict[str, Any]]
    listed: dict[str, str]


def read_catalog(store: StateStore) -> CatalogSnapshot:
    """A CatalogSnapshot of the items table, in one scan."""
    attributes: dict[str, dict[str, Any]] = {}
    listed: dict[str, str] = {}
    for row in every_row(store, "items", ["item_id", *CATALOG_FIELDS, CATALOG, CATALOG_AT]):
        if found := served_fields(row):
            attributes[row["item_id"]] = found
        if catalog := row.get(CATALOG):
            stamps = row.get(CATALOG_AT) or {}
            listed[row["item_id"]] = max((stamps[name] for name in catalog if name in stamps), default="")
    return CatalogSnapshot(attributes, listed)


def catalog_attributes(store: StateStore) -> dict[str, dict[str, Any]]:
    """Every item's served_fields (read_catalog's `attributes`): {item_id: {field: value}}."""
    return read_catalog(store).attributes


# -- helpers --------------------------------------------------------------------------------------------------------


def _stamp(moment: float) -> str:
    """An ISO time to the microsecond, fixed width, so that stamps order as text as they do in time."""
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
