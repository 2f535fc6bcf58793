"""Lifetime-value features of a shopper as of a moment: one fixed-order vector, for training and scoring alike."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from tailor.shopper import ShopperState

__all__ = ["FEATURE_GROUPS", "FEATURE_NAMES", "WEEK_SECONDS", "epoch_seconds", "feature_matrix", "ltv_features",
           "row_features"]

WEEK_SECONDS = 7 * 86_400.0
DAY_SECONDS = 86_400.0
ABSENT = -1.0  # a feature with no value for this shopper (no purchase yet, no stated age, ...)

# Referral sources named in the event schema; any other source counts only in the totals.
REFERRAL_SOURCES = ("search_engine", "social", "affiliate", "email", "friend")

# What each feature measures, in the order of the vector. Times are in weeks before `as_of`.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "frequency": ("transactions", "repeat_transactions", "purchase_lines", "units", "repeat_rate_per_week",
                  "mean_gap_weeks"),
    "recency": ("recency_weeks", "overdue_ratio", "purchase_span_weeks"),
    "age": ("weeks_since_first_purchase", "tenure_weeks", "weeks_since_seen"),
    "monetary": ("revenue", "mean_transaction_value", "units_per_transaction", "unit_price"),
    # From the last transactions the state keeps (ShopperState.purchase_history): how regular the
    # shopper's rhythm is, whether it is speeding up or slowing down, and how their basket moves.
    "timing": ("last_gap_weeks", "median_gap_weeks", "gap_variation", "last_gap_ratio", "min_gap_weeks",
               "transactions_last_4_weeks", "transactions_last_13_weeks", "revenue_last_13_weeks",
               "recency_share_of_age", "repeats_first_4_weeks"),
    "basket": ("first_transaction_value", "last_transaction_value", "max_transaction_value",
               "last_value_ratio", "value_trend", "first_transaction_units"),
    "engagement": ("sessions", "events", "events_per_session", "views", "clicks", "searches", "cart_adds",
                   "cart_removes", "checkout_views", "research_events", "purchase_session_share"),
    "saved_items": ("wishlists",),
    "referrals": ("referrals", "referral_source_kinds", "referred_by_shopper", "referrals_sent",
                  *(f"referrals_{source}" for source in REFERRAL_SOURCES)),
    "profile": ("profile_age", "profile_interests", "profile_has_location"),
    "category_propensity": ("categories_engaged", "top_category_share", "category_entropy", "affinity_total"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(name for names in FEATURE_GROUPS.values() for name in names)

_RESEARCH_EVENTS = ("review_read", "spec_compare", "zoom", "dwell")


def ltv_features(state: ShopperState, as_of: float | datetime, referrals_sent: int = 0) -> np.ndarray:
    """The shopper's LTV features as of `as_of`, a float32 vector ordered as FEATURE_NAMES.

    `state` must hold only what happened up to `as_of`; `referrals_sent` is the counter that
    other shoppers' referral events add to this shopper's row.
    """
    now = epoch_seconds(as_of)
    counts = state.counts
    values: dict[str, float] = {}

    bought = state.transactions > 0 and state.first_purchase_at is not None and state.last_purchase_at is not None
    repeats = max(state.transactions - 1, 0)
    if bought:
        since_first = _weeks(now - state.first_purchase_at)
        span = _weeks(state.last_purchase_at - state.first_purchase_at)
        recency = _weeks(now - state.last_purchase_at)
        mean_gap = span / repeats if repeats else ABSENT
        values.update(
            weeks_since_first_purchase=since_first, purchase_span_weeks=span, recency_weeks=recency,
            repeat_rate_per_week=repeats / max(since_first, 1.0), mean_gap_weeks=mean_gap,
            # How long the shopper has been quiet compared with their usual gap between purchases.
            overdue_ratio=recency / max(mean_gap, 0.5) if repeats else ABSENT,
            mean_transaction_value=state.revenue / state.transactions,
            units_per_transaction=state.units / state.transactions,
            unit_price=state.revenue / state.units if state.units else 0.0,
        )
    else:
        values.update(weeks_since_first_purchase=ABSENT, purchase_span_weeks=ABSENT, recency_weeks=ABSENT,
                      repeat_rate_per_week=0.0, mean_gap_weeks=ABSENT, overdue_ratio=ABSENT,
                      mean_transaction_value=0.0, units_per_transaction=0.0, unit_price=0.0)
    values.update(transactions=state.transactions, repeat_transactions=repeats, purchase_lines=state.purchases,
                  units=state.units, revenue=state.revenue)

    values.update(
        tenure_weeks=_weeks(now - state.first_seen), weeks_since_seen=_weeks(now - state.last_seen),
        sessions=state.sessions, events=state.events,
        events_per_session=state.events / state.sessions if state.sessions else 0.0,
        views=counts.get("view", 0), clicks=counts.get("click", 0), searches=counts.get("search", 0),
        cart_adds=counts.get("add_to_cart", 0), cart_removes=counts.get("remove_from_cart", 0),
        checkout_views=counts.get("checkout_view", 0),
        research_events=sum(counts.get(kind, 0) for kind in _RESEARCH_EVENTS),
        purchase_session_share=min(state.transactions / state.sessions, 1.0) if state.sessions else 0.0,
        wishlists=counts.get("wishlist", 0),
    )

    sources = state.referral_sources
    values.update(referrals=sum(sources.values()), referral_source_kinds=len(sources),
                  referred_by_shopper=1.0 if state.referred_by_shopper else 0.0, referrals_sent=referrals_sent)
    for source in REFERRAL_SOURCES:
        values[f"referrals_{source}"] = sources.get(source, 0)

    profile = state.profile
    age = profile.get("age")
    values.update(profile_age=float(age) if isinstance(age, (int, float)) else ABSENT,
                  profile_interests=len(profile.get("interests") or ()),
                  profile_has_location=1.0 if profile.get("location") else 0.0)

    values.update(_category_propensity(state.category_affinity))
    values.update(_purchase_rhythm(state.purchase_history, now))
    return np.fromiter((values[name] for name in FEATURE_NAMES), dtype=np.float32, count=len(FEATURE_NAMES))


def row_features(row: Mapping[str, Any], as_of: float | datetime) -> np.ndarray | None:
    """The features of a shoppers-table row, or None if the row holds only counters others added."""
    state = ShopperState.from_row(dict(row))
    if state is None:
        return None
    return ltv_features(state, as_of, int(row.get("referrals_sent", 0) or 0))


def feature_matrix(states: Iterable[ShopperState], as_of: float | datetime,
                   referrals_sent: Mapping[str, int] | None = None) -> np.ndarray:
    """ltv_features of many shoppers stacked into an (n, len(FEATURE_NAMES)) float32 matrix."""
    sent = referrals_sent or {}
    rows = [ltv_features(state, as_of, sent.get(state.user_id, 0)) for state in states]
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.vstack(rows)


def epoch_seconds(moment: float | datetime) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("as_of must carry a time zone")
        return moment.timestamp()
    return float(moment)


def _weeks(seconds: float) -> float:
    return max(seconds, 0.0) / WEEK_SECONDS


_RHYTHM_NAMES = FEATURE_GROUPS["timing"] + FEATURE_GROUPS["basket"]
_EPOCH_DAY = date(1970, 1, 1)


def _purchase_rhythm(history: Sequence[Sequence[Any]], now: float) -> dict[str, float]:
    """Timing and basket features from [[day, value, units], ...], oldest first (the last ones kept)."""
    if not history:
        return dict.fromkeys(_RHYTHM_NAMES, ABSENT)
    days = np.array([(date.fromisoformat(str(day)) - _EPOCH_DAY).days for day, _, _ in history], dtype=np.float64)
    values = np.array([float(value) for _, value, _ in history], dtype=np.float64)
    ago = np.maximum(now / DAY_SECONDS - days, 0.0)  # days before now, counted from each day's start
    gaps = np.diff(days) / 7.0
    features = dict.fromkeys(("last_gap_weeks", "median_gap_weeks", "gap_variation", "last_gap_ratio",
                              "min_gap_weeks"), ABSENT)
    if len(gaps):
        mean_gap = max(float(gaps.mean()), 1 / 7)
        features.update(last_gap_weeks=gaps[-1], median_gap_weeks=float(np.median(gaps)), min_gap_weeks=gaps.min(),
                        last_gap_ratio=gaps[-1] / mean_gap)
        if len(gaps) > 1:
            # Coefficient of variation: near 0 for a steady rhythm, above 1 for bursts and long pauses.
            features["gap_variation"] = float(gaps.std()) / mean_gap
    mean_value = max(float(values.mean()), 1e-6)
    half = len(values) // 2
    features.update(
        transactions_last_4_weeks=float((ago <= 28).sum()), transactions_last_13_weeks=float((ago <= 91).sum()),
        revenue_last_13_weeks=float(values[ago <= 91].sum()),
        # Quiet time as a share of the whole purchase history: comparable between young and old shoppers.
        recency_share_of_age=float(ago[-1] / max(ago[0], 1.0)),
        repeats_first_4_weeks=float((days - days[0] <= 28).sum() - 1),
        first_transaction_value=values[0], last_transaction_value=values[-1], max_transaction_value=values.max(),
        last_value_ratio=values[-1] / mean_value,
        value_trend=float(values[half:].mean()) / max(float(values[:half].mean()), 1e-6) if half else ABSENT,
        first_transaction_units=float(history[0][2]),
    )
    return features


def _category_propensity(affinity: Mapping[str, float]) -> dict[str, float]:
    """How much, and how narrowly, the shopper engages with categories."""
    weights = [w for w in affinity.values() if w > 0]
    total = sum(weights)
    if not total:
        return {"categories_engaged": 0.0, "top_category_share": 0.0, "category_entropy": 0.0, "affinity_total": 0.0}
    shares = [w / total for w in weights]
    return {"categories_engaged": len(weights), "top_category_share": max(shares),
            "category_entropy": -sum(s * math.log(s) for s in shares), "affinity_total": total}
