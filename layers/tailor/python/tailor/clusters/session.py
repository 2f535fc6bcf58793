"""The session's cluster posteriors as Ingest keeps them: what a feed's impression and its clicks add, once."""

from __future__ import annotations

from typing import Any

from tailor.clusters.bandit import BanditParams, ClusterPosteriors
from tailor.clusters.model import ItemClusters

__all__ = ["SessionClusters"]


class SessionClusters:
    """Folds feed impressions and the clicks echoing their feed id into a session's `clusters` field (the compact
    encoding of tailor.clusters.ClusterPosteriors). Ingest's fold calls it once per record the session row absorbs
    (its watermark) and never for a producer's duplicate, so every impression and click counts exactly once."""

    def __init__(self, clusters: ItemClusters, params: BanditParams = BanditParams()):
        self.clusters = clusters
        self.params = params

    def fold(self, state: Any, event: Any) -> None:
        """Apply `event` to `state.clusters` when it is a feed's impression or a click on one."""
        feed_id = getattr(event, "feed_id", None)
        if not feed_id:
            return  # only served lists are the bandit's arms: a listing's impression is no feed of clusters
        kind = event.event_type
        if kind == "impression":
            posteriors = ClusterPosteriors.decode(state.clusters)
            posteriors.impression(feed_id, [self.clusters.cluster_of(item) for item in event.item_ids], self.params)
        elif kind == "click" and getattr(event, "position", None) is not None:
            posteriors = ClusterPosteriors.decode(state.clusters)
            if posteriors.feed != feed_id:
                return
            posteriors.click(feed_id, event.position, self.params)
        else:
            return
        state.clusters = posteriors.encode()
