"""Session intent: the features one session's state gives, the ONNX classifier over them, and the intent
scaling factors that turn intent probabilities into event weights.

Features. `intent_features(state)` is the one function training and serving compute features with:
Ingest calls it on the session state it folds, the API on the state it folds from a request's
`session_data`, training on the state replayed from simulated or archived events. It reads only
SessionState fields (tailor.session), so a feature cannot mean one thing in training and another
in serving. Four of them are the posterior of the session's learned forward filter
(tailor.intent_filter), which the session keeps when it is folded with the model's filter.

Model. `IntentModel` runs the classifier (model registry name "intent"): an ONNX graph with input
"features" (float32, n x len(names)) and output "probabilities" (n x 4, INTENTS order). Its
metadata names its features; they are taken from INTENT_FEATURES by name, so features added after
it was trained do not disturb it. One `predict` call scores a whole batch of sessions. Its metadata's
"filter" holds the forward filter's parameters (`IntentModel.filter`), published with the classifier
that reads its posterior: sessions are folded with it (tailor.session.fold_session). A model whose filter is of
another format than this code's (tailor.intent_filter.FORMAT) is refused like one missing features: the registry's
loader logs why and serves the shipped default until the model is retrained.

Scaling factors. `IntentFactors` holds intent -> event type -> factor (1 where not named). A session
is a mixture of intents, so its factor for an event type is the mixture's blend of the factors:
WeightedEventScore = BaseEventScore x sum over intents of P(intent) x factor[intent][event type].
The defaults follow the spec and ship in intent_factors.json beside this module;
tailor.intent_config.FactorsSource lets AppConfig override them without a deploy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tailor.events import EVENT_TYPES, Event
from tailor.intent_filter import IntentFilter, filter_posterior
from tailor.ltv.features import REFERRAL_SOURCES
from tailor.models.onnx_model import OnnxModel
from tailor.session import SessionState, fold_session

__all__ = ["DEFAULT_FACTORS_FILE", "INPUT_NAME", "INTENTS", "INTENT_FEATURES", "METADATA_KEY", "MODEL_NAME",
           "OUTPUT_NAME", "IntentFactors", "IntentModel", "as_mapping", "dominant_intent", "intent_features", "intent_matrix"]

INTENTS: tuple[str, ...] = ("exploratory", "comparative", "intent_to_purchase", "research")
MODEL_NAME = "intent"
METADATA_KEY = "tailor.intent"  # the ONNX metadata entry holding the model's metadata JSON
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
DEFAULT_FACTORS_FILE = Path(__file__).resolve().parent / "intent_factors.json"

# Event types whose share of the session's events (all of them, and the recent ones) are features.
SHARE_TYPES: tuple[str, ...] = (
    "view", "click", "category_browse", "search", "impression", "spec_compare", "review_read", "zoom", "scroll",
    "dwell", "wishlist", "add_to_cart", "remove_from_cart", "checkout_view", "purchase",
)
# Event types whose count (log 1 + count) is a feature: the signals the spec names.
COUNT_TYPES: tuple[str, ...] = ("search", "spec_compare", "review_read", "add_to_cart", "remove_from_cart",
                                "checkout_view", "purchase", "category_browse")
# Half-lives, in events, of the decaying shares of the recent event types: what the shopper did last weighs most,
# as their intent does not last (it changes every ten actions or so).
HALF_LIVES: tuple[int, ...] = (2, 6)
INTENT_FEATURES: tuple[str, ...] = (
    "log_events", "log_minutes", "distinct_items", "distinct_categories", "items_per_item_event",
    "refinements", "cart_units", "purchased",
    "dwell_mean_s", "dwell_max_s", "dwell_recent_s", "scroll_depth_max", "scroll_depth_recent", "zoom_level_max",
    *(f"log_{t}" for t in COUNT_TYPES),
    *(f"share_{t}" for t in SHARE_TYPES),
    *(f"recent_{t}" for t in SHARE_TYPES),
    *(f"referral_{s}" for s in REFERRAL_SOURCES),
    *(f"last_{t}" for t in SHARE_TYPES),
    *(f"decayed{h}_{t}" for h in HALF_LIVES for t in SHARE_TYPES),
    *(f"filter_{i}" for i in INTENTS),
)
_ITEM_EVENTS = ("view", "click", "review_read", "spec_compare", "zoom", "dwell", "wishlist", "add_to_cart")
_UNIFORM = [1.0 / len(INTENTS)] * len(INTENTS)  # the filter's features of a session folded without one


def intent_features(state: SessionState) -> list[float]:
    """The session's intent features, in INTENT_FEATURES order."""
    counts = state.counts
    events = max(state.events, 1)
    get = counts.get
    dwells = get("dwell", 0)
    item_events = sum(get(t, 0) for t in _ITEM_EVENTS)
    recent = state.recent_types.split()
    recent_n = max(len(recent), 1)
    recent_counts: dict[str, int] = {}
    for kind in recent:
        recent_counts[kind] = recent_counts.get(kind, 0) + 1
    log1p = math.log1p
    last = recent[-1] if recent else ""
    decayed = []
    for half_life in HALF_LIVES:
        shares: dict[str, float] = {}
        total = 0.0
        for age, kind in enumerate(reversed(recent)):
            weight = 0.5 ** (age / half_life)
            shares[kind] = shares.get(kind, 0.0) + weight
            total += weight
        decayed += [shares.get(t, 0.0) / total if total else 0.0 for t in SHARE_TYPES]
    return [
        log1p(state.events),
        log1p(max(state.last_seen - state.started_at, 0.0) / 60.0),
        float(len(state.items)),
        float(len(state.categories)),
        len(state.items) / item_events if item_events else 0.0,
        float(state.refinements),
        float(min(state.cart_units, 100)),
        1.0 if state.purchased_units else 0.0,
        state.dwell_ms_total / dwells / 1000.0 if dwells else 0.0,
        state.dwell_ms_max / 1000.0,
        state.dwell_ms_recent / 1000.0,
        float(state.scroll_depth_max),
        float(state.scroll_depth_recent),
        float(state.zoom_level_max),
        *(log1p(get(t, 0)) for t in COUNT_TYPES),
        *(get(t, 0) / events for t in SHARE_TYPES),
        *(recent_counts.get(t, 0) / recent_n for t in SHARE_TYPES),
        *(1.0 if state.referral_source == source else 0.0 for source in REFERRAL_SOURCES),
        *(1.0 if last == t else 0.0 for t in SHARE_TYPES),
        *decayed,
        *(filter_posterior(state.intent_filter) or _UNIFORM),
    ]


