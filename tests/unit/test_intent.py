"""Session intent: features from session state, the classifier, scaling factors and their configuration, and Ingest
weighing association pairs by intent exactly once whatever the batches."""

import json
import logging
import random

import numpy as np
import pytest
from cfnlint.decode import cfn_yaml

from tailor.associations import EVENT_WEIGHTS, intent_weighted, pair_increments
from tailor.events import parse_event
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor
from tailor.intent import INTENT_FEATURES, INTENTS, IntentFactors, IntentModel, dominant_intent, intent_features
from tailor.intent_config import FactorsSource
from tailor.models import default_model
from tailor.ranking.scoring import intent_adjusted
from tailor.session import RECENT_TYPES, fold_session
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

from tests.helpers import ROOT
from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, deliver, state_rows

PURE = {i: {j: float(i == j) for j in INTENTS} for i in INTENTS}  # intent -> a mixture certain of it


@pytest.fixture(scope="module")
def model() -> IntentModel:
    return IntentModel.from_stored(default_model("intent"))


def fold(*events: dict):
    state = None
    for k, fields in enumerate(events):
        raw = {"event_id": f"e{k}", "user_id": "u", "session_id": "s",
               "timestamp": f"2026-11-02T10:{k // 60:02d}:{k % 60:02d}Z", **fields}
        state = fold_session(state, parse_event(raw), ttl_seconds=0)
    return state


def test_features_read_the_session_signals_the_spec_names():
    state = fold({"event_type": "category_browse", "category": "audio"},
                 {"event_type": "view", "item_id": "a", "category": "audio"},
                 {"event_type": "dwell", "item_id": "a", "dwell_ms": 20_000},
                 {"event_type": "scroll", "depth": 0.8},
                 {"event_type": "view", "item_id": "b", "category": "tv"},
                 {"event_type": "dwell", "item_id": "b", "dwell_ms": 10_000},
                 {"event_type": "add_to_cart", "item_id": "b"},
                 {"event_type": "checkout_view"})
    features = dict(zip(INTENT_FEATURES, intent_features(state)))
    assert len(features) == len(INTENT_FEATURES) == len(set(INTENT_FEATURES))
    assert features["distinct_items"] == 2 and features["distinct_categories"] == 2
    assert features["dwell_mean_s"] == 15.0 and features["dwell_max_s"] == 20.0
    assert features["dwell_recent_s"] == pytest.approx(0.7 * 20 + 0.3 * 10)
    assert features["scroll_depth_max"] == 0.8 and features["cart_units"] == 1
    assert features["share_view"] == 2 / 8 and features["recent_checkout_view"] == 1 / 8
    assert features["log_checkout_view"] == pytest.approx(np.log1p(1))
    assert features["log_minutes"] == pytest.approx(np.log1p(7 / 60))


def test_recent_types_keep_the_last_events_only():
    state = fold(*({"event_type": "view", "item_id": f"i{k}"} for k in range(RECENT_TYPES)),
                 {"event_type": "checkout_view"})
    recent = state.recent_types.split()
    assert len(recent) == RECENT_TYPES and recent[-1] == "checkout_view" and recent[0] == "view"
    features = dict(zip(INTENT_FEATURES, intent_features(state)))
    assert features["recent_checkout_view"] == 1 / RECENT_TYPES
    assert features["share_checkout_view"] == 1 / (RECENT_TYPES + 1)


def test_the_shipped_model_tells_a_buying_session_from_a_browsing_one(model):
    buying = fold({"event_type": "view", "item_id": "a"}, {"event_type": "add_to_cart", "item_id": "a"},
                  {"event_type": "view", "item_id": "b"}, {"event_type": "add_to_cart", "item_id": "b"},
                  {"event_type": "checkout_view"})
    browsing = fold(*({"event_type": "category_browse", "category": f"c{k}"} for k in range(4)),
                    {"event_type": "view", "item_id": "a", "category": "c1"},
                    {"event_type": "dwell", "item_id": "a", "dwell_ms": 3000},
                    {"event_type": "view", "item_id": "b", "category": "c3"})
    p_buying, p_browsing = model.probabilities(buying), model.probabilities(browsing)
    assert sum(p_buying.values()) == pytest.approx(1, abs=1e-3)
    assert dominant_intent(p_buying) == "intent_to_purchase"
    assert dominant_intent(p_browsing) == "exploratory"
    assert model.label.startswith("intent:") and model.metadata["intents"] == list(INTENTS)


