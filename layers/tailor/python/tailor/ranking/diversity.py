"""Diversity: pick the list greedily so each item's diversity term counts what is already above it.

An item's diversity is 0 if the shopper engaged with it lately (no repeating what they just saw),
else 1 / (1 + the number of items of its category already picked). Each pick takes the candidate
with the highest blend score + weight x diversity, so a second lamp must beat the best item of
another category by more than the weight's share. Past the first `greedy_positions` picks the rest
follow in order of their score with the diversity they have at that point, which bounds the work
for long rerank lists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["diversify"]

GREEDY_POSITIONS = 100


def diversify(base: np.ndarray, category_codes: np.ndarray, seen: np.ndarray, weight: float, n: int,
              eligible: np.ndarray | None = None, greedy_positions: int = GREEDY_POSITIONS) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the top `n` eligible candidates in picking order, and each one's diversity term."""
    base = np.asarray(base, dtype=np.float64)
    count = len(base)
    eligible = np.ones(count, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    n = int(min(max(n, 0), int(eligible.sum())))
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    novelty = np.where(seen, 0.0, 1.0)
    if weight == 0:
        order = _top(np.where(eligible, base, -np.inf), n)
        return order, novelty[order]
    remaining = np.where(eligible, base, -np.inf)
    picked_in_category = np.zeros(int(category_codes.max()) + 1 if count else 0)
    order: list[int] = []
    diversity: list[float] = []
    for _ in range(min(n, greedy_positions)):
        div = novelty / (1.0 + picked_in_category[category_codes])
        i = int(np.argmax(remaining + weight * div))
        order.append(i)
        diversity.append(float(div[i]))
        remaining[i] = -np.inf
        picked_in_category[category_codes[i]] += 1
    if n > len(order):
        div = novelty / (1.0 + picked_in_category[category_codes])
        rest = _top(remaining + weight * div, n - len(order))
        order.extend(int(i) for i in rest)
        diversity.extend(float(div[i]) for i in rest)
    return np.array(order, dtype=np.int64), np.array(diversity)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores, highest first (ties by index)."""
    if n < len(scores):
        part = np.argpartition(-scores, n - 1)[:n]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]
