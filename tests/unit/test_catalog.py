"""Catalog entries in the items' rows: only the fields an entry sets, each never back to an older update, over what
item events say and beside Ingest's counters; two loads at once both land; an item marked unavailable leaves feeds;
the rows' catalog fields read back for the item vectors, and an item described as served."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from tailor.catalog import CatalogEntry, catalog_attributes, catalog_view, field_sources, load_catalog, read_catalog
from tailor.embeddings import ItemVectors
from tailor.ingest.service import Ingestor
from tailor.models import default_model
from tailor.ranking import MODEL_NAME, RankingModel
from tailor.ranking.rows import item_record
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.simulator import simulate

from tests.helpers.events import to_records
from tests.unit.test_clusters import _clusters

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()
RECEIVED = "2026-11-02T12:00:00.000000Z"


def entry(**fields) -> CatalogEntry:
    return CatalogEntry.model_validate(fields)


def seen(store: MemoryStateStore, item: str) -> dict:
    return dict(catalog_view(store.read("items", [item])[item]))


def test_an_entry_sets_only_its_fields_over_what_events_said_and_keeps_the_counters_beside_them():
    store = MemoryStateStore()
    store.add("items", "i-1", {"views": 3}, {"category": "shoes", "price": 50.0, "available": True},
              watermark="w:a", first="1", last="1")
    loaded = load_catalog(store, [entry(item_id="i-1", available=False), entry(item_id="i-2", name="Red lamp")],
                          received_at=NOW)
    assert (loaded.written, loaded.stale) == (2, [])
    assert {k: v for k, v in seen(store, "i-1").items() if k in ("views", "category", "price", "available")} == {
        "views": 3, "category": "shoes", "price": 50.0, "available": False}
    assert seen(store, "i-2")["name"] == "Red lamp"
    # An event from a page cached before the item sold out does not put it back on sale.
    store.add("items", "i-1", {"views": 1}, {"available": True, "price": 45.0}, watermark="w:a", first="2", last="2")
    assert (seen(store, "i-1")["available"], seen(store, "i-1")["price"], seen(store, "i-1")["views"]) == (
        False, 45.0, 4)
    assert item_record("i-1", store.read("items", ["i-1"])["i-1"]).values[8] == 0.0  # what the feed filters on
    assert catalog_attributes(store) == {"i-1": {"category": "shoes", "price": 45.0, "available": False},
                                         "i-2": {"name": "Red lamp"}}
    # The items catalog entries set fields of, each with its latest entry's update; one events alone know is not listed.
    store.add("items", "i-3", {"views": 1}, {"category": "hats"}, watermark="w:a", first="3", last="3")
    load_catalog(store, [entry(item_id="i-2", price=3.0, updated_at="2026-11-02T12:30:00Z")], received_at=NOW)
    assert read_catalog(store).listed == {"i-1": RECEIVED, "i-2": "2026-11-02T12:30:00.000000Z"}
    assert read_catalog(store).attributes == catalog_attributes(store)


def test_each_field_keeps_its_latest_update_whatever_order_entries_arrive_in():
    store = MemoryStateStore()
    stock = load_catalog(store, [entry(item_id="i-1", available=False, updated_at="2026-11-02T10:05:00Z")],
                         received_at=NOW)
    # A price updated earlier, arriving later, still sets the price: nothing updated it since.
    price = load_catalog(store, [entry(item_id="i-1", price=12.0, available=True, updated_at="2026-11-02T10:00:00Z"),
                                 entry(item_id="i-1", price=11.0, updated_at="2026-11-02T09:00:00Z")],
                         received_at=NOW)
    # In the order of their update: 11.0 (09:00), then 12.0 (10:00), whose stock is older than the row's.
    assert (stock.written, price.written, price.stale) == (1, 2, [(0, "i-1", ["available"])])
    assert (seen(store, "i-1")["available"], seen(store, "i-1")["price"]) == (False, 12.0)
    late = load_catalog(store, [entry(item_id="i-1", price=11.5, updated_at="2026-11-02T09:30:00Z")],
                        received_at=NOW)
    assert (late.written, late.stale, seen(store, "i-1")["price"]) == (0, [(0, "i-1", ["price"])], 12.0)
    # Within a request, entries apply by their update, then in request order; a stamp on receipt is the latest.
    again = load_catalog(store, [entry(item_id="i-1", price=14.0), entry(item_id="i-1", price=13.0,
                                                                        updated_at="2026-11-02T11:00:00Z")],
                         received_at=NOW)
    assert (again.written, again.stale, seen(store, "i-1")["price"]) == (2, [], 14.0)
    assert store.read("items", ["i-1"])["i-1"]["catalog_at"] == {"available": "2026-11-02T10:05:00.000000Z",
                                                                  "price": RECEIVED}


def test_a_cleared_field_goes_back_to_what_events_say_and_an_older_entry_cannot_set_it_again():
    store = MemoryStateStore()
    store.add("items", "i-1", {"views": 3}, {"category": "shoes", "price": 50.0, "available": True},
              watermark="w:a", first="1", last="1")
    load_catalog(store, [entry(item_id="i-1", price=45.0, available=False, updated_at="2026-11-02T10:00:00Z")],
                 received_at=NOW)
    cleared = load_catalog(store, [entry(item_id="i-1", clear=["price", "available", "brand"],
                                         updated_at="2026-11-02T11:00:00Z")], received_at=NOW)
    assert (cleared.written, cleared.stale) == (1, [])
    row = store.read("items", ["i-1"])["i-1"]
    assert row["catalog"] == {} and (seen(store, "i-1")["price"], seen(store, "i-1")["available"]) == (50.0, True)
    assert field_sources(row)["price"] == {"value": 50.0, "source": "events"}
    assert "i-1" not in read_catalog(store).listed  # nothing of it is the catalog's now
    # An entry updated before the clear neither sets the field again nor clears one set since.
    older = load_catalog(store, [entry(item_id="i-1", price=40.0, updated_at="2026-11-02T10:30:00Z")],
                         received_at=NOW)
    assert (older.written, older.stale, seen(store, "i-1")["price"]) == (0, [(0, "i-1", ["price"])], 50.0)
    load_catalog(store, [entry(item_id="i-1", brand="acme", updated_at="2026-11-02T12:00:00Z")], received_at=NOW)
    stale_clear = load_catalog(store, [entry(item_id="i-1", clear=["brand"], updated_at="2026-11-02T11:30:00Z")],
                               received_at=NOW)
    assert (stale_clear.written, stale_clear.stale, seen(store, "i-1")["brand"]) == (0, [(0, "i-1", ["brand"])],
                                                                                    "acme")


class CountingWrites(MemoryStateStore):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write_state(self, *args, **kwargs):
        self.writes += 1
        return super().write_state(*args, **kwargs)


def test_an_update_at_the_same_moment_wins_a_request_sent_again_writes_nothing_and_a_clear_makes_no_row():
    store = CountingWrites()
    at = "2026-11-02T10:00:00Z"
    load_catalog(store, [entry(item_id="i-1", price=10.0, updated_at=at)], received_at=NOW)
    same_moment = load_catalog(store, [entry(item_id="i-1", price=12.0, updated_at=at)], received_at=NOW)
    assert (same_moment.written, same_moment.stale, seen(store, "i-1")["price"]) == (1, [], 12.0)
    assert store.writes == 2
    again = load_catalog(store, [entry(item_id="i-1", price=12.0, updated_at=at)], received_at=NOW)
    assert (again.written, again.stale, store.writes) == (1, [], 2)  # as the row says already
    ghost = load_catalog(store, [entry(item_id="ghost", clear=["price"])], received_at=NOW)
    assert (ghost.written, store.writes, store.read("items", ["ghost"])) == (0, 2, {})
    # A clear does not make an item listed later: its listing is the latest update of what the catalog sets.
    load_catalog(store, [entry(item_id="i-1", clear=["brand"], updated_at="2026-11-02T11:00:00Z")], received_at=NOW)
    assert read_catalog(store).listed == {"i-1": "2026-11-02T10:00:00.000000Z"}
    # Each field once, and none the same as none.
    assert entry(item_id="i-1", clear=["brand", "brand"]).clear == ("brand",)
    assert entry(item_id="i-1", price=1.0, clear=None).clear == ()


class RacingLoad(MemoryStateStore):
    """A store where another load sets the brand of an item between this load's read and its write."""

    def __init__(self):
        super().__init__()
        self.raced = False

    def write_state(self, table, key, fields, **kwargs):
        if table == "items" and not self.raced:
            self.raced = True
            load_catalog(self, [entry(item_id=key, brand="acme")], received_at=NOW)
        return super().write_state(table, key, fields, **kwargs)


