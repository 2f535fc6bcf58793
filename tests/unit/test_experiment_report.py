"""The experiment report from daily statistics rows: cumulative comparisons per day, SRM, exposures, corrections."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from scipy.stats import ttest_1samp
from statsmodels.stats.multitest import multipletests

from tailor.experiments.attribution import OUTCOMES_TABLE, outcome_key
from tailor.experiments.definitions import new_experiment
from tailor.experiments.feed_ids import INTERLEAVED
from tailor.experiments.pages import report_html
from tailor.experiments.report import build_report
from tailor.experiments.statistics import SufficientStatistics, UnitTotals, increments
from tailor.experiments.stats import compare
from tailor.experiments.storage import ExperimentStore
from tailor.store.memory import MemoryBlobStore, MemoryStateStore

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


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_store_reads_the_realized_revenue_window_after_the_end_and_reports_it_until_then():
    store = MemoryStateStore()
    experiments = ExperimentStore(store, MemoryBlobStore(), shards=1)
    body = {"experiment_id": "exp-r", "start": "2026-12-01T00:00:00Z", "days": 14,
            "variants": [{"name": "A", "strategy": "default"}, {"name": "B", "strategy": "baseline"}]}
    experiments.create(new_experiment(body, now=NOW, known_strategies={"default", "baseline"}))
    experiments.start("exp-r", NOW)
    stopped = experiments.stop("exp-r", datetime(2026, 12, 3, 12, tzinfo=UTC))
    unit = UnitTotals(10, 1, 0, 0.0, 0.0, 0.0)
    rows = {"2026-12-02": increments(None, unit) + increments(None, unit),  # two exposed in the experiment
            "2026-12-20": increments(unit, replace(unit, realized_revenue=30.0)),  # a purchase 18 days later
            "2027-01-05": increments(replace(unit, realized_revenue=30.0), replace(unit, realized_revenue=99.0))}
    for day, stats in rows.items():
        store.replace(OUTCOMES_TABLE, outcome_key("exp-r", day, "A", 0), stats.to_item())
    report = experiments.build_report(stopped, date(2027, 1, 10))
    assert report["days"] == ["2026-12-02", "2026-12-20"]  # the 28 days after the stop, not past them
    assert report["metrics"]["realized"]["values"]["A"]["value"] == 15.0
    assert report["realized_revenue"] == {"days": 28, "until": "2026-12-31", "complete": True}
    assert experiments.build_report(stopped, date(2026, 12, 25))["realized_revenue"]["complete"] is False
    assert experiments.write_reports(datetime(2026, 12, 30, tzinfo=UTC))["written"] == ["exp-r"]
    assert experiments.write_reports(datetime(2027, 1, 3, tzinfo=UTC))["written"] == []
    assert ExperimentStore(store, shards=1, revenue_days=0).build_report(stopped, date(2027, 1, 10))["days"] == [
        "2026-12-02"]
    with pytest.raises(ValueError, match="revenue_days"):
        ExperimentStore(store, revenue_days=-1)


def test_an_interleaving_experiments_report_is_the_shopper_test_of_its_credits_as_of_every_day():
    store = MemoryStateStore()
    experiments = ExperimentStore(store, MemoryBlobStore(), shards=2)
    body = {"experiment_id": "exp-i", "start": "2026-12-01T00:00:00Z", "days": 14, "design": "interleaving",
            "variants": [{"name": "shop", "strategy": "baseline"}, {"name": "tailor", "strategy": "default"}]}
    experiments.create(new_experiment(body, now=NOW, known_strategies={"default", "baseline"}))
    running = experiments.start("exp-i", NOW)
    rng = random.Random(5)
    credits: dict[str, list[int]] = {"2026-12-02": [], "2026-12-03": []}
    for k in range(300):
        day = "2026-12-02" if k < 180 else "2026-12-03"
        clicks = rng.randint(0, 4)
        credit = sum(rng.random() < 0.35 for _ in range(clicks)) * 2 - clicks  # B's items win 65% of clicks
        credits[day].append(credit)
        unit = UnitTotals(20, clicks, 0, 0.0, 0.0, 0.0, credit=credit)
        key = outcome_key("exp-i", day, INTERLEAVED, k % 2)
        before = store.read(OUTCOMES_TABLE, [key]).get(key, {})
        store.replace(OUTCOMES_TABLE, key, (SufficientStatistics.from_item(before) + increments(None, unit)).to_item())
    report = experiments.build_report(running, date(2026, 12, 10))
    json.dumps(report, allow_nan=False)
    assert report["design"] == "interleaving" and report["variants"] == ["shop", "tailor"]
    assert report["units"] == {INTERLEAVED: 300} and report["exposures"]["units"][INTERLEAVED] == [180, 120]
    found = report["interleaving"]
    first, every = credits["2026-12-02"], credits["2026-12-02"] + credits["2026-12-03"]
    assert found["daily"][0]["mean"] == pytest.approx(sum(first) / len(first))
    assert found["daily"][0]["p_value"] == pytest.approx(ttest_1samp(first, 0.0).pvalue, rel=1e-9)
    assert found["p_value"] == pytest.approx(ttest_1samp(every, 0.0).pvalue, rel=1e-9)
    assert found["mean"] == pytest.approx(sum(every) / 300) and found["preferred"] == "tailor"
    low, high = found["mean_cs"]
    assert low < found["mean_ci"][0] < found["mean"] < found["mean_ci"][1] < high  # the sequence pays for daily looks
    assert found["impressions"] == 6000 and found["ctr"]["value"] == pytest.approx(found["clicks"] / 6000)
    page = report_html(report)
    assert "ranker A" in page and "shop (baseline)" in page and "id='credit-interleaved'" in page
    assert "<polygon class='relative_cs'" in page and ">tailor</td>" in page
    with pytest.raises(ValueError, match="interleaving experiment"):
        build_report(running.public(), [("shop", "2026-12-02", SufficientStatistics())])
