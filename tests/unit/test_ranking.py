"""The ranking pipeline on a small hand-made state: sources, reads within budget, filters, diversity, the blend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
from onnx import TensorProto, helper

from tailor.popularity import trend_key
from tailor.ranking import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    CommercialPerformance,
    ConversionPrior,
    Filters,
    Pipeline,
    PurchaseProbability,
    RankingModel,
    Relevance,
    Request,
    Route,
    RowCache,
    candidate_features,
)
from tailor.ranking.candidates import PopularSource, SessionSource, merge_proposals
from tailor.ranking.context import RankingContext
from tailor.ranking.diversity import diversify
from tailor.ranking.pipeline import DEFAULT_ROUTES
from tailor.ranking.scoring import METADATA_KEY
from tailor.session import SessionState
from tailor.shopper import ShopperState
from tailor.store.memory import MemoryStateStore

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()
DAY = "2026-11-02"
# item -> (category, price, available, views, purchases, trend count)
CATALOG = {
    "lamp-1": ("home", 40.0, True, 100, 20, 50.0),
    "lamp-2": ("home", 45.0, True, 90, 4, 40.0),
    "lamp-3": ("home", 30.0, False, 80, 6, 30.0),
    "rug-1": ("home", 120.0, True, 20, 1, 10.0),
    "tv-1": ("electronics", 600.0, True, 300, 1, 45.0),
    "tv-2": ("electronics", 900.0, True, 150, 0, 35.0),
    "book-1": ("books", 12.0, True, 60, 8, 20.0),
    "book-2": ("books", 15.0, True, 40, 1, 5.0),
}


def state(**shopper_fields) -> MemoryStateStore:
    store = MemoryStateStore()
    for item, (category, price, available, views, purchases, trend) in CATALOG.items():
        store.tables["items"][item] = {"item_id": item, "category": category, "price": price, "available": available,
                                       "views": views, "purchases": purchases, "revenue": purchases * price,
                                       "last_event_at": NOW - 3600}
        row = store.tables["trends"].setdefault(trend_key(DAY, item), {"period": trend_key(DAY, item)})
        row[f"n:{item}"] = trend
    store.tables["associations"]["lamp-1"] = {"item_id": "lamp-1", "n:rug-1": 6, "n:book-2": 2}
    store.tables["associations"]["rug-1"] = {"item_id": "rug-1", "n:lamp-1": 6}
    store.tables["associations"]["book-2"] = {"item_id": "book-2", "n:lamp-1": 2}
    store.tables["queries"]["reading lamp"] = {"query": "reading lamp", "searches": 9, "c:lamp-2": 4, "p:lamp-1": 1,
                                               "c:book-2": 1}
    shopper = ShopperState(user_id="u1", first_seen=NOW - 7200, last_seen=NOW - 60, events=6, sessions=1,
                           last_session_id="s1", session_ids=["s1"], recent_items=["lamp-1"],
                           category_affinity={"home": 4.0, "books": 1.0})
    for name, value in shopper_fields.items():
        setattr(shopper, name, value)
    store.tables["shoppers"]["u1"] = shopper.to_row()
    session = SessionState(session_id="s1", user_id="u1", started_at=NOW - 600, last_seen=NOW - 60, expires_at=0,
                           events=4, items=["lamp-1"], categories=["home"], last_query="reading lamp",
                           last_query_at=NOW - 300)
    store.tables["sessions"]["s1"] = session.to_row()
    return store


def pipeline(store, **kwargs) -> Pipeline:
    return Pipeline(store, [CommercialPerformance(), PurchaseProbability(ConversionPrior()), Relevance()], **kwargs)


def ranked(p: Pipeline, request: Request, now: float = NOW):
    gathered = p.gather(request, now)
    return gathered, p.rank(gathered)


def test_an_unknown_shopper_gets_the_popular_items():
    _, items = ranked(pipeline(state()), Request("feed", user_id="nobody", n=3))
    assert [i.item_id for i in items] and all(i.sources == ["popular"] for i in items)
    assert items[0].item_id == "lamp-1"  # the best seller on every term
    assert len(items) == 3


def test_a_known_shopper_gets_their_session_its_search_and_co_occurring_items():
    gathered, items = ranked(pipeline(state()), Request("feed", user_id="u1", session_id="s1", n=8))
    sources = {i.item_id: i.sources for i in items}
    assert "session" in sources["rug-1"]  # co-occurs with lamp-1, which the shopper just viewed
    assert "query" in sources["lamp-2"]  # clicked after the session's recent search
    assert "session" in sources["lamp-1"] and "popular" in sources["lamp-1"]
    assert "lamp-3" not in sources  # unavailable, and the default filters hide it


def test_without_a_session_id_the_shoppers_last_session_counts_while_it_is_going():
    p = pipeline(state())
    assert p.gather(Request("feed", user_id="u1"), NOW).ctx.session.session_id == "s1"
    assert p.gather(Request("feed", user_id="u1"), NOW + 3600).ctx.session is None


def test_scores_are_the_weighted_terms_and_explain_says_so():
    _, items = ranked(pipeline(state()), Request("feed", user_id="u1", n=6, explain=True))
    for item in items:
        parts = item.parts
        assert set(parts) >= {"commercial", "probability", "purchase_probability", "diversity"}
        total = sum(parts[f"weight_{name}"] * parts[name] for name in ("commercial", "probability", "diversity"))
        assert item.score == pytest.approx(total, abs=1e-5)
        assert all(0.0 <= parts[name] <= 1.0 for name in ("commercial", "probability", "diversity"))
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    assert next(i for i in items if i.item_id == "lamp-1").parts["diversity"] == 0.0  # just seen: no repeat bonus


def test_weights_are_configurable_per_route():
    routes = dict(DEFAULT_ROUTES)
    routes["feed"] = Route(DEFAULT_ROUTES["feed"].sources, {"commercial": 1.0})
    _, items = ranked(pipeline(state(), routes=routes), Request("feed", user_id="u1", n=5, explain=True))
    commercial = [i.parts["commercial"] for i in items]
    assert commercial == sorted(commercial, reverse=True) and set(items[0].parts) == {"commercial", "weight_commercial"}


def test_diversity_spreads_the_list_over_categories():
    scores = np.array([1.0, 0.99, 0.98, 0.97, 0.5])
    codes = np.array([0, 0, 0, 0, 1])
    seen = np.zeros(5, dtype=bool)
    order, div = diversify(scores, codes, seen, 0.0, 3)
    assert order.tolist() == [0, 1, 2]
    order, div = diversify(scores, codes, seen, 1.0, 3)
    assert order.tolist() == [0, 4, 1]  # the second home item waits for the best of another category
    assert div.tolist() == [1.0, 1.0, 0.5]
    order, _ = diversify(scores, codes, np.array([True, False, False, False, False]), 1.0, 2,
                         eligible=np.array([True, True, False, True, True]))
    assert order.tolist() == [1, 4]
    assert diversify(scores, codes, seen, 1.0, 10, greedy_positions=2)[0].tolist() == [0, 4, 1, 2, 3]


@pytest.mark.parametrize("filters, kept, dropped", [
    (Filters(), {"lamp-2"}, {"lamp-3"}),
    (Filters(available_only=False), {"lamp-3"}, set()),
    (Filters(min_price=20, max_price=100), {"lamp-1", "lamp-2"}, {"tv-1", "book-1", "rug-1"}),
    (Filters(categories=("books",)), {"book-1"}, {"lamp-1", "tv-1"}),
    (Filters(exclude_purchased=True), {"lamp-2"}, {"lamp-1"}),
])
def test_filters(filters, kept, dropped):
    store = state()
    store.tables["shoppers"]["u1"]["purchased_items"] = ["lamp-1"]
    _, items = ranked(pipeline(store), Request("feed", user_id="u1", n=20, filters=filters))
    ids = {i.item_id for i in items}
    assert kept <= ids and not (dropped & ids)


def test_filters_reject_impossible_bounds():
    with pytest.raises(ValueError, match="min_price"):
        Filters(min_price=10, max_price=5)
    with pytest.raises(ValueError, match="max_price"):
        Filters(max_price=float("nan"))


def test_search_re_ranks_what_shoppers_chose_after_the_query_and_an_unknown_query_gets_nothing():
    p = pipeline(state())
    _, items = ranked(p, Request("search", user_id="u1", query="  Reading   LAMP ", n=5, explain=True))
    assert {i.item_id for i in items} == {"lamp-1", "lamp-2", "book-2"}
    assert all(i.sources == ["query"] for i in items)
    assert max(i.parts["relevance"] for i in items) == 1.0
    assert ranked(p, Request("search", query="flux capacitor"))[1] == []


def test_rerank_keeps_every_caller_item_and_weighs_the_base_scores():
    p = pipeline(state())
    items = ["book-2", "tv-2", "never-seen", "book-2"]
    _, result = ranked(p, Request("rerank", items=tuple(items), n=10, filters=Filters(available_only=False)))
    assert sorted(i.item_id for i in result) == ["book-2", "never-seen", "tv-2"]
    low = ranked(p, Request("rerank", items=("tv-2", "book-2"), base_scores=(0.0, 100.0), n=2, explain=True))[1]
    high = ranked(p, Request("rerank", items=("tv-2", "book-2"), base_scores=(100.0, 0.0), n=2, explain=True))[1]
    tv_low, tv_high = (next(i for i in found if i.item_id == "tv-2") for found in (low, high))
    assert (tv_low.parts["relevance"], tv_high.parts["relevance"]) == (0.05, 1.0)  # min-max, the lowest still counts
    assert tv_high.score - tv_low.score == pytest.approx(0.4 * 0.95, abs=1e-5)  # the relevance weight's share
    unscored = ranked(p, Request("rerank", items=("tv-2", "book-2"), n=2, explain=True))[1]
    assert {i.item_id: i.parts["relevance"] for i in unscored} == {"tv-2": 1.0, "book-2": pytest.approx(0.63093, abs=1e-5)}


def test_related_items_and_their_fallbacks():
    p = pipeline(state())
    _, items = ranked(p, Request("related", item_id="lamp-1", n=2))
    assert [i.item_id for i in items] == ["rug-1", "book-2"] and all(i.sources == ["related"] for i in items)
    # Asked for more than its co-occurrences hold: popular items of its category fill the list, after them as
    # candidates and ranked with them by the blend.
    _, items = ranked(p, Request("related", item_id="lamp-1", n=5))
    sources = {i.item_id: i.sources for i in items}
    assert "related" in sources["rug-1"] and "related" in sources["book-2"]
    filled = [item for item, found in sources.items() if found == ["popular"]]
    assert filled and all(CATALOG[item][0] == CATALOG["lamp-1"][0] for item in filled) and "lamp-1" not in sources
    # An item without co-occurrences: popular items of its category; one never seen: nothing.
    _, items = ranked(p, Request("related", item_id="lamp-2", n=5))
    assert items and {CATALOG[i.item_id][0] for i in items} == {"home"} and "lamp-2" not in {i.item_id for i in items}
    assert ranked(p, Request("related", item_id="no-such-item", n=5))[1] == []


def test_related_folds_the_callers_session_without_storing_it():
    from tailor.events import parse_event

    store = state()
    before = store.snapshot()
    events = tuple(parse_event({"event_id": f"e{i}", "user_id": "anon", "session_id": "web-1",
                                "timestamp": "2026-11-02T11:58:00Z", "event_type": "view", "item_id": item})
                   for i, item in enumerate(["book-2", "rug-1"]))
    gathered, items = ranked(pipeline(store), Request("related", item_id="lamp-1", session_events=events, n=5,
                                                      explain=True))
    assert gathered.ctx.session is not None and gathered.ctx.session.items == ["book-2", "rug-1"]
    diversity = {i.item_id: i.parts["diversity"] for i in items}
    assert diversity["rug-1"] == 0.0 and diversity["book-2"] == 0.0  # both just seen
    assert store.snapshot() == before


def test_the_feed_reads_in_at_most_two_round_trips_and_the_cache_fills_what_did_not_fit():
    store = state()
    for k in range(300):  # more popular items than one read holds
        item = f"x-{k:03d}"
        store.tables["items"][item] = {"item_id": item, "category": f"c{k % 7}", "price": 10.0 + k, "views": 5}
        store.tables["trends"][trend_key(DAY, item)][f"n:{item}"] = 1.0 + k / 1000
    p = pipeline(store, max_candidates=300)
    trips = []
    left_out = []
    for _ in range(6):
        before = store.calls["read"]
        gathered = p.gather(Request("feed", user_id="u1"), NOW)
        assert gathered.ctx.round_trips == store.calls["read"] - before
        trips.append(gathered.ctx.round_trips)
        left_out.append(len(gathered.left_out))
    assert max(trips) <= 2
    assert left_out[0] > 0 and left_out[-1] == 0  # later requests' spare room read what the first could not
    assert len(gathered.candidates) == 300
    # A session the request names is read with the shopper; with every shared row cached that is one round trip.
    assert p.gather(Request("feed", user_id="u1", session_id="s1"), NOW).ctx.round_trips == 1
    # The cache expires: two minutes later the shared rows are read again (still within two round trips).
    assert p.gather(Request("feed", user_id="u1", session_id="s1"), NOW + 121).ctx.round_trips == 2


def test_without_a_budget_every_candidate_is_read():
    store = state()
    for k in range(250):
        item = f"x-{k:03d}"
        store.tables["items"][item] = {"item_id": item, "category": "c", "views": 1}
        store.tables["trends"][trend_key(DAY, item)][f"n:{item}"] = 1.0
    gathered = pipeline(store, read_waves=None, wave_keys=None, prefetch=False).gather(Request("feed"), NOW)
    assert len(gathered.candidates) == len(CATALOG) + 250 and not gathered.left_out


def test_candidate_budget_and_shares():
    proposals = [("session", 0.5, {"a": 3.0, "b": 2.0, "c": 1.0}), ("query", 0.25, {"c": 5.0, "d": 1.0, "e": 1.0}),
                 ("popular", 1.0, {"b": 9.0, "f": 8.0, "g": 7.0, "h": 6.0})]
    assert merge_proposals(proposals, 4) == ["a", "b", "c", "f"]
    assert merge_proposals(proposals, 8) == ["a", "b", "c", "d", "e", "f", "g", "h"]


def test_feature_matrix_names_and_values():
    p = pipeline(state())
    gathered = p.gather(Request("feed", user_id="u1", session_id="s1", n=5), NOW)
    features = gathered.features
    assert features.shape == (len(gathered.candidates), len(FEATURE_NAMES)) and features.dtype == np.float32
    row = dict(zip(FEATURE_NAMES, features[gathered.candidates.ids.index("rug-1")]))
    assert row["item_log_views"] == pytest.approx(np.log1p(20))
    assert row["affinity_share"] == pytest.approx(0.8)  # home: 4 of 5
    assert row["cooc_log"] == pytest.approx(np.log1p(6))  # co-occurs 6 times with lamp-1, the latest item
    assert row["session_category"] == 1.0 and row["session_recency"] == 0.0
    assert row["price_vs_recent"] == pytest.approx(np.log(120 / 40))
    lamp = dict(zip(FEATURE_NAMES, features[gathered.candidates.ids.index("lamp-2")]))
    assert lamp["query_share"] == pytest.approx(4 / (4 + 4 + 1))
    cold = p.gather(Request("feed", user_id="nobody"), NOW)
    shopper_columns = [FEATURE_NAMES.index(n) for n in ("shopper_known", "affinity_share", "session_recency")]
    assert not cold.features[:, shopper_columns].any()


def test_new_sources_features_and_scorers_plug_into_the_same_pipeline():
    @dataclass
    class Editorial:
        name: str = "editorial"
        share: float = 1.0

        def keys(self, ctx):
            return [("items", "book-2")]

        def propose(self, ctx, limit):
            return {"book-2": 1.0}

    class Pinned:
        name = "pinned"

        def score(self, ctx, candidates, features):
            return np.array([1.0 if i == "book-2" else 0.0 for i in candidates.ids]), {}

    class Shouting:
        names = ("editorial_pick",)

        def compute(self, ctx, candidates):
            return candidates.strengths["editorial"][:, None]

    routes = {**DEFAULT_ROUTES, "feed": Route((Editorial(), PopularSource()), {"commercial": 0.5, "pinned": 10.0})}
    p = Pipeline(state(), [CommercialPerformance(), Pinned()], routes=routes)
    gathered = p.gather(Request("feed", n=3), NOW)
    items = p.rank(gathered)
    assert items[0].item_id == "book-2" and items[0].sources == ["editorial", "popular"]
    extended = candidate_features(gathered.ctx, gathered.candidates, FEATURE_GROUPS + (Shouting(),))
    assert extended.shape[1] == len(FEATURE_NAMES) + 1
    assert extended[gathered.candidates.ids.index("book-2"), -1] == 1.0


def test_a_model_reads_its_features_by_name():
    names = ["cooc_log", "item_log_views"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["p"]),
         helper.make_node("Flatten", ["p"], ["flat"], axis=0), helper.make_node("Squeeze", ["flat", "axis"],
                                                                                  ["purchase_probability"])],
        "tiny", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("purchase_probability", TensorProto.FLOAT, [None])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, 0.0]),
                     helper.make_tensor("axis", TensorProto.INT64, [1], [0])])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    helper.set_model_props(model_proto, {METADATA_KEY: json.dumps({"feature_names": names})})
    model = RankingModel(model_proto.SerializeToString(), version="tiny")
    features = np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32)
    features[:, FEATURE_NAMES.index("cooc_log")] = [0.0, 1.0, -1.0]
    features[:, FEATURE_NAMES.index("item_log_views")] = 5.0  # weight 0: must not matter
    np.testing.assert_allclose(model.predict(features), 1 / (1 + np.exp(-np.array([0.0, 1.0, -1.0]))), rtol=1e-6)
    assert model.label == "ranker:tiny"
    helper.set_model_props(model_proto, {METADATA_KEY: json.dumps({"feature_names": ["no_such_feature"]})})
    with pytest.raises(ValueError, match="no_such_feature"):
        RankingModel(model_proto.SerializeToString())


def test_the_related_routes_probability_term_is_scaled_by_at_least_the_models_base_rate():
    class Fixed:
        label = "fixed"

        def __init__(self, probabilities, base_rate):
            self.probabilities, self.base_rate = np.array(probabilities), base_rate

        def predict(self, features):
            return self.probabilities

    def term(route, probabilities, base_rate):
        ctx = RankingContext(Request(route, item_id="lamp-1", n=3) if route == "related" else Request(route, n=3), NOW)
        return PurchaseProbability(Fixed(probabilities, base_rate)).score(ctx, None, np.zeros((3, 1)))

    likely, _ = term("related", [0.02, 0.05, 0.01], base_rate=0.004)
    np.testing.assert_allclose(likely, [0.4, 1.0, 0.2])
    # No candidate likelier than the model's average one: differences stay as small as they are.
    unlikely, parts = term("related", [0.0002, 0.00007, 0.0], base_rate=0.004)
    np.testing.assert_allclose(unlikely, [0.05, 0.0175, 0.0])
    np.testing.assert_allclose(parts["purchase_probability"], [0.0002, 0.00007, 0.0])
    untrained, _ = term("related", [0.0002, 0.0001, 0.0], base_rate=0.0)
    np.testing.assert_allclose(untrained, [1.0, 0.5, 0.0])
    # The feed's term is the list's own order whatever its level.
    feed, _ = term("feed", [0.0002, 0.00007, 0.0], base_rate=0.004)
    np.testing.assert_allclose(feed, [1.0, 0.35, 0.0])


def test_a_trained_rankers_base_rate_is_the_share_of_bought_candidates_it_learnt_from():
    from tailor.models import default_model

    shipped = RankingModel.from_stored(default_model("ranker"))
    training = shipped.metadata["training"]
    assert shipped.base_rate == pytest.approx(training["positives"] / training["rows"])
    assert 0.0 < shipped.base_rate < 0.5
    assert ConversionPrior().base_rate == 0.0


def test_row_cache_expires_evicts_and_remembers_what_was_wanted():
    cache = RowCache({"items": 10.0}, max_rows=2)
    cache.put("items", "a", 1, now=100.0)
    cache.put("items", "b", None, now=100.0)  # known absent
    cache.put("queries", "q", 3, now=100.0)  # no TTL for this table: never cached
    assert cache.get("items", "a", 105.0) == (True, 1) and cache.get("items", "b", 105.0) == (True, None)
    assert cache.get("items", "a", 110.0) == (False, None) and cache.get("queries", "q", 100.0) == (False, None)
    cache.put("items", "c", 3, now=101.0)
    assert cache.get("items", "a", 105.0) == (False, None) and len(cache) == 2  # the oldest left
    cache.want("items", "x")
    cache.want("items", "y")
    assert cache.take_wanted(1) == [("items", "y")] and cache.take_wanted(5) == [("items", "x")]


def test_row_cache_keeps_within_its_weight_however_few_the_rows():
    cache = RowCache({"associations": 60.0}, max_rows=100, max_weight=10_000)
    for k in range(5):  # an item's associations row of 4,000 partners each
        cache.put("associations", f"i{k}", {"partners": k}, now=100.0 + k, weight=4_000)
    assert len(cache) == 2 and cache.weight == 8_000  # the oldest left, though far fewer than max_rows
    assert cache.get("associations", "i4", 105.0)[0] and not cache.get("associations", "i2", 105.0)[0]
    cache.put("associations", "i4", {"partners": 4}, now=106.0, weight=10)  # the same row, re-read smaller
    assert cache.weight == 4_010 and len(cache) == 2
    cache.put("associations", "huge", {}, now=107.0, weight=50_000)  # alone past the budget: kept, alone
    assert len(cache) == 1 and cache.weight == 50_000
    cache.clear()
    assert cache.weight == 0 and len(cache) == 0


def test_requests_are_checked():
    with pytest.raises(ValueError, match="route"):
        Request("homepage")
    with pytest.raises(ValueError, match="base_scores"):
        Request("rerank", items=("a", "b"), base_scores=(1.0,))
    assert SessionSource().propose(pipeline(state()).gather(Request("feed"), NOW).ctx, 10) == {}
