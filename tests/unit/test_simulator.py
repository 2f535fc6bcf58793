"""The shopper simulator: deterministic, valid events of every type, intents that drive behaviour, and ground truth."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tailor.events import EVENT_TYPES, parse_event
from tailor_lab.simulator import INTENTS, PERSONAS, REFERRAL_SOURCES, TRAITS, simulate

TECH = {"electronics", "computers", "phones"}


@pytest.fixture(scope="module")
def day():
    """A simulated day of 500 shoppers, the size the local stack replays."""
    return simulate(shoppers=500, days=1.0, seed=7)


@pytest.fixture(scope="module")
def by_id(day):
    return {e["event_id"]: e for e in day.events}


def _epoch_ms(timestamp: str) -> int:
    return round(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _labelled(day, by_id):
    """(intent, event) for every event, from the ground truth."""
    for entry in day.truth["sessions"].values():
        for event_id, intent in zip(entry["event_ids"], entry["intents"]):
            yield intent, by_id[event_id]


# -- determinism and validity --------------------------------------------------------------------

def test_same_seed_same_output_and_another_seed_differs():
    first = simulate(shoppers=40, days=0.5, seed=11)
    again = simulate(shoppers=40, days=0.5, seed=11)
    other = simulate(shoppers=40, days=0.5, seed=12)
    assert first.events == again.events
    assert first.truth == again.truth
    assert first.catalog == again.catalog
    assert [e["event_type"] for e in other.events] != [e["event_type"] for e in first.events]


def test_every_event_is_valid_unique_and_in_time_order(day):
    for event in day.events:
        parse_event(event)
    ids = [e["event_id"] for e in day.events]
    assert len(set(ids)) == len(ids)
    stamps = [e["timestamp"] for e in day.events]
    assert all(s.endswith("Z") for s in stamps)
    assert stamps == sorted(stamps)


def test_a_day_of_500_shoppers_emits_every_event_type(day):
    counts = day.counts_by_type()
    assert set(counts) == set(EVENT_TYPES)
    assert len(day.events) >= 10_000
    assert len({e["user_id"] for e in day.events}) == 500


def test_start_sets_the_clock_and_naive_or_empty_runs_are_refused():
    start = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    sim = simulate(shoppers=20, days=0.25, seed=3, start=start)
    first = datetime.fromisoformat(sim.events[0]["timestamp"].replace("Z", "+00:00"))
    assert start <= first < start + timedelta(hours=6)
    with pytest.raises(ValueError):
        simulate(shoppers=20, start=datetime(2025, 3, 1))
    with pytest.raises(ValueError):
        simulate(shoppers=0)
    with pytest.raises(ValueError):
        simulate(days=0)


# -- ground truth ---------------------------------------------------------------------------------

def test_truth_covers_every_shopper_and_session(day):
    truth = day.truth
    users = {e["user_id"] for e in day.events}
    assert set(truth["shoppers"]) == users
    sessions = defaultdict(list)
    for event in day.events:
        sessions[event["session_id"]].append(event["event_id"])
    assert set(truth["sessions"]) == set(sessions)
    for session_id, entry in truth["sessions"].items():
        assert entry["event_ids"] == sessions[session_id]
        assert len(entry["intents"]) == len(entry["event_ids"])
        assert set(entry["intents"]) <= set(INTENTS)
        assert entry["intent_path"][0] == entry["intents"][0]
        assert session_id in truth["shoppers"][entry["user_id"]]["sessions"]
    personas = {p.name for p in PERSONAS}
    for shopper in truth["shoppers"].values():
        assert shopper["persona"] in personas
        assert set(shopper["traits"]) == set(TRAITS)
        assert all(0.0 <= v <= 1.0 for v in shopper["traits"].values())
        assert shopper["trait_flags"] == {k: v >= 0.5 for k, v in shopper["traits"].items()}


def test_truth_revenue_matches_the_purchase_events(day):
    revenue = Counter()
    for event in day.events:
        if event["event_type"] == "purchase":
            revenue[event["user_id"]] += event["price"] * event["quantity"]
    for user_id, shopper in day.truth["shoppers"].items():
        assert shopper["revenue"] == pytest.approx(revenue[user_id], abs=0.02)


def test_write_puts_events_catalog_and_truth_side_by_side(tmp_path):
    sim = simulate(shoppers=15, days=0.2, seed=5)
    sim.write(tmp_path / "run")
    lines = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == sim.events
    catalog = [json.loads(line) for line in (tmp_path / "run" / "catalog.jsonl").read_text().splitlines()]
    assert catalog == sim.catalog
    assert json.loads((tmp_path / "run" / "truth.json").read_text()) == sim.truth


# -- behaviour -------------------------------------------------------------------------------------

def test_intent_drives_the_event_mix(day, by_id):
    mix: dict[str, Counter] = defaultdict(Counter)
    for intent, event in _labelled(day, by_id):
        mix[intent][event["event_type"]] += 1
    share = {i: {t: c / sum(mix[i].values()) for t, c in mix[i].items()} for i in INTENTS}

    def leader(event_type):
        return max(INTENTS, key=lambda i: share[i].get(event_type, 0.0))

    assert leader("category_browse") == "exploratory"
    assert leader("spec_compare") == "comparative"
    assert leader("review_read") == "research"
    for event_type in ("add_to_cart", "checkout_view", "purchase", "remove_from_cart"):
        assert leader(event_type) == "intent_to_purchase"
    buying = share["intent_to_purchase"]["purchase"]
    assert all(share[i].get("purchase", 0.0) * 5 < buying for i in INTENTS if i != "intent_to_purchase")


def test_dwell_grows_from_exploring_to_comparing_to_researching(day, by_id):
    dwell = defaultdict(list)
    for intent, event in _labelled(day, by_id):
        if event["event_type"] == "dwell":
            dwell[intent].append(event["dwell_ms"])
    medians = {i: statistics.median(v) for i, v in dwell.items()}
    assert medians["exploratory"] < medians["comparative"] < medians["research"]


def test_comparing_stays_within_a_category(day, by_id):
    same, total = Counter(), Counter()
    for entry in day.truth["sessions"].values():
        previous = None
        for event_id, intent in zip(entry["event_ids"], entry["intents"]):
            event = by_id[event_id]
            if event["event_type"] != "view":
                continue
            if previous is not None and previous[1] == intent:
                total[intent] += 1
                same[intent] += previous[0] == event["category"]
            previous = (event["category"], intent)
    assert same["comparative"] / total["comparative"] > 0.85
    assert same["exploratory"] / total["exploratory"] < 0.75


def test_intents_evolve_within_sessions(day):
    paths = [entry["intent_path"] for entry in day.truth["sessions"].values()]
    moves = Counter((a, b) for path in paths for a, b in zip(path, path[1:]))
    assert sum(len(p) > 1 for p in paths) > 0.2 * len(paths)
    assert moves[("exploratory", "comparative")] > 0
    assert moves[("comparative", "intent_to_purchase")] > 0


def test_spend_is_concentrated_in_few_shoppers():
    # A month: most shoppers buy nothing in it (a shop converts a few percent of sessions), a few buy most.
    month = simulate(shoppers=400, days=28.0, seed=7)
    revenue = np.array(sorted((s["revenue"] for s in month.truth["shoppers"].values()), reverse=True))
    buyers = revenue[revenue > 0]
    assert 0.03 * len(revenue) < len(buyers) < 0.5 * len(revenue)
    assert revenue[: len(revenue) // 10].sum() > 0.8 * revenue.sum()  # top 10% of shoppers
    assert buyers.max() > 2.5 * np.median(buyers)


def test_dwell_matches_the_time_on_the_item_page(day):
    views = {}
    checked = 0
    for event in day.events:
        key = (event["session_id"], event.get("item_id"))
        if event["event_type"] == "view":
            views[key] = _epoch_ms(event["timestamp"])
        elif event["event_type"] == "dwell":
            assert _epoch_ms(event["timestamp"]) - views[key] == event["dwell_ms"]
            checked += 1
        elif event["event_type"] in ("zoom", "review_read") or (event["event_type"] == "scroll" and event.get("item_id")):
            assert _epoch_ms(event["timestamp"]) >= views[key]
    assert checked == day.counts_by_type()["view"]


def test_searches_refine_their_previous_query(day):
    queries = defaultdict(list)
    for event in day.events:
        if event["event_type"] == "search":
            queries[event["session_id"]].append(event["query"].split())
            assert event["results"]
    refinements = sum(1 for qs in queries.values() for a, b in zip(qs, qs[1:]) if len(b) > len(a) and b[: len(a)] == a)
    assert refinements >= 20


def test_clicks_come_from_what_was_shown(day):
    shown = defaultdict(set)
    for event in day.events:
        if event["event_type"] == "impression":
            shown[event["session_id"]].update(event["item_ids"])
        elif event["event_type"] == "click":
            assert event["item_id"] in shown[event["session_id"]]


def test_referrals_and_friends(day):
    truth = day.truth
    sources = Counter(entry["referral_source"] for entry in truth["sessions"].values())
    assert set(sources) == set(REFERRAL_SOURCES)
    referral_events = {e["session_id"]: e for e in day.events if e["event_type"] == "referral"}
    for session_id, entry in truth["sessions"].items():
        if entry["referral_source"] == "direct":
            assert session_id not in referral_events
        else:
            assert referral_events[session_id]["source"] == entry["referral_source"]
        if entry["referral_source"] == "friend":
            referrer = referral_events[session_id]["referrer_user_id"]
            assert referrer == entry["referrer_user_id"] != entry["user_id"]
            assert referrer in truth["shoppers"]


def test_profiles_exist_for_some_shoppers_only(day):
    shoppers = day.truth["shoppers"]
    with_profile = {u for u, s in shoppers.items() if s["profile"] is not None}
    assert 0.2 * len(shoppers) < len(with_profile) < 0.8 * len(shoppers)
    profile_events = [e for e in day.events if e["event_type"] == "profile"]
    assert {e["user_id"] for e in profile_events} == with_profile
    assert all(18 <= e["age"] <= 85 and e["interests"] for e in profile_events)


def test_personas_show_in_behaviour_and_traits(day):
    shoppers = day.truth["shoppers"]
    tech_views = defaultdict(lambda: [0, 0])
    for event in day.events:
        if event["event_type"] == "view":
            persona = shoppers[event["user_id"]]["persona"]
            tech_views[persona][0] += event["category"] in TECH
            tech_views[persona][1] += 1
    tech_share = {p: a / b for p, (a, b) in tech_views.items()}
    assert tech_share["tech_enthusiast"] > 0.6
    assert all(v < 0.4 for p, v in tech_share.items() if p != "tech_enthusiast")
    strength = defaultdict(list)
    for shopper in shoppers.values():
        strength[shopper["persona"]].append(shopper["traits"]["budget_conscious"])
    assert np.mean(strength["bargain_hunter"]) > 0.6 > 0.2 > np.mean(strength["luxury_seeker"])


def test_sessions_follow_a_daily_rhythm(day):
    hours = Counter(int(entry["start"][11:13]) for entry in day.truth["sessions"].values())
    night = sum(hours[h] for h in range(2, 6))
    evening = sum(hours[h] for h in range(19, 23))
    assert evening > 3 * night


def test_catalog_prices_are_long_tailed_and_events_carry_catalog_data(day, by_id):
    by_category = defaultdict(list)
    for item in day.catalog:
        by_category[item["category"]].append(item["price"])
        assert item["price"] > 0
    assert len(by_category) >= 10
    for prices in by_category.values():
        assert max(prices) > 3 * statistics.median(prices)
    assert 0.8 < np.mean([item["available"] for item in day.catalog]) < 1.0
    catalog = {item["item_id"]: item for item in day.catalog}
    for event in day.events:
        if "item_id" in event and "price" in event:
            item = catalog[event["item_id"]]
            assert (event["price"], event["category"], event["brand"]) == (item["price"], item["category"], item["brand"])
