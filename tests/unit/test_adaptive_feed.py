"""The adaptive feed as a strategy: the session's cluster bandit fills the ranked feed's slots, each slot's probability
is logged with the served list, the explanation names each item's cluster and why, and with no clusters published
the strategy serves the feed as ranked. The clusters come from the model registry once per container."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np

from tailor.clusters import FORMAT, MODEL_NAME, AdaptiveFeed, BanditParams, ItemClusters, load_item_clusters
from tailor.clusters.bandit import ClusterPosteriors
from tailor.clusters.model import TRAIT_NAMES
from tailor.experiments.assignment import claim_slot
from tailor.experiments.definitions import new_experiment
from tailor.experiments.feed_ids import parse_feed_id
from tailor.models import ModelRegistry
from tailor.ranking import RankedItem
from tailor.serving import Recommender
from tailor.store.memory import MemoryBlobStore

from tests.unit.test_experiment_serving import recommender
from tests.unit.test_serving import busiest_shopper, world

CLUSTERS = 4


@cache
def clusters() -> ItemClusters:
    """The world's items in four clusters, by the order of their ids."""
    events, _ = world()
    items = sorted({e["item_id"] for e in events if e.get("item_id")})
    ids = tuple(f"c{n:04d}" for n in range(CLUSTERS))
    members = {item: ids[n % CLUSTERS] for n, item in enumerate(items)}
    descriptors = np.full((CLUSTERS, len(TRAIT_NAMES)), 0.5)
    descriptors[0, TRAIT_NAMES.index("tech_enthusiast")] = 1.0
    return ItemClusters(ids=ids, centroids=np.eye(CLUSTERS), descriptors=descriptors, global_ctr=np.full(CLUSTERS, 0.05),
                        members=members,
                        top_items={cid: tuple(i for i, c in members.items() if c == cid)[:5] for cid in ids},
                        neighbours={cid: ((ids[(n + 1) % CLUSTERS], 0.5),) for n, cid in enumerate(ids)})


def live_experiment(variants):
    _, end = world()
    now = datetime.fromtimestamp(end, tz=UTC)
    experiment = new_experiment({"experiment_id": "exp-serve", "surface": "feed", "holdout": 0.0,
                                 "start": (now - timedelta(days=1)).isoformat(), "variants": variants},
                                now=now, known_strategies={"default", "adaptive"})
    return experiment.started(now, claim_slot(experiment, []))


def adaptive_recommender(found, logged=None) -> Recommender:
    experiment = live_experiment([{"name": "a", "strategy": "adaptive"}, {"name": "b", "strategy": "adaptive"}])
    rec = recommender(experiment, exposures=None if logged is None else lambda f, r: logged.append((f, r)))
    rec.item_clusters = lambda: found
    return rec


def test_the_adaptive_strategy_draws_each_slot_by_cluster_logs_its_probability_and_explains_it():
    user, session = busiest_shopper()
    logged = []
    served = adaptive_recommender(clusters(), logged).feed(user, session_id=session, n=10, explain=True)
    assert served.strategy == "adaptive" and parse_feed_id(served.feed_id).experiment_id == "exp-serve"
    assert len(served.items) == 10 == len(served.probabilities)
    assert all(0.0 < p <= 1.0 for p in served.probabilities)
    assert [f for f, _ in logged] == [served.feed_id] and logged[0][1].probabilities == served.probabilities
    for item, p in zip(served.items, served.probabilities):
        assert item.cluster["cluster"] == clusters().cluster_of(item.item_id)
        assert item.cluster["why"] in ("prior", "clicks", "ignores", "near clusters clicked")
        assert item.cluster["probability"] == p and isinstance(item.parts, dict)
    # The same candidates as the default ranking draws from: the bandit orders, it does not invent.
    ranked = adaptive_recommender(None).feed(user, session_id=session, n=100)
    assert {i.item_id for i in served.items} <= {i.item_id for i in ranked.items}


def test_without_published_clusters_the_adaptive_strategy_serves_the_feed_as_ranked():
    user, session = busiest_shopper()
    served = adaptive_recommender(None).feed(user, session_id=session, n=10, explain=True)
    plain = recommender(live_experiment([{"name": "a", "strategy": "default"},
                                         {"name": "b", "strategy": "default"}])).feed(user, session_id=session, n=10)
    assert served.strategy == "adaptive" and served.probabilities is None
    assert [i.item_id for i in served.items] == [i.item_id for i in plain.items]
    assert all(item.cluster is None for item in served.items)


