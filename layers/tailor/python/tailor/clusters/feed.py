"""The adaptive feed as the API serves it (spec 001): the ranking's list re-ordered slot by slot by the session's
cluster bandit, each slot's probability for the exposure log and, when asked, why its cluster was there.

The ranking pipeline scores and filters the candidates as for any feed; this takes every eligible one in its order
and lets the bandit (tailor.clusters.slate) fill the slots: a cluster per slot by Thompson sampling over the
shopper's prior appeal (their trait posteriors against the clusters' descriptors) and the session's clicks and
ignores (kept by Ingest in the session row's `clusters` field), then that cluster's best-ranked candidate. A feed's
random draws are seeded by its feed id, so the list served under an id can be drawn again from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tailor.clusters.bandit import BanditParams, ClusterPosteriors, shopper_appeal
from tailor.clusters.model import ItemClusters
from tailor.clusters.slate import adaptive_slate

__all__ = ["AdaptiveFeed", "feed_rng"]


@dataclass(frozen=True)
class AdaptiveFeed:
    """The published clusters and the bandit's knobs; `score_weight` is what the ranking's score of a cluster's best
    candidate adds to the cluster's sampled log click rate (blend scores lie in about [0, 1])."""

    clusters: ItemClusters
    params: BanditParams = BanditParams()
    score_weight: float = 1.0

    def order(self, ranked: Sequence[Any], n: int, *, traits: Mapping[str, Sequence[float]] | None,
              session_clusters: str | Mapping[str, Any] | None, feed_id: str,
              categories: Mapping[str, float] | None = None, explain: bool = False) -> tuple[list[Any], list[float]]:
        """`n` of the `ranked` items (tailor.ranking.RankedItem, best first) in the bandit's order, and each slot's
        probability of its cluster; `traits` and `categories` are the shopper row's trait posteriors and category
        affinity. With `explain`, each item's `cluster` says which cluster it came from and why."""
        if not ranked or n <= 0:
            return [], []
        prior = shopper_appeal(self.clusters, traits, self.params, categories)
        posteriors = ClusterPosteriors.read(session_clusters)
        by_id = {item.item_id: item for item in ranked}
        slate = adaptive_slate(list(by_id), [item.score for item in by_id.values()], n, self.clusters, prior,
                               posteriors, feed_rng(feed_id), self.params, score_weight=self.score_weight,
                               explain=explain)
        items = []
        for slot, item_id in enumerate(slate.items):
            item = by_id[item_id]
            if explain:
                item = replace(item, cluster={**slate.reasons[slot], "probability": slate.probabilities[slot]})
            items.append(item)
        return items, list(slate.probabilities)


def feed_rng(feed_id: str) -> np.random.Generator:
    """The random numbers of the feed served under `feed_id`."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(feed_id.encode()).digest()[:8], "big"))
