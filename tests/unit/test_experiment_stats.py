"""Experiment statistics against references: scipy's and statsmodels' tests and regressions, and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from tailor.experiments.statistics import QUANTITIES, SufficientStatistics
from tailor.experiments.stats import (
    bonferroni,
    chi2_sf,
    compare,
    confidence_sequence_halfwidth,
    cuped_theta,
    estimate,
    holm,
    normal_interval,
    sample_ratio_mismatch,
)

COLUMN = {name: i for i, name in enumerate(QUANTITIES)}


def _units(rng: np.random.Generator, n: int, ctr: float = 0.05, revenue_scale: float = 1.0) -> np.ndarray:
    """Per-unit quantities in QUANTITIES order, with a pre-exposure revenue that predicts revenue."""
    propensity = rng.lognormal(0.0, 1.0, n)
    impressions = rng.poisson(20 * (1 + propensity), n) + 1
    clicks = rng.binomial(impressions, np.minimum(ctr * np.sqrt(propensity), 0.9))
    orders = rng.binomial(clicks, 0.1)
    revenue = orders * rng.gamma(2.0, 20.0, n) * revenue_scale
    pre_revenue = rng.poisson(propensity) * rng.gamma(2.0, 20.0, n)
    ltv = 50 * propensity + rng.normal(0, 5, n)
    values = np.zeros((n, len(QUANTITIES)))
    for name, column in (("impressions", impressions), ("clicks", clicks), ("orders", orders), ("revenue", revenue),
                         ("converted", orders > 0), ("predicted_ltv", ltv), ("pre_revenue", pre_revenue)):
        values[:, COLUMN[name]] = column
    return values


def test_mean_metric_difference_matches_statsmodels_unequal_variance_z_interval():
    rng = np.random.default_rng(1)
    a, b = _units(rng, 3000), _units(rng, 2500, revenue_scale=1.1)
    result = compare(SufficientStatistics.of_values(a), SufficientStatistics.of_values(b), "revenue")
    reference = CompareMeans(DescrStatsW(b[:, COLUMN["revenue"]]), DescrStatsW(a[:, COLUMN["revenue"]]))
    np.testing.assert_allclose(result.difference_ci, reference.zconfint_diff(usevar="unequal"), rtol=1e-9)
    z, p = reference.ztest_ind(usevar="unequal")
    assert result.p_value == pytest.approx(p, rel=1e-9)
    conversion = estimate(SufficientStatistics.of_values(a), "conversion")
    converted = a[:, COLUMN["converted"]]
    assert conversion.value == pytest.approx(converted.mean())
    assert conversion.variance == pytest.approx(converted.var(ddof=1) / len(a))


def test_ratio_metric_variance_is_the_delta_method_of_the_per_unit_influence():
    rng = np.random.default_rng(2)
    units = _units(rng, 4000)
    clicks, impressions = units[:, COLUMN["clicks"]], units[:, COLUMN["impressions"]]
    ctr = estimate(SufficientStatistics.of_values(units), "ctr")
    ratio = clicks.sum() / impressions.sum()
    influence = (clicks - ratio * impressions) / impressions.mean()
    assert ctr.value == pytest.approx(ratio)
    assert ctr.variance == pytest.approx(influence.var(ddof=1) / len(units), rel=1e-9)
    # and the delta method agrees with a bootstrap of the ratio over units
    draws = rng.integers(0, len(units), (2000, len(units)))
    bootstrap = clicks[draws].sum(axis=1) / impressions[draws].sum(axis=1)
    assert math.sqrt(ctr.variance) == pytest.approx(bootstrap.std(), rel=0.08)


def test_relative_lift_intervals_cover_the_true_lift():
    rng = np.random.default_rng(3)
    covered = {"ctr": 0, "aov": 0, "revenue": 0}
    runs = 300
    # the truth: the lift of the population means (a large draw of each arm)
    big_a, big_b = _units(rng, 400_000), _units(rng, 400_000, ctr=0.055, revenue_scale=1.2)
    truth = {metric: compare(SufficientStatistics.of_values(big_a), SufficientStatistics.of_values(big_b),
                             metric).relative for metric in covered}
    for _ in range(runs):
        result_a = SufficientStatistics.of_values(_units(rng, 2000))
        result_b = SufficientStatistics.of_values(_units(rng, 2000, ctr=0.055, revenue_scale=1.2))
        for metric in covered:
            low, high = compare(result_a, result_b, metric).relative_ci
            covered[metric] += low <= truth[metric] <= high
    for metric, count in covered.items():
        assert 0.92 <= count / runs <= 0.98, (metric, count / runs)


def test_cuped_difference_is_the_ols_treatment_coefficient_and_narrower():
    rng = np.random.default_rng(4)
    a, b = _units(rng, 3000), _units(rng, 3000, revenue_scale=1.05)
    sa, sb = SufficientStatistics.of_values(a), SufficientStatistics.of_values(b)
    adjusted = compare(sa, sb, "revenue", cuped=True)
    plain = compare(sa, sb, "revenue")
    y = np.concatenate([a[:, COLUMN["revenue"]], b[:, COLUMN["revenue"]]])
    z = np.concatenate([a[:, COLUMN["pre_revenue"]], b[:, COLUMN["pre_revenue"]]])
    arm = np.r_[np.zeros(len(a)), np.ones(len(b))]
    fit = OLS(y, np.column_stack([np.ones_like(y), arm, z])).fit(cov_type="HC0")
    assert adjusted.difference == pytest.approx(fit.params[1], rel=1e-9)
    assert adjusted.theta == pytest.approx(fit.params[2], rel=1e-9)
    assert math.sqrt(adjusted.treatment.variance + adjusted.control.variance) == pytest.approx(fit.bse[1], rel=0.03)
    assert adjusted.difference_ci[1] - adjusted.difference_ci[0] < 0.9 * (plain.difference_ci[1] - plain.difference_ci[0])
    assert cuped_theta([sa, sb], "revenue") == adjusted.theta
    # a flat covariate adjusts nothing
    flat_a, flat_b = a.copy(), b.copy()
    flat_a[:, COLUMN["pre_revenue"]] = flat_b[:, COLUMN["pre_revenue"]] = 1.0
    flat = compare(SufficientStatistics.of_values(flat_a), SufficientStatistics.of_values(flat_b), "revenue", cuped=True)
    assert flat.theta == 0.0 and flat.difference == pytest.approx(plain.difference)


def test_srm_matches_scipy_chisquare_and_flags_below_one_in_a_thousand():
    for counts, shares in (([5000, 5000], [0.5, 0.5]), ([5000, 4800], [0.5, 0.5]), ([3000, 2000, 1100], [3, 2, 1]),
                           ([10, 30, 25, 40], [1, 1, 1, 1])):
        result = sample_ratio_mismatch(counts, shares)
        total = sum(counts)
        reference = scipy_stats.chisquare(counts, [total * s / sum(shares) for s in shares])
        assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12)
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
        assert result.flagged == (reference.pvalue < 0.001)
    assert sample_ratio_mismatch({"a": 50000, "b": 48000}, {"b": 0.5, "a": 0.5}).flagged
    assert not sample_ratio_mismatch({"a": 5000, "b": 4990}, {"b": 0.5, "a": 0.5}).flagged
    with pytest.raises(ValueError, match="same variants"):
        sample_ratio_mismatch({"a": 1, "b": 2}, {"a": 0.5, "c": 0.5})


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 11])
def test_chi2_survival_matches_scipy(df):
    for x in (0.01, 0.5, 1.0, 3.84, 10.83, 25.0, 80.0, 400.0):
        assert chi2_sf(x, df) == pytest.approx(scipy_stats.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_holm_and_bonferroni_match_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2, 0.0004]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert bonferroni(p) == pytest.approx(list(multipletests(p, method="bonferroni")[1]))


def test_confidence_sequence_holds_at_every_look_where_the_fixed_interval_does_not():
    rng = np.random.default_rng(5)
    paths, looks = 2000, 50
    steps = rng.standard_normal((paths, looks * 100))
    sums = np.cumsum(steps, axis=1)[:, 99::100]  # a look every 100 units
    units = np.arange(1, looks + 1) * 100
    means = sums / units
    fixed = np.array([normal_interval(0.0, 1.0 / u)[1] for u in units])
    sequence = np.array([confidence_sequence_halfwidth(1.0 / u, int(u), tuning=2500) for u in units])
    fixed_error = (np.abs(means) > fixed).any(axis=1).mean()
    sequence_error = (np.abs(means) > sequence).any(axis=1).mean()
    assert sequence_error <= 0.05
    assert fixed_error > 0.15  # looking every time with the fixed interval: many times alpha
    assert (sequence > fixed).all()
    # tightest relative to the fixed interval near the tuning size
    ratio = sequence / fixed
    assert abs(units[np.argmin(ratio)] - 2500) <= 1500


def test_comparisons_that_cannot_be_computed_say_so():
    one = SufficientStatistics.of_values(np.ones((1, len(QUANTITIES))))
    some = SufficientStatistics.of_values(_units(np.random.default_rng(6), 50))
    result = compare(one, some, "ctr")
    assert result.control is None and result.relative_ci is None and result.as_dict()["difference"] is None
    no_orders = _units(np.random.default_rng(7), 50)
    no_orders[:, COLUMN["orders"]] = 0
    assert estimate(SufficientStatistics.of_values(no_orders), "aov") is None
    with pytest.raises(ValueError, match="unknown metric 'clicks'"):
        compare(some, some, "clicks")
