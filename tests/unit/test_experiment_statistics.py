"""The experiments' sufficient statistics: additive daily rows that reproduce the per-unit moments exactly."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import pytest

from tailor.experiments.statistics import (
    PAIRS,
    QUANTITIES,
    SufficientStatistics,
    UnitTotals,
    increment_fields,
    increments,
)


def _random_units(rng: random.Random, count: int) -> list[UnitTotals]:
    units = []
    for _ in range(count):
        impressions = rng.randint(0, 30)
        clicks = rng.randint(0, impressions)
        orders = rng.randint(0, 2) if clicks else 0
        units.append(UnitTotals(impressions, clicks, orders, round(rng.uniform(5, 90), 2) * orders,
                                rng.uniform(0, 300), rng.choice([0.0, rng.uniform(0, 200)]),
                                credit=rng.randint(-clicks, clicks)))
    return units


def _direct(units: list[UnitTotals]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([unit.values() for unit in units], dtype=float)
    index = {name: i for i, name in enumerate(QUANTITIES)}
    products = np.array([(values[:, index[a]] * values[:, index[b]]).sum() for a, b in PAIRS])
    return values.sum(axis=0), products


def test_daily_increments_sum_to_the_statistics_of_the_final_totals():
    rng = random.Random(3)
    final = _random_units(rng, 60)
    # each unit's totals grow over up to four days, from its first exposure on
    rows: dict[int, SufficientStatistics] = {}
    for unit in final:
        steps = rng.randint(1, 4)
        first_day = rng.randint(0, 3)
        before = None
        for step in range(1, steps + 1):
            share = step / steps
            after = unit if step == steps else UnitTotals(
                int(unit.impressions * share), int(unit.clicks * share), int(unit.orders * share),
                unit.revenue * share, unit.predicted_ltv, unit.pre_revenue)
            day = first_day + step - 1
            rows[day] = rows.get(day, SufficientStatistics()) + increments(before, after)
            before = after
    total = sum(rows.values())
    sums, products = _direct(final)
    assert total.n == len(final)
    np.testing.assert_allclose(total.sums, sums, rtol=1e-12)
    np.testing.assert_allclose(total.products, products, rtol=1e-9)
    assert total.cross("clicks", "impressions") == total.cross("impressions", "clicks")
    assert total.total("converted") == sum(unit.orders > 0 for unit in final)


def test_an_unchanged_unit_adds_nothing_and_a_new_one_counts_once():
    unit = UnitTotals(4, 1, 0, 0.0, 12.5, 3.0)
    assert increments(unit, unit) == SufficientStatistics()
    first = increments(None, unit)
    assert first.n == 1 and first.total("impressions") == 4 and first.cross("impressions", "impressions") == 16
    assert first.cross("predicted_ltv", "pre_revenue") == 37.5


def test_the_fields_an_event_changes_are_every_nonzero_difference_of_sums_and_pairwise_products():
    rng = random.Random(11)
    index = {name: i for i, name in enumerate(QUANTITIES)}
    for before in [None, *_random_units(rng, 200)]:
        after = _random_units(rng, 1)[0]
        if before is not None and rng.random() < 0.7:  # most events change one or two totals of the unit
            changed = {"impressions": before.impressions + 1, "clicks": before.clicks + 1,
                       "orders": before.orders + 1, "revenue": before.revenue + 19.99}
            names = rng.sample(sorted(changed), rng.randint(1, 2))
            after = UnitTotals(**{**vars(before), **{name: changed[name] for name in names}})
        old = before.values() if before is not None else (0,) * len(QUANTITIES)
        new = after.values()
        everything = {"n": 1 if before is None else 0}
        everything |= {f"s_{q}": new[index[q]] - old[index[q]] for q in QUANTITIES}
        everything |= {f"p_{a}__{b}": new[index[a]] * new[index[b]] - old[index[a]] * old[index[b]] for a, b in PAIRS}
        fields = increment_fields(None if before is None else old, new)
        assert fields == {name: value for name, value in everything.items() if value}


def test_item_round_trip_with_dynamodb_numbers():
    stats = SufficientStatistics.of_units(_random_units(random.Random(5), 20))
    item = stats.to_item()
    assert all(isinstance(value, int | float) for value in item.values())
    assert len(item) == 1 + len(QUANTITIES) + len(PAIRS)
    assert SufficientStatistics.from_item(item) == stats
    as_dynamodb = {key: Decimal(str(value)) for key, value in item.items()} | {"pk": "exp#A", "sk": "2026-12-01"}
    restored = SufficientStatistics.from_item(as_dynamodb)
    assert restored.n == stats.n
    np.testing.assert_allclose(restored.products, stats.products, rtol=1e-12)
    assert SufficientStatistics.from_item({"n": Decimal(3), "s_clicks": Decimal(2)}).total("clicks") == 2


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="s_clicks"):
        SufficientStatistics.from_item({"n": 1, "s_clicks": "two"})
    with pytest.raises(ValueError, match="revenue"):
        UnitTotals(revenue=float("nan"))
    with pytest.raises(ValueError, match="unknown quantity 'ctr'"):
        SufficientStatistics().total("ctr")
    with pytest.raises(ValueError, match="sums"):
        SufficientStatistics(1, (1.0,))


def test_vectorised_statistics_match_the_units_one_by_one():
    units = _random_units(random.Random(8), 40)
    vectorised = SufficientStatistics.of_values(np.array([unit.values() for unit in units]))
    one_by_one = SufficientStatistics.of_units(units)
    assert vectorised.n == one_by_one.n
    np.testing.assert_allclose(vectorised.sums, one_by_one.sums, rtol=1e-12)
    np.testing.assert_allclose(vectorised.products, one_by_one.products, rtol=1e-12)
    with pytest.raises(ValueError, match="units x 9"):
        SufficientStatistics.of_values(np.zeros((3, 2)))
