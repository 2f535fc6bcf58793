"""Item clusters that follow the shopper within a session (spec 001): the published clusters, their trait
descriptors and stable ids, each cluster's prior appeal to a shopper, the per-session bandit over them and the
adaptive feed. Serving and Ingest load the registry's current clusters once per container (`load_item_clusters`)."""

import logging

from tailor.clusters.bandit import (
    BanditParams,
    ClusterPosteriors,
    Selection,
    prior_appeal,
    select_clusters,
)
from tailor.clusters.feed import AdaptiveFeed
from tailor.clusters.model import FORMAT, MODEL_NAME, ItemClusters, item_trait_strengths, match_cluster_ids

__all__ = ["FORMAT", "MODEL_NAME", "AdaptiveFeed", "BanditParams", "ClusterPosteriors", "ItemClusters", "Selection",
           "item_trait_strengths", "load_item_clusters", "match_cluster_ids", "prior_appeal", "select_clusters"]

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
