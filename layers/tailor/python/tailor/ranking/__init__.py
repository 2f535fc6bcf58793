"""The ranking pipeline shared by every route: candidates -> features -> ONNX scoring -> filters -> diversity -> top N."""

from tailor.ranking.candidates import Candidates, CandidateSource
from tailor.ranking.context import RankingContext, Request
from tailor.ranking.features import FEATURE_GROUPS, FEATURE_NAMES, FeatureGroup, candidate_features
from tailor.ranking.filters import Filters
from tailor.ranking.limits import MAX_ITEMS, MAX_N, MAX_SESSION_EVENTS, RequestError
from tailor.ranking.pipeline import DEFAULT_ROUTES, Gathered, Pipeline, RankedItem, Route
from tailor.ranking.rows import RowCache
from tailor.ranking.scoring import (
                                    DEFAULT_WEIGHTS,
                                    MODEL_NAME,
                                    CommercialPerformance,
                                    ConversionPrior,
                                    PurchaseProbability,
                                    RankingModel,
                                    Relevance,
                                    Scorer,
)

__all__ = ["DEFAULT_ROUTES", "DEFAULT_WEIGHTS", "FEATURE_GROUPS", "FEATURE_NAMES", "MAX_ITEMS", "MAX_N",
           "MAX_SESSION_EVENTS", "MODEL_NAME", "CandidateSource", "Candidates", "CommercialPerformance",
           "ConversionPrior", "FeatureGroup", "Filters", "Gathered", "Pipeline", "PurchaseProbability", "RankedItem",
           "RankingContext", "RankingModel", "Relevance", "Request", "RequestError", "Route", "RowCache", "Scorer",
           "candidate_features"]