def intent_matrix(states: Sequence[SessionState]) -> np.ndarray:
    """The features of several sessions, one row each (float32, ready for `IntentModel.predict`)."""
    if not states:
        return np.zeros((0, len(INTENT_FEATURES)), dtype=np.float32)
    return np.asarray([intent_features(s) for s in states], dtype=np.float32)


def dominant_intent(probabilities: Mapping[str, float]) -> str | None:
    """The most probable intent (ties: INTENTS order), or None without probabilities."""
    if not probabilities:
        return None
    return max(INTENTS, key=lambda i: (probabilities.get(i, 0.0), -INTENTS.index(i)))


class IntentModel(OnnxModel):
    """The intent classifier: one ONNX graph, input "features", output "probabilities" (INTENTS order)."""

    metadata_key, features, kind, model_name = METADATA_KEY, INTENT_FEATURES, "an intent model", MODEL_NAME

    def __init__(self, onnx: bytes, **kwargs: Any):
        super().__init__(onnx, **kwargs)
        if tuple(self.metadata.get("intents", ())) != INTENTS:
            raise ValueError(f"the intent model's classes {self.metadata.get('intents')} are not {list(INTENTS)}")
        document = self.metadata.get("filter")
        # The forward filter whose posterior the classifier reads (features filter_*); older models have none. One of
        # another format raises: this code would observe events otherwise than it was counted, unnoticed.
        self.filter: IntentFilter | None = None if document is None else IntentFilter.from_json(document)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Intent probabilities (n x 4, INTENTS order, rows summing to 1) for a feature matrix."""
        if len(features) == 0:
            return np.zeros((0, len(INTENTS)))
        out = np.clip(self.run(OUTPUT_NAME, INPUT_NAME, features), 0.0, None)
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)

    def probabilities(self, state: SessionState) -> dict[str, float]:
        """One session's intent probabilities, rounded for storing."""
        return as_mapping(self.predict(intent_matrix([state]))[0])

    def session_probabilities(self, events: Iterable[Event]) -> dict[str, float]:
        """The intent probabilities of a session given as its events (a request's session data): folded in time
        order with the model's filter, as Ingest folds a stream."""
        state = None
        for event in sorted(events, key=lambda e: e.epoch):
            state = fold_session(state, event, ttl_seconds=0, intent_filter=self.filter)
        return {} if state is None else self.probabilities(state)


