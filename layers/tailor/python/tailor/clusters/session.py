"""The session's cluster posteriors as Ingest keeps them: what a feed's impression and its clicks add, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tailor.clusters.bandit import BanditParams, ClusterPosteriors
from tailor.clusters.model import ItemClusters

__all__ = ["SessionClusters"]


class SessionClusters:
    """Folds feed impressions and the clicks echoing their feed id into a session's `clusters` field (the compact
    encoding of tailor.clusters.ClusterPosteriors). Ingest's fold calls it once per record the session row absorbs
    (its watermark) and never for a producer's duplicate, so every impression and click counts exactly once.

    `clusters` is the cluster map, or a function giving it (tailor.clusters.PublishedClusters: loaded by the first
    feed event that needs it, so a container that sees none never reads the registry); with none published, sessions
    keep nothing."""

    def __init__(self, clusters: ItemClusters | Callable[[], ItemClusters | None],
                 params: BanditParams = BanditParams()):
        self._clusters = clusters if callable(clusters) else (lambda: clusters)
        self.params = params

    @property
    def clusters(self) -> ItemClusters | None:
        return self._clusters()

    def fold(self, state: Any, event: Any) -> None:
        """Apply `event` to `state.clusters` when it is a feed's impression or a click on one."""
        feed_id = getattr(event, "feed_id", None)
        if not feed_id:
            return  # only served lists are the bandit's arms: a listing's impression is no feed of clusters
        kind = event.event_type
        if kind == "impression":
            clusters = self.clusters
            if clusters is None:
                return
            posteriors = ClusterPosteriors.decode(state.clusters)
            posteriors.impression(feed_id, [clusters.cluster_of(item) for item in event.item_ids], self.params)
        elif kind == "click" and getattr(event, "position", None) is not None:
            if self.clusters is None:
                return
            posteriors = ClusterPosteriors.decode(state.clusters)
            if posteriors.feed != feed_id:
                return
            posteriors.click(feed_id, event.position, self.params)
        else:
            return
        state.clusters = posteriors.encode()
