"""The session's cluster posteriors as Ingest keeps them: what a feed's impression and its clicks add, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tailor.clusters.bandit import BanditParams, ClusterPosteriors
from tailor.clusters.model import ItemClusters

__all__ = ["ClusterBatch", "SessionClusters"]


class SessionClusters:
    """Folds feed impressions and the clicks echoing their feed id into a session's `clusters` field (the compact
    encoding of tailor.clusters.ClusterPosteriors). Ingest's fold takes a `batch()` per fold and calls its `fold`
    once per record the session row absorbs (its watermark) and never for a producer's duplicate, so every impression
    and click counts exactly once.

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

    def batch(self) -> ClusterBatch:
        return ClusterBatch(self)


class ClusterBatch:
    """One fold's sessions: each session's field decoded at its first feed event of the batch and encoded at the
    end (`settle`), rather than at every event. The evidence is rounded as the field keeps it after every event, so
    a session's row is the same however the stream cut its events into batches."""

    def __init__(self, sessions: SessionClusters):
        self._sessions = sessions
        self._held: dict[int, tuple[Any, ClusterPosteriors]] = {}

    def fold(self, state: Any, event: Any) -> None:
        """Apply `event` to the posteriors of `state` (a session whose `clusters` field `settle` writes) when it is a
        feed's impression or a click on one."""
        feed_id = getattr(event, "feed_id", None)
        if not feed_id:
            return  # only served lists are the bandit's arms: a listing's impression is no feed of clusters
        kind = event.event_type
        if kind == "impression":
            clusters = self._sessions.clusters
            if clusters is None:
                return
            posteriors = self._posteriors(state)
            posteriors.impression(feed_id, [clusters.cluster_of(item) for item in event.item_ids],
                                  self._sessions.params)
        elif kind == "click" and getattr(event, "position", None) is not None:
            if self._sessions.clusters is None:
                return
            posteriors = self._posteriors(state)
            if posteriors.feed != feed_id:
                return
            posteriors.click(feed_id, event.position, self._sessions.params)
        else:
            return
        posteriors.round_as_kept()

    def settle(self) -> None:
        """Write each session's posteriors the batch moved into its `clusters` field."""
        for state, posteriors in self._held.values():
            state.clusters = posteriors.encode()

    def _posteriors(self, state: Any) -> ClusterPosteriors:
        held = self._held.get(id(state))
        if held is None:
            held = self._held[id(state)] = (state, ClusterPosteriors.decode(state.clusters))
        return held[1]
