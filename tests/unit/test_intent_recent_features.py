"""The intent features of where the session came from and what the shopper did last."""

from __future__ import annotations

import pytest

from tailor.intent import INTENT_FEATURES, intent_features
from tailor.session import SessionState


def test_the_referral_source_and_the_latest_event_types_are_features():
    state = SessionState(session_id="s", user_id="u", started_at=0.0, last_seen=0.0, expires_at=0,
                         referral_source="email", recent_types="view dwell add_to_cart")
    features = dict(zip(INTENT_FEATURES, intent_features(state)))
    assert features["referral_email"] == 1.0 and features["referral_social"] == 0.0
    assert features["last_add_to_cart"] == 1.0 and features["last_view"] == 0.0
    # half-life 2 events: the latest counts 1, the one before 2**-0.5, the first 0.5
    total = 1 + 2 ** -0.5 + 0.5
    assert features["decayed2_add_to_cart"] == pytest.approx(1 / total)
    assert features["decayed2_view"] == pytest.approx(0.5 / total)
    assert features["decayed6_add_to_cart"] > features["decayed6_view"]


def test_a_session_without_events_or_referral_has_none_of_them():
    state = SessionState(session_id="s", user_id="u", started_at=0.0, last_seen=0.0, expires_at=0)
    features = dict(zip(INTENT_FEATURES, intent_features(state)))
    assert not any(v for k, v in features.items() if k.startswith(("referral_", "last_", "decayed")))
