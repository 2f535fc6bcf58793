"""Experiment statistics from sufficient statistics: lifts with intervals, CUPED, SRM, confidence sequences, Holm.

Every metric is a ratio of two per-unit means, f = mean(x) / mean(y) (y = 1 for a per-unit metric; METRICS names
them), estimated across units, so the delta method linearises it into the per-unit influence (x - f y) / mean(y),
whose variance over n gives the estimator's variance. Units are independent (the assignment is per unit), which
is what makes CTR and AOV ratio metrics rather than means over impressions or orders.

CUPED (Deng et al. 2013) subtracts theta times the arm's deviation of the pre-exposure covariate from its pooled
mean; theta is the pooled within-arm regression of the metric's influence on the covariate, so for a per-unit
metric the adjusted difference is the treatment coefficient of OLS of the outcome on the arm and the covariate.

Always-valid intervals: the two-sided normal-mixture confidence sequence of Howard et al. (2021, eq. 14), as
GrowthBook computes it: with sigma^2 the per-unit variance of the estimate at N units,
    half-width = sigma * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * log(sqrt(N rho^2 + 1) / alpha)),
rho chosen so the sequence is tightest at the planned number of units (`tuning`): rho^2 = (-2 log alpha +
log(-2 log alpha + 1)) / tuning. It holds with probability 1 - alpha at every look at once, so a shop may look
every day; the fixed-horizon interval holds only at one look fixed in advance.

The sample-ratio-mismatch test is Pearson's chi-square of the units per variant against the configured shares,
flagged below p = SRM_THRESHOLD. With more than two variants each treatment is compared with the control and the
p-values are Holm-adjusted (the intervals Bonferroni-adjusted, Holm having no interval of its own).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from .statistics import SufficientStatistics

__all__ = ["ALPHA", "DEFAULT_TUNING", "METRICS", "SRM_THRESHOLD", "Comparison", "Estimate", "Srm", "bonferroni",
           "chi2_sf", "compare", "confidence_sequence_halfwidth", "cuped_theta", "estimate", "holm",
           "normal_interval", "sample_ratio_mismatch"]

ALPHA = 0.05
SRM_THRESHOLD = 0.001
# Planned units at which the confidence sequence is tightest when the experiment names none (GrowthBook's default).
DEFAULT_TUNING = 5000
# Metric -> (numerator, denominator) quantities; None: per exposed unit.
METRICS: dict[str, tuple[str, str | None]] = {
    "ctr": ("clicks", "impressions"),
    "conversion": ("converted", None),
    "aov": ("revenue", "orders"),
    "revenue": ("revenue", None),
    "ltv": ("predicted_ltv", None),
    "realized": ("realized_revenue", None),
}
COVARIATE = "pre_revenue"
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Estimate:
    """A metric in one arm: its value, the variance of that estimate and the units behind it."""

    value: float
    variance: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """Treatment against control on one metric: difference and relative lift, each with its fixed-horizon interval
    and its always-valid confidence sequence; None where the data cannot tell (too few units, a zero mean)."""

    metric: str
    control: Estimate | None
    treatment: Estimate | None
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    difference_cs: tuple[float, float] | None = None
    relative: float | None = None
    relative_ci: tuple[float, float] | None = None
    relative_cs: tuple[float, float] | None = None
    p_value: float | None = None
    theta: float = 0.0

    def as_dict(self) -> dict:
        return {"metric": self.metric, "theta": self.theta, "p_value": self.p_value,
                "control": None if self.control is None else vars(self.control),
                "treatment": None if self.treatment is None else vars(self.treatment),
                "difference": self.difference, "difference_ci": _listed(self.difference_ci),
                "difference_cs": _listed(self.difference_cs), "relative": self.relative,
                "relative_ci": _listed(self.relative_ci), "relative_cs": _listed(self.relative_cs)}


@dataclass(frozen=True)
class Srm:
    """Sample-ratio mismatch: the chi-square statistic, its p-value and whether it is below the threshold."""

    chi2: float
    p_value: float
    flagged: bool
    counts: tuple[int, ...]
    expected: tuple[float, ...]


def estimate(stats: SufficientStatistics, metric: str) -> Estimate | None:
    """The metric's value in one arm with its delta-method variance; None below 2 units or with a zero denominator."""
    linear = _linearised(stats, metric)
    if linear is None:
        return None
    value, variance, _ = linear
    return Estimate(value, variance / stats.n, stats.n)


def cuped_theta(arms: Sequence[SufficientStatistics], metric: str, covariate: str = COVARIATE) -> float:
    """Pooled within-arm slope of the metric's per-unit influence on the covariate (0 when the covariate is flat)."""
    covariance = variance = 0.0
    for stats in arms:
        linear = _linearised(stats, metric, covariate)
        if linear is None:
            continue
        covariance += linear[2] * (stats.n - 1)
        variance += _covariance(stats, covariate, covariate) * (stats.n - 1)
    return covariance / variance if variance > 0 else 0.0


