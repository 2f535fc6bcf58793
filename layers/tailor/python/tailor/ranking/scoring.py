"""Scores of candidates: the ONNX purchase-probability model, and the terms the score blend weighs.

A scorer is a small object with a `name` and `score(ctx, candidates, features)` returning its term
(one value in [0, 1] per candidate) and any raw values worth explaining. A route's blend gives each
scorer a weight; the feed's default follows the spec: 0.5 commercial performance + 0.4 purchase
probability + 0.1 diversity (diversity depends on what is already in the list, so
tailor.ranking.diversity applies it while picking). New capabilities (LTV, personas, embeddings)
add a scorer and a weight.

Each term is scaled to [0, 1] over the request's candidates, so the weights mean what they say:
a model's probabilities of a few percent would otherwise count for nothing beside a popularity
share. On an item page (the related route) the purchase probability is scaled by the list's highest
only where that is at least the model's base rate (the share of bought candidates it learnt from):
where no candidate is likelier to be bought than an average one, which of them the shopper would
buy says little, and what others engaged with beside the item leads. In the feed and in search the
model's order leads whatever its level.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from tailor.models.onnx_model import OnnxModel
from tailor.ranking.candidates import Candidates
from tailor.ranking.context import RankingContext
from tailor.ranking.features import FEATURE_NAMES
from tailor.ranking.rows import ITEM_FIELDS

__all__ = ["DEFAULT_WEIGHTS", "INPUT_NAME", "METADATA_KEY", "MODEL_NAME", "OUTPUT_NAME", "CommercialPerformance",
           "ConversionPrior", "ProbabilityModel", "PurchaseProbability", "RankingModel", "Relevance", "Scorer",
           "intent_adjusted", "ltv_adjusted"]

MODEL_NAME = "ranker"
METADATA_KEY = "tailor.ranker"  # the ONNX metadata entry holding the model's metadata JSON
INPUT_NAME = "features"
OUTPUT_NAME = "purchase_probability"

# Route -> scorer name -> weight. "diversity" is applied while picking the list.
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "feed": {"commercial": 0.5, "probability": 0.4, "diversity": 0.1},
    "search": {"relevance": 0.3, "probability": 0.4, "commercial": 0.2, "diversity": 0.1},
    "rerank": {"relevance": 0.4, "probability": 0.4, "commercial": 0.1, "diversity": 0.1},
    "related": {"relevance": 0.4, "probability": 0.3, "commercial": 0.2, "diversity": 0.1},
}
# Blend term -> the event type whose intent scaling factor scales its weight (intent_adjusted).
INTENT_TERMS = {"probability": "add_to_cart", "commercial": "purchase", "diversity": "category_browse"}
# The routes whose purchase-probability term is scaled by at least the model's base rate.
BASE_RATE_ROUTES = frozenset({"related"})
# The sources whose strength is a route's relevance: what the caller asked about.
RELEVANCE_SOURCES = ("query", "caller", "related")


def intent_adjusted(weights: Mapping[str, float], factors: Mapping[str, float] | None) -> dict[str, float]:
    """A route's blend weights for a session's intent, each scaled by the session's blended factor of the event
    type it stands for: the purchase probability by "add_to_cart" (a shopper ready to buy gets what they will
    likely buy), the commercial performance (sales) by "purchase" (an exploring shopper's purchase weight is
    lowered), the diversity by "category_browse" (an exploring shopper gets variety)."""
    adjusted = dict(weights)
    if not factors:
        return adjusted
    for term, event_type in INTENT_TERMS.items():
        if term in adjusted:
            adjusted[term] = round(adjusted[term] * factors.get(event_type, 1.0), 6)
    return adjusted


def ltv_adjusted(weights: Mapping[str, float], ltv: Mapping[str, object] | None, strength: float) -> dict[str, float]:
    """A route's blend weights with the purchase-probability term weighed by the shopper's predicted LTV (spec 004).

    `ltv` is what RebuildLtv keeps in the shopper's row (tailor.ltv.rebuild); its percentile among the shoppers the
    model was trained on scales the term by 1 + strength x (2 x percentile / 100 - 1): from 1 - strength for the
    least valuable to 1 + strength for the most, the median shopper's unchanged. A strength of 0 (the default
    everywhere) or a shopper without an LTV leaves the weights as they are.
    """
    adjusted = dict(weights)
    percentile = ltv.get("percentile") if ltv else None
    if not strength or "probability" not in adjusted or not isinstance(percentile, (int, float)):
        return adjusted
    share = min(max(float(percentile) / 100.0, 0.0), 1.0)
    adjusted["probability"] = round(adjusted["probability"] * max(1.0 + strength * (2.0 * share - 1.0), 0.0), 6)
    return adjusted


class Scorer(Protocol):
    name: str

    def score(self, ctx: RankingContext, candidates: Candidates,
              features: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The term per candidate in [0, 1], and raw values to explain it by (name -> per candidate)."""
        ...


