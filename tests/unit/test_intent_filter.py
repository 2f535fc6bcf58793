"""The session intent filter: what it observes of each event, its update as the session's fold, its parameters counted
from labelled sessions, and Ingest keeping its state once per event however batches fall."""

import logging
import random

import numpy as np
import pytest

from tailor.events import parse_event
from tailor.ingest.intent import SessionIntent
from tailor.ingest.service import Ingestor
from tailor.intent import INTENT_FEATURES, INTENTS, METADATA_KEY, MODEL_NAME, IntentModel, intent_features
from tailor.intent_filter import FORMAT, IntentFilter, action_start, filter_posterior, observe
from tailor.models import ModelRegistry, default_model, load_model
from tailor.session import fold_session
from tailor.store.memory import MemoryBlobStore, MemoryStateStore
from tailor_lab.training.intent import train_intent
from tailor_lab.training.intent_filter import count_filter
from tailor_lab.training.intent_truth import FILTER, Examples, evaluate_simulated
from tailor_lab.training.onnx_export import with_metadata

from tests.helpers.events import random_events, to_records
from tests.helpers.ingest import FlakyBlobStore, FlakyStateStore, deliver, state_rows

RESEARCH, EXPLORING = INTENTS.index("research"), INTENTS.index("exploratory")


def events(*bodies: dict, session: str = "s", start: float = 0.0) -> list:
    """Parsed events of one session, `t` seconds after 10:00 (default: 10 s apart)."""
    out = []
    for k, fields in enumerate(bodies):
        t = start + fields.pop("t", 10.0 * k)
        raw = {"event_id": f"{session}-e{k}", "user_id": "u", "session_id": session,
               "timestamp": f"2026-11-02T10:{int(t) // 60:02d}:{t % 60:06.3f}Z", **fields}
        out.append(parse_event(raw))
    return out


def observed(*bodies: dict) -> list:
    """What the filter observes of each event of one session (`events`), folded in turn with a neutral filter."""
    state, seen = None, []
    for event in events(*bodies):
        seen.append(observe(state, event))
        state = fold_session(state, event, ttl_seconds=0, intent_filter=_neutral())
    return seen


def page(item: str, seconds: float, *, t: float, reviews: bool = False, category: str = "c1") -> list[dict]:
    """An item page: its view, a review read some seconds in (if any), its dwell."""
    bodies = [{"event_type": "view", "item_id": item, "category": category, "t": t}]
    if reviews:
        bodies.append({"event_type": "review_read", "item_id": item, "t": t + seconds})
    bodies.append({"event_type": "dwell", "item_id": item, "dwell_ms": int(seconds * 1000) + (30_000 if reviews else 0),
                   "t": t + seconds + (30 if reviews else 0)})
    return bodies


def sessions_of(intent: int, seconds: float, reviews: bool, n: int) -> list:
    """Labelled sessions of one intent: each a browse then three pages read for about `seconds`."""
    out = []
    for s in range(n):
        rng = random.Random(s)
        bodies = [{"event_type": "category_browse", "category": "c1", "t": 0.0}]
        for k in range(3):
            bodies += page(f"i{s}-{k}", seconds * rng.uniform(0.8, 1.25), t=20.0 + 200 * k, reviews=reviews)
        out.append([(e, intent) for e in events(*bodies, session=f"{INTENTS[intent]}-{s}")])
    return out


@pytest.fixture(scope="module")
def counted() -> IntentFilter:
    return count_filter(sessions_of(EXPLORING, 4.0, False, 40) + sessions_of(RESEARCH, 60.0, True, 40))


