"""LTV features come from shopper state as Ingest folds it, in one fixed order, as of a given moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tailor.events import parse_event
from tailor.ltv.features import FEATURE_GROUPS, FEATURE_NAMES, feature_matrix, ltv_features, row_features
from tailor.shopper import ShopperState, fold_shopper

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _fold(raw_events: list[dict]) -> ShopperState:
    state = None
    for i, raw in enumerate(raw_events):
        event = {"event_id": f"e{i}", "user_id": "u1", "session_id": raw.pop("session", "s1"), **raw}
        state = fold_shopper(state, parse_event(event))
    return state


def _at(days: float) -> str:
    return (START + timedelta(days=days)).isoformat()


def _purchase(days: float, price: float, quantity: int = 1, session: str | None = None) -> dict:
    return {"event_type": "purchase", "timestamp": _at(days), "item_id": "i1", "price": price, "quantity": quantity,
            "session": session or f"s-{int(days)}", "category": "music"}


def _named(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, vector.tolist()))


def test_names_are_unique_grouped_and_the_vector_follows_them():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert [n for names in FEATURE_GROUPS.values() for n in names] == list(FEATURE_NAMES)
    state = _fold([_purchase(0, 10.0)])
    vector = ltv_features(state, START + timedelta(days=7))
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_NAMES),)


def test_rfm_and_age_are_measured_in_weeks_before_as_of_with_same_day_purchases_one_transaction():
    state = _fold([
        _purchase(0, 10.0, 2, session="a"), _purchase(0.01, 5.0, 1, session="a"),  # one day, one transaction
        _purchase(14, 20.0, 1), _purchase(28, 30.0, 3),
    ])
    f = _named(ltv_features(state, START + timedelta(days=35)))
    assert f["transactions"] == 3 and f["repeat_transactions"] == 2 and f["purchase_lines"] == 4
    assert f["units"] == 7 and f["revenue"] == pytest.approx(135.0)
    assert f["recency_weeks"] == pytest.approx(1.0)
    assert f["purchase_span_weeks"] == pytest.approx(4.0)
    assert f["weeks_since_first_purchase"] == pytest.approx(5.0)
    assert f["mean_gap_weeks"] == pytest.approx(2.0)
    assert f["overdue_ratio"] == pytest.approx(0.5)
    assert f["repeat_rate_per_week"] == pytest.approx(2 / 5)
    assert f["mean_transaction_value"] == pytest.approx(45.0)
    assert f["units_per_transaction"] == pytest.approx(7 / 3)
    assert f["unit_price"] == pytest.approx(135 / 7)
    # The same state seen a week later has aged by a week and nothing else.
    later = _named(ltv_features(state, START + timedelta(days=42)))
    assert later["recency_weeks"] == pytest.approx(2.0) and later["revenue"] == f["revenue"]


def test_a_shopper_who_never_bought_has_no_purchase_times():
    state = _fold([{"event_type": "view", "timestamp": _at(0), "item_id": "i1"}])
    f = _named(ltv_features(state, START + timedelta(days=14)))
    assert f["transactions"] == 0 and f["revenue"] == 0
    assert f["recency_weeks"] == -1 and f["weeks_since_first_purchase"] == -1 and f["overdue_ratio"] == -1
    assert f["tenure_weeks"] == pytest.approx(2.0)


def test_engagement_referrals_profile_and_category_propensity():
    state = _fold([
        {"event_type": "referral", "timestamp": _at(0), "source": "social", "referrer_user_id": "u9"},
        {"event_type": "referral", "timestamp": _at(0.1), "source": "email"},
        {"event_type": "view", "timestamp": _at(0.2), "item_id": "i1", "category": "music"},
        {"event_type": "view", "timestamp": _at(0.3), "item_id": "i2", "category": "books"},
        {"event_type": "wishlist", "timestamp": _at(0.4), "item_id": "i2", "category": "books"},
        {"event_type": "search", "timestamp": _at(0.5), "query": "jazz"},
        {"event_type": "zoom", "timestamp": _at(0.6), "item_id": "i1"},
        {"event_type": "profile", "timestamp": _at(1), "age": 34, "location": "Lyon", "interests": ["jazz", "vinyl"],
         "session": "s2"},
    ])
    f = _named(ltv_features(state, START + timedelta(days=7), referrals_sent=4))
    assert f["sessions"] == 2 and f["events"] == 8 and f["events_per_session"] == 4
    assert f["views"] == 2 and f["wishlists"] == 1 and f["searches"] == 1 and f["research_events"] == 1
    assert f["referrals"] == 2 and f["referral_source_kinds"] == 2
    assert f["referrals_social"] == 1 and f["referrals_email"] == 1 and f["referrals_friend"] == 0
    assert f["referred_by_shopper"] == 1 and f["referrals_sent"] == 4
    assert f["profile_age"] == 34 and f["profile_interests"] == 2 and f["profile_has_location"] == 1
    # Affinity: music 1 (view), books 1 (view) + 2 (wishlist).
    assert f["categories_engaged"] == 2 and f["affinity_total"] == pytest.approx(4.0)
    assert f["top_category_share"] == pytest.approx(0.75)
    assert f["category_entropy"] == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), rel=1e-5)


def test_rows_and_matrices_use_the_same_function():
    state = _fold([_purchase(0, 10.0), _purchase(9, 12.0)])
    as_of = START + timedelta(days=20)
    row = {**state.to_row(), "referrals_sent": 3, "sw:shard-0": "0001"}
    assert np.array_equal(row_features(row, as_of), ltv_features(state, as_of, referrals_sent=3))
    matrix = feature_matrix([state, state], as_of, {"u1": 3})
    assert matrix.shape == (2, len(FEATURE_NAMES)) and np.array_equal(matrix[1], ltv_features(state, as_of, 3))
    assert feature_matrix([], as_of).shape == (0, len(FEATURE_NAMES))
    # A row that only holds counters other shoppers' events added has no state to describe.
    assert row_features({"user_id": "u2", "referrals_sent": 1}, as_of) is None


def test_as_of_must_name_its_time_zone():
    state = _fold([_purchase(0, 10.0)])
    with pytest.raises(ValueError, match="time zone"):
        ltv_features(state, datetime(2026, 4, 1))