def test_a_session_that_clicks_one_cluster_and_ignores_another_is_fed_more_of_the_first():
    found = clusters()
    ranked = [RankedItem(item, 0.5, ["popular"]) for item in sorted(found.members)]
    feed = AdaptiveFeed(found, BanditParams(samples=256))
    posteriors = ClusterPosteriors()
    for page in range(4):
        posteriors.observe(f"f{page}", ["c0002"] * 5 + ["c0001"] * 5, [0, 1, 2], feed.params)
    counts = {cid: 0 for cid in found.ids}
    reasons = {}
    for n in range(20):
        items, _ = feed.order(ranked, 10, traits=None, session_clusters=posteriors.encode(), feed_id=f"feed-{n}",
                              explain=True)
        for item in items:
            counts[found.cluster_of(item.item_id)] += 1
            reasons[item.cluster["cluster"]] = item.cluster["why"]
    assert counts["c0002"] > 0.5 * sum(counts.values()) and counts["c0001"] < counts["c0002"] / 4
    assert reasons["c0002"] == "clicks"
    # A feed id draws its list again; another id may draw another.
    again = [feed.order(ranked, 10, traits=None, session_clusters=posteriors.encode(), feed_id="feed-0")[0]
             for _ in range(2)]
    assert [i.item_id for i in again[0]] == [i.item_id for i in again[1]]


def test_the_adaptive_feed_leans_toward_the_clusters_of_the_categories_the_shopper_engages_with():
    found = replace(clusters(), categories={cid: {f"cat{n}": 1.0} for n, cid in enumerate(clusters().ids)},
                    category_shares={f"cat{n}": 1.0 / CLUSTERS for n in range(CLUSTERS)})
    ranked = [RankedItem(item, 0.5, ["popular"]) for item in sorted(found.members)]
    feed = AdaptiveFeed(found, BanditParams(samples=256, history_weight=1.0))

    def from_cluster(categories, cluster="c0003"):
        served = [feed.order(ranked, 10, traits=None, session_clusters=None, feed_id=f"feed-{n}",
                             categories=categories)[0] for n in range(20)]
        return sum(found.cluster_of(item.item_id) == cluster for items in served for item in items)

    assert from_cluster({"cat3": 30.0, "cat0": 2.0}) > 2 * from_cluster(None)


def test_the_recommender_gives_the_adaptive_feed_the_shopper_s_category_affinity(monkeypatch):
    from tailor.shopper import ShopperState

    user, session = busiest_shopper()
    seen = []
    real = AdaptiveFeed.order

    def spy(self, ranked, n, **kwargs):
        seen.append(kwargs["categories"])
        return real(self, ranked, n, **kwargs)

    monkeypatch.setattr(AdaptiveFeed, "order", spy)
    rec = adaptive_recommender(clusters())
    rec.feed(user, session_id=session, n=10)
    row = ShopperState.from_row(rec.store.read("shoppers", [user])[user])
    assert seen == [row.category_affinity] and row.category_affinity


def test_unreadable_traits_or_session_evidence_fall_back_to_the_prior():
    found = clusters()
    ranked = [RankedItem(item, 0.5, ["popular"]) for item in sorted(found.members)]
    items, chances = AdaptiveFeed(found).order(ranked, 5, traits={"tech_enthusiast": [0.0, 1.0]},
                                               session_clusters={"e": "nonsense"}, feed_id="f")
    assert len(items) == 5 == len(chances)


def test_the_recommender_loads_the_published_clusters_at_start():
    blobs = MemoryBlobStore()
    registry = ModelRegistry(blobs)
    assert load_item_clusters(registry) is None and load_item_clusters(None) is None
    registry.publish(MODEL_NAME, clusters().to_json().encode(), {"format": FORMAT})
    loaded = load_item_clusters(registry)
    assert loaded is not None and loaded.ids == clusters().ids and loaded.members == clusters().members
    registry.publish(MODEL_NAME, b"{}", {"format": "something else", "trained_at": "2030-01-01T00:00:00Z"})
    assert load_item_clusters(registry) is None  # not clusters: serving goes on without them
    _, end = world()
    from tailor.store.memory import MemoryStateStore

    started = Recommender.start(MemoryStateStore(), registry, warm=False, clock=lambda: end)
    assert started.item_clusters() is None
    registry.publish(MODEL_NAME, clusters().to_json().encode(), {"format": FORMAT, "trained_at": "2031-01-01T00:00:00Z"})
    assert Recommender.start(MemoryStateStore(), registry, warm=False).item_clusters().ids == clusters().ids


def test_the_profile_describes_the_sessions_clusters():
    user, _ = busiest_shopper()
    rec = adaptive_recommender(clusters())
    profile = rec.profile(user)
    assert profile["clusters"]["clusters"] == CLUSTERS and isinstance(profile["clusters"]["session"], list)
    best = profile["clusters"]["best_for_shopper"]
    assert len(best) == 3 and all(c["top_items"] and "tech_enthusiast" in c["traits"] for c in best)
    assert [c["prior"] for c in best] == sorted((c["prior"] for c in best), reverse=True)
    assert "clusters" not in adaptive_recommender(None).profile(user)