class ProbabilityModel(Protocol):
    label: str
    base_rate: float  # the share of bought candidates the model learnt from; 0 where it knows none

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Purchase probability per row of a (n, len(FEATURE_NAMES)) feature matrix."""
        ...


class RankingModel(OnnxModel):
    """The purchase-probability ranker: one ONNX graph, input "features" (float32, n x k), output
    "purchase_probability" (n). Its metadata (JSON under METADATA_KEY) names its k features."""

    metadata_key, features, kind, model_name = METADATA_KEY, FEATURE_NAMES, "a ranking model", MODEL_NAME

    def predict(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0)
        return self.run(OUTPUT_NAME, INPUT_NAME, features).reshape(-1)

    @functools.cached_property
    def base_rate(self) -> float:
        """The share of bought candidates among those the model learnt from (its metadata's training counts)."""
        training = self.metadata.get("training") or {}
        rows, positives = training.get("rows"), training.get("positives")
        return positives / rows if isinstance(rows, int) and isinstance(positives, int) and rows > 0 else 0.0


class ConversionPrior:
    """The untrained estimate of purchase probability: the item's purchases per view, shrunk toward 0.
    What the blend uses without a model, and the baseline a trained model must beat."""

    label = "prior:untrained"
    base_rate = 0.0

    def __init__(self) -> None:
        self._column = FEATURE_NAMES.index("item_purchase_rate")

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features[:, self._column], dtype=np.float64)


class PurchaseProbability:
    name = "probability"

    def __init__(self, model: ProbabilityModel):
        self.model = model

    def score(self, ctx, candidates, features):
        p = self.model.predict(features)
        floor = self.model.base_rate if ctx.request.route in BASE_RATE_ROUTES else 0.0
        return _scaled(p, floor=floor), {"purchase_probability": p}


class CommercialPerformance:
    """How well each item sells: half its decayed popularity, half its revenue, each on a log scale."""

    name = "commercial"

    def score(self, ctx, candidates, features):
        popularity = _scaled(np.log1p(candidates.popularity))
        revenue = _scaled(np.log1p(candidates.values[:, ITEM_FIELDS.index("revenue")]))
        return 0.5 * popularity + 0.5 * revenue, {}


class Relevance:
    """How strongly the request's own sources (its query, the caller's list, the related item) propose each item."""

    name = "relevance"

    def score(self, ctx, candidates, features):
        term = np.zeros(len(candidates))
        for source in RELEVANCE_SOURCES:
            strength = candidates.strengths.get(source)
            if strength is not None:
                np.maximum(term, _scaled(strength), out=term)
        return term, {}


def _scaled(values: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """`values` over their maximum, or over `floor` where that is larger (all 0 when nothing is positive)."""
    values = np.asarray(values, dtype=np.float64)
    top = max(values.max(initial=0.0), floor)
    return values / top if top > 0 else np.zeros_like(values)
