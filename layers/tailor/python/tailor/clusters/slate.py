"""The adaptive feed's list: a cluster per slot by the session's bandit, the best-ranked candidate of that cluster in
the slot, each slot's probability and why its cluster was there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailor.clusters.bandit import BanditParams, ClusterPosteriors, log_rate_draws, sampled_chances
from tailor.clusters.model import ItemClusters

__all__ = ["Slate", "adaptive_slate"]


@dataclass(frozen=True)
class Slate:
    """Items in order, each slot's probability of its cluster (for the exposure log) and each item's reason."""

    items: tuple[str, ...]
    probabilities: tuple[float, ...]
    reasons: tuple[dict[str, Any], ...]


def adaptive_slate(candidates: Sequence[str], scores: Sequence[float], n: int, clusters: ItemClusters,
                   prior: np.ndarray, posteriors: ClusterPosteriors, rng: np.random.Generator,
                   params: BanditParams = BanditParams(), *, score_weight: float = 1.0,
                   explain: bool = False) -> Slate:
    """`n` of the `candidates` (with the ranking's `scores`, higher better), slot by slot: the bandit draws a
    cluster by its sampled log rate plus `score_weight` x the score of the best candidate it has left, and the slot
    takes that candidate. Candidates in no published cluster wait until the clusters' candidates run out."""
    if len(candidates) != len(scores):
        raise ValueError("scores: one per candidate")
    rows = clusters.rows
    left: list[list[tuple[float, str]]] = [[] for _ in clusters.ids]
    outside: list[tuple[float, str]] = []
    for item, score in zip(dict.fromkeys(candidates), scores):
        row = rows.get(item)
        (outside if row is None else left[row]).append((-float(score), item))
    for items in left:
        items.sort()
    outside.sort()
    alpha, beta, _ = posteriors.beta(clusters, prior, params)
    playing = posteriors.in_play(clusters, prior, params)
    draws = log_rate_draws(alpha, beta, rng, params)  # shared by the slots' estimates; each slot's pick is its own
    picked: list[str] = []
    chances: list[float] = []
    reasons: list[dict[str, Any]] = []
    eligible = np.array([bool(items) for items in left])
    heads = np.array([-items[0][0] if items else 0.0 for items in left])  # each cluster's best score left
    # Each slot's chances are slot_chances(..., draws=draws) of its eligible clusters and offsets; kept up to date
    # column by column (a pick moves one cluster's offset) rather than computed afresh for every slot.
    sampled = draws + score_weight * heads
    while len(picked) < n and eligible.any():
        chance = sampled_chances(sampled, eligible, playing, params.floor)
        row = min(int(np.searchsorted(np.cumsum(chance), rng.random(), side="right")), len(chance) - 1)
        while not eligible[row]:  # rounding at the top of the cumulative sum: the last eligible cluster
            row -= 1
        picked.append(left[row].pop(0)[1])
        chances.append(round(float(chance[row]), 6))
        if left[row]:
            heads[row] = -left[row][0][0]
            sampled[:, row] = draws[:, row] + score_weight * heads[row]
        else:
            eligible[row] = False
        if explain:
            reasons.append(posteriors.reason(clusters, clusters.ids[row], prior, params))
    for _, item in outside[: n - len(picked)]:
        picked.append(item)
        chances.append(1.0)  # what is left once the clusters ran out comes in the ranking's order
        if explain:
            reasons.append({"cluster": None, "why": "not in a cluster"})
    return Slate(tuple(picked), tuple(chances), tuple(reasons))

