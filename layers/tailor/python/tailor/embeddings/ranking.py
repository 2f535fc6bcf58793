"""Next items by vectors: a session's query vector from its items, the nearest items to it, and the blend of
those cosines with another ranking's scores (the association ranking, tailor.associations.rank_next_items).

The blend scores each item of either list as its share of the other ranking's total score (over the list it
gives) plus `weight` times its cosine to the query raised to `sharpness` (negative cosines count as 0), so the
vectors reorder what the associations propose and add what they do not reach. `weight` and `sharpness` were chosen on validation splits
(tailor evaluate next-item --validation-days).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tailor.embeddings.update import DEFAULT_UPDATE, VectorUpdate, update_vector
from tailor.embeddings.vectors import NO_FILTERS, ItemVectors, VectorFilters

__all__ = ["DEFAULT_BLEND", "EmbeddingBlend", "blend_next_items", "query_vector"]


@dataclass(frozen=True)
class EmbeddingBlend:
    weight: float = 0.02  # a cosine of 1 counts as much as this share of the association ranking's total score
    sharpness: float = 3.0  # cosines raised to this power: only close items get much
    pool: int = 50  # nearest items added to the association ranking's candidates
    reorders: int = 200  # the association ranking's best items it reorders (those below keep their order after)
    update: VectorUpdate = DEFAULT_UPDATE


DEFAULT_BLEND = EmbeddingBlend()


def query_vector(vectors: ItemVectors, interactions: Iterable[tuple[str, str]],
                 rule: VectorUpdate = DEFAULT_UPDATE) -> np.ndarray | None:
    """The session's vector from its (item, event type) interactions in time order, by tailor.embeddings.update."""
    current = None
    for item, event_type in interactions:
        current = update_vector(current, vectors.vector(item), event_type, rule=rule)
    return current


def blend_next_items(ranked: Sequence[tuple[str, float]], query: np.ndarray | None, vectors: ItemVectors, n: int, *,
                     blend: EmbeddingBlend = DEFAULT_BLEND,
                     filters: VectorFilters = NO_FILTERS, probes: int | None = None) -> list[tuple[str, float]]:
    """The best `n` of `ranked` (item, score; best first) and the items nearest to `query`, by the blended score;
    the nearest searched as ItemVectors.nearest does with `probes`."""
    if query is None or blend.weight == 0 or not np.any(query):
        return list(ranked[:n])
    unit_query = (query / np.linalg.norm(query)).astype(np.float32)
    total = sum(score for _, score in ranked)
    scores: dict[str, float] = {item: score / total for item, score in ranked} if total > 0 else {}
    nearest = dict(vectors.nearest(unit_query, blend.pool, filters, probes=probes))
    for item in nearest:
        scores.setdefault(item, 0.0)
    items = list(scores)
    rows = [vectors.row(item) for item in items]
    known = [i for i, r in enumerate(rows) if r is not None]
    cosine = np.zeros(len(items), dtype=np.float32)
    if known:
        cosine[known] = vectors.vectors[[rows[i] for i in known]] @ unit_query
    base = np.fromiter(scores.values(), dtype=np.float64, count=len(items))
    blended = base + blend.weight * np.maximum(cosine, 0.0).astype(np.float64) ** blend.sharpness
    order = np.argsort(-blended, kind="stable")[:n]
    return [(items[i], float(blended[i])) for i in order.tolist() if blended[i] > 0]