def test_events_are_observed_by_kind_in_context_and_the_detail_their_intent_shapes():
    seen = observed({"event_type": "referral", "source": "email"},
                    {"event_type": "category_browse", "category": "c1"},
                    {"event_type": "impression", "item_ids": ["a", "b"]},
                    {"event_type": "scroll", "depth": 0.93},
                    {"event_type": "view", "item_id": "a", "category": "c1", "t": 40.0},
                    {"event_type": "impression", "item_ids": ["x"], "t": 40.5},
                    {"event_type": "review_read", "item_id": "a", "t": 50.0},
                    {"event_type": "dwell", "item_id": "a", "dwell_ms": 45_000, "t": 85.0},
                    {"event_type": "click", "item_id": "x", "category": "c2", "t": 85.0},
                    {"event_type": "search", "query": "red shoes", "t": 100.0},
                    {"event_type": "search", "query": "Red  shoes under-50", "t": 110.0},
                    {"event_type": "view", "item_id": "a", "category": "c1", "t": 120.0})
    assert [(o.previous, o.kind, o.detail) for o in seen] == [
        ("start", "referral_email", ""),
        ("referral_email", "category_browse", "first"),
        ("category_browse", "impression", ""),
        ("impression", "scroll", "9"),
        ("scroll", "view", "same"),
        ("view", "impression_in_page", ""),
        ("impression_in_page", "review_read", "5"),  # read for 10 s before the reviews: from 9 to 12 s
        ("review_read", "dwell", "-|after reviews 10"),  # given that they neither scrolled nor zoomed
        ("dwell", "click_in_page", "other"),  # as the page was left: a click in its recommendations
        ("click_in_page", "search", "first"),
        ("search", "search", "refine"),
        ("search", "view", "same again"),  # the recommendation led to c2 and left the browsed c1; "a" seen before
    ]
    assert [o.transition for o in seen] == ["within", "action", "within", "within", "action", "within", "within",
                                            "within", "within", "action", "action", "action"]
    assert not action_start("click", "view") and action_start("dwell", "view")


def test_a_page_notes_its_scroll_and_zoom_and_a_landing_page_is_no_action_of_the_shoppers():
    state, seen = None, []
    for event in events({"event_type": "referral", "source": "e mail>x:y"},
                        {"event_type": "profile", "age": 30},
                        {"event_type": "view", "item_id": "a", "category": "c1", "t": 5.0},
                        {"event_type": "zoom", "item_id": "a", "level": 2.0, "t": 8.0},
                        {"event_type": "scroll", "item_id": "a", "depth": 0.35, "t": 25.0},
                        {"event_type": "zoom", "item_id": "a", "level": 3.0, "t": 26.0},
                        {"event_type": "dwell", "item_id": "a", "dwell_ms": 30_000, "t": 35.0},
                        {"event_type": "view", "item_id": "b", "category": "c1", "t": 45.0}):
        seen.append(observe(state, event))
        state = fold_session(state, event, ttl_seconds=0, intent_filter=_neutral())
    assert [(o.kind, o.detail) for o in seen] == [
        ("referral_e_mail_x_y", ""),  # the source made safe for the kept state and the parameters' keys
        ("profile_after_referral_e_mail_x_y", ""),
        ("view", "first"),
        ("zoom_in_page", "2"),  # 3 s into the page
        ("scroll_in_page", "3 7"),  # depth 0.35, 20 s in
        ("zoom_in_page", "8"),  # 21 s in
        ("dwell", "sz|9"),
        ("view", "same"),
    ]
    assert [o.transition for o in seen][2:] == ["within", "within", "within", "within", "within", "action"]
    # The last page open and quiet, and the category browsed.
    assert state.intent_filter.split(" ")[4:] == ["view", f"{event.epoch:.3f}", "-", "c1", "2"]


def test_a_new_action_is_weighed_whatever_ended_the_last_and_the_browsed_category_is_kept():
    seen = observed({"event_type": "category_browse", "category": "c1"},
                    {"event_type": "view", "item_id": "a", "category": "c1", "t": 10.0},
                    {"event_type": "dwell", "item_id": "a", "dwell_ms": 5_000, "t": 15.0},
                    {"event_type": "click", "item_id": "r", "category": "c3", "t": 15.0},
                    {"event_type": "view", "item_id": "r", "category": "c3", "t": 15.5},
                    {"event_type": "dwell", "item_id": "r", "dwell_ms": 5_000, "t": 20.5},
                    {"event_type": "click", "item_id": "b", "category": "c1", "t": 25.0},
                    {"event_type": "add_to_cart", "item_id": "b", "category": "c1", "quantity": 1, "t": 30.0},
                    {"event_type": "category_browse", "category": "c2", "t": 40.0},
                    {"event_type": "category_browse", "category": "c3", "t": 50.0})
    assert [(o.given, o.kind, o.detail) for o in seen] == [
        ("start", "category_browse", "first"),
        ("action", "view", "same"),
        ("view", "dwell", "-|3"),
        ("dwell", "click_in_page", "other"),  # the recommendations' item, in c3
        ("click_in_page", "view", "recommended"),
        ("view", "dwell", "-|3"),
        ("action", "click", "same"),  # seconds after the dwell: a click in a listing, still of c1
        ("action", "add_to_cart", ""),
        ("action+cart", "category_browse", "other"),
        ("action+cart", "category_browse", "back"),  # the session saw c3 on the recommended page
    ]


