"""The lab's cluster rebuild: k-means over metadata (and vectors), descriptors, click rates and ids kept across
rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.clusters import ItemClusters
from tailor.clusters.model import TRAIT_NAMES
from tailor_lab.simulator import simulate
from tailor_lab.training.clusters import ClusterParams, build_clusters


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
