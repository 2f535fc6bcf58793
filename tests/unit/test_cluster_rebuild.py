"""The lab's cluster rebuild: k-means over metadata (and vectors), descriptors, click rates and ids kept across
rebuilds."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tailor.clusters import ItemClusters
from tailor.clusters.model import TRAIT_NAMES
from tailor_lab.simulator import simulate
from tailor_lab.training.clusters import ClusterParams, build_clusters, category_shares


@pytest.fixture(scope="module")
def history():
    return simulate(shoppers=40, days=3, seed=3)


def test_clusters_follow_categories_and_describe_their_traits(history):
    clusters = build_clusters(history.catalog, history.events, params=ClusterParams(clusters=24))
    assert len(clusters.ids) == 24 and set(clusters.members) == {r["item_id"] for r in history.catalog}
    category = {r["item_id"]: r["category"] for r in history.catalog}
    for cid in clusters.ids:  # category weighs more than price: a cluster holds one category
        assert len({category[i] for i, c in clusters.members.items() if c == cid}) == 1
    tech = TRAIT_NAMES.index("tech_enthusiast")
    described = {category[next(i for i, c in clusters.members.items() if c == cid)]: clusters.descriptors[r, tech]
                 for r, cid in enumerate(clusters.ids)}
    assert described["computers"] == 1.0 and described["kitchen"] == 0.0
    assert ((clusters.global_ctr > 0) & (clusters.global_ctr < 1)).all()
    assert ItemClusters.from_json(clusters.to_json()).members == clusters.members
    # Each cluster's categories (one here), and the shop's engagements by category as shoppers' rows weigh them.
    for cid in clusters.ids:
        (only,) = {category[i] for i, c in clusters.members.items() if c == cid}
        assert clusters.categories[cid] == {only: 1.0}
    assert clusters.category_shares == pytest.approx(category_shares(history.events))
    assert sum(clusters.category_shares.values()) == pytest.approx(1.0)
    assert ItemClusters.from_json(clusters.to_json()).category_shares == pytest.approx(clusters.category_shares, abs=1e-6)


def test_the_shop_s_category_shares_weigh_events_as_a_shopper_s_row_does():
    from tailor.events import parse_event
    from tailor.shopper import fold_shopper

    events = [{"event_id": f"e{k}", "user_id": "u", "session_id": "s", "timestamp": f"2026-11-02T12:00:0{k}Z",
               **fields} for k, fields in enumerate([
                   {"event_type": "view", "item_id": "a", "category": "kitchen"},
                   {"event_type": "purchase", "item_id": "a", "category": "kitchen", "price": 5.0, "quantity": 2},
                   {"event_type": "view", "item_id": "b", "category": "garden"},
                   {"event_type": "view", "item_id": "c"},  # no category: counts nowhere
                   {"event_type": "search", "query": "lamp"}])]
    row = None
    for event in events:
        row = fold_shopper(row, parse_event(event))
    total = sum(row.category_affinity.values())
    assert category_shares(events) == pytest.approx({name: v / total for name, v in row.category_affinity.items()})
    assert category_shares(events) == pytest.approx({"kitchen": 11 / 12, "garden": 1 / 12})
    assert category_shares([]) == {}


def test_a_rebuild_on_more_of_the_same_keeps_the_ids(history):
    first = build_clusters(history.catalog, history.events[: len(history.events) // 2],
                           params=ClusterParams(clusters=24, seed=1))
    again = build_clusters(history.catalog, history.events, previous=first, params=ClusterParams(clusters=24, seed=2))
    same = sum(first.members[i] == again.members[i] for i in first.members) / len(first.members)
    assert same > 0.85  # the price bands shift a little with the k-means seed; the ids follow the members
    kept = set(again.ids) & set(first.ids)
    assert len(kept) >= 22  # a cluster whose members moved too much gets a fresh id, past every old one
    assert all(cid > max(first.ids) for cid in set(again.ids) - kept)
    vectors = {r["item_id"]: np.ones(4) for r in history.catalog}  # vectors that say nothing change nothing
    with_vectors = build_clusters(history.catalog, history.events, vectors=vectors, previous=first,
                                  params=ClusterParams(clusters=24, seed=1))
    assert sum(first.members[i] == with_vectors.members[i] for i in first.members) / len(first.members) > 0.85


def test_a_rebuild_that_cannot_read_the_current_clusters_publishes_nothing_rather_than_new_ids():
    import time

    from tailor.clusters import MODEL_NAME
    from tailor.ingest.service import Ingestor
    from tailor.models import ModelRegistry, RegistryUnreadable
    from tailor.store.memory import MemoryStateStore
    from tailor_lab.training.clusters import rebuild_from_archive

    from tests.helpers.events import recent_simulated_day, to_records
    from tests.helpers.ingest import UnreadableBlobs

    blobs = UnreadableBlobs()
    assert not Ingestor(MemoryStateStore(), blobs, max_workers=1).ingest(
        to_records(recent_simulated_day(shoppers=30, seed=31))).failed
    first = rebuild_from_archive(blobs, time.time(), params=ClusterParams(clusters=6))
    assert first["status"] == "built"
    blobs.failing = True
    # Numbered afresh, new clusters would take the ids sessions keep evidence of the current ones under.
    with pytest.raises(RegistryUnreadable):
        rebuild_from_archive(blobs, time.time(), params=ClusterParams(clusters=6))
    blobs.failing = False
    assert ModelRegistry(blobs).current_version(MODEL_NAME) == first["version"]


def test_items_nobody_met_join_their_nearest_cluster_without_moving_the_clusters(history, monkeypatch):
    from tailor_lab.training import clusters as training

    # A copy of each item under a new id, as the shop's catalog would list an item like it. By category and price
    # (two clusters a category here, so price decides between them): each copy joins its original's cluster.
    copies = [{**record, "item_id": f"new-{record['item_id']}"} for record in history.catalog]
    unseen = {"item_id": "new-kind", "category": "telescopes", "price": 120.0}  # a category no cluster holds
    params = ClusterParams(clusters=24)
    alone = build_clusters(history.catalog, history.events, params=params)
    placed = build_clusters(history.catalog, history.events, params=params, placed=[*copies, unseen])
    # Items of one price in a category get ranks apart; a copy of them falls between, perhaps across a boundary.
    tied = {key for key, n in Counter((r["category"], r["price"]) for r in history.catalog).items() if n > 1}
    assert all(placed.members[copy["item_id"]] == alone.members[copy["item_id"][4:]] for copy in copies
               if (copy["category"], copy["price"]) not in tied)
    assert placed.members["new-kind"] in placed.ids
    # An item the clusters were fitted on stays where it was fitted, even one its copy would leave.
    moved = [copy["item_id"][4:] for copy in copies if placed.members[copy["item_id"]] != alone.members[copy["item_id"][4:]]]
    assert moved and build_clusters(history.catalog, history.events, params=params,
                                    placed=[{"item_id": item} for item in moved]).members == alone.members
    assert {i: c for i, c in placed.members.items() if not i.startswith("new-")} == dict(alone.members)
    assert placed.ids == alone.ids and placed.top_items == alone.top_items and placed.categories == alone.categories
    for name in ("centroids", "descriptors", "global_ctr"):
        np.testing.assert_array_equal(getattr(placed, name), getattr(alone, name))
    monkeypatch.setattr(training, "PLACE_CHUNK", 7)  # a few features at a time place them the same
    assert build_clusters(history.catalog, history.events, params=params,
                          placed=[*copies, unseen]).members == placed.members
    # Ids follow the members, less the items placed for the first time: the first build to place items (twice as
    # many as it fits) keeps every id of one that placed none, and one placing more again keeps them too.
    tripled = [{**copy, "item_id": f"{copy['item_id']}-{n}"} for copy in copies for n in range(3)]
    first = build_clusters(history.catalog, history.events, previous=alone, params=ClusterParams(clusters=24, seed=3),
                           placed=tripled[: 2 * len(copies)])
    grown = build_clusters(history.catalog, history.events, previous=first, params=ClusterParams(clusters=24, seed=4),
                           placed=tripled)
    assert set(first.ids) == set(grown.ids) == set(alone.ids)

    # By vectors alone: each copy, given its original's vector, joins its original's cluster.
    rng = np.random.default_rng(4)
    vectors = {r["item_id"]: rng.normal(size=6) for r in history.catalog}
    vectors |= {copy["item_id"]: vectors[copy["item_id"][4:]] for copy in copies}
    by_vectors = ClusterParams(clusters=12, category_weight=0.0, price_weight=0.0)
    alone = build_clusters(history.catalog, history.events, vectors=vectors, params=by_vectors)
    placed = build_clusters(history.catalog, history.events, vectors=vectors, params=by_vectors, placed=copies)
    assert all(placed.members[copy["item_id"]] == alone.members[copy["item_id"][4:]] for copy in copies)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
def test_impressions_of_placed_items_count_in_their_cluster_s_rate_and_equal_items_make_fewer_clusters():
    items = [{"item_id": f"i{n}", "category": "kitchen", "price": float(n)} for n in range(4)]
    day = "2026-11-02T12:00:00Z"
    events = [{"event_type": "impression", "item_ids": ["i0", "i1"], "user_id": "u", "timestamp": day},
              {"event_type": "click", "item_id": "i0", "user_id": "u", "timestamp": day},
              *({"event_type": "impression", "item_ids": ["shown"], "user_id": "u", "timestamp": day}
                for _ in range(20))]
    params = ClusterParams(clusters=1, rate_prior=0.0)
    assert build_clusters(items, events, params=params).global_ctr[0] == pytest.approx(1 / 2)
    placed = build_clusters(items, events, params=params, placed=[{"item_id": "shown", "category": "kitchen"}])
    assert placed.members["shown"] == placed.ids[0] and placed.global_ctr[0] == pytest.approx(1 / 22)
    # Four items alike cannot make three clusters: k-means leaves two empty, and the build has one.
    alike = [{"item_id": f"a{n}", "category": "kitchen"} for n in range(4)]
    one = build_clusters(alike, params=ClusterParams(clusters=3), placed=[{"item_id": "b", "category": "kitchen"}])
    assert len(one.ids) == 1 and set(one.members) == {"a0", "a1", "a2", "a3", "b"}


def test_the_rebuild_places_the_latest_listed_items_with_the_published_vectors(monkeypatch):
    import time

    from tailor.catalog import CatalogSnapshot
    from tailor.clusters import load_item_clusters
    from tailor.embeddings import ARTIFACT, MODEL_NAME, ItemVectors
    from tailor.embeddings.vectors import FORMAT
    from tailor.ingest.service import Ingestor
    from tailor.models import ModelRegistry
    from tailor.store.memory import MemoryBlobStore, MemoryStateStore
    from tailor_lab.training import clusters as training
    from tailor_lab.training.clusters import rebuild_from_archive

    from tests.helpers.events import recent_simulated_day, to_records

    blobs = MemoryBlobStore()
    events = recent_simulated_day(shoppers=30, seed=31)
    assert not Ingestor(MemoryStateStore(), blobs, max_workers=1).ingest(to_records(events)).failed
    met = sorted({e["item_id"] for e in events if e.get("item_id")})
    # By vectors alone: each listed item has the vector of an item met, and must join that item's cluster.
    twins = {"new-a": met[0], "new-b": met[-1], "new-off": met[1]}
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(len(met), 8))
    published = ItemVectors.build([*met, *twins], np.vstack([vectors, *(vectors[met.index(t)] for t in twins.values())]))
    ModelRegistry(blobs).publish(MODEL_NAME, published.to_npz(), {"format": FORMAT}, artifact=ARTIFACT)
    catalog = CatalogSnapshot(attributes={"new-a": {"price": 3.0}, "new-b": {"price": 3.0},
                                          "new-off": {"available": False}, met[2]: {"price": 1.0}},
                              listed={"new-a": "2026-11-02T10:00:00.000000Z", "new-b": "2026-11-03T10:00:00.000000Z",
                                      "new-off": "2026-11-04T10:00:00.000000Z", met[2]: "2026-11-04T10:00:00.000000Z"})
    params = ClusterParams(clusters=6, category_weight=0.0, price_weight=0.0)
    report = rebuild_from_archive(blobs, time.time(), params=params, catalog=catalog)
    assert (report["clusters"], report["items_placed"], report["items_not_placed"]) == (6, 2, 0)
    clusters = load_item_clusters(ModelRegistry(blobs))
    assert all(clusters.members[new] == clusters.members[twin] for new, twin in twins.items() if new != "new-off")
    assert "new-off" not in clusters.members
    monkeypatch.setattr(training, "MAX_PLACED", 1)  # over the cap, the latest listed are placed
    report = rebuild_from_archive(blobs, time.time(), params=params, catalog=catalog)
    assert (report["items_placed"], report["items_not_placed"]) == (1, 1)
    assert "new-b" in load_item_clusters(ModelRegistry(blobs)).members
    assert "new-a" not in load_item_clusters(ModelRegistry(blobs)).members