def test_a_click_is_the_pages_own_only_when_it_comes_as_the_page_is_left():
    def kind_of_click(at: float) -> str:
        return observed({"event_type": "category_browse", "category": "c1"},
                        {"event_type": "view", "item_id": "a", "category": "c1", "t": 10.0},
                        {"event_type": "dwell", "item_id": "a", "dwell_ms": 5_000, "t": 15.0},
                        {"event_type": "click", "item_id": "r", "category": "c3", "t": at})[-1].kind

    assert kind_of_click(15.3) == kind_of_click(14.8) == "click_in_page"  # either event may arrive first
    assert kind_of_click(16.0) == "click"  # a click in a listing, a second after
    assert kind_of_click(5.0) == "click"  # one made before the page was open, delivered late


def test_a_filter_state_kept_before_the_browsed_category_steps_on_from_the_last_events():
    first, second = events({"event_type": "category_browse", "category": "c1"},
                           {"event_type": "view", "item_id": "a", "category": "c1"})
    state = fold_session(None, first, ttl_seconds=0, intent_filter=_neutral())
    state.intent_filter = " ".join(state.intent_filter.split(" ")[:7])  # a row kept before the category was
    assert observe(state, second).detail == "same"
    assert _neutral().step(state, second).split(" ")[4:] == ["view", f"{second.epoch:.3f}", "-", "c1", "1"]


def test_after_a_purchase_the_intent_moves_as_a_new_session_would():
    seen = observed({"event_type": "checkout_view", "cart_value": 20.0},
                    {"event_type": "purchase", "item_id": "a", "price": 10.0, "quantity": 2, "order_id": "o1"},
                    {"event_type": "category_browse", "category": "c1"})
    assert [o.transition for o in seen] == ["action", "within", "after_purchase"]


def test_the_posterior_follows_the_evidence_the_counts_learned(counted):
    def posterior(bodies):
        state = None
        for event in events(*bodies):
            state = fold_session(state, event, ttl_seconds=0, intent_filter=counted)
        return filter_posterior(state.intent_filter)

    start = [{"event_type": "category_browse", "category": "c1", "t": 0.0}]
    long_read = posterior(start + page("a", 60.0, t=20.0, reviews=True))
    short_read = posterior(start + page("a", 4.0, t=20.0))
    assert sum(long_read) == pytest.approx(1.0, abs=1e-5) and sum(short_read) == pytest.approx(1.0, abs=1e-5)
    assert long_read[RESEARCH] > 0.9 and short_read[EXPLORING] > 0.9
    assert posterior(start)[RESEARCH] == pytest.approx(0.5, abs=0.05)  # a browse tells them apart by nothing


def test_the_kept_state_is_a_fold_a_duplicate_leaves_as_it_was(counted):
    replayed = events({"event_type": "category_browse", "category": "c1"}, *page("a", 60.0, t=20.0, reviews=True))
    state = None
    for event in replayed:
        state = fold_session(state, event, ttl_seconds=0, intent_filter=counted)
    kept = state.intent_filter
    for event in replayed:
        state = fold_session(state, event, ttl_seconds=0, intent_filter=counted)
    assert state.intent_filter == kept
    assert intent_features(state)[-len(INTENTS):] == filter_posterior(kept)
    assert [f for f in INTENT_FEATURES if f.startswith("filter_")] == [f"filter_{i}" for i in INTENTS]


def test_a_session_folded_without_a_filter_gives_uniform_filter_features():
    state = fold_session(None, events({"event_type": "category_browse", "category": "c1"})[0], ttl_seconds=0)
    assert state.intent_filter == "" and intent_features(state)[-len(INTENTS):] == [0.25] * len(INTENTS)


