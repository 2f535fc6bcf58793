"""Published item clusters: ids stable across rebuilds, members, centroids, trait descriptors, global click rates.

A rebuild (tailor_lab.training.clusters) groups items by their vectors and metadata; this module holds what it
publishes and the parts of a rebuild that are rules rather than training: what an item's attributes say about the
traits it serves (item_trait_strengths), and how new clusters take over old ids (match_cluster_ids) so a session's
posteriors keyed by cluster id survive a rebuild where membership barely changes.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tailor.personas.traits import TRAITS

__all__ = ["FORMAT", "MIN_OVERLAP", "MODEL_NAME", "ItemClusters", "item_trait_strengths", "match_cluster_ids",
           "max_weight_assignment"]

MODEL_NAME = "item-clusters"  # their name in the model registry
FORMAT = "item-clusters/json"  # the stored version's metadata "format": its bytes are ItemClusters.to_json()
ARTIFACT = "clusters.json"  # the stored version's file in the registry

# A new cluster keeps an old id only when their memberships overlap at least this much (Jaccard): below it,
# the shoppers' evidence about the old cluster says little about the new one.
MIN_OVERLAP = 0.5
TRAIT_NAMES = tuple(t.name for t in TRAITS)


@dataclass(frozen=True)
class ItemClusters:
    """Clusters by id: members (item -> cluster), centroids (unit rows), per-trait descriptors in [0, 1], the
    global click rate of each cluster's impressions, each cluster's nearest clusters, the shares by category of the
    members the clusters were fitted on (not those placed in them) and the shop's engagements' shares by category
    (empty in files from before them)."""

    ids: tuple[str, ...]
    centroids: np.ndarray
    descriptors: np.ndarray
    global_ctr: np.ndarray
    members: Mapping[str, str]
    top_items: Mapping[str, tuple[str, ...]]
    neighbours: Mapping[str, tuple[tuple[str, float], ...]]
    categories: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    category_shares: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.ids)
        if self.centroids.shape[0] != k or self.descriptors.shape != (k, len(TRAITS)) or self.global_ctr.shape != (k,):
            raise ValueError("clusters: centroids, descriptors and global_ctr need one row per id")
        if len(set(self.ids)) != k:
            raise ValueError("clusters: ids must be unique")
        if any(not cid or "," in cid or "|" in cid for cid in self.ids):
            raise ValueError("clusters: ids must be non-empty and hold no ',' or '|' (a session's evidence is kept "
                             "in one string they separate)")
        unknown = set(self.members.values()) - set(self.ids)
        if unknown:
            raise ValueError(f"clusters: members name unknown clusters {sorted(unknown)[:3]}")

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Each cluster's row."""
        return {cid: i for i, cid in enumerate(self.ids)}

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        """Each member item's cluster's row: what a feed looks up for every candidate."""
        index = self.index
        return {item: index[cluster] for item, cluster in self.members.items()}

    @functools.cached_property
    def sizes(self) -> Counter[str]:
        """Each cluster's members, counted once: a profile describes several clusters."""
        return Counter(self.members.values())

    def cluster_of(self, item_id: str) -> str | None:
        return self.members.get(item_id)

    def category_lift(self, affinity: Mapping[str, float] | None, smoothing: float) -> np.ndarray:
        """How much likelier than the shop's average shopper a shopper with this category `affinity` (category ->
        weighed engagements, as their row keeps it) is to engage with each cluster's items: over the cluster's
        categories, the shopper's share of engagements in each, shrunk toward the shop's share by `smoothing`
        pseudo-engagements, over the shop's share. 1 for every cluster without an affinity or category shares."""
        lift = np.ones(len(self.ids))
        names, composition, shop = self._category_table
        if not affinity or not names:
            return lift
        own = np.array([_engagements(affinity.get(name)) for name in names])
        total = float(own.sum())
        if total <= 0:
            return lift
        share = (own + smoothing * shop) / (total + smoothing)
        return composition @ (share / shop)

    @functools.cached_property
    def _category_table(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """The categories of the shop's shares that some cluster holds, each cluster's members' shares over them
        (clusters x categories) and the shop's shares of them."""
        held = {name for shares in self.categories.values() for name in shares}
        names = tuple(sorted(name for name, share in self.category_shares.items() if name in held and share > 0))
        composition = np.array([[float(self.categories.get(cid, {}).get(name, 0.0)) for name in names]
                                for cid in self.ids]).reshape(len(self.ids), len(names))
        shop = np.array([float(self.category_shares[name]) for name in names])
        return names, composition, shop / shop.sum() if names else shop

    def describe(self, cluster_id: str, *, items: int = 10) -> dict[str, Any]:
        """A cluster's traits, categories, global click rate, neighbours and top items (what `tailor state cluster`
        shows)."""
        i = self.index.get(cluster_id)
        if i is None:
            raise KeyError(f"cluster {cluster_id!r} is not published")
        return {"cluster_id": cluster_id,
                "traits": {name: round(float(v), 4) for name, v in zip(TRAIT_NAMES, self.descriptors[i])},
                "categories": {name: round(float(share), 4) for name, share in self.categories.get(cluster_id, {}).items()},
                "global_ctr": round(float(self.global_ctr[i]), 5),
                "size": self.sizes[cluster_id],
                "neighbours": [{"cluster_id": n, "similarity": round(s, 4)} for n, s in self.neighbours[cluster_id]],
                "top_items": list(self.top_items.get(cluster_id, ()))[:items]}

    def to_json(self) -> str:
        return json.dumps({"ids": list(self.ids), "centroids": np.round(self.centroids, 5).tolist(),
                           "descriptors": np.round(self.descriptors, 5).tolist(),
                           "global_ctr": np.round(self.global_ctr, 6).tolist(), "members": dict(self.members),
                           "top_items": {k: list(v) for k, v in self.top_items.items()},
                           "neighbours": {k: [[n, s] for n, s in v] for k, v in self.neighbours.items()},
                           "categories": {k: {c: round(float(v), 6) for c, v in shares.items()}
                                          for k, shares in self.categories.items()},
                           "category_shares": {c: round(float(v), 6) for c, v in self.category_shares.items()}})

    @classmethod
    def from_json(cls, text: str) -> ItemClusters:
        data = json.loads(text)
        try:
            return cls(ids=tuple(data["ids"]), centroids=np.asarray(data["centroids"], dtype=float),
                       descriptors=np.asarray(data["descriptors"], dtype=float),
                       global_ctr=np.asarray(data["global_ctr"], dtype=float), members=dict(data["members"]),
                       top_items={k: tuple(v) for k, v in data["top_items"].items()},
                       neighbours={k: tuple((n, float(s)) for n, s in v) for k, v in data["neighbours"].items()},
                       categories={k: {c: float(v) for c, v in shares.items()}
                                   for k, shares in data.get("categories", {}).items()},
                       category_shares={c: float(v) for c, v in data.get("category_shares", {}).items()})
        except KeyError as exc:
            raise ValueError(f"clusters: the published file lacks {exc.args[0]!r}") from None

    @classmethod
    def from_stored(cls, stored: Any) -> ItemClusters:
        """From a tailor.models.StoredModel whose bytes are to_json()'s (metadata "format" FORMAT)."""
        if stored.metadata.get("format") != FORMAT:
            raise ValueError(f"model {stored.name!r} is not item clusters (format {stored.metadata.get('format')!r})")
        return cls.from_json(stored.onnx.decode())


def item_trait_strengths(category: str, price_percentile: float | None) -> tuple[float, ...]:
    """How much an item speaks for each trait (TRAITS order), from its category's name and its price percentile
    within the category: the same reading of attributes the shoppers' trait evidence uses (tailor.personas.traits)."""
    category = category.lower()
    out = []
    for trait in TRAITS:
        strength = 1.0 if trait.categories and any(word in category for word in trait.categories) else 0.0
        if not strength:
            strength = next((s for word, s in trait.partial_categories if word in category), 0.0)
        if trait.price and price_percentile is not None:
            by_price = 1.0 - price_percentile if trait.price == "low" else price_percentile
            strength = by_price if not trait.categories else 0.5 * (strength + by_price)
        out.append(strength)
    return tuple(out)


def match_cluster_ids(old: Mapping[str, str], new_labels: Mapping[str, int], *,
                      min_overlap: float = MIN_OVERLAP, prefix: str = "c") -> dict[int, str]:
    """Ids for a rebuild's clusters: `old` maps items to the published cluster ids, `new_labels` items to the
    rebuild's cluster numbers. The assignment of new clusters to old maximising total Jaccard overlap (Hungarian);
    a pair below `min_overlap` is no match, and the new cluster gets a fresh id past every id used so far."""
    old_ids = sorted(set(old.values()))
    new_numbers = sorted(set(new_labels.values()))
    old_sets = {cid: {item for item, c in old.items() if c == cid} for cid in old_ids}
    new_sets = {n: {item for item, c in new_labels.items() if c == n} for n in new_numbers}
    overlap = np.zeros((len(new_numbers), len(old_ids)))
    for r, n in enumerate(new_numbers):
        for c, cid in enumerate(old_ids):
            inter = len(new_sets[n] & old_sets[cid])
            if inter:
                overlap[r, c] = inter / len(new_sets[n] | old_sets[cid])
    ids: dict[int, str] = {}
    if old_ids and new_numbers:
        for r, c in max_weight_assignment(overlap):
            if overlap[r, c] >= min_overlap:
                ids[new_numbers[r]] = old_ids[c]
    used = [_number(cid, prefix) for cid in old_ids]
    next_number = max([u for u in used if u is not None], default=-1) + 1
    for n in new_numbers:
        if n not in ids:
            ids[n] = f"{prefix}{next_number:04d}"
            next_number += 1
    return ids


def max_weight_assignment(weights: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs of a one-to-one assignment maximising the total weight, every row or every column
    assigned (the Hungarian method with potentials, O(n^2 m); the serving layer carries no scipy)."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or not weights.size:
        return []
    if weights.shape[0] > weights.shape[1]:
        return sorted((r, c) for c, r in max_weight_assignment(weights.T))
    cost = (weights.max() - weights).tolist()
    n, m = weights.shape
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)  # owner[j]: the row (1-based) column j is assigned to
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        least, used = [math.inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], math.inf, 0
            row = cost[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = row[j - 1] - u[i0] - v[j]
                    if reduced < least[j]:
                        least[j], way[j] = reduced, j0
                    if least[j] < delta:
                        delta, j1 = least[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    least[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # the augmenting path, walked back
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j])


def cluster_ids_in_order(ids: Mapping[int, str], count: int) -> tuple[str, ...]:
    """The ids of clusters numbered 0..count-1."""
    return tuple(ids[n] for n in range(count))


def _number(cluster_id: str, prefix: str) -> int | None:
    tail = cluster_id[len(prefix):] if cluster_id.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def _engagements(value: Any) -> float:
    """A row's weighed engagements with a category: a non-negative number, else 0."""
    try:
        found = float(value)
    except (TypeError, ValueError):
        return 0.0
    return found if math.isfinite(found) and found > 0 else 0.0
