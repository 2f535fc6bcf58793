"""The API's entry point into the domain: a Recommender answering feed, search, rerank, related and profile."""

from tailor.ranking.filters import Filters
from tailor.ranking.limits import MAX_ITEMS, MAX_N, MAX_SESSION_EVENTS, RequestError
from tailor.ranking.pipeline import RankedItem
from tailor.serving.recommender import Ranking, Recommender

__all__ = ["MAX_ITEMS", "MAX_N", "MAX_SESSION_EVENTS", "Filters", "RankedItem", "Ranking", "Recommender",
           "RequestError"]
