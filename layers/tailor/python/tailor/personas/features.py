"""The shopper feature vector personas are clustered on: one function for Ingest (online) and the rebuild (batch).

Four blocks, each standardized and weighted by the persona model:
* event frequencies: the share of each event type in the shopper's events (square roots of shares);
* category preferences: the shopper's category affinity over the model's category vocabulary, plus "other"
  (square roots of shares);
* query semantics: the mean vector of the shopper's recent queries, from word vectors learned on co-search
  data (queries x the items clicked after them; tailor.personas.clustering.query_vectors);
* session behaviour: events and purchases per session, dwell, and the price percentile of what they look at.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.shopper import ShopperState

__all__ = ["BEHAVIOUR", "FEATURE_EVENT_TYPES", "QUERY_DIMS", "FeatureSpace", "batch_features", "shopper_features", "tokens"]

FEATURE_EVENT_TYPES = ("view", "click", "search", "add_to_cart", "purchase", "wishlist", "review_read",
                       "spec_compare", "category_browse", "dwell", "zoom", "scroll", "impression",
                       "remove_from_cart", "checkout_view")
QUERY_DIMS = 8
BEHAVIOUR = ("events_per_session", "log_dwell_seconds", "price_percentile", "purchases_per_session",
             "carts_per_session")
PRICE_QUANTILES = 21  # 0%, 5%, ..., 100%
_TOKENS = re.compile(r"[a-z0-9]+")


@dataclass
class FeatureSpace:
    """What turns shopper state into numbers: category vocabulary, query-token vectors, price quantiles."""

    categories: tuple[str, ...] = ()
    token_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # token -> QUERY_DIMS vector
    price_quantiles: dict[str, np.ndarray] = field(default_factory=dict)  # category ("*": all) -> quantiles

    def __post_init__(self) -> None:
        self._category_index = {c: i for i, c in enumerate(self.categories)}
        self._quantile_lists = {c: [float(x) for x in q] for c, q in self.price_quantiles.items()}

    @property
    def names(self) -> list[str]:
        return ([f"share:{t}" for t in FEATURE_EVENT_TYPES] + [f"category:{c}" for c in self.categories]
                + ["category:(other)"] + [f"query:{i}" for i in range(QUERY_DIMS)] + [f"behaviour:{b}" for b in BEHAVIOUR])

    @property
    def blocks(self) -> dict[str, slice]:
        e, c = len(FEATURE_EVENT_TYPES), len(self.categories) + 1
        return {"events": slice(0, e), "categories": slice(e, e + c), "queries": slice(e + c, e + c + QUERY_DIMS),
                "behaviour": slice(e + c + QUERY_DIMS, e + c + QUERY_DIMS + len(BEHAVIOUR))}

    def price_percentile(self, category: str, price: float) -> float | None:
        """Where `price` falls among the prices of the category's items (all items' if the category is unknown)."""
        quantiles = self._quantile_lists.get(category) or self._quantile_lists.get("*")
        if quantiles is None or price < 0:
            return None
        # Linear between the quantiles around the price (what np.interp does, without its per-call cost).
        last = len(quantiles) - 1
        if price <= quantiles[0]:
            return 0.0
        if price >= quantiles[-1]:
            return 1.0
        i = bisect.bisect_right(quantiles, price) - 1
        low, high = quantiles[i], quantiles[i + 1]
        return (i + (price - low) / (high - low if high > low else 1.0)) / last

    def query_vector(self, query: str) -> np.ndarray | None:
        vectors = [self.token_vectors[t] for t in _TOKENS.findall(query.lower()) if t in self.token_vectors]
        if not vectors:
            return None
        v = np.mean(vectors, axis=0)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"categories": list(self.categories),
                "token_vectors": {t: [round(float(x), 5) for x in v] for t, v in self.token_vectors.items()},
                "price_quantiles": {c: [round(float(x), 4) for x in q] for c, q in self.price_quantiles.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpace:
        return cls(tuple(data.get("categories", ())),
                   {t: np.asarray(v, dtype=np.float64) for t, v in data.get("token_vectors", {}).items()},
                   {c: np.asarray(q, dtype=np.float64) for c, q in data.get("price_quantiles", {}).items()})


def shopper_features(shopper: ShopperState, space: FeatureSpace) -> np.ndarray:
    """The shopper's raw (unstandardized) feature vector, laid out as `space.names`."""
    counts = shopper.counts
    total = sum(counts.get(t, 0) for t in FEATURE_EVENT_TYPES)
    events = [counts.get(t, 0) / total if total else 0.0 for t in FEATURE_EVENT_TYPES]

    categories = [0.0] * (len(space.categories) + 1)
    affinity_total = sum(shopper.category_affinity.values())
    if affinity_total > 0:
        index = space._category_index
        for category, value in shopper.category_affinity.items():
            categories[index.get(category, len(space.categories))] += value / affinity_total

    state = shopper.personas or {}
    queries = np.zeros(QUERY_DIMS)
    vectors = [v for v in (space.query_vector(q) for q in state.get("queries", ())) if v is not None]
    if vectors:
        queries = np.mean(vectors, axis=0)

    signals = state.get("signals", {})
    sessions = max(shopper.sessions, 1)
    dwell_n = signals.get("dwell_n", 0)
    price_n = signals.get("price_n", 0)
    behaviour = [
        math.log1p(shopper.events / sessions),
        math.log1p(signals.get("dwell_ms", 0) / dwell_n / 1000.0) if dwell_n else 0.0,
        signals.get("price_sum", 0.0) / price_n if price_n else 0.5,
        shopper.purchases / sessions,
        counts.get("add_to_cart", 0) / sessions,
    ]
    # Shares as their square roots (the Hellinger embedding): distances between them then weigh a category a
    # shopper rarely visits about as much as one they live in, which k-means-like clustering needs.
    return np.concatenate([np.sqrt(events), np.sqrt(categories), queries, behaviour]).astype(np.float64)


def tokens(text: str) -> list[str]:
    """The words of a query as the query vectors know them."""
    return _TOKENS.findall(text.lower())


def batch_features(shoppers: Iterable[ShopperState], space: FeatureSpace) -> np.ndarray:
    """Feature vectors of many shoppers, one row each (the rebuild's path through `shopper_features`)."""
    rows = [shopper_features(s, space) for s in shoppers]
    return np.vstack(rows) if rows else np.zeros((0, len(space.names)))
