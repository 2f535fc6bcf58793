"""How simulated shoppers choose: random numbers drawn in blocks, and the items picked by their utility to the shopper."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Collection, Iterator, Sequence
from itertools import accumulate

import numpy as np

from .catalog import Catalog
from .parameters import DEFAULT_PARAMETERS, Parameters
from .shoppers import Shopper

__all__ = ["Draws", "ItemChoice"]


class Draws:
    """Random numbers from a numpy Generator, drawn in blocks: the simulation draws them one at a time."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15):
        self.rng = rng
        # A generator's __next__ is the cheapest call Python has: the inner loops make hundreds of thousands.
        self.uniform: Callable[[], float] = _blocks(lambda: rng.random(block)).__next__
        self.normal: Callable[[], float] = _blocks(lambda: rng.standard_normal(block)).__next__

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.normal())

    def pick(self, cumulative: list[float]) -> int:
        """Index drawn with probability proportional to the increments of `cumulative`."""
        return min(bisect.bisect_right(cumulative, self.uniform() * cumulative[-1]), len(cumulative) - 1)

    def weighted(self, weights) -> int:
        return self.pick(list(accumulate(weights)))

    def poisson(self, mean: float) -> int:
        return int(self.rng.poisson(mean))


def _blocks(draw: Callable[[], np.ndarray]) -> Iterator[float]:
    while True:
        yield from draw().tolist()


class ItemChoice:
    """The items a shopper picks, by their utility to them (parameters.py writes the model down): from a list they
    look down, from a category they navigate, among what they already saw, and whether they like one enough to cart
    it."""

    def __init__(self, catalog: Catalog, draw: Draws, params: Parameters = DEFAULT_PARAMETERS):
        self.catalog = catalog
        self.draw = draw
        self.params = params
        self._preference_cache: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
        self._utility_lists: dict[int, list[float]] = {}
        ranks = np.arange(1, 65)  # positions with an examination probability worked out; deeper ones get the last
        self.examination = {surface: np.minimum(1.0, rate * ranks ** -decay).tolist() for surface, rate, decay in (
            ("listing", params.listing_examination, params.examination_decay),
            ("feed", params.feed_examination, params.examination_decay),
            ("widget", params.widget_examination, params.widget_examination_decay))}
        self._brand_of = catalog.brand_of
        prices = np.asarray(catalog.price)
        # How much dearer than the shop's typical item, as it weighs on carting.
        self.dearness = (params.price_level * np.log(prices / np.median(prices))).tolist()
        self._log_popularity = np.log(np.asarray(catalog.popularity))
        self._category_rows = [np.asarray(items, dtype=np.int64) for items in catalog.category_items]

    def next_shopper(self) -> None:
        """Forget the last shopper's preferences: the caches only serve one shopper's sessions."""
        self._preference_cache.clear()
        self._utility_lists.clear()

    def utility(self, shopper: Shopper) -> np.ndarray:
        """The shopper's utility of every item before the moment's context: taste, quality and price fit."""
        if shopper.utility is None:
            p, c = self.params, self.catalog
            shopper.utility = (p.category_weight * np.log(shopper.affinity + 1e-3)[c.category_of]
                               + shopper.brand_taste[self._brand_of] + c.style @ shopper.style
                               + p.quality_weight * c.quality - shopper.price_beta * c.price_ratio)
            shopper.utility.setflags(write=False)
        return shopper.utility

    def _utility_list(self, shopper: Shopper) -> list[float]:
        """utility() as Python floats: one item at a time, they are several times faster than numpy's scalars."""
        found = self._utility_lists.get(shopper.index)
        if found is None:
            found = self._utility_lists[shopper.index] = self.utility(shopper).tolist()
        return found

    def preferred(self, shopper: Shopper, category: int, exclude: int | None = None) -> int:
        """An item of `category` the shopper goes to without a list: by popularity (how findable) and utility."""
        key = (shopper.index, category)
        cached = self._preference_cache.get(key)
        if cached is None:
            items = self.catalog.category_items[category]
            rows = self._category_rows[category]
            p = self.params
            log_w = (p.navigation_popularity * self._log_popularity[rows]
                     + self.utility(shopper)[rows] / p.click_temperature)
            weights = np.exp(log_w - log_w.max())
            cached = (items, np.cumsum(weights).tolist())
            self._preference_cache[key] = cached
        items, cumulative = cached
        for _ in range(4):
            item = items[self.draw.pick(cumulative)]
            if item != exclude:
                return item
        return item

    def scan(self, shopper: Shopper, listing: Sequence[int], surface: str, category: int = -1,
             seen: Collection[int] = (), bought: Collection[int] = ()) -> int | None:
        """The position in `listing` the shopper clicks, looking down it on `surface` ("listing", "feed",
        "widget"), or None when nothing examined appeals. Items of `category` (the session's) get the intent's
        bonus; items in `seen` or `bought` lose their penalties."""
        p = self.params
        utility = self._utility_list(shopper)
        category_of = self.catalog.category
        examination = self.examination[surface]
        last = len(examination) - 1
        uniform = self.draw.uniform
        for pos, item in enumerate(listing):
            if uniform() >= examination[min(pos, last)]:
                continue
            u = utility[item] - p.click_threshold
            if category_of[item] == category:
                u += p.intent_bonus
            if item in seen:
                u -= p.seen_penalty
            if item in bought:
                u -= p.bought_penalty
            if uniform() * (1.0 + math.exp(-u / p.click_temperature)) < 1.0:
                return pos
        return None

    def likes(self, shopper: Shopper, item: int) -> bool:
        """Whether the shopper likes `item` enough to cart it."""
        p = self.params
        u = (self._utility_list(shopper)[item] - self.dearness[item] - p.cart_threshold) / p.click_temperature
        return self.draw.uniform() * (1.0 + math.exp(-u)) < 1.0

    def revisited(self, shopper: Shopper, viewed: Sequence[int]) -> int:
        """The item among those `viewed` the shopper goes back to: the better liked, the likelier."""
        utility = self._utility_list(shopper)
        return viewed[self.draw.weighted([math.exp(utility[i] / self.params.click_temperature) for i in viewed])]

    def liking(self, shopper: Shopper, item: int) -> float:
        """How much the shopper likes `item`, centred on the category's typical item: what dwell reflects."""
        return self._utility_list(shopper)[item] - self.params.click_threshold
