"""Catalog entries in the items' rows: only the fields an entry sets, beside the counters Ingest keeps, never back to
an older update; an item marked unavailable leaves feeds; the rows' catalog fields read back for the item vectors."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tailor.catalog import CATALOG_STAMP, CatalogEntry, catalog_attributes, load_catalog
from tailor.ingest.service import Ingestor
from tailor.models import default_model
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate

from tests.helpers.events import to_records

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()


def entry(**fields) -> CatalogEntry:
    return CatalogEntry.model_validate(fields)


def test_an_entry_sets_only_its_fields_and_keeps_what_the_stream_counted_beside_them():
    store = MemoryStateStore()
    store.add("items", "i-1", {"views": 3}, {"category": "shoes", "price": 50.0}, watermark="w:a", first="1", last="1")
    loaded = load_catalog(store, [entry(item_id="i-1", available=False), entry(item_id="i-2", name="Red lamp")],
                          received_at=NOW)
    assert (sorted(loaded.written), loaded.stale) == (["i-1", "i-2"], [])
    rows = store.read("items", ["i-1", "i-2"])
    assert rows["i-1"] == {"item_id": "i-1", "views": 3, "category": "shoes", "price": 50.0, "available": False,
                           "w:a": "1", CATALOG_STAMP: "2026-11-02T12:00:00.000000Z"}
    assert rows["i-2"] == {"item_id": "i-2", "name": "Red lamp", CATALOG_STAMP: "2026-11-02T12:00:00.000000Z"}
    assert catalog_attributes(store) == {"i-1": {"category": "shoes", "price": 50.0, "available": False},
                                         "i-2": {"name": "Red lamp"}}


def test_entries_apply_in_the_order_of_their_update_and_one_updated_before_the_row_changes_nothing():
    store = MemoryStateStore()
    later, earlier = "2026-11-02T11:00:00Z", "2026-11-02T10:00:00Z"
    loaded = load_catalog(store, [entry(item_id="i-1", price=12.0, updated_at=later),
                                  entry(item_id="i-1", price=10.0, available=True, updated_at=earlier),
                                  entry(item_id="i-1", available=False)], received_at=NOW)
    assert loaded.written == ["i-1"]
    # The earlier update first, then the later, then the one stamped on receipt.
    assert store.read("items", ["i-1"])["i-1"] == {"item_id": "i-1", "price": 12.0, "available": False,
                                                   CATALOG_STAMP: "2026-11-02T12:00:00.000000Z"}
    again = load_catalog(store, [entry(item_id="i-1", price=1.0, updated_at=later)], received_at=NOW)
    assert (again.written, again.stale) == ([], ["i-1"])
    assert store.read("items", ["i-1"])["i-1"]["price"] == 12.0


@pytest.mark.parametrize(("fields", "where"), [
    ({"item_id": "i-1"}, ()),
    ({"item_id": "i-1", "price": -0.01}, ("price",)),
    ({"item_id": "i-1", "price": 2_000_000}, ("price",)),
    ({"item_id": "i-1", "name": "a\nb"}, ("name",)),
    ({"item_id": "i-1", "name": "x" * 513}, ("name",)),
    ({"item_id": "i-1", "price": 1, "updated_at": "1980-01-01T00:00:00Z"}, ("updated_at",)),
    ({"item_id": "i-1", "price": 1, "updated_at": datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()},
     ("updated_at",)),
    ({"item_id": "i-1", "price": 1, "stock": 4}, ("stock",)),
])
def test_an_entry_that_cannot_be_meant_is_refused_naming_its_field(fields, where):
    with pytest.raises(ValidationError) as refused:
        CatalogEntry.model_validate(fields)
    assert [tuple(e["loc"]) for e in refused.value.errors()] == [where]


def test_an_item_the_catalog_marks_unavailable_leaves_the_feed():
    events = simulate(shoppers=40, days=1.0, seed=21).events
    store = MemoryStateStore()
    assert not Ingestor(store, MemoryBlobStore(), max_workers=1).ingest(to_records(events)).failed
    end = datetime.fromisoformat(events[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
    model = RankingModel.from_stored(default_model(MODEL_NAME))
    user = events[-1]["user_id"]

    def feed() -> list[str]:
        # A recommender of its own each time: one that served the feed keeps the items' rows for a while.
        ranking = Recommender(store, model, clock=lambda: end + 30).feed(user, n=10)
        return [item.item_id for item in ranking.items]

    before = feed()
    loaded = load_catalog(store, [entry(item_id=item, available=False) for item in before[:3]], received_at=end)
    assert loaded.written == before[:3]
    after = feed()
    assert len(after) == 10 and not set(before[:3]) & set(after)
