"""Item clusters that follow the shopper within a session (spec 001): the published clusters, their trait
descriptors and stable ids, each cluster's prior appeal to a shopper, the per-session bandit over them and the
adaptive feed. Serving and Ingest load the registry's current clusters once per container (`load_item_clusters`)."""

import logging
import threading

from tailor.clusters.bandit import (
    BanditParams,
    ClusterPosteriors,
    Selection,
    prior_appeal,
    select_clusters,
)
from tailor.clusters.feed import AdaptiveFeed
from tailor.clusters.model import FORMAT, MODEL_NAME, ItemClusters, item_trait_strengths, match_cluster_ids

__all__ = ["FORMAT", "MODEL_NAME", "AdaptiveFeed", "BanditParams", "ClusterPosteriors", "ItemClusters",
           "PublishedClusters", "Selection", "item_trait_strengths", "load_item_clusters", "match_cluster_ids",
           "prior_appeal", "select_clusters"]

logger = logging.getLogger(__name__)


def load_item_clusters(registry=None) -> ItemClusters | None:
    """The registry's current item clusters, or None when there are none or they cannot be used (no default ships:
    clusters name the shop's own items)."""
    if registry is None:
        return None
    try:
        return ItemClusters.from_stored(registry.fetch(MODEL_NAME))
    except LookupError:
        return None
    except Exception as exc:  # a broken or unreadable registry must not take serving down
        logger.warning("cannot use the registry's %s (%s); serving without item clusters", MODEL_NAME, exc)
        return None


class PublishedClusters:
    """`load_item_clusters(registry)`, called by the first caller rather than at once, and kept for the container's
    life (what was found, or that nothing was): Ingest's cold start reads no more of the registry than before."""

    def __init__(self, registry=None):
        self._registry = registry
        self._lock = threading.Lock()
        self._loaded = False
        self._clusters: ItemClusters | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    def __call__(self) -> ItemClusters | None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._clusters = load_item_clusters(self._registry)
                    self._loaded = True
        return self._clusters
