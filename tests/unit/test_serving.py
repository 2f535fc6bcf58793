"""The Recommender facade on state Ingest wrote from simulated shoppers, scored by the shipped default model."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

import pytest

from tailor.events import EventError, parse_event
from tailor.models import DEFAULT_DIR, default_model
from tailor.ranking import FEATURE_NAMES, MODEL_NAME, RankingModel
from tailor.serving import MAX_N, MAX_SESSION_EVENTS, Filters, Ranking, Recommender, RequestError
from tailor.store.memory import MemoryStateStore
from tailor_lab.simulator import simulate

from tests.helpers.ingest import clean_run


@cache
def world():
    events = simulate(shoppers=40, days=1.0, seed=21).events
    end = datetime.fromisoformat(events[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
    return events, end


@cache
def ingested() -> MemoryStateStore:
    """The world's state, written once: the Recommender only reads it, and the memory store reads out copies."""
    return clean_run(world()[0])[0]


def recommender(**kwargs) -> Recommender:
    _, end = world()
    return Recommender(ingested(), RankingModel.from_stored(default_model(MODEL_NAME)), clock=lambda: end + 30,
                       **kwargs)


def busiest_shopper() -> tuple[str, str]:
    events, _ = world()
    counts: dict[tuple[str, str], int] = {}
    for e in events[-3000:]:
        if e["event_type"] == "view":
            counts[(e["user_id"], e["session_id"])] = counts.get((e["user_id"], e["session_id"]), 0) + 1
    return max(counts, key=counts.get)


def test_the_shipped_default_model_matches_this_code_and_carries_its_evaluation():
    stored = default_model(MODEL_NAME)
    model = RankingModel.from_stored(stored)
    assert model.feature_names == FEATURE_NAMES
    assert model.label == f"ranker:{stored.version}" and stored.origin == "default"
    assert (DEFAULT_DIR / "ranker.onnx").stat().st_size < 1_000_000
    metrics = stored.metadata["evaluation"]["metrics"]
    trained, untrained = metrics["trained blend (served)"], metrics["untrained blend (purchase rate as probability)"]
    assert trained["auc"] > untrained["auc"] and trained["ndcg_at_10"] > untrained["ndcg_at_10"]
    assert stored.metadata["training_window"]["end"] < stored.metadata["evaluation"]["window"]["start"]


def test_feed_for_a_shopper_with_history():
    r = recommender()
    user, session = busiest_shopper()
    first = r.feed(user, session_id=session, n=10, explain=True)
    second = r.feed(user, session_id=session, n=10)
    assert isinstance(first, Ranking) and len(first.items) == 10
    assert first.feed_id != second.feed_id
    assert first.model == r.model.label
    assert 1 <= first.round_trips <= 2 and second.round_trips <= 2
    assert any("session" in item.sources for item in first.items)
    assert all(0.0 <= item.parts["purchase_probability"] <= 1.0 for item in first.items)
    items = [item.__dict__ for item in first.items]
    assert json.loads(json.dumps(items)) == items  # plain JSON values only: nothing a handler could not answer with


def test_an_unknown_shopper_gets_a_cold_start_feed():
    r = recommender()
    ranking = r.feed("someone-new", n=5)
    assert len(ranking.items) == 5 and all(item.sources == ["popular"] for item in ranking.items)


