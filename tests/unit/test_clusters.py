"""Item clusters: trait descriptors, id matching across rebuilds, the session bandit's posteriors and selection."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tailor.clusters import (
    BanditParams,
    ClusterPosteriors,
    ItemClusters,
    item_trait_strengths,
    match_cluster_ids,
    prior_appeal,
    select_clusters,
)
from tailor.clusters.bandit import encoded_size, shopper_appeal, slot_chances
from tailor.clusters.model import TRAIT_NAMES, max_weight_assignment

PARAMS = BanditParams(prior_strength=4.0, ignore_weight=0.25, decay=0.5, floor=0.1, expansion=0.5, samples=4000,
                      surface_rate=0.1)


def _clusters() -> ItemClusters:
    descriptors = np.zeros((3, len(TRAIT_NAMES)))
    descriptors[0, TRAIT_NAMES.index("tech_enthusiast")] = 1.0
    descriptors[1, TRAIT_NAMES.index("home_decorator")] = 1.0
    descriptors[2, TRAIT_NAMES.index("outdoor_adventurer")] = 1.0
    return ItemClusters(ids=("c0000", "c0001", "c0002"), centroids=np.eye(3), descriptors=descriptors,
                        global_ctr=np.array([0.1, 0.1, 0.1]),
                        members={"a": "c0000", "b": "c0001", "c": "c0002"},
                        top_items={"c0000": ("a",), "c0001": ("b",), "c0002": ("c",)},
                        neighbours={"c0000": (("c0001", 0.8),), "c0001": (("c0000", 0.8),),
                                    "c0002": (("c0001", 0.1),)})


def test_item_trait_strengths_read_category_and_price():
    strengths = dict(zip(TRAIT_NAMES, item_trait_strengths("Computers", 0.9)))
    assert strengths["tech_enthusiast"] == 1.0
    assert strengths["budget_conscious"] == pytest.approx(0.1)
    assert strengths["luxury_seeker"] == pytest.approx(0.45)  # no luxury category, a dear price: half and half
    assert dict(zip(TRAIT_NAMES, item_trait_strengths("books", None)))["gift_shopper"] == 0.45


def test_prior_appeal_follows_traits_and_shrinks_toward_the_global_rate():
    clusters = _clusters()
    assert prior_appeal(clusters, None, PARAMS).tolist() == pytest.approx([0.1, 0.1, 0.1])
    techie = {"tech_enthusiast": [41.0, 1.0], "home_decorator": [1.0, 41.0]}
    strong = prior_appeal(clusters, techie, PARAMS)
    assert strong[0] > strong[2] > strong[1]
    weak = prior_appeal(clusters, {"tech_enthusiast": [1.5, 1.0]}, PARAMS)
    assert abs(weak[0] - 0.1) < abs(strong[0] - 0.1)
    with pytest.raises(ValueError, match="alpha and beta"):
        prior_appeal(clusters, {"tech_enthusiast": [0.0, 1.0]}, PARAMS)


def test_the_shopper_s_categories_lift_the_clusters_they_engage_with_more_than_the_shop_does():
    clusters = replace(_clusters(), categories={"c0000": {"tv": 1.0}, "c0001": {"sofa": 0.5, "lamp": 0.5},
                                                "c0002": {"tent": 1.0}},
                       category_shares={"tv": 0.5, "sofa": 0.2, "lamp": 0.2, "tent": 0.1})
    affinity = {"tv": 2.0, "tent": 6.0, "shoes": 40.0}  # a category no cluster holds counts for nothing
    # Shares shrunk toward the shop's by 4 pseudo-engagements: tv (2 + 2) / 12, sofa 0.8 / 12, lamp 0.8 / 12, tent
    # (6 + 0.4) / 12; each over the shop's share.
    lift = clusters.category_lift(affinity, 4.0)
    assert lift == pytest.approx([(4 / 12) / 0.5, 0.5 * (0.8 / 12) / 0.2 + 0.5 * (0.8 / 12) / 0.2, (6.4 / 12) / 0.1])
    assert clusters.category_lift(None, 4.0).tolist() == clusters.category_lift({}, 4.0).tolist() == [1.0] * 3
    assert _clusters().category_lift(affinity, 4.0).tolist() == [1.0] * 3  # clusters from before the shares
    params = replace(PARAMS, history_smoothing=4.0)
    camper = prior_appeal(clusters, None, params, affinity)
    assert camper == pytest.approx(0.1 * lift ** params.history_weight)
    assert camper[2] > 0.1 > camper[0] > camper[1]
    assert prior_appeal(clusters, None, replace(params, history_weight=0.0), affinity).tolist() == pytest.approx(
        [0.1] * 3)
    # A category's engagements that do not parse count as none; an affinity that is no mapping is no affinity.
    assert shopper_appeal(clusters, None, params, {"tv": "many", "tent": 6.0}).tolist() == pytest.approx(
        prior_appeal(clusters, None, params, {"tent": 6.0}).tolist())
    assert shopper_appeal(clusters, None, params, "tv").tolist() == pytest.approx([0.1] * 3)
    again = ItemClusters.from_json(clusters.to_json())
    assert again.category_lift(affinity, 4.0) == pytest.approx(lift)
    assert again.describe("c0001")["categories"] == {"sofa": 0.5, "lamp": 0.5}


def test_a_feed_counts_clicks_as_successes_above_the_last_click_as_failures_below_as_ignores():
    posteriors = ClusterPosteriors()
    posteriors.observe("f1", ["c0000", "c0001", "c0002", "c0001", None], clicks=[2], params=PARAMS)
    assert posteriors.evidence["c0000"] == pytest.approx([0.0, 1.0])  # above the click: a full failure
    assert posteriors.evidence["c0002"] == pytest.approx([1.0, 0.0])
    assert posteriors.evidence["c0001"] == pytest.approx([0.0, 1.25])  # above (1) and below (0.25)
    posteriors.observe("f2", ["c0002"], clicks=[], params=PARAMS)  # decay by half, then one ignore
    assert posteriors.evidence["c0002"] == pytest.approx([0.5, 0.25])
    assert posteriors.evidence["c0000"] == pytest.approx([0.0, 0.5])


def test_clicks_one_at_a_time_in_any_order_equal_the_whole_feed_and_replays_add_nothing():
    whole = ClusterPosteriors()
    whole.observe("f", ["c0000", "c0001", "c0002", "c0000"], clicks=[1, 3], params=PARAMS)
    piecewise = ClusterPosteriors()
    piecewise.impression("f", ["c0000", "c0001", "c0002", "c0000"], PARAMS)
    for position in (3, 1, 3):  # the later click first, then a duplicate
        piecewise.click("f", position, PARAMS)
    piecewise.impression("f", ["c0000", "c0001", "c0002", "c0000"], PARAMS)  # the impression again
    piecewise.click("other-feed", 0, PARAMS)  # a click on a feed no longer tracked
    assert _rounded(piecewise.evidence) == _rounded(whole.evidence)
    assert whole.evidence["c0000"] == pytest.approx([1.0, 1.0])
    restored = ClusterPosteriors.decode(whole.encode())
    assert restored.encode() == whole.encode()
    restored.click("f", 1, PARAMS)  # a replayed click after a round trip through the row
    assert _rounded(restored.evidence) == _rounded(whole.evidence)


@pytest.mark.parametrize("feeds", [
    [],  # no feed yet
    [("f", ["c0000", None, "c0001", "c0000"], [1, 3])],
    [("f", [None], [0])],  # a one-slot feed out of every cluster is not read back as an empty one
    [("f", [], [])],
    [("exp.var.u1|odd", ["c0002"], []), ("g", ["c0000", "c0001"], [])],  # a feed id with the separator in it
])
def test_the_row_string_round_trips(feeds):
    posteriors = ClusterPosteriors()
    for feed, shown, clicks in feeds:
        posteriors.observe(feed, shown, clicks, PARAMS)
    text = posteriors.encode()
    assert isinstance(text, str)
    restored = ClusterPosteriors.decode(text)
    assert restored.encode() == text
    assert (restored.feed, restored.shown, restored.clicked) == (posteriors.feed, posteriors.shown, posteriors.clicked)
    assert restored.evidence == {c: [int(s * 100 + 0.5) / 100, int(f * 100 + 0.5) / 100]
                                 for c, (s, f) in posteriors.evidence.items()}  # the same rounding as ever


def test_a_row_written_as_a_map_decodes_as_its_string_would():
    posteriors = ClusterPosteriors()
    posteriors.observe("f", ["c0000", None, "c0001"], [2], PARAMS)
    posteriors.observe("g", ["c0001", "c0002"], [0], PARAMS)
    old = {"e": {c: [int(s * 100 + 0.5) / 100, int(f * 100 + 0.5) / 100] for c, (s, f) in posteriors.evidence.items()},
           "f": "g",
           "p": ["c0001", "c0002"], "k": [0]}
    assert ClusterPosteriors.decode(old) == ClusterPosteriors.decode(posteriors.encode())
    assert ClusterPosteriors.decode(old).encode() == posteriors.encode()


@pytest.mark.parametrize("field", ["nonsense", "c0000,1", "c0000,x,2", "c0000,1,2|0", "c0000,1,2|x||f",
                                   {"e": "nonsense"}, ["c0000"], 7])
def test_an_unreadable_field_is_no_evidence(field):
    assert ClusterPosteriors.read(field) == ClusterPosteriors()
    assert ClusterPosteriors.read("") == ClusterPosteriors.read(None) == ClusterPosteriors()


@pytest.mark.parametrize("bad", ["", "c,1", "c|1"])
def test_cluster_ids_cannot_hold_the_row_strings_separators(bad):
    clusters = _clusters()
    with pytest.raises(ValueError, match="ids must be non-empty"):
        ItemClusters(ids=("c0000", bad), centroids=clusters.centroids[:2], descriptors=clusters.descriptors[:2],
                     global_ctr=clusters.global_ctr[:2], members={}, top_items={}, neighbours={})


def test_session_state_stays_small():
    posteriors = ClusterPosteriors()
    rng = np.random.default_rng(1)
    for page in range(8):
        shown = [f"c{int(c):04d}" for c in rng.integers(0, 40, 5)]
        posteriors.observe(f"feed-{page:02d}", shown, clicks=[int(rng.integers(0, 5))], params=PARAMS)
    assert encoded_size(posteriors) < 1024


def test_evidence_moves_the_posterior_and_expansion_lends_to_neighbours():
    clusters = _clusters()
    prior = np.array([0.1, 0.1, 0.1])
    posteriors = ClusterPosteriors()
    posteriors.observe("f", ["c0000", "c0002"], clicks=[0], params=PARAMS)
    alpha, beta, lent = posteriors.beta(clusters, prior, PARAMS)
    assert alpha.tolist() == pytest.approx([0.4 + 1.0, 0.4 + 0.5 * 0.8, 0.4])
    assert beta.tolist() == pytest.approx([3.6, 3.6, 3.6 + 0.25])
    assert posteriors.reason(clusters, "c0000", prior, PARAMS)["why"] == "clicks"
    assert posteriors.reason(clusters, "c0001", prior, PARAMS)["why"] == "near clusters clicked"
    assert posteriors.reason(clusters, "c0002", prior, PARAMS)["why"] == "ignores"


def test_thompson_probabilities_match_the_draws_and_keep_the_floor():
    clusters = _clusters()
    prior = np.array([0.1, 0.1, 0.1])
    posteriors = ClusterPosteriors(evidence={"c0000": [20.0, 0.0], "c0001": [0.0, 30.0]})
    alpha, beta, _ = posteriors.beta(clusters, prior, replace_expansion(PARAMS))
    chance = slot_chances(alpha, beta, np.random.default_rng(3), replace_expansion(PARAMS))
    assert chance.sum() == pytest.approx(1.0)
    assert chance.min() >= PARAMS.floor / 3 - 1e-12  # nobody is shut out
    assert chance[0] == pytest.approx(PARAMS.floor / 3 + (1 - PARAMS.floor), abs=0.01)
    selection = select_clusters(clusters, prior, ClusterPosteriors(), 3000, np.random.default_rng(4), PARAMS)
    counts = {c: selection.clusters.count(c) / 3000 for c in clusters.ids}
    for cluster, share in counts.items():  # what was served follows the logged probabilities
        assert share == pytest.approx(selection.distribution[cluster], abs=0.03)
    assert all(p == pytest.approx(selection.distribution[c], abs=1e-6)
               for c, p in zip(selection.clusters, selection.probabilities))
    only = select_clusters(clusters, prior, ClusterPosteriors(), 2, np.random.default_rng(5), PARAMS,
                           eligible=np.array([False, True, False]))
    assert only.clusters == ("c0001", "c0001") and only.probabilities == (1.0, 1.0)


def _rounded(evidence: dict[str, list[float]]) -> dict[str, list[float]]:
    return {c: [round(v, 9) for v in counts] for c, counts in evidence.items()}


def replace_expansion(params: BanditParams) -> BanditParams:
    from dataclasses import replace

    return replace(params, expansion=0.0)


def test_ids_survive_a_rebuild_that_barely_changes_membership():
    old = {f"i{n}": ("c0003" if n < 10 else "c0007") for n in range(20)}
    new = {f"i{n}": (1 if n < 9 else 0) for n in range(20)}  # one item moved, numbering swapped
    new["i20"] = 2  # a new cluster of a new item
    ids = match_cluster_ids(old, new)
    assert ids == {1: "c0003", 0: "c0007", 2: "c0008"}
    unrelated = match_cluster_ids(old, {f"x{n}": 0 for n in range(5)})
    assert unrelated == {0: "c0008"}  # no overlap: a fresh id, never a reused one
    assert match_cluster_ids({}, {"a": 0, "b": 1}) == {0: "c0000", 1: "c0001"}


@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4), (1, 3), (12, 12)])
def test_the_assignment_is_as_good_as_scipys(shape):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    for _ in range(20):
        weights = rng.random(shape) * (rng.random(shape) < 0.5)
        pairs = max_weight_assignment(weights)
        rows, cols = linear_sum_assignment(weights, maximize=True)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(weights[r, c] for r, c in pairs) == pytest.approx(weights[rows, cols].sum())


def test_published_clusters_round_trip_and_describe():
    clusters = _clusters()
    again = ItemClusters.from_json(clusters.to_json())
    assert again.ids == clusters.ids and again.members == clusters.members
    described = again.describe("c0000")
    assert described["traits"]["tech_enthusiast"] == 1.0 and described["top_items"] == ["a"]
    with pytest.raises(KeyError):
        again.describe("c9999")
    with pytest.raises(ValueError, match="lacks 'members'"):
        ItemClusters.from_json(json.dumps({"ids": [], "centroids": [], "descriptors": [], "global_ctr": [],
                                           "top_items": {}, "neighbours": {}}))


def test_the_adaptive_slate_fills_slots_by_cluster_in_the_rankings_order_and_explains_them():
    from tailor.clusters.slate import adaptive_slate

    clusters = _clusters()
    prior = np.array([0.1, 0.1, 0.1])
    wide = ItemClusters(ids=clusters.ids, centroids=clusters.centroids, descriptors=clusters.descriptors,
                        global_ctr=clusters.global_ctr,
                        members={"a1": "c0000", "a2": "c0000", "b1": "c0001", "c1": "c0002"},
                        top_items={}, neighbours=clusters.neighbours)
    clicked = ClusterPosteriors(evidence={"c0000": [6.0, 0.0]})
    slate = adaptive_slate(["b1", "a2", "a1", "c1", "zz"], [0.9, 0.5, 0.8, 0.1, 0.0], 5, wide, prior, clicked,
                           np.random.default_rng(2), PARAMS, explain=True)
    assert sorted(slate.items) == ["a1", "a2", "b1", "c1", "zz"] and slate.items[-1] == "zz"
    assert slate.items.index("a1") < slate.items.index("a2")  # within a cluster, the ranking's order
    assert slate.items[0] == "a1"  # the clicked cluster is the likeliest first
    assert all(0 < p <= 1 for p in slate.probabilities)
    assert slate.reasons[0] == {"cluster": "c0000", "why": "clicks", "prior": 0.1, "clicks": 6.0, "ignores": 0.0,
                                "expansion": 0.0}
    assert slate.reasons[-1]["why"] == "not in a cluster"
    with pytest.raises(ValueError, match="scores"):
        adaptive_slate(["a1"], [], 1, wide, prior, clicked, np.random.default_rng(2), PARAMS)


def test_the_slates_chances_are_slot_chances_on_the_shared_draws():
    from tailor.clusters.bandit import log_rate_draws
    from tailor.clusters.slate import adaptive_slate

    rng = np.random.default_rng(11)
    k = 8
    ids = tuple(f"c{n:04d}" for n in range(k))
    items = [f"i{n}" for n in range(40)]
    wide = ItemClusters(ids=ids, centroids=np.eye(k), descriptors=np.zeros((k, len(TRAIT_NAMES))),
                        global_ctr=rng.uniform(0.02, 0.2, k), members={item: ids[n % k] for n, item in enumerate(items)},
                        top_items={}, neighbours={c: ((ids[(n + 1) % k], 0.6),) for n, c in enumerate(ids)})
    scores = rng.random(len(items)).tolist()
    posteriors = ClusterPosteriors(evidence={"c0001": [2.0, 1.0], "c0003": [0.0, 4.0]})
    params = BanditParams(active=3, floor=0.05)
    prior = prior_appeal(wide, None, params)
    slate = adaptive_slate(items, scores, 25, wide, prior, posteriors, np.random.default_rng(5), params)

    again = np.random.default_rng(5)  # the loop slot_chances served before, on the same random numbers
    alpha, beta, _ = posteriors.beta(wide, prior, params)
    draws = log_rate_draws(alpha, beta, again, params)
    left = [sorted((-s, i) for i, s in zip(items, scores) if wide.members[i] == c) for c in ids]
    eligible = np.ones(k, dtype=bool)
    heads = np.array([-rows[0][0] for rows in left])
    expected, probabilities = [], []
    while len(expected) < 25:
        chance = slot_chances(alpha, beta, again, params, eligible=eligible, offsets=heads,
                              playing=posteriors.in_play(wide, prior, params), draws=draws)
        row = min(int(np.searchsorted(np.cumsum(chance), again.random(), side="right")), k - 1)
        while not eligible[row]:
            row -= 1
        expected.append(left[row].pop(0)[1])
        probabilities.append(round(float(chance[row]), 6))
        if left[row]:
            heads[row] = -left[row][0][0]
        else:
            eligible[row] = False
    assert list(slate.items) == expected and list(slate.probabilities) == probabilities