def test_the_parameters_round_trip_through_json_and_bad_ones_are_refused_by_name(counted):
    assert IntentFilter.from_json(counted.to_json()).to_json() == counted.to_json()
    document = counted.to_json()
    with pytest.raises(ValueError, match="kinds.x>y must hold 4 numbers"):
        IntentFilter.from_json({**document, "kinds": {"x>y": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="transitions \\['after_purchase'\\] missing"):
        IntentFilter.from_json({**document, "transitions": {k: v for k, v in document["transitions"].items()
                                                            if k != "after_purchase"}})
    with pytest.raises(ValueError, match="details.d:1 must hold non-negative numbers"):
        IntentFilter.from_json({**document, "details": {"d:1": [1.0, -1.0, 0.0, 0.0]}})
    with pytest.raises(ValueError, match="prior missing"):
        IntentFilter.from_json({k: v for k, v in document.items() if k != "prior"})


def test_parameters_of_another_format_are_refused_naming_it(counted):
    document = counted.to_json()
    assert document["format"] == FORMAT
    with pytest.raises(ValueError, match=f"format unstamped, this code reads format {FORMAT}"):
        IntentFilter.from_json({k: v for k, v in document.items() if k != "format"})
    with pytest.raises(ValueError, match=f"format {FORMAT + 1}, this code reads format {FORMAT}"):
        IntentFilter.from_json({**document, "format": FORMAT + 1})


def test_a_published_model_whose_filter_is_of_another_format_gives_way_to_the_shipped_default(caplog):
    shipped = default_model(MODEL_NAME)
    assert IntentModel.from_stored(shipped).filter is not None  # the default ships a filter of this code's format
    registry = ModelRegistry(MemoryBlobStore())
    for stamped in (None, FORMAT + 1):
        filter_document = {k: v for k, v in shipped.metadata["filter"].items() if k != "format"}
        if stamped is not None:
            filter_document["format"] = stamped
        metadata = {**shipped.metadata, "filter": filter_document, "trained_at": "2026-11-04T00:00:00Z"}
        registry.publish(MODEL_NAME, with_metadata(shipped.onnx, METADATA_KEY, metadata), metadata)
        with caplog.at_level(logging.WARNING, logger="tailor.models.registry"):
            loaded = load_model(MODEL_NAME, registry, build=IntentModel.from_stored)
        assert loaded.version == shipped.version
        assert f"format {stamped or 'unstamped'}, this code reads format {FORMAT}" in caplog.text
        caplog.clear()
    metadata = {**shipped.metadata, "trained_at": "2026-11-05T00:00:00Z"}
    good = registry.publish(MODEL_NAME, with_metadata(shipped.onnx, METADATA_KEY, metadata), metadata)
    assert load_model(MODEL_NAME, registry, build=IntentModel.from_stored).version == good


@pytest.fixture(scope="module")
def filtered_model(counted) -> IntentModel:
    examples = Examples()

    def add(sessions, label=None):
        """Each event's features after it, folded with the counted filter, labelled with its intent (or `label`)."""
        for labelled in sessions:
            state = None
            for event, intent in labelled:
                state = fold_session(state, event, ttl_seconds=0, intent_filter=counted)
                examples.features.append(intent_features(state))
                examples.labels.append(intent if label is None else label)
                examples.sessions.append(event.session_id)

    add(sessions_of(EXPLORING, 4.0, False, 20))
    add(sessions_of(RESEARCH, 60.0, True, 20))
    # Every intent must be present for the classifier: two sessions each of the other two, read like exploring.
    for intent in (INTENTS.index("comparative"), INTENTS.index("intent_to_purchase")):
        add(sessions_of(intent, 20.0, False, 2), label=intent)
    return train_intent(examples, source="test", intent_filter=counted).model()


def test_the_model_publishes_its_filter_and_the_evaluation_reports_it_alone(filtered_model, counted):
    assert filtered_model.filter.to_json() == counted.to_json()
    from tailor_lab.simulator import simulate

    held_out = simulate(shoppers=20, days=1, seed=4)
    evaluation = evaluate_simulated(filtered_model, held_out.events, held_out.truth)
    assert FILTER in evaluation["methods"]
    assert 0.0 <= evaluation["methods"][FILTER]["macro_f1"] <= 1.0


@pytest.mark.parametrize("seed", [1, 2])
def test_ingest_keeps_the_filter_state_once_per_event_however_batches_replays_and_failures_fall(filtered_model, seed):
    stream = random_events(seed, 300)
    intent = SessionIntent(filtered_model)
    expected = MemoryStateStore()
    Ingestor(expected, MemoryBlobStore(), max_workers=1, intent=intent).ingest(to_records(stream))
    rows = expected.tables["sessions"]
    assert rows and all(row["intent_filter"] for row in rows.values())
    # The row's state is the session's events folded once each, in their order, duplicates left out.
    by_session: dict[str, list] = {}
    for raw in stream:
        by_session.setdefault(raw["session_id"], []).append(parse_event(raw))
    for session_id, session_events in by_session.items():
        state = None
        for event in session_events:
            state = fold_session(state, event, ttl_seconds=0, intent_filter=filtered_model.filter)
        assert rows[session_id]["intent_filter"] == state.intent_filter

    rng = random.Random(seed)
    store = FlakyStateStore(MemoryStateStore(), rng, rate=0.08)
    calls = deliver(Ingestor(store, FlakyBlobStore(rng, rate=0.05), max_workers=4, intent=intent),
                    to_records(stream), rng, crash_rate=0.15)
    assert calls > 20
    assert state_rows(store.inner) == state_rows(expected)


def _neutral() -> IntentFilter:
    return IntentFilter([0.25] * 4, {name: np.eye(4).tolist() for name in ("action", "within", "after_purchase")},
                        {}, {})


def test_a_requests_session_data_is_scored_as_folded_with_the_models_filter(filtered_model, counted):
    session = events({"event_type": "category_browse", "category": "c1"}, *page("a", 60.0, t=20.0, reviews=True))
    state = None
    for event in session:
        state = fold_session(state, event, ttl_seconds=0, intent_filter=counted)
    plain = None
    for event in session:
        plain = fold_session(plain, event, ttl_seconds=0)
    scored = filtered_model.session_probabilities(reversed(session))  # taken in time order
    assert scored == filtered_model.probabilities(state) != filtered_model.probabilities(plain)
    assert filtered_model.session_probabilities([]) == {}


def test_a_record_found_by_bisection_leaves_the_filter_state_as_if_it_never_came(filtered_model, monkeypatch):
    import tailor.ingest.fold as fold

    records = to_records(random_events(8, 200))
    culprit = records[137]
    intent = SessionIntent(filtered_model)
    expected = MemoryStateStore()
    Ingestor(expected, MemoryBlobStore(), max_workers=1, intent=intent).ingest(
        [r for r in records if r.sequence != culprit.sequence])
    culprit_id = parse_event(culprit.data).event_id
    fold_session_as_is = fold.fold_session

    def corrupting(state, event, **kwargs):
        state = fold_session_as_is(state, event, **kwargs)
        if event.event_id == culprit_id:
            state.revenue = float("nan")  # a value no store holds: the batch's rows are bisected for its record
        return state

    monkeypatch.setattr(fold, "fold_session", corrupting)
    store = MemoryStateStore()
    outcome = Ingestor(store, MemoryBlobStore(), max_workers=1, intent=intent).ingest(records)
    assert outcome.failed == [] and outcome.quarantined == 1
    assert state_rows(store) == state_rows(expected)
    assert all(row["intent_filter"] for row in store.tables["sessions"].values())


def test_a_search_tells_whether_its_results_hold_what_the_session_engaged_with_and_a_profile_who_the_shopper_is():
    seen = observed({"event_type": "profile", "age": 34, "location": "Leipzig, DE", "interests": ["phones", "books"]},
                    {"event_type": "view", "item_id": "a", "category": "c1", "t": 5.0},
                    {"event_type": "dwell", "item_id": "a", "dwell_ms": 5_000, "t": 10.0},
                    {"event_type": "view", "item_id": "b", "category": "c1", "t": 20.0},
                    {"event_type": "dwell", "item_id": "b", "dwell_ms": 5_000, "t": 25.0},
                    {"event_type": "search", "query": "lamp", "results": ["b", "x"], "t": 30.0},
                    {"event_type": "search", "query": "desk", "results": ["a", "y"], "t": 40.0},
                    {"event_type": "search", "query": "chair", "results": ["z"], "t": 50.0},
                    {"event_type": "wishlist", "item_id": "z", "category": "c2", "available": False, "t": 60.0},
                    {"event_type": "category_browse", "category": "c2", "t": 70.0})
    assert seen[0].extra == ("interest:phones", "interest:books", "age:3", "location:Leipzig__DE")
    assert [(o.given, o.kind, o.detail, o.extra) for o in seen[1:]] == [
        ("profile", "view", "first", ("category:c1",)),
        ("view", "dwell", "-|3", ()),
        ("action", "view", "same", ()),
        ("view+pair", "dwell", "-|3", ()),
        ("action+pair", "search", "first last", ()),  # two items of c1 viewed: a comparison needs no new page
        ("action+pair", "search", "new seen", ()),
        ("action+pair", "search", "new unseen", ()),
        ("action+pair", "wishlist", "unavailable", ()),
        ("action+pair", "category_browse", "back", ("category:c2",)),  # the wishlisted item was of c2
    ]