def test_search_rerank_and_related():
    r = recommender()
    events, _ = world()
    user, session = busiest_shopper()
    query = next(e["query"] for e in reversed(events) if e["event_type"] == "search")
    found = r.search(query, user_id=user, n=5)
    assert all(item.sources == ["query"] for item in found.items)
    assert r.search("zzz no such thing zzz").items == []

    listed = [e["item_id"] for e in events[-200:] if e["event_type"] == "view"][:12]
    reranked = r.rerank(listed, user_id=user, session_id=session)
    assert sorted(i.item_id for i in reranked.items) == sorted(set(listed))
    assert len(r.rerank(listed, n=3).items) == 3

    anchor = listed[0]
    related = r.related(anchor, user_id=user, n=5, filters=Filters(available_only=False))
    assert related.items and anchor not in {i.item_id for i in related.items}
    session_data = [{"event_id": "web-1", "user_id": "web", "session_id": "web-s", "event_type": "view",
                     "timestamp": events[-1]["timestamp"], "item_id": listed[1]}]
    with_session = r.related(anchor, session_events=session_data, n=5, explain=True)
    assert with_session.items
    assert r.related("never-seen-item").items == []


def test_bad_arguments_raise_value_errors_naming_the_field():
    r = recommender()
    with pytest.raises(ValueError, match="n:"):
        r.feed("u", n=0)
    with pytest.raises(ValueError, match="n:"):
        r.feed("u", n=MAX_N + 1)
    with pytest.raises(ValueError, match="base_scores"):
        r.rerank(["a", "b"], base_scores=[1.0])
    with pytest.raises(ValueError, match="base_scores"):
        r.rerank(["a", "b"], base_scores=[1.0, float("nan")])
    with pytest.raises(ValueError, match="items"):
        r.rerank([f"i{k}" for k in range(1001)])
    with pytest.raises(EventError, match="timestamp"):
        r.related("a", session_events=[{"event_id": "e", "user_id": "u", "session_id": "s", "event_type": "view",
                                        "item_id": "a"}])


def test_related_takes_a_session_parsed_already_as_it_takes_its_json():
    r = recommender()
    events, _ = world()
    session_data = [{**e, "user_id": "web", "session_id": "web-s"} for e in events[-400:]
                    if e["event_type"] in ("view", "add_to_cart")][-5:]
    anchor = session_data[0]["item_id"]
    from_json = r.related(anchor, session_events=session_data, n=10, explain=True)
    parsed = r.related(anchor, session_events=[parse_event(e) for e in session_data], n=10, explain=True)
    assert from_json.items and [(i.item_id, i.score) for i in parsed.items] == [
        (i.item_id, i.score) for i in from_json.items]
    assert parsed.intent == from_json.intent


def test_the_limits_of_a_request_are_refused_naming_the_field():
    r = recommender()
    with pytest.raises(RequestError) as raised:
        r.feed("u", n=0)
    assert raised.value.field == "n"
    view = parse_event({"event_id": "e", "user_id": "u", "session_id": "s", "event_type": "view", "item_id": "a",
                        "timestamp": world()[0][-1]["timestamp"]})
    with pytest.raises(RequestError) as raised:
        r.related("a", session_events=[view] * (MAX_SESSION_EVENTS + 1))
    assert raised.value.field == "session_events"
    with pytest.raises(RequestError) as raised:
        r.rerank(["a", "b"], base_scores=[1.0])
    assert (raised.value.field, raised.value.kind) == ("base_scores", "length_mismatch")


def test_profile():
    r = recommender()
    user, session = busiest_shopper()
    profile = r.profile(user)
    assert profile["user_id"] == user and profile["events"] > 0
    assert profile["current_session"]["session_id"] == session
    assert set(profile["rfm"]) >= {"recency_days", "frequency", "monetary"}
    assert profile["recent_items"] and profile["category_affinity"]
    assert json.loads(json.dumps(profile)) == profile  # plain JSON values only
    assert r.profile("someone-new") is None


def test_blend_weights_are_configurable():
    r = recommender(weights={"feed": {"probability": 1.0}})
    user, session = busiest_shopper()
    items = r.feed(user, session_id=session, n=10, explain=True).items
    probabilities = [i.parts["purchase_probability"] for i in items]
    assert probabilities == sorted(probabilities, reverse=True) and "commercial" not in items[0].parts
    with pytest.raises(ValueError, match="homepage"):
        recommender(weights={"homepage": {"commercial": 1.0}})
