"""Item clusters that follow the shopper within a session (spec 001): the published clusters, their trait
descriptors and stable ids, each cluster's prior appeal to a shopper, the per-session bandit over them and the
adaptive feed. Serving and Ingest load the registry's current clusters once per container (`load_item_clusters`)."""

import logging
import threading
import time

from tailor.clusters.bandit import (
    BanditParams,
    ClusterPosteriors,
    Selection,
    prior_appeal,
    select_clusters,
)
from tailor.clusters.feed import AdaptiveFeed
from tailor.clusters.model import FORMAT, MODEL_NAME, ItemClusters, item_trait_strengths, match_cluster_ids
from tailor.models.registry import RegistryUnreadable, load_published

__all__ = ["FORMAT", "MODEL_NAME", "AdaptiveFeed", "BanditParams", "ClusterPosteriors", "ItemClusters",
           "PublishedClusters", "Selection", "item_trait_strengths", "load_item_clusters", "match_cluster_ids",
           "prior_appeal", "select_clusters"]

logger = logging.getLogger(__name__)


def load_item_clusters(registry=None, *, unreadable_raises: bool = False) -> ItemClusters | None:
    """The registry's current item clusters, or None when there are none or they cannot be used (no default ships:
    clusters name the shop's own items); `unreadable_raises` as tailor.models.load_published takes it."""
    return load_published(MODEL_NAME, registry, build=ItemClusters.from_stored, without="item clusters",
                          unreadable_raises=unreadable_raises)


class PublishedClusters:
    """`load_item_clusters(registry)`, called by the first caller rather than at once (Ingest's cold start reads no
    more of the registry than before), and kept: every `refresh_seconds` a caller looks at the registry's current
    version again and loads it if a rebuild has published another (or the first, where there was none). A registry
    that cannot be read before anything is loaded raises tailor.models.RegistryUnreadable (Ingest's batch is then
    delivered again); after that, what was loaded is kept until the next look."""

    def __init__(self, registry=None, *, refresh_seconds: float = 900.0, clock=time.monotonic):
        self._registry = registry
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked: float | None = None
        self._version: str | None = None
        self._clusters: ItemClusters | None = None

    @property
    def loaded(self) -> bool:
        return self._checked is not None

    def __call__(self) -> ItemClusters | None:
        now = self._clock()
        if self._checked is None or now - self._checked >= self._refresh:
            with self._lock:
                if self._checked is None or now - self._checked >= self._refresh:
                    self._look(now)
        return self._clusters

    def _look(self, now: float) -> None:
        looked, self._checked = self._checked, now
        if self._registry is None:
            return
        try:
            version = self._registry.current_version(MODEL_NAME)
            found = (load_item_clusters(self._registry, unreadable_raises=True)
                     if version is not None and version != self._version else None)
        except ValueError as exc:  # a pointer this code cannot read: looking again soon will not mend it
            logger.warning("cannot use the registry's current %s (%s); keeping what was loaded", MODEL_NAME, exc)
            return
        except Exception as exc:
            if self._version is None:
                # Nothing loaded to fold with: the caller's batch is delivered again, and looks again, rather than
                # folded past its rows' watermarks without the clusters the registry may hold.
                self._checked = looked
                raise RegistryUnreadable(f"cannot read the registry's {MODEL_NAME}: {exc}") from exc
            logger.warning("cannot read the registry's current %s (%s); keeping what was loaded", MODEL_NAME, exc)
            return
        if found is not None:
            self._clusters, self._version = found, version
