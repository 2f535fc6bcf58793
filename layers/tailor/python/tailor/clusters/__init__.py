"""Item clusters that follow the shopper within a session (spec 001): the published clusters, their trait
descriptors and stable ids, each cluster's prior appeal to a shopper, and the per-session bandit over them."""

from tailor.clusters.bandit import (
    BanditParams,
    ClusterPosteriors,
    Selection,
    prior_appeal,
    select_clusters,
)
from tailor.clusters.model import ItemClusters, item_trait_strengths, match_cluster_ids

__all__ = ["BanditParams", "ClusterPosteriors", "ItemClusters", "Selection", "item_trait_strengths",
           "match_cluster_ids", "prior_appeal", "select_clusters"]
