"""The experiment report from daily statistics rows: cumulative comparisons per day, SRM, exposures, corrections."""

from __future__ import annotations

import json
import random

import pytest
from statsmodels.stats.multitest import multipletests

from tailor.experiments.report import build_report
from tailor.experiments.statistics import SufficientStatistics, UnitTotals, increments
from tailor.experiments.stats import compare

EXPERIMENT = {"experiment_id": "exp-1", "name": "feed test", "status": "running", "start": "2026-12-01T00:00:00Z",
              "end": "2026-12-15T00:00:00Z",
              "variants": [{"name": "control", "strategy": "default", "share": 0.5},
                           {"name": "B", "strategy": "baseline", "share": 0.5}]}


def _unit(rng: random.Random, ctr: float) -> UnitTotals:
    impressions = rng.randint(1, 40)
    clicks = sum(rng.random() < ctr for _ in range(impressions))
    orders = sum(rng.random() < 0.2 for _ in range(clicks))
    return UnitTotals(impressions, clicks, orders, orders * rng.uniform(10, 80), rng.uniform(0, 500),
                      rng.choice([0.0, rng.uniform(0, 300)]))


def _rows(rng: random.Random, variants: dict[str, float], units: int, days: int):
    """Statistics rows as attribution writes them, one per change of a unit (many per variant and day, as shards
    are): a unit exposed on a day, its totals growing the next."""
    rows = []
    finals: dict[str, list[UnitTotals]] = {name: [] for name in variants}
    for name, ctr in variants.items():
        for _ in range(units):
            unit = _unit(rng, ctr)
            first = rng.randrange(days)
            half = UnitTotals(unit.impressions // 2, min(unit.clicks, unit.impressions // 2), 0, 0.0,
                              unit.predicted_ltv, unit.pre_revenue)
            day = f"2026-12-{first + 1:02d}"
            rows.append((name, day, increments(None, half)))
            later = f"2026-12-{min(first + 1, days - 1) + 1:02d}"
            rows.append((name, later, increments(half, unit)))
            finals[name].append(unit)
    return rows, finals


def test_report_compares_the_cumulative_statistics_of_every_day():
    rng = random.Random(1)
    rows, finals = _rows(rng, {"control": 0.05, "B": 0.06}, 400, 5)
    report = build_report(EXPERIMENT, rows, tuning=800)
    json.dumps(report, allow_nan=False)
    assert report["days"] == [f"2026-12-{d:02d}" for d in range(1, 6)]
    assert report["units"] == {"control": 400, "B": 400}
    assert sum(report["exposures"]["units"]["B"]) == 400
    final = compare(SufficientStatistics.of_units(finals["control"]), SufficientStatistics.of_units(finals["B"]),
                    "ctr", cuped=True, tuning=800)
    last = report["metrics"]["ctr"]["daily"]["B"][-1]
    assert last["relative"] == pytest.approx(final.relative)
    assert last["relative_cs"] == pytest.approx(list(final.relative_cs))
    assert report["metrics"]["ctr"]["comparisons"]["B"]["relative_ci"] == pytest.approx(list(final.relative_ci))
    plain = compare(SufficientStatistics.of_units(finals["control"]), SufficientStatistics.of_units(finals["B"]), "aov")
    assert report["metrics"]["aov"]["comparisons"]["B"]["unadjusted"]["relative"] == pytest.approx(plain.relative)
    assert len(report["metrics"]["revenue"]["daily"]["B"]) == 5
    assert not report["srm"]["flagged"] and report["correction"] is None


def test_three_variants_get_holm_p_values_and_bonferroni_intervals_and_srm_sees_a_lost_share():
    rng = random.Random(2)
    rows, _ = _rows(rng, {"control": 0.05, "B": 0.05, "C": 0.07}, 300, 3)
    rows += [("C", "2026-12-01", increments(None, _unit(rng, 0.07))) for _ in range(150)]
    experiment = {**EXPERIMENT, "variants": [{"name": n, "share": 1 / 3} for n in ("control", "B", "C")]}
    report = build_report(experiment, rows)
    assert report["interval_alpha"] == pytest.approx(0.025)
    comparisons = report["metrics"]["ctr"]["comparisons"]
    raw = [comparisons[name]["p_value"] for name in ("B", "C")]
    expected = multipletests(raw, method="holm")[1]
    assert [comparisons[name]["p_value_adjusted"] for name in ("B", "C")] == pytest.approx(list(expected))
    assert report["srm"]["flagged"] and report["srm"]["counts"] == {"control": 300, "B": 300, "C": 450}


def test_bad_rows_and_definitions_name_the_field():
    with pytest.raises(ValueError, match="variant 'Z'"):
        build_report(EXPERIMENT, [("Z", "2026-12-01", SufficientStatistics())])
    with pytest.raises(ValueError, match=r"variants\[1\].share"):
        build_report({**EXPERIMENT, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0}]}, [])
    empty = build_report(EXPERIMENT, [])
    assert empty["days"] == [] and empty["metrics"]["ctr"]["comparisons"]["B"]["relative"] is None
