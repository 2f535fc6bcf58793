"""Candidate features: the one function that turns a request's state and its candidates into the model's input.

Training (tailor_lab.training.ranker) and serving both call `candidate_features` on a
RankingContext filled from the same rows, so the two cannot drift. Features come in groups; a new
capability adds a group to FEATURE_GROUPS, and models trained before it keep working because a model
names the features it was trained on (tailor.ranking.scoring.RankingModel selects them by name).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tailor.ranking.candidates import Candidates, cooccurrence
from tailor.ranking.context import RankingContext
from tailor.ranking.rows import ITEM_FIELDS

__all__ = ["FEATURE_GROUPS", "FEATURE_NAMES", "FeatureGroup", "candidate_features"]

UNKNOWN = -1.0  # a feature without a value (no price, no purchase yet, ...)
_F = {name: i for i, name in enumerate(ITEM_FIELDS)}
MAX_IDLE_HOURS = 720.0
MAX_SESSION_MINUTES = 240.0


class FeatureGroup(Protocol):
    names: tuple[str, ...]

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        """A (len(candidates), len(names)) array."""
        ...


class ItemFeatures:
    """What the shop's shoppers did with each item, all time: counts, rates, price, availability."""

    names = ("item_log_views", "item_log_clicks", "item_log_carts", "item_log_purchases", "item_log_wishlists",
             "item_purchase_rate", "item_cart_rate", "item_click_rate", "item_log_price", "item_available",
             "item_log_revenue")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        v = candidates.values
        views, clicks, carts, purchases = v[:, _F["views"]], v[:, _F["clicks"]], v[:, _F["carts"]], v[:, _F["purchases"]]
        price, available = v[:, _F["price"]], v[:, _F["available"]]
        out = np.empty((len(v), len(self.names)))
        out[:, 0:5] = np.log1p(v[:, [_F["views"], _F["clicks"], _F["carts"], _F["purchases"], _F["wishlists"]]])
        # Rates shrunk toward 0 by a few pseudo-views, so two views and one purchase is not a 50% item.
        out[:, 5] = purchases / (views + 10.0)
        out[:, 6] = carts / (views + 10.0)
        out[:, 7] = clicks / (v[:, _F["impressions"]] + 10.0)
        out[:, 8] = np.where(np.isnan(price), UNKNOWN, np.log1p(np.nan_to_num(price)))
        out[:, 9] = np.where(np.isnan(available), UNKNOWN, available)
        out[:, 10] = np.log1p(v[:, _F["revenue"]])
        return out


class TrendFeatures:
    """How much each item is wanted lately: decayed trend counters, and time since its last event."""

    names = ("item_log_popularity", "item_hours_idle")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        last = candidates.values[:, _F["last_event_at"]]
        idle = np.clip((ctx.now - np.nan_to_num(last)) / 3600.0, 0.0, MAX_IDLE_HOURS)
        return np.column_stack([np.log1p(candidates.popularity), np.where(np.isnan(last), UNKNOWN, idle)])


class ShopperFeatures:
    """The shopper's history against each item: category affinity, price level, recent engagement."""

    names = ("shopper_known", "shopper_log_events", "shopper_log_transactions", "affinity_share", "affinity_log",
             "price_vs_purchases", "price_vs_recent", "shopper_recency")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        n = len(candidates)
        out = np.zeros((n, len(self.names)))
        log_price = _log_price(candidates)
        # Price of each item against the typical price of the shopper's recent items.
        recent_prices = [ctx.items[a].values[_F["price"]] for a in ctx.anchors() if a in ctx.items]
        recent_prices = [p for p in recent_prices if p > 0]
        if recent_prices:
            out[:, 6] = _relative(log_price, float(np.mean(np.log(recent_prices))))
        shopper = ctx.shopper
        if shopper is None:
            return out
        out[:, 0] = 1.0
        out[:, 1] = math.log1p(shopper.events)
        out[:, 2] = math.log1p(shopper.transactions)
        affinity = shopper.category_affinity
        total = sum(affinity.values())
        if total > 0:
            by_code = np.array([affinity.get(c, 0.0) if c is not None else 0.0 for c in candidates.category_names])
            per_item = by_code[candidates.category_codes]
            out[:, 3] = per_item / total
            out[:, 4] = np.log1p(per_item)
        if shopper.units > 0 and shopper.revenue > 0:
            out[:, 5] = _relative(log_price, math.log(shopper.revenue / shopper.units))
        out[:, 7] = _recency(shopper.recent_items, candidates.ids)
        return out