def compare(control: SufficientStatistics, treatment: SufficientStatistics, metric: str, *, cuped: bool = False,
            alpha: float = ALPHA, tuning: float = DEFAULT_TUNING, others: Sequence[SufficientStatistics] = ()
            ) -> Comparison:
    """Treatment against control on `metric`, CUPED-adjusted by the pre-exposure covariate when `cuped` (theta pooled
    over both arms and `others`, the experiment's remaining arms)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")
    theta = cuped_theta([control, treatment, *others], metric) if cuped else 0.0
    pooled = control + treatment
    for stats in others:
        pooled = pooled + stats
    arms = [_adjusted(stats, metric, theta, pooled) for stats in (control, treatment)]
    if arms[0] is None or arms[1] is None:
        return Comparison(metric, arms[0], arms[1], theta=theta)
    c, t = arms
    units = c.n + t.n
    difference = t.value - c.value
    variance = t.variance + c.variance
    p_value = 2.0 * _NORMAL.cdf(-abs(difference) / math.sqrt(variance)) if variance > 0 else None
    fields: dict = {"difference": difference, "p_value": p_value,
                    "difference_ci": normal_interval(difference, variance, alpha),
                    "difference_cs": _sequence(difference, variance, units, alpha, tuning)}
    if c.value != 0:
        relative = t.value / c.value - 1.0
        relative_variance = t.variance / c.value ** 2 + t.value ** 2 * c.variance / c.value ** 4
        fields |= {"relative": relative, "relative_ci": normal_interval(relative, relative_variance, alpha),
                   "relative_cs": _sequence(relative, relative_variance, units, alpha, tuning)}
    return Comparison(metric, c, t, theta=theta, **fields)


def normal_interval(value: float, variance: float, alpha: float = ALPHA) -> tuple[float, float]:
    """value -/+ z(1 - alpha/2) standard errors."""
    half = _NORMAL.inv_cdf(1.0 - alpha / 2.0) * math.sqrt(max(variance, 0.0))
    return value - half, value + half


def confidence_sequence_halfwidth(variance: float, units: int, alpha: float = ALPHA,
                                  tuning: float = DEFAULT_TUNING) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate of `variance` from `units` units."""
    if units < 1 or tuning <= 0:
        raise ValueError("units and tuning must be positive")
    rho2 = (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / tuning
    sigma2 = max(variance, 0.0) * units  # per-unit variance
    return math.sqrt(sigma2 * 2.0 * (units * rho2 + 1.0) / (units ** 2 * rho2)
                     * math.log(math.sqrt(units * rho2 + 1.0) / alpha))


def sample_ratio_mismatch(counts: Mapping[str, int] | Sequence[int], shares: Mapping[str, float] | Sequence[float],
                          threshold: float = SRM_THRESHOLD) -> Srm:
    """Pearson's chi-square of the units per variant against the configured traffic shares."""
    if isinstance(counts, Mapping):
        if not isinstance(shares, Mapping) or set(counts) != set(shares):
            raise ValueError("counts and shares must name the same variants")
        names = sorted(counts)
        counts, shares = [counts[name] for name in names], [shares[name] for name in names]
    if len(counts) != len(shares) or len(counts) < 2:
        raise ValueError("sample_ratio_mismatch needs a count and a share for each of at least two variants")
    if any(share <= 0 for share in shares):
        raise ValueError("traffic shares must be positive")
    total = sum(counts)
    expected = [total * share / sum(shares) for share in shares]
    if total == 0:
        return Srm(0.0, 1.0, False, tuple(counts), tuple(expected))
    chi2 = sum((count - e) ** 2 / e for count, e in zip(counts, expected))
    p_value = chi2_sf(chi2, len(counts) - 1)
    return Srm(chi2, p_value, p_value < threshold, tuple(int(c) for c in counts), tuple(expected))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-square with integer `df` degrees of freedom (closed forms; no scipy in the layer)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        total = sum(math.exp(i * math.log(half) - half - math.lgamma(i + 1)) for i in range(df // 2))
    else:
        total = math.erfc(math.sqrt(half)) + sum(
            math.exp((i - 0.5) * math.log(half) - half - math.lgamma(i + 0.5)) for i in range(1, (df + 1) // 2))
    return min(1.0, total)


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values."""
    return [min(1.0, p * len(p_values)) for p in p_values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (as statsmodels' multipletests(method='holm'))."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


# -- helpers ---------------------------------------------------------------------------------------------------------

def _covariance(stats: SufficientStatistics, a: str, b: str) -> float:
    n = stats.n
    return (stats.cross(a, b) - stats.total(a) * stats.total(b) / n) / (n - 1)


def _moments(stats: SufficientStatistics, name: str | None, other: str | None) -> float:
    """Covariance of two quantities, None standing for the constant 1 (covariance 0)."""
    return 0.0 if name is None or other is None else _covariance(stats, name, other)


def _linearised(stats: SufficientStatistics, metric: str, covariate: str = COVARIATE
                ) -> tuple[float, float, float] | None:
    """(value, per-unit variance of the influence, its covariance with the covariate) or None."""
    try:
        numerator, denominator = METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}") from None
    if stats.n < 2:
        return None
    mean_y = stats.total(denominator) / stats.n if denominator else 1.0
    if mean_y == 0:
        return None
    value = stats.total(numerator) / stats.n / mean_y
    variance = (_covariance(stats, numerator, numerator) - 2.0 * value * _moments(stats, numerator, denominator)
                + value ** 2 * _moments(stats, denominator, denominator)) / mean_y ** 2
    with_covariate = (_covariance(stats, numerator, covariate)
                      - value * _moments(stats, denominator, covariate)) / mean_y
    return value, max(variance, 0.0), with_covariate


def _adjusted(stats: SufficientStatistics, metric: str, theta: float, pooled: SufficientStatistics
              ) -> Estimate | None:
    linear = _linearised(stats, metric)
    if linear is None:
        return None
    value, variance, with_covariate = linear
    if theta:
        shift = stats.total(COVARIATE) / stats.n - pooled.total(COVARIATE) / pooled.n
        value -= theta * shift
        variance += theta ** 2 * _covariance(stats, COVARIATE, COVARIATE) - 2.0 * theta * with_covariate
    return Estimate(value, max(variance, 0.0) / stats.n, stats.n)


def _sequence(value: float, variance: float, units: int, alpha: float, tuning: float) -> tuple[float, float]:
    half = confidence_sequence_halfwidth(variance, units, alpha, tuning)
    return value - half, value + half


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]
