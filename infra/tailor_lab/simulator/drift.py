"""Interests that drift within a session (off unless asked for): the category a shopper is after, feed page by
feed page, moving on to another category with probability `drift` at each page."""

from __future__ import annotations

import numpy as np

from .shoppers import Shopper

__all__ = ["interest_path"]


def interest_path(rng: np.random.Generator, shopper: Shopper, pages: int, drift: float = 0.0,
                  novelty: float = 0.0) -> list[int]:
    """The session's category at each of `pages` pages: the first drawn by the shopper's category affinity, each
    next one kept, or with probability `drift` replaced by another (never the one just left), drawn by the affinity
    blended with `novelty` of an even spread (a shopper wandering into what they rarely look at)."""
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be in [0, 1]")
    if not 0.0 <= novelty <= 1.0:
        raise ValueError("novelty must be in [0, 1]")
    own = np.asarray(shopper.affinity, dtype=float)
    affinity = (1.0 - novelty) * own / own.sum() + novelty / len(own)
    moves, draws = rng.random((2, max(pages, 1)))
    path = [_draw(own, draws[0])]
    for page in range(1, pages):
        if moves[page] < drift:
            weights = affinity.copy()
            weights[path[-1]] = 0.0
            path.append(_draw(weights, draws[page]) if weights.sum() > 0 else path[-1])
        else:
            path.append(path[-1])
    return path[:pages]


def _draw(weights: np.ndarray, u: float) -> int:
    cumulative = np.cumsum(weights)
    return int(min(np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(weights) - 1))
