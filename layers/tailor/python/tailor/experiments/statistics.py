"""Additive sufficient statistics of one experiment's variant on one day: what Ingest keeps and reports read.

The unit of analysis is the exposed shopper (the session, for anonymous shoppers). Each unit has running totals
(UnitTotals) over the experiment so far; the metrics are means or ratios of means of per-unit quantities
(QUANTITIES), so a variant is summed up by the unit count n, each quantity's sum and the sum of every pairwise
product (squares included): enough for every mean, variance, covariance, ratio metric by the delta method and a
CUPED adjustment by the pre-exposure covariate.

Rows are additive: the day's row of a variant is the sum of increments(before, after) over every change of a unit's
totals that day, and the sum of a variant's daily rows up to day d holds the exact statistics of every unit's totals
as of day d, however a unit's totals grew across days (the increment of a square is after^2 - before^2, not the
square of the increment). A unit counts in n on the day it is first exposed (`before` is None).

    CTR          clicks / impressions        ratio metric (delta method)
    conversion   converted / n               converted = 1 when the unit has at least one order
    AOV          revenue / orders            ratio metric (delta method)
    revenue      revenue / n                 revenue per exposed unit
    LTV          predicted_ltv / n           the unit's predicted lifetime value when first exposed
    realized     realized_revenue / n        the unit's revenue (every purchase, attributed or not) in the
                                             realized-revenue window after its first exposure, which goes on
                                             after the experiment ends (tailor.experiments.attribution)
    covariate    pre_revenue                 the unit's revenue before its first exposure (CUPED)
    preference   credit / n                  interleaving: the centred rank credit of the unit's clicks, > 0
                                             for ranker A (tailor.experiments.interleaving; 0 in an A/B test)

A row kept before a quantity was added lacks its fields; they read as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import combinations_with_replacement
from typing import Any

import numpy as np

__all__ = ["PAIRS", "QUANTITIES", "SufficientStatistics", "UnitTotals", "increment_fields", "increments",
           "unit_values"]

# The per-unit quantities, in the order of SufficientStatistics.sums.
QUANTITIES: tuple[str, ...] = ("impressions", "clicks", "orders", "revenue", "converted", "predicted_ltv",
                               "pre_revenue", "realized_revenue", "credit")
# Every unordered pair of quantities (squares included), in the order of SufficientStatistics.products.
PAIRS: tuple[tuple[str, str], ...] = tuple(combinations_with_replacement(QUANTITIES, 2))
_INDEX = {name: i for i, name in enumerate(QUANTITIES)}
_PAIR_INDEX = {pair: i for i, pair in enumerate(PAIRS)} | {(b, a): i for i, (a, b) in enumerate(PAIRS)}
# A row's field names (SufficientStatistics.to_item), and for each quantity the pairs it is a factor of.
_SUM_FIELDS = tuple(f"s_{name}" for name in QUANTITIES)
_PAIRS_OF = tuple(tuple((f"p_{a}__{b}", _INDEX[a], _INDEX[b]) for a, b in PAIRS if name in (a, b))
                  for name in QUANTITIES)


@dataclass(frozen=True)
class UnitTotals:
    """One unit's running totals since its first exposure (pre_revenue and predicted_ltv: as of that exposure)."""

    impressions: float = 0
    clicks: float = 0
    orders: float = 0
    revenue: float = 0.0
    predicted_ltv: float = 0.0
    pre_revenue: float = 0.0
    realized_revenue: float = 0.0
    credit: float = 0  # interleaving: the centred rank credit of the unit's clicks (> 0: ranker A)

    def __post_init__(self) -> None:
        for name in ("impressions", "clicks", "orders", "revenue", "predicted_ltv", "pre_revenue", "realized_revenue",
                     "credit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"UnitTotals.{name} must be a finite number, got {value!r}")

    def values(self) -> tuple[float, ...]:
        """The unit's quantities in QUANTITIES order (converted derived from orders)."""
        return unit_values(self.impressions, self.clicks, self.orders, self.revenue, self.predicted_ltv,
                           self.pre_revenue, self.realized_revenue, self.credit)


def unit_values(impressions: float, clicks: float, orders: float, revenue: float, predicted_ltv: float,
                pre_revenue: float, realized_revenue: float, credit: float = 0) -> tuple[float, ...]:
    """A unit's quantities in QUANTITIES order (converted derived from orders), from totals already known to be
    finite numbers (UnitTotals checks them)."""
    return (impressions, clicks, orders, revenue, 1 if orders > 0 else 0, predicted_ltv, pre_revenue,
            realized_revenue, credit)


def _zeros(count: int) -> tuple[float, ...]:
    return (0,) * count


@dataclass(frozen=True)
class SufficientStatistics:
    """n units, the sum of each quantity over them (QUANTITIES order) and of each pair's product (PAIRS order)."""

    n: int = 0
    sums: tuple[float, ...] = field(default_factory=lambda: _zeros(len(QUANTITIES)))
    products: tuple[float, ...] = field(default_factory=lambda: _zeros(len(PAIRS)))

    def __post_init__(self) -> None:
        if len(self.sums) != len(QUANTITIES):
            raise ValueError(f"SufficientStatistics.sums needs {len(QUANTITIES)} values, got {len(self.sums)}")
        if len(self.products) != len(PAIRS):
            raise ValueError(f"SufficientStatistics.products needs {len(PAIRS)} values, got {len(self.products)}")

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        if not isinstance(other, SufficientStatistics):
            return NotImplemented
        return SufficientStatistics(self.n + other.n, tuple(a + b for a, b in zip(self.sums, other.sums)),
                                    tuple(a + b for a, b in zip(self.products, other.products)))

    def __radd__(self, other: Any) -> SufficientStatistics:
        # sum(rows) starts from 0
        if other == 0:
            return self
        return NotImplemented

    def total(self, quantity: str) -> float:
        """Sum over the units of `quantity`."""
        return self.sums[_index(quantity)]

    def cross(self, a: str, b: str) -> float:
        """Sum over the units of a x b (a == b: the sum of squares)."""
        _index(a), _index(b)
        return self.products[_PAIR_INDEX[(a, b)]]

    def to_item(self) -> dict[str, int | float]:
        """A flat dict of numbers for a DynamoDB row: n, s_<quantity>, p_<a>__<b>."""
        item: dict[str, int | float] = {"n": self.n}
        item.update({f"s_{name}": value for name, value in zip(QUANTITIES, self.sums)})
        item.update({f"p_{a}__{b}": value for (a, b), value in zip(PAIRS, self.products)})
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> SufficientStatistics:
        """The statistics a row holds (to_item's keys; absent keys are 0, other keys are ignored)."""
        return cls(int(_number(item, "n")), tuple(_number(item, f"s_{name}") for name in QUANTITIES),
                   tuple(_number(item, f"p_{a}__{b}") for a, b in PAIRS))

    @classmethod
    def of_units(cls, units: Iterable[UnitTotals]) -> SufficientStatistics:
        """The statistics of whole units (each counted once), as the sum of their increments from nothing."""
        return sum((increments(None, unit) for unit in units), cls())

    @classmethod
    def of_values(cls, values: np.ndarray) -> SufficientStatistics:
        """The statistics of whole units given as rows of their quantities in QUANTITIES order (vectorised of_units,
        for simulations of many units)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(QUANTITIES):
            raise ValueError(f"values must be units x {len(QUANTITIES)} quantities, got shape {values.shape}")
        gram = values.T @ values
        return cls(len(values), tuple(values.sum(axis=0).tolist()),
                   tuple(float(gram[_INDEX[a], _INDEX[b]]) for a, b in PAIRS))


def increments(before: UnitTotals | None, after: UnitTotals) -> SufficientStatistics:
    """What to add to the day's row when one unit's totals go from `before` (None: first exposed now) to `after`."""
    return SufficientStatistics.from_item(increment_fields(None if before is None else before.values(),
                                                           after.values()))


def increment_fields(before: tuple[float, ...] | None, after: tuple[float, ...]) -> dict[str, float]:
    """increments() as the row fields it changes (to_item's names, zeros left out), from the two units' values
    (unit_values). Ingest makes one per attributed event, which changes one quantity or two: only the pairs with a
    changed factor are worked out, the rest being zero."""
    if before is None:
        before = _ZEROS
        fields: dict[str, float] = {"n": 1}
    else:
        fields = {}
    changed = [q for q in range(len(QUANTITIES)) if after[q] != before[q]]
    for q in changed:
        fields[_SUM_FIELDS[q]] = after[q] - before[q]
    # A pair of two changed quantities is among the pairs of each: worked out once.
    pairs = _PAIRS_OF[changed[0]] if len(changed) == 1 else dict.fromkeys(p for q in changed for p in _PAIRS_OF[q])
    for name, i, j in pairs:
        change = after[i] * after[j] - before[i] * before[j]
        if change:
            fields[name] = change
    return fields


_ZEROS = _zeros(len(QUANTITIES))


def _index(quantity: str) -> int:
    try:
        return _INDEX[quantity]
    except KeyError:
        raise ValueError(f"unknown quantity {quantity!r}: one of {', '.join(QUANTITIES)}") from None


def _number(item: Mapping[str, Any], key: str) -> float:
    value = item.get(key, 0)
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"statistics row field {key!r} must be a finite number, got {value!r}")
    return value