def test_two_loads_of_one_item_at_once_both_land():
    store = RacingLoad()
    loaded = load_catalog(store, [entry(item_id="i-1", price=5.0)], received_at=NOW)
    assert store.raced and loaded.written == 1
    assert (seen(store, "i-1")["brand"], seen(store, "i-1")["price"]) == ("acme", 5.0)


@pytest.mark.parametrize(("fields", "where"), [
    ({"item_id": "i-1"}, ()),
    ({"item_id": "i-1", "price": -0.01}, ("price",)),
    ({"item_id": "i-1", "price": 2_000_000}, ("price",)),
    ({"item_id": "i-1", "price": "12.5"}, ("price",)),
    ({"item_id": "i-1", "price": True}, ("price",)),
    ({"item_id": "i-1", "available": "off"}, ("available",)),
    ({"item_id": "i-1", "available": 0}, ("available",)),
    ({"item_id": "i-1", "name": "a\nb"}, ("name",)),
    ({"item_id": "i-1", "name": "x" * 513}, ("name",)),
    ({"item_id": "i-1", "price": 1, "updated_at": "1980-01-01T00:00:00Z"}, ("updated_at",)),
    ({"item_id": "i-1", "price": 1, "updated_at": datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()},
     ("updated_at",)),
    ({"item_id": "i-1", "price": 1, "stock": 4}, ("stock",)),
    ({"item_id": "i-1", "clear": ["colour"]}, ("clear", 0)),
    ({"item_id": "i-1", "clear": "price"}, ("clear",)),
    ({"item_id": "i-1", "price": 1, "clear": ["price"]}, ()),
    ({"item_id": "i-1", "clear": []}, ()),
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
    assert loaded.written == 3
    after = feed()
    assert len(after) == 10 and not set(before[:3]) & set(after)


def test_an_item_is_described_as_served_with_each_field_s_source_its_cluster_and_its_vector():
    store = MemoryStateStore()
    store.add("items", "a", {"views": 3, "clicks": 1}, {"category": "shoes", "price": 50.0}, watermark="w:a",
              first="1", last="1")
    load_catalog(store, [entry(item_id="a", price=45.0, updated_at="2026-11-02T10:00:00Z"),
                         entry(item_id="new", category="lamps", available=False)], received_at=NOW)
    vectors = ItemVectors.build(["a", "new"], np.eye(2), metadata_only=[False, True])
    recommender = Recommender(store, RankingModel.from_stored(default_model(MODEL_NAME)), item_clusters=_clusters,
                              item_vectors=lambda: vectors)
    met = recommender.item("a")
    assert met["fields"] == {"category": {"value": "shoes", "source": "events"},
                             "price": {"value": 45.0, "source": "catalog", "updated_at": "2026-11-02T10:00:00.000000Z"}}
    assert (met["counts"]["views"], met["counts"]["clicks"], met["counts"]["purchases"]) == (3.0, 1.0, 0.0)
    assert (met["cluster"], met["vector"]) == ("c0000", "engagements")
    listed = recommender.item("new")
    assert listed["fields"] == {"category": {"value": "lamps", "source": "catalog", "updated_at": RECEIVED},
                                "available": {"value": False, "source": "catalog", "updated_at": RECEIVED}}
    assert (listed["cluster"], listed["vector"]) == (None, "metadata")
    assert recommender.item("unknown") is None
    assert Recommender(store, RankingModel.from_stored(default_model(MODEL_NAME))).item("a")["cluster"] is None