def test_a_model_for_features_this_code_does_not_compute_is_refused(model):
    onnx = default_model("intent").onnx
    with pytest.raises(ValueError, match="features"):
        IntentModel(onnx, metadata={"feature_names": ["mouse_speed"], "intents": list(INTENTS)})
    with pytest.raises(ValueError, match="classes"):
        IntentModel(onnx, metadata={"feature_names": list(INTENT_FEATURES), "intents": ["buy", "browse"]})


def test_factors_blend_by_the_intent_mixture():
    factors = IntentFactors({"exploratory": {"view": 1.5, "purchase": 0.5}, "intent_to_purchase": {"add_to_cart": 2}})
    assert factors.factor(PURE["exploratory"], "view") == 1.5
    assert factors.factor(PURE["research"], "view") == 1.0  # not named: 1
    half = {"exploratory": 0.5, "intent_to_purchase": 0.5}
    assert factors.factor(half, "add_to_cart") == 1.5
    assert factors.factor(None, "view") == 1.0
    assert factors.weights(half, EVENT_WEIGHTS)["purchase"] == EVENT_WEIGHTS["purchase"] * 0.75
    rows = factors.blend_rows(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0.5, 0, 0.5, 0]]), ["view", "add_to_cart", "zoom"])
    assert rows.tolist() == [1.5, 2.0, 1.0]


@pytest.mark.parametrize("document, reason", [
    ({"factors": {"buying": {"view": 2}}}, "unknown intents"),
    ({"factors": {"exploratory": {"teleport": 2}}}, "unknown event type"),
    ({"factors": {"exploratory": {"view": -1}}}, "number from 0 to 100"),
    ({"factors": {"exploratory": {"view": True}}}, "number from 0 to 100"),
    ({"exploratory": {"view": 2}}, "expected"),
])
def test_invalid_factor_documents_are_refused_with_the_reason(document, reason):
    with pytest.raises(ValueError, match=reason):
        IntentFactors.from_json(json.dumps(document))


def test_the_shipped_factors_follow_the_spec_and_match_the_templates_appconfig_defaults():
    shipped = IntentFactors.default()
    f = shipped.factors
    assert f["exploratory"]["view"] > 1 and f["exploratory"]["category_browse"] > 1 and f["exploratory"]["purchase"] < 1
    assert f["comparative"]["view"] > 1 and f["comparative"]["spec_compare"] > 1
    assert f["intent_to_purchase"]["add_to_cart"] > 1 and f["intent_to_purchase"]["checkout_view"] > 1
    assert f["research"]["view"] > 1 and f["research"]["review_read"] > 1
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    hosted = template["Resources"]["IntentFactorsDefaults"]["Properties"]["Content"]
    assert IntentFactors.from_json(hosted).factors == f


def test_factors_come_from_appconfig_when_reachable_and_from_the_file_otherwise(caplog):
    environ = {"INTENT_CONFIG_APPLICATION": "tailor", "INTENT_CONFIG_ENVIRONMENT": "dev",
               "INTENT_CONFIG_PROFILE": "intent-factors"}
    clock = [0.0]
    served: list = [{"factors": {"research": {"review_read": 3.0}}}]
    asked = []

    def fetch(profile, environment, application, max_age):
        asked.append((application, environment, profile))
        if isinstance(served[0], Exception):
            raise served[0]
        return served[0]

    source = FactorsSource(environ, fetch=fetch, clock=lambda: clock[0], max_age=60)
    assert source().factors == {"research": {"review_read": 3.0}} and source().origin == "appconfig"
    assert asked == [("tailor", "dev", "intent-factors")]  # cached for max_age
    clock[0] = 61.0
    served[0] = ConnectionError("no route to AppConfig")
    with caplog.at_level(logging.WARNING, logger="tailor.intent_config"):
        assert source().factors == {"research": {"review_read": 3.0}}  # the last good ones stay
    assert "cannot use AppConfig" in caplog.text
    clock[0] = 122.0
    served[0] = b'{"factors": {"research": {"review_read": 2.5}}}'
    assert source().factors == {"research": {"review_read": 2.5}}

    failing = FactorsSource(environ, fetch=lambda *a: (_ for _ in ()).throw(TimeoutError("unreachable")))
    assert failing().factors == IntentFactors.default().factors and "file" in failing().origin
    assert FactorsSource({}).location is None and FactorsSource({})().factors == IntentFactors.default().factors


