"""Item vectors: training from co-interaction, ignores and metadata; the file; search with filters inside it; the
update rule; the blend with the association ranking; the feed's embedding source."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tailor.embeddings import (
    EXACT,
    EXACT_UP_TO,
    FORMAT,
    INDEX_PROBES,
    MODEL_NAME,
    ItemVectors,
    Search,
    VectorFilters,
    VectorUpdate,
    load_item_vectors,
    update_vector,
)
from tailor.embeddings.ranking import EmbeddingBlend, blend_next_items
from tailor.experiments.strategies import BUILT_IN, Strategy
from tailor.models import ModelRegistry
from tailor.ranking import ConversionPrior, Filters, Request
from tailor.ranking.candidates import EmbeddingSource, SessionSource, embedding_query
from tailor.ranking.context import RankingContext
from tailor.serving import Recommender
from tailor.session import SessionState
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.training.embeddings import (
    EmbeddingParams,
    Interactions,
    interactions_from_events,
    interactions_from_sessions,
    inverted_file,
    read_item_metadata,
    revisit_odds,
    seen_passed_over,
    serving_probes,
    train_item_vectors,
)

PARAMS = EmbeddingParams(dim=4, window=2, min_learned=1, index_lists=2)
# Two worlds alike weigh their directions alike past the first of each: two dimensions keep exactly those first ones,
# where more would keep some of the others, which ones down to rounding.
TWO_WORLD_PARAMS = EmbeddingParams(**{**PARAMS.__dict__, "dim": 2})


def two_worlds(repeats: int = 30) -> list[list[str]]:
    """Shoppers browse lamps together and books together, never across."""
    sessions = []
    for k in range(repeats):
        sessions.append(["lamp-1", "lamp-2", "lamp-3"][k % 3:] + ["lamp-1", "lamp-2", "lamp-3"][:k % 3])
        sessions.append(["book-1", "book-2", "book-3"][k % 3:] + ["book-1", "book-2", "book-3"][:k % 3])
    return sessions


def cosine(vectors: ItemVectors, a: str, b: str) -> float:
    return float(vectors.vector(a) @ vectors.vector(b))


def test_items_engaged_together_get_close_vectors_and_others_far_ones():
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), TWO_WORLD_PARAMS)
    assert cosine(vectors, "lamp-1", "lamp-2") > 0.9
    assert cosine(vectors, "lamp-1", "book-1") < 0.1
    assert [item for item, _ in vectors.nearest(vectors.vector("book-1"), 3)] == sorted(
        [item for item, _ in vectors.nearest(vectors.vector("book-1"), 3)], key=lambda i: -cosine(vectors, "book-1", i))
    assert {item for item, _ in vectors.nearest(vectors.vector("book-1"), 3)} == {"book-1", "book-2", "book-3"}


def test_an_item_nobody_touched_gets_its_vector_from_its_metadata():
    attributes = {**{f"lamp-{k}": {"category": "home", "price": 40.0} for k in (1, 2, 3)},
                  **{f"book-{k}": {"category": "books", "price": 12.0} for k in (1, 2, 3)},
                  "lamp-new": {"category": "home", "price": 42.0}}
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), TWO_WORLD_PARAMS, attributes=attributes)
    assert vectors.metadata_only[vectors.row("lamp-new")] and not vectors.metadata_only[vectors.row("lamp-1")]
    assert cosine(vectors, "lamp-new", "lamp-1") > 0.8 > 0.1 > cosine(vectors, "lamp-new", "book-1")
    without = train_item_vectors(interactions_from_sessions(two_worlds()), TWO_WORLD_PARAMS)
    assert without.row("lamp-new") is None


def test_ignored_impressions_push_items_apart():
    # Lamps and rugs are viewed together, but shoppers who only view lamps pass over the rug when shown it above.
    # Some sessions view the rug and lamp-2 alone: otherwise the three items' co-occurrences are alike, two directions
    # of the factorisation weigh the same, and which of them the vectors keep is down to rounding.
    sessions = [["lamp", "rug", "lamp-2"], ["rug", "lamp-2", "lamp"], ["lamp-2", "lamp", "rug"]] * 10 + [["rug", "lamp-2"]] * 5
    plain = train_item_vectors(Interactions([[(i, "view") for i in s] for s in sessions]), PARAMS, index=False)
    shown = [[(i, "view") for i in s] + [("mug", "view")] for s in sessions] * 2
    ignored = train_item_vectors(Interactions(shown, [{"rug-x"} for _ in shown]), PARAMS, index=False)
    assert ignored.row("rug-x") is None  # an item only ever ignored gets no vector from the sessions alone
    # The rug is also viewed in sessions of its own, with a mug: shoppers take to it, those after lamps excepted.
    events = [{"event_type": "view", "session_id": f"s{k}", "timestamp": f"2026-11-0{1 + k % 3}T10:00:0{j}Z",
               "item_id": item} for k, s in enumerate(sessions + [["rug", "mug"]] * 20) for j, item in enumerate(s)]
    events += [{"event_type": "impression", "session_id": f"s{k}", "timestamp": f"2026-11-0{1 + k % 3}T09:59:00Z",
                "item_ids": ["rug", "lamp"]} for k in range(len(sessions)) if sessions[k][0] != "rug"]
    data = interactions_from_events(events)
    assert sum(1 for found in data.ignored if found == {"rug"}) == 0  # rug was viewed in every session: not ignored
    # Now sessions that only view lamps, the first clicked below the rug they are shown: the rug becomes an ignored
    # item of theirs.
    lamp_only = [{"event_type": "view", "session_id": f"x{k}", "timestamp": f"2026-11-05T10:00:0{j}Z", "item_id": item}
                 for k in range(20) for j, item in enumerate(["lamp", "lamp-2"])]
    lamp_only += [{"event_type": "click", "session_id": f"x{k}", "timestamp": "2026-11-05T09:59:30Z", "item_id": "lamp",
                   "position": 1} for k in range(20)]
    impressions = [{"event_type": "impression", "session_id": f"x{k}", "timestamp": "2026-11-05T09:59:00Z",
                    "item_ids": ["rug", "lamp"]} for k in range(20)]
    with_ignores = interactions_from_events(events + lamp_only + impressions)
    assert sum(1 for found in with_ignores.ignored if found == {"rug"}) == 20
    pushed = train_item_vectors(with_ignores, PARAMS, index=False)
    kept = train_item_vectors(with_ignores, EmbeddingParams(**{**PARAMS.__dict__, "ignore_weight": 0.0}), index=False)
    assert cosine(pushed, "lamp", "rug") < cosine(kept, "lamp", "rug")
    assert cosine(plain, "lamp", "rug") > 0.5


def test_only_items_shown_above_an_engaged_position_count_as_passed_over():
    def event(kind, second, **fields):
        return {"event_type": kind, "session_id": "s", "timestamp": f"2026-11-05T10:00:{second:02d}Z", **fields}

    listing = event("impression", 0, item_ids=["a", "b", "c", "d", "e"])
    assert seen_passed_over([listing]) == set()  # shown, never engaged: nothing says the shopper looked
    # A click on d (position 3) says a, b and c were passed over; e, below it, may never have been seen.
    assert seen_passed_over([listing, event("click", 5, item_id="d", position=3)]) == {"a", "b", "c"}
    # Without a feed_id an engagement belongs to the latest impression holding its item at its position.
    widget = event("impression", 7, item_ids=["x", "y", "b"])
    assert seen_passed_over([listing, widget, event("click", 9, item_id="c", position=2)]) == {"a", "b"}
    # With one it belongs to that feed's impression, whichever came later; the last position engaged at counts.
    feed = event("impression", 1, item_ids=["f", "g", "h"], feed_id="feed-1")
    found = [feed, listing, event("click", 5, item_id="g", position=1, feed_id="feed-1"),
             event("add_to_cart", 8, item_id="h", position=2, feed_id="feed-1")]
    assert seen_passed_over(found) == {"f", "g"}
    data = interactions_from_events(found)
    assert data.ignored == [{"f"}]  # an item the session engaged with is never one it passed over
    # Events are ordered by time, not by their text: 11:00 at +02:00 is 09:00 UTC, before the click at 10:00 UTC.
    offset = {**listing, "timestamp": "2026-11-05T11:00:00+02:00"}
    later = event("click", 0, item_id="d", position=3) | {"timestamp": "2026-11-05T10:00:00Z"}
    assert seen_passed_over([later, offset]) == {"a", "b", "c"}
    shifted = interactions_from_events([later | {"event_type": "view", "item_id": "e"}, offset,
                                        event("view", 0, item_id="a") | {"timestamp": "2026-11-05T09:30:00.5+00:00"}])
    assert shifted.sessions == [[("a", "view"), ("e", "view")]]
    assert shifted.window == ("2026-11-05T11:00:00+02:00", "2026-11-05T10:00:00Z")


def test_items_engaged_together_though_mostly_passed_over_move_together():
    # Shoppers click the first item of a listing or the one below it; those who open b then view c, which everyone
    # else passes over when shown it above their click. Without ignores c is just one of b's partners.
    events = []
    for k in range(60):
        session, first = f"s{k}", ["a", "b"][k % 2]
        shown = {"event_type": "impression", "session_id": session, "timestamp": "2026-11-05T10:00:00Z",
                 "item_ids": ["c", "a", "b"]}
        click = {"event_type": "click", "session_id": session, "timestamp": "2026-11-05T10:00:05Z", "item_id": first,
                 "position": 1 if first == "a" else 2}
        views = [{"event_type": "view", "session_id": session, "timestamp": f"2026-11-05T10:00:1{j}Z", "item_id": item}
                 for j, item in enumerate([first, "d", "c" if first == "b" else "e"])]
        events += [shown, click, *views]
    data = interactions_from_events(events)
    assert sum(1 for found in data.ignored if "c" in found) == 30
    moved = train_item_vectors(data, PARAMS, index=False)
    plain = train_item_vectors(data, replace(PARAMS, ignore_weight=0.0), index=False)
    assert cosine(moved, "b", "c") > cosine(plain, "b", "c")
    assert cosine(moved, "a", "c") < cosine(plain, "a", "c")


def test_filters_apply_inside_the_search_so_the_answer_is_never_short():
    ids = [f"i{k}" for k in range(10)]
    matrix = np.array([[1.0, 0.1 * k] for k in range(10)], dtype=np.float32)
    attributes = {f"i{k}": {"category": "far" if k >= 7 else "near", "price": float(k),
                            "available": k != 1} for k in range(10)}
    vectors = ItemVectors.build(ids, matrix, attributes=attributes)
    query = np.array([1.0, 0.0])
    assert [i for i, _ in vectors.nearest(query, 3)] == ["i0", "i1", "i2"]
    assert [i for i, _ in vectors.nearest(query, 3, VectorFilters())] == ["i0", "i2", "i3"]  # i1 unavailable
    assert [i for i, _ in vectors.nearest(query, 3, VectorFilters(categories=("far",)))] == ["i7", "i8", "i9"]
    assert [i for i, _ in vectors.nearest(query, 2, VectorFilters(min_price=4, max_price=5.5))] == ["i4", "i5"]
    assert [i for i, _ in vectors.nearest(query, 2, VectorFilters(exclude=frozenset({"i0", "i2"})))] == ["i3", "i4"]


def test_the_index_finds_what_exact_search_finds_when_it_probes_every_list():
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), PARAMS)
    assert vectors.centroids is not None and sorted(vectors.list_items.tolist()) == list(range(len(vectors)))
    query = vectors.vector("lamp-2")
    assert vectors.nearest(query, 4, probes=len(vectors.centroids)) == vectors.nearest(query, 4)
    assert {i for i, _ in vectors.nearest(query, 3, probes=1)} <= {"lamp-1", "lamp-2", "lamp-3"}


def test_vectors_laid_out_list_by_list_answer_every_search_as_before():
    rng = np.random.default_rng(3)
    ids = [f"i{k}" for k in range(400)]
    attributes = {item: {"category": f"c{k % 3}", "price": float(k % 50), "available": k % 7 != 0}
                  for k, item in enumerate(ids)}
    vectors = ItemVectors.build(ids, rng.standard_normal((400, 8)), attributes=attributes)
    vectors.centroids, vectors.list_offsets, vectors.list_items = inverted_file(vectors.vectors, 12, seed=1)
    laid_out = vectors.by_list()
    assert laid_out.list_items.tolist() == list(range(400)) and laid_out.by_list() is laid_out
    assert laid_out.ids != vectors.ids and all(np.array_equal(laid_out.vector(i), vectors.vector(i)) for i in ids)
    searches = [VectorFilters(), VectorFilters(available_only=False),
                VectorFilters(min_price=10, max_price=30, categories=("c1", "c2"), exclude=frozenset(ids[::5]))]
    for query in rng.standard_normal((20, 8)):
        for filters in searches:
            for probes in (1, 3, None):
                found = laid_out.nearest(query, 15, filters, probes=probes)
                before = vectors.nearest(query, 15, filters, probes=probes)
                # The same items in the same order; a score may differ in its last bit, summed in another order.
                assert [i for i, _ in found] == [i for i, _ in before]
                assert [score for _, score in found] == pytest.approx([score for _, score in before], rel=1e-6)
    rows = np.array([5, 17, 3, 399])
    for filters in (searches[0], searches[2]):
        assert np.array_equal(vectors.mask(filters, rows), vectors.mask(filters)[rows])
    assert vectors.mask(searches[1], rows) is None  # no filter: every row passes
    assert vectors.rows(["i3", "nobody", "i0"]).tolist() == [3, -1, 0]


def test_the_vectors_file_round_trips_and_bad_files_are_named(tmp_path):
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), PARAMS,
                                 attributes={"lamp-1": {"category": "home", "price": 40.0, "available": True}})
    again = ItemVectors.from_npz(vectors.to_npz())
    assert again.ids == vectors.ids and np.allclose(again.vectors, vectors.vectors)
    assert again.category_names == ["home"] and again.price[again.row("lamp-1")] == 40.0
    assert again.nearest(again.vector("lamp-1"), 3, probes=1) == vectors.nearest(vectors.vector("lamp-1"), 3, probes=1)
    with pytest.raises(ValueError, match="not an item vectors file"):
        ItemVectors.from_npz(b"nonsense")
    buffer = tmp_path / "partial.npz"
    np.savez(buffer, ids=np.array(["a"]))
    with pytest.raises(ValueError, match="lacks vectors"):
        ItemVectors.from_npz(buffer.read_bytes())


def test_published_vectors_are_what_serving_loads():
    registry = ModelRegistry(MemoryBlobStore())
    assert load_item_vectors(registry) is None
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), PARAMS)
    version = registry.publish(MODEL_NAME, vectors.to_npz(), {"format": "tailor-item-vectors/1",
                                                              "trained_at": "2026-12-01T00:00:00Z"})
    loaded = load_item_vectors(registry)
    assert sorted(loaded.ids) == sorted(vectors.ids) and loaded.metadata["version"] == version
    assert all(np.array_equal(loaded.vector(item), vectors.vector(item)) for item in vectors.ids)
    assert loaded.list_items.tolist() == list(range(len(loaded)))  # laid out list by list (ItemVectors.by_list)
    registry.publish(MODEL_NAME, b"x", {"format": "onnx", "trained_at": "2026-12-02T00:00:00Z"})
    assert load_item_vectors(registry) is None  # a current model that is not vectors is not served


def test_the_update_rule_pulls_toward_engaged_items_and_pushes_from_ignored_ones():
    lamp, book = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    rule = VectorUpdate(decay=0.5, ignore_weight=0.2)
    v = update_vector(None, lamp, "view", rule=rule)
    assert np.allclose(v, lamp)
    v = update_vector(v, book, "add_to_cart", rule=rule)
    assert np.allclose(v, [0.5, 3.0])  # the cart add weighs 3 views; what was there decays by half
    assert np.allclose(update_vector(v, lamp, "ignore", rule=rule), [0.3, 3.0])
    assert update_vector(v, None, "view", rule=rule) is v  # an item without a vector changes nothing
    assert update_vector(v, lamp, "search", rule=rule) is v  # nor does an event of no weight
    assert update_vector(None, lamp, "ignore", rule=rule) is None
    with pytest.raises(ValueError, match="decay"):
        VectorUpdate(decay=1.5)


def test_the_blend_reorders_the_association_ranking_and_adds_near_items():
    vectors = ItemVectors.build(["a", "b", "c", "d"], np.array([[1, 0], [0, 1], [0.9, 0.1], [0.95, 0.05]]))
    ranked = [("b", 3.0), ("c", 2.9)]
    query = np.array([1.0, 0.0])
    plain = blend_next_items(ranked, query, vectors, 4, blend=EmbeddingBlend(weight=0.0))
    assert [i for i, _ in plain] == ["b", "c"]
    blended = blend_next_items(ranked, query, vectors, 4, blend=EmbeddingBlend(weight=1.0, sharpness=1.0))
    assert [i for i, _ in blended][0] == "c" and {i for i, _ in blended} == {"a", "b", "c", "d"}
    small = blend_next_items(ranked, query, vectors, 4, blend=EmbeddingBlend(weight=0.05, sharpness=1.0))
    assert [i for i, _ in small] == ["c", "b", "a", "d"]  # a small weight reorders near ties and appends


def test_the_feed_source_proposes_the_nearest_items_the_filters_let_through():
    vectors = ItemVectors.build(["a", "b", "c"], np.array([[1, 0], [0.9, 0.2], [0.8, 0.3]]),
                                attributes={"b": {"price": 100.0}, "c": {"price": 10.0}})
    session = SessionState(session_id="s", user_id="u", started_at=0, last_seen=1, expires_at=0, events=1, items=["a"])
    ctx = RankingContext(Request("feed", session_id="s", filters=Filters(max_price=50)), 1.0, session=session)
    assert list(EmbeddingSource(vectors=lambda: vectors).propose(ctx, 5)) == ["c"]  # a: no price; b: too dear
    assert EmbeddingSource().propose(ctx, 5) == {}


def test_the_session_source_blends_its_best_next_items_with_the_session_s_vector_and_keeps_the_rest_after():
    from tailor.associations import parse_associations, rank_next_items
    from tailor.ranking.rows import partners

    row = {"n:x1": 5.0, "n:x2": 4.0, "n:x3": 3.0, "n:x4": 2.0, "f:x1": 5.0, "f:x2": 4.0, "f:x3": 3.0, "f:x4": 2.0}
    vectors = ItemVectors.build(["a", "x1", "x2", "x3", "x4", "near", "dear"],
                                np.array([[1, 0], [0, 1], [0.8, 0.6], [0.1, 1], [0.9, 0.1], [1, 0.05], [1, 0.01]]),
                                attributes={"near": {"price": 10.0}, "dear": {"price": 500.0}})
    blend = EmbeddingBlend(weight=1.0, sharpness=1.0, pool=2, reorders=3)
    session = SessionState(session_id="s", user_id="u", started_at=0, last_seen=1, expires_at=0, events=1, items=["a"])

    def proposed(source, filters=Filters()):
        ctx = RankingContext(Request("feed", session_id="s", filters=filters), 1.0, session=session)
        ctx.associations["a"] = partners("a", row)
        ctx.version += 1
        return list(source.propose(ctx, 10).items())

    ranked = rank_next_items(["a"], lambda keys: {k: parse_associations(k, row) for k in keys if k == "a"}, 2000)
    plain = proposed(SessionSource())
    assert plain == ranked[:10]
    source = SessionSource(vectors=lambda: vectors, blend=blend)
    blended = proposed(source)
    head = blend_next_items(ranked[:3], vectors.vector("a"), vectors, 5, blend=blend)
    total = sum(score for _, score in ranked[:3])
    assert blended == head + [(item, score / total) for item, score in ranked[3:] if item not in dict(head)]
    # x2 points the session's way and moves above x1; the nearest item the filters let through joins them; x3 and
    # x4, below the reordered head, keep their order after it.
    assert [item for item, _ in blended] == ["a", "dear", "x2", "x1", "x3", "x4"]
    assert [item for item, _ in proposed(source, Filters(max_price=50))][:4] == ["a", "near", "x2", "x1"]
    # The odds-only ranking is the blend at weight 0.
    assert proposed(SessionSource(vectors=lambda: vectors, blend=replace(blend, weight=0.0))) == plain
    # A session with nothing to go on from gets nothing, though its row holds a vector.
    from tailor.embeddings.online import HeldVector, vectors_tag

    half = np.array([1.0, 0.0], dtype=np.float16)
    held = HeldVector(vector=half.astype(np.float32), half=half, tag=vectors_tag(vectors)).encode()
    empty = SessionState(session_id="e", user_id="u", started_at=0, last_seen=1, expires_at=0, events=1, items=[],
                         vector=held)
    ctx = RankingContext(Request("feed", session_id="e"), 1.0, session=empty)
    assert embedding_query(ctx, vectors) is not None
    assert source.propose(ctx, 10) == {}


def test_metadata_files_name_their_bad_fields(tmp_path):
    good = tmp_path / "items.csv"
    good.write_text("item_id,category,price,name\nlamp-1,home,40,Brass reading lamp\n")
    assert read_item_metadata(good) == {"lamp-1": {"category": "home", "price": 40.0, "name": "Brass reading lamp"}}
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,price\nlamp-1,cheap\n")
    with pytest.raises(ValueError, match="price is not a number"):
        read_item_metadata(bad)
    with pytest.raises(ValueError, match="no item_id column"):
        (tmp_path / "none.csv").write_text("sku,price\n1,2\n")
        read_item_metadata(tmp_path / "none.csv")


def test_a_recommender_started_on_a_registry_with_published_vectors_hands_them_to_its_feed():
    vectors = ItemVectors.build(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    registry = ModelRegistry(MemoryBlobStore())
    started_without = Recommender.start(MemoryStateStore(), registry, warm=False)
    registry.publish(MODEL_NAME, vectors.to_npz(), {"format": FORMAT, "trained_at": "2026-12-01T00:00:00Z"})
    started_with = Recommender.start(MemoryStateStore(), registry, warm=False)

    def feed_source(recommender):
        (source,) = [s for s in recommender.pipeline.routes["feed"].sources if isinstance(s, EmbeddingSource)]
        return source

    assert feed_source(started_without).vectors() is None  # nothing published: the source proposes nothing
    assert feed_source(started_with).vectors().ids == ["a", "b"]


def _indexed(n: int, probes: int | None = None) -> ItemVectors:
    """n items in two lists: "anchor" and "near" in the list of the centroid (1, 0), the rest, "best" among them,
    in the list of (0, 1), although "best" lies nearest "anchor" of all: only exact search finds it."""
    ids = ["anchor", "near", "best", *(f"far-{k}" for k in range(n - 3))]
    matrix = np.array([[1.0, 0.0], [1.0, 0.3], [1.0, 0.01]] + [[0.0, 1.0]] * (n - 3), dtype=np.float32)
    vectors = ItemVectors.build(ids, matrix, metadata={} if probes is None else {"probes": probes})
    vectors.centroids = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    vectors.list_offsets = np.array([0, 2, n], dtype=np.int64)
    vectors.list_items = np.arange(n, dtype=np.int64)
    return vectors


def test_serving_searches_few_or_unindexed_vectors_exactly_and_many_indexed_ones_on_their_index():
    assert _indexed(EXACT_UP_TO).search == EXACT  # few enough: exact search costs what the index does
    unindexed = _indexed(EXACT_UP_TO + 1)
    unindexed.centroids = unindexed.list_offsets = unindexed.list_items = None
    assert unindexed.search == EXACT
    assert _indexed(EXACT_UP_TO + 1).search == Search(INDEX_PROBES)
    assert _indexed(EXACT_UP_TO + 1, probes=4).search == Search(4)  # the training's measured choice
    assert ItemVectors.from_npz(_indexed(EXACT_UP_TO + 1, probes=4).to_npz()).search == Search(4)
    assert [str(EXACT), str(Search(1)), str(Search(16))] == ["exact", "index, 1 probe", "index, 16 probes"]
    with pytest.raises(ValueError, match="probes"):
        Search(0)


def test_the_feed_searches_the_vectors_as_they_say_and_its_explanation_names_the_search():
    from tailor.ranking import ConversionPrior, Pipeline, PurchaseProbability, Relevance, Route
    from tailor.ranking.scoring import DEFAULT_WEIGHTS

    store = MemoryStateStore()
    store.tables["sessions"]["s"] = SessionState(session_id="s", user_id="u", started_at=0, last_seen=1, expires_at=0,
                                                 events=1, items=["anchor"]).to_row()
    request = Request("feed", user_id="u", session_id="s", n=3, explain=True)
    for vectors, search, found in ((_indexed(EXACT_UP_TO + 1, probes=1), "index, 1 probe", {"anchor", "near"}),
                                   (_indexed(EXACT_UP_TO), "exact", {"anchor", "best", "near"})):
        route = Route((EmbeddingSource(vectors=lambda v=vectors: v, share=1.0),), DEFAULT_WEIGHTS["feed"])
        feed = Pipeline(store, [PurchaseProbability(ConversionPrior()), Relevance()], routes={"feed": route})
        items = feed.rank(feed.gather(request, 1.0))
        assert {item.item_id for item in items} == found
        assert [item.search for item in items] == [search] * len(found)
        assert {item.search for item in feed.rank(feed.gather(replace(request, explain=False), 1.0))} == {None}


def test_training_publishes_the_fewest_probes_that_keep_the_index_s_recall():
    assert serving_probes({4: 0.90, 8: 0.96, 16: 0.99}) == 8
    assert serving_probes({4: 0.80, 8: 0.90}) == 8  # none reaches the target: the most measured
    vectors = train_item_vectors(interactions_from_sessions(two_worlds()), PARAMS)
    assert vectors.metadata["index_recall"] == {"4": 1.0, "8": 1.0, "16": 1.0, "32": 1.0, "64": 1.0}
    assert vectors.metadata["probes"] == 4  # two lists: four probes search both
    assert "probes" not in train_item_vectors(interactions_from_sessions(two_worlds()), PARAMS, index=False).metadata


def test_an_index_search_widens_to_as_many_lists_as_hold_the_items_its_filters_let_through():
    vectors = _indexed(200)  # list 0: anchor and near; list 1: best and 197 far items
    query = vectors.vector("anchor")
    assert [i for i, _ in vectors.nearest(query, 3, probes=1)] == ["anchor", "near"]
    vectors.price[:] = 10.0
    vectors.price[1] = np.nan  # near has no price: half of list 0 passes a price bound, so two lists are searched
    assert [i for i, _ in vectors.nearest(query, 2, VectorFilters(max_price=50), probes=1)] == ["anchor", "best"]
    vectors.price[:2] = np.nan  # nothing in list 0 passes: every list is searched
    assert [i for i, _ in vectors.nearest(query, 1, VectorFilters(max_price=50), probes=1)] == ["best"]
    vectors.price[:] = 10.0  # everything passes: list 0 alone is searched
    assert [i for i, _ in vectors.nearest(query, 3, VectorFilters(max_price=50), probes=1)] == ["anchor", "near"]


def test_revisit_odds_count_where_each_session_went_next_by_how_far_it_had_come():
    data = interactions_from_sessions([["a", "b", "a"], ["a", "b", "c"], ["x", "x"]])
    data.sessions.append([("p", "view"), ("p", "remove_from_cart"), ("q", "view")])  # not an engagement: skipped
    odds = revisit_odds(data, prior=0.0)
    # After one engagement: b, b, x again, q -> 3 new, 1 back to the item just engaged with.
    assert odds.of(1, 1)[:2] == (pytest.approx(1 / 3), 0.0)
    # After a, b: back to a (the item before last) once, on to c once.
    assert odds.of(2, 2)[:2] == (0.0, 1.0)
    # Shrunk toward every context's share by the prior: (count + prior x share) / (new + prior x share of new).
    total = np.array([4, 1, 1] + [0] * 8, dtype=float)
    share = (total + 1) / (total.sum() + 11)
    shrunk = revisit_odds(data, prior=2.0).of(2, 2)
    assert shrunk[1] == pytest.approx((1 + 2 * share[2]) / (1 + 2 * share[0]), abs=1e-6)
    assert revisit_odds(data).of(5, 7) == revisit_odds(data).overall


def test_trained_vectors_carry_the_revisit_odds_of_their_sessions_through_the_file_and_to_the_feed():
    data = interactions_from_sessions(two_worlds())
    vectors = train_item_vectors(data, PARAMS)
    assert vectors.revisit_odds == revisit_odds(data)
    again = ItemVectors.from_npz(vectors.to_npz())
    assert again.revisit_odds == revisit_odds(data)
    assert ItemVectors.build(["a"], np.array([[1.0]])).revisit_odds is None  # a file from before them

    def session_source(pipeline):
        (source,) = [s for s in pipeline.routes["feed"].sources if isinstance(s, SessionSource)]
        return source

    recommender = Recommender(MemoryStateStore(), ConversionPrior(), item_vectors=lambda: again)
    assert session_source(recommender.pipeline).vectors().revisit_odds == revisit_odds(data)
    # A strategy naming its own sources reminds with them too; one serving the default's still gathers as it does.
    pipeline, _ = recommender._pipeline(Strategy("own-sources", sources={"session": 0.6, "popular": 0.4}))
    assert session_source(pipeline).vectors().revisit_odds == revisit_odds(data)
    assert recommender._pipeline(BUILT_IN["baseline"])[0].gathers_like(recommender.pipeline, "feed")
    assert session_source(Recommender(MemoryStateStore(), ConversionPrior()).pipeline).vectors() is None
