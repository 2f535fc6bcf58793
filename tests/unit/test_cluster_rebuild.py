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
    # Ids follow the members, placed ones among them: the same items again keep every id.
    again = build_clusters(history.catalog, history.events, previous=placed, params=ClusterParams(clusters=24, seed=3),
                           placed=[*copies, unseen])
    assert set(again.ids) == set(placed.ids)

    # By vectors alone: each copy, given its original's vector, joins its original's cluster.
    rng = np.random.default_rng(4)
    vectors = {r["item_id"]: rng.normal(size=6) for r in history.catalog}
    vectors |= {copy["item_id"]: vectors[copy["item_id"][4:]] for copy in copies}
    by_vectors = ClusterParams(clusters=12, category_weight=0.0, price_weight=0.0)
    alone = build_clusters(history.catalog, history.events, vectors=vectors, params=by_vectors)
    placed = build_clusters(history.catalog, history.events, vectors=vectors, params=by_vectors, placed=copies)
    assert all(placed.members[copy["item_id"]] == alone.members[copy["item_id"][4:]] for copy in copies)