class SessionFeatures:
    """The current session against each item: engaged with it, browsing its category; and how far along."""

    names = ("session_recency", "session_category", "session_log_events", "session_log_cart_units",
             "session_minutes")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        out = np.zeros((len(candidates), len(self.names)))
        session = ctx.session
        if session is None:
            return out
        out[:, 0] = _recency(session.items, candidates.ids)
        by_code = _recency(session.categories, candidates.category_names)
        out[:, 1] = by_code[candidates.category_codes] if len(by_code) else 0.0
        out[:, 2] = math.log1p(session.events)
        out[:, 3] = math.log1p(session.cart_units)
        out[:, 4] = min(max(ctx.now - session.started_at, 0.0) / 60.0, MAX_SESSION_MINUTES)
        return out


class AssociationFeatures:
    """How often each item is engaged with in the same sessions as the shopper's recent items."""

    names = ("cooc_log", "cooc_confidence")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        weighted, confidence = cooccurrence(ctx, candidates.ids)
        return np.column_stack([np.log1p(weighted), confidence])


class QueryFeatures:
    """What shoppers did with each item after the search being answered."""

    names = ("query_log", "query_share")

    def compute(self, ctx: RankingContext, candidates: Candidates) -> np.ndarray:
        query = ctx.active_query()
        found = ctx.queries.get(query) if query else None
        if found is None or found.total <= 0:
            return np.zeros((len(candidates), 2))
        weights = np.fromiter(map(found.weights.get, candidates.ids, [0.0] * len(candidates)), dtype=np.float64,
                              count=len(candidates))
        return np.column_stack([np.log1p(weights), weights / found.total])


FEATURE_GROUPS: tuple[FeatureGroup, ...] = (ItemFeatures(), TrendFeatures(), ShopperFeatures(), SessionFeatures(),
                                            AssociationFeatures(), QueryFeatures())
FEATURE_NAMES: tuple[str, ...] = tuple(name for group in FEATURE_GROUPS for name in group.names)


def candidate_features(ctx: RankingContext, candidates: Candidates,
                       groups: tuple[FeatureGroup, ...] = FEATURE_GROUPS) -> np.ndarray:
    """The (len(candidates), len(FEATURE_NAMES)) float32 feature matrix of the request's candidates."""
    width = sum(len(g.names) for g in groups)
    out = np.empty((len(candidates), width), dtype=np.float32)
    start = 0
    for group in groups:
        out[:, start:start + len(group.names)] = group.compute(ctx, candidates)
        start += len(group.names)
    return out


def _log_price(candidates: Candidates) -> np.ndarray:
    price = candidates.values[:, _F["price"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(price > 0, np.log(np.where(price > 0, price, 1.0)), np.nan)


def _relative(log_price: np.ndarray, reference: float) -> np.ndarray:
    """log(price / reference), clipped to +-4 (55x); 0 where the price is unknown."""
    return np.where(np.isnan(log_price), 0.0, np.clip(log_price - reference, -4.0, 4.0))


def _recency(recent: list, values: list) -> np.ndarray:
    """1 / (1 + how many newer entries) for each value found in `recent` (most recent last), else 0."""
    weight = {v: 1.0 / (len(recent) - i) for i, v in enumerate(recent)}
    return np.fromiter(map(weight.get, values, [0.0] * len(values)), dtype=np.float64, count=len(values))