def test_the_read_side_weighs_engagement_and_commitment_pairs_by_the_request_intent():
    near, commits = {"viewed": 10.0, "bought": 8.0}, {"bought": 6.0}
    assert intent_weighted(near, commits, None) == near
    browsing = intent_weighted(near, commits, {"view": 1.5, "add_to_cart": 0.75})
    buying = intent_weighted(near, commits, {"view": 1.0, "add_to_cart": 2.0})
    assert browsing == {"viewed": 15.0, "bought": 2 * 1.5 + 6 * 0.75}
    assert buying == {"viewed": 10.0, "bought": 2 + 12.0}
    assert max(browsing, key=browsing.get) == "viewed" and max(buying, key=buying.get) == "bought"
    weights = {"relevance": 0.4, "probability": 0.3, "commercial": 0.2, "diversity": 0.1}
    assert intent_adjusted(weights, None) == weights
    adjusted = intent_adjusted(weights, {"add_to_cart": 2.0, "purchase": 0.5, "category_browse": 1.5})
    assert adjusted == {"relevance": 0.4, "probability": 0.6, "commercial": 0.1, "diversity": 0.15}


def test_commitment_pairs_are_kept_apart_in_both_rows():
    rows = pair_increments("b", "purchase", ["a"], {"purchase": 2.0})
    assert rows == {"a": {"n:b": 2.0, "f:b": 2.0, "c:b": 2.0}, "b": {"n:a": 2.0, "c:a": 2.0}}
    assert "c:b" not in pair_increments("b", "view", ["a"])["a"]


def test_ingest_keeps_intent_and_weighs_pairs_by_it(model):
    events = random_events(3, 300)
    plain, weighed = MemoryStateStore(), MemoryStateStore()
    Ingestor(plain, MemoryBlobStore(), max_workers=1).ingest(to_records(events))
    Ingestor(weighed, MemoryBlobStore(), max_workers=1, intent=SessionIntent(model)).ingest(to_records(events))
    for session in weighed.tables["sessions"].values():
        assert set(session["intent"]) == set(INTENTS)
    assert all(not row["intent"] for row in plain.tables["sessions"].values())
    # Same pairs, other weights: only the association rows differ.
    assert plain.tables["items"] == weighed.tables["items"]
    assert {k: set(r) for k, r in plain.tables["associations"].items()} == \
        {k: set(r) for k, r in weighed.tables["associations"].items()}
    assert plain.tables["associations"] != weighed.tables["associations"]


@pytest.mark.parametrize("seed", [1, 2])
def test_intent_weights_do_not_depend_on_batches_replays_or_failures(model, seed):
    events = random_events(seed, 300)
    intent = SessionIntent(model)
    expected = MemoryStateStore()
    Ingestor(expected, MemoryBlobStore(), max_workers=1, intent=intent).ingest(to_records(events))

    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    calls = deliver(Ingestor(store, FlakyBlobStore(rng, rate=0.05), max_workers=4, intent=intent),
                    to_records(events), rng, crash_rate=0.15)
    assert calls > 20
    assert state_rows(store.inner) == state_rows(expected)


def test_feed_session_candidates_follow_the_intent_ingest_keeps_in_the_session():
    from tailor.ranking.candidates import SessionSource
    from tailor.ranking.context import RankingContext, Request
    from tailor.ranking.rows import partners

    session = fold({"event_type": "view", "item_id": "a"})
    row = {"n:viewed": 10.0, "n:bought": 8.0, "c:bought": 6.0}

    def propose(intent):
        session.intent = intent
        ctx = RankingContext(Request("feed", user_id="u"), 1793613600.0, session=session,
                             factors=IntentFactors.default())
        ctx.associations["a"] = partners("a", row)
        return list(SessionSource().propose(ctx, 3))

    assert propose({}) == ["a", "viewed", "bought"]  # no intent: as counted
    assert propose(PURE["exploratory"]) == ["a", "viewed", "bought"]
    assert propose(PURE["intent_to_purchase"]) == ["a", "bought", "viewed"]