def as_mapping(row: Sequence[float]) -> dict[str, float]:
    """A probability row (INTENTS order) as intent -> probability, rounded to 4 places for storing."""
    return {intent: round(float(p), 4) for intent, p in zip(INTENTS, row)}


class IntentFactors:
    """Intent -> event type -> scaling factor (1 where not named), blended by a session's intent mixture."""

    def __init__(self, factors: Mapping[str, Mapping[str, float]], *, origin: str = "given"):
        unknown = sorted(set(factors) - set(INTENTS))
        if unknown:
            raise ValueError(f"intent factors: unknown intents {unknown}; known: {list(INTENTS)}")
        table: dict[str, dict[str, float]] = {}
        for intent, by_type in factors.items():
            if not isinstance(by_type, Mapping):
                raise ValueError(f"intent factors: {intent} must map event types to factors")
            for kind, factor in by_type.items():
                if kind not in EVENT_TYPES:
                    raise ValueError(f"intent factors: {intent}: unknown event type {kind!r}")
                if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) \
                        or not 0 <= factor <= 100:
                    raise ValueError(f"intent factors: {intent}.{kind} must be a number from 0 to 100, not {factor!r}")
            table[intent] = {k: float(v) for k, v in by_type.items()}
        self.factors = table
        self.origin = origin  # where they came from: the shipped file, AppConfig, a test
        self.event_types: tuple[str, ...] = tuple(sorted({k for by_type in table.values() for k in by_type}))
        # intents x event types: a session's blended factors are its probability row times this.
        self._matrix = np.array([[table.get(i, {}).get(k, 1.0) for k in self.event_types] for i in INTENTS])
        self._column = {k: j for j, k in enumerate(self.event_types)}

    @classmethod
    def from_json(cls, text: str | bytes, *, origin: str = "given") -> IntentFactors:
        document = json.loads(text)
        if not isinstance(document, Mapping) or not isinstance(document.get("factors"), Mapping):
            raise ValueError('intent factors: expected {"factors": {intent: {event type: factor}}}')
        return cls(document["factors"], origin=origin)

    @classmethod
    def default(cls) -> IntentFactors:
        """The factors shipped beside this module (the spec's defaults)."""
        return cls.from_json(DEFAULT_FACTORS_FILE.read_bytes(), origin=f"file {DEFAULT_FACTORS_FILE.name}")

    def factor(self, probabilities: Mapping[str, float] | None, event_type: str) -> float:
        """The blended factor of one event type for a session's intent mixture (1 without one)."""
        if not probabilities:
            return 1.0
        column = self._column.get(event_type)
        if column is None:
            return 1.0
        total = sum(probabilities.get(i, 0.0) for i in INTENTS)
        if total <= 0:
            return 1.0
        return float(sum(probabilities.get(i, 0.0) * self._matrix[k, column] for k, i in enumerate(INTENTS)) / total)

    def blend(self, probabilities: Mapping[str, float] | None) -> dict[str, float]:
        """Event type -> blended factor for a session's intent mixture (only event types some intent scales)."""
        return {kind: self.factor(probabilities, kind) for kind in self.event_types}

    def blend_rows(self, probabilities: np.ndarray, event_types: Sequence[str]) -> np.ndarray:
        """Per row of an (n x 4) probability matrix, the blended factor of that row's event type."""
        out = np.ones(len(event_types))
        if len(event_types) == 0:
            return out
        columns = np.array([self._column.get(kind, -1) for kind in event_types])
        scaled = columns >= 0
        factors = self._matrix[:, columns[scaled]]  # intents x scaled rows
        p = probabilities[scaled]
        # Written out term by term rather than as a matrix product: each row's sum is then computed the same
        # way whatever the batch holds, so a record weighs the same in any batch (BLAS may order sums by size).
        blended = p[:, 0] * factors[0] + p[:, 1] * factors[1] + p[:, 2] * factors[2] + p[:, 3] * factors[3]
        total = p[:, 0] + p[:, 1] + p[:, 2] + p[:, 3]
        out[scaled] = np.where(total > 0, blended / np.where(total > 0, total, 1.0), 1.0)
        return out

    def weights(self, probabilities: Mapping[str, float] | None, base: Mapping[str, float]) -> dict[str, float]:
        """WeightedEventScore per event type: `base` x the blended factor."""
        return {kind: weight * self.factor(probabilities, kind) for kind, weight in base.items()}

    def to_json(self) -> dict[str, Any]:
        return {"factors": self.factors}
