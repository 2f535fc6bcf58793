"""How simulated shoppers choose: random numbers drawn in blocks, and the item picked from a category or a listing."""

from __future__ import annotations

import bisect
import math
from itertools import accumulate

import numpy as np

from .catalog import Catalog
from .shoppers import Shopper

__all__ = ["Draws", "ItemChoice"]


class Draws:
    """Random numbers from a numpy Generator, drawn in blocks: the simulation draws them one at a time."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15):
        self.rng = rng
        self._block = block
        self._uniform: list[float] = []
        self._normal: list[float] = []

    def uniform(self) -> float:
        if not self._uniform:
            self._uniform = self.rng.random(self._block).tolist()
        return self._uniform.pop()

    def normal(self) -> float:
        if not self._normal:
            self._normal = self.rng.standard_normal(self._block).tolist()
        return self._normal.pop()

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.normal())

    def pick(self, cumulative: list[float]) -> int:
        """Index drawn with probability proportional to the increments of `cumulative`."""
        return min(bisect.bisect_right(cumulative, self.uniform() * cumulative[-1]), len(cumulative) - 1)

    def weighted(self, weights) -> int:
        return self.pick(list(accumulate(weights)))

    def poisson(self, mean: float) -> int:
        return int(self.rng.poisson(mean))


class ItemChoice:
    """The item a shopper picks: from a category, by the items' popularity and the shopper's taste for their price;
    from a listing, by position and the same taste."""

    def __init__(self, catalog: Catalog, draw: Draws):
        self.catalog = catalog
        self.draw = draw
        self._preference_cache: dict[tuple[int, int], tuple[list[int], list[float]]] = {}

    def next_shopper(self) -> None:
        """Forget the last shopper's preferences: the cache only serves one shopper's sessions."""
        self._preference_cache.clear()

    def preferred(self, shopper: Shopper, category: int, exclude: int | None = None) -> int:
        key = (shopper.index, category)
        cached = self._preference_cache.get(key)
        if cached is None:
            catalog = self.catalog
            items = catalog.category_items[category]
            weights = [catalog.popularity[i] * math.exp(-shopper.price_beta * catalog.log_price_ratio[i])
                       for i in items]
            cached = (items, list(accumulate(weights)))
            self._preference_cache[key] = cached
        items, cumulative = cached
        for _ in range(4):
            item = items[self.draw.pick(cumulative)]
            if item != exclude:
                return item
        return item

    def clicked(self, shopper: Shopper, listing: list[int]) -> int:
        """The position in `listing` the shopper clicks."""
        beta = shopper.price_beta
        # Position bias times the shopper's taste for the item's price level.
        weights = [math.exp(-beta * self.catalog.log_price_ratio[i]) / (pos + 1) ** 0.8
                   for pos, i in enumerate(listing)]
        return self.draw.weighted(weights)
