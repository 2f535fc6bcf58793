"""An experiment's report from its daily statistics rows: JSON-ready, for the API, the CLI's table and the plots.

For every metric (tailor.experiments.stats.METRICS) and every variant against the control (the first variant):
the cumulative comparison as of each day (relative lift and difference, their fixed-horizon 95% intervals and the
always-valid confidence sequences a shop may watch daily), CUPED-adjusted by the pre-exposure revenue, and the
latest day's comparison also without the adjustment. With more than two variants the p-values are Holm-adjusted
and the intervals Bonferroni-adjusted (alpha / comparisons). Also: the sample-ratio-mismatch test of the units
per variant against the traffic shares, and the units first exposed and the impressions per variant per day.

The confidence sequences are tightest at the experiment's planned units (`planned_units`, else DEFAULT_TUNING).

An interleaving experiment's report has, in place of the metrics, its `interleaving` section: the shoppers' mean
credit (the centred rank credit of each shopper's clicks, > 0 for ranker A) as of each day and at the last, with
its 95% interval, its confidence sequence and the per-shopper t-test (interleaving.shopper_test_of), and the ranker
it prefers; the CTR of the interleaved lists beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .feed_ids import INTERLEAVED
from .interleaving import A, shopper_test_of
from .statistics import SufficientStatistics
from .stats import (
    ALPHA,
    DEFAULT_TUNING,
    METRICS,
    compare,
    confidence_sequence_halfwidth,
    estimate,
    holm,
    normal_interval,
    sample_ratio_mismatch,
)

__all__ = ["build_report"]


def build_report(experiment: Mapping[str, Any], daily: Iterable[tuple[str, str, SufficientStatistics]], *,
                 alpha: float = ALPHA, tuning: float | None = None) -> dict[str, Any]:
    """The report of `experiment` (its public row: experiment_id, variants with name and share, ...) from its
    statistics rows (variant, ISO day, statistics); several rows of one variant and day (shards) add up."""
    if experiment.get("design") == "interleaving":
        return _interleaving_report(experiment, daily, alpha, tuning)
    variants = _variants(experiment)
    names = [name for name, _ in variants]
    control, treatments = names[0], names[1:]
    rows: dict[str, dict[str, SufficientStatistics]] = defaultdict(dict)
    for variant, day, stats in daily:
        if variant not in names:
            raise ValueError(f"statistics row of variant {variant!r}, which experiment "
                             f"{experiment.get('experiment_id')!r} does not have")
        if not isinstance(stats, SufficientStatistics):
            raise ValueError(f"statistics row of {variant!r} on {day!r} is not SufficientStatistics")
        rows[day][variant] = rows[day].get(variant, SufficientStatistics()) + stats
    days = sorted(rows)
    tuning = float(tuning or experiment.get("planned_units") or DEFAULT_TUNING)
    corrected_alpha = alpha / max(1, len(treatments))

    cumulative = {name: SufficientStatistics() for name in names}
    series: dict[str, dict[str, list[dict]]] = {metric: {name: [] for name in treatments} for metric in METRICS}
    exposures = {name: [] for name in names}
    impressions = {name: [] for name in names}
    for day in days:
        for name in names:
            today = rows[day].get(name, SufficientStatistics())
            cumulative[name] = cumulative[name] + today
            exposures[name].append(today.n)
            impressions[name].append(today.total("impressions"))
        for metric in METRICS:
            for name in treatments:
                others = [cumulative[o] for o in treatments if o != name]
                result = compare(cumulative[control], cumulative[name], metric, cuped=True, alpha=corrected_alpha,
                                 tuning=tuning, others=others)
                series[metric][name].append({"day": day, **_point(result)})

    metrics: dict[str, Any] = {}
    for metric in METRICS:
        finals = {}
        for name in treatments:
            others = [cumulative[o] for o in treatments if o != name]
            adjusted = compare(cumulative[control], cumulative[name], metric, cuped=True, alpha=corrected_alpha,
                               tuning=tuning, others=others)
            plain = compare(cumulative[control], cumulative[name], metric, alpha=corrected_alpha, tuning=tuning)
            finals[name] = {**adjusted.as_dict(), "unadjusted": plain.as_dict()}
        _holm(finals)
        values = {}
        for name in names:
            result = estimate(cumulative[name], metric)
            values[name] = None if result is None else {"value": result.value, "standard_error": result.variance ** 0.5}
        metrics[metric] = {"values": values, "comparisons": finals, "daily": series[metric]}

    shares = dict(variants)
    srm = sample_ratio_mismatch([cumulative[name].n for name in names], [shares[name] for name in names])
    return {
        **_heading(experiment),
        "control": control,
        "variants": names,
        "alpha": alpha,
        "interval_alpha": corrected_alpha,
        "correction": "holm p-values, bonferroni intervals" if len(treatments) > 1 else None,
        "tuning_units": tuning,
        "days": days,
        "units": {name: cumulative[name].n for name in names},
        "exposures": {"units": exposures, "impressions": impressions},
        "srm": {"chi2": srm.chi2, "p_value": srm.p_value, "flagged": srm.flagged,
                "counts": dict(zip(names, srm.counts)), "expected": dict(zip(names, srm.expected))},
        "metrics": metrics,
    }


def _heading(experiment: Mapping[str, Any]) -> dict[str, Any]:
    return {key: experiment.get(key) for key in ("experiment_id", "name", "status", "start", "end")}


def _variants(experiment: Mapping[str, Any]) -> list[tuple[str, float]]:
    variants = experiment.get("variants")
    if not isinstance(variants, list | tuple) or len(variants) < 2:
        raise ValueError("experiment.variants must list at least two variants")
    out = []
    for i, variant in enumerate(variants):
        if not isinstance(variant, Mapping) or not isinstance(variant.get("name"), str):
            raise ValueError(f"experiment.variants[{i}].name must be text")
        share = variant.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float | Decimal) or not share > 0:
            raise ValueError(f"experiment.variants[{i}].share must be a positive number")
        out.append((variant["name"], float(share)))
    return out


def _point(result) -> dict[str, Any]:
    shown = result.as_dict()
    return {key: shown[key] for key in ("relative", "relative_ci", "relative_cs", "difference", "difference_ci",
                                        "difference_cs", "p_value")} | {
        "units": None if result.treatment is None or result.control is None
        else result.control.n + result.treatment.n}


def _holm(finals: dict[str, dict]) -> None:
    named = [(name, final["p_value"]) for name, final in finals.items() if final["p_value"] is not None]
    adjusted = holm([p for _, p in named])
    for (name, _), p in zip(named, adjusted):
        finals[name]["p_value_adjusted"] = p


def _interleaving_report(experiment: Mapping[str, Any], daily: Iterable[tuple[str, str, SufficientStatistics]],
                         alpha: float, tuning: float | None) -> dict[str, Any]:
    names = [name for name, _ in _variants(experiment)]
    by_day: dict[str, SufficientStatistics] = defaultdict(SufficientStatistics)
    for variant, day, stats in daily:
        if variant != INTERLEAVED:
            raise ValueError(f"statistics row of variant {variant!r} in interleaving experiment "
                             f"{experiment.get('experiment_id')!r}, whose rows are {INTERLEAVED!r}")
        by_day[day] = by_day[day] + stats
    days = sorted(by_day)
    tuning = float(tuning or experiment.get("planned_units") or DEFAULT_TUNING)
    cumulative = SufficientStatistics()
    series, units, impressions = [], [], []
    for day in days:
        cumulative = cumulative + by_day[day]
        units.append(by_day[day].n)
        impressions.append(by_day[day].total("impressions"))
        series.append({"day": day, **_preference(cumulative, alpha, tuning, names)})
    ctr = estimate(cumulative, "ctr")
    return {
        **_heading(experiment),
        "design": "interleaving",
        "control": names[0],
        "variants": names,
        "alpha": alpha,
        "tuning_units": tuning,
        "days": days,
        "units": {INTERLEAVED: cumulative.n},
        "exposures": {"units": {INTERLEAVED: units}, "impressions": {INTERLEAVED: impressions}},
        "srm": None,
        "metrics": {},
        "interleaving": {**_preference(cumulative, alpha, tuning, names), "clicks": cumulative.total("clicks"),
                         "impressions": cumulative.total("impressions"),
                         "ctr": None if ctr is None else {"value": ctr.value, "standard_error": ctr.variance ** 0.5},
                         "credit": "per shopper, the centred rank credit of their clicks: the clicked item's rank "
                                   "in the second variant's list minus its rank in the first's, less the slot's "
                                   "expected difference (> 0 prefers the first)",
                         "daily": series},
    }


def _preference(stats: SufficientStatistics, alpha: float, tuning: float, names: list[str]) -> dict[str, Any]:
    """The shoppers' mean credit with its interval, confidence sequence and t-test, and the ranker it prefers."""
    test = shopper_test_of(stats.n, stats.total("credit"), stats.cross("credit", "credit"), alpha)
    if stats.n < 2:
        return {"units": stats.n, "mean": test.mean if stats.n else None, "standard_error": None, "mean_ci": None,
                "mean_cs": None, "p_value": None, "preferred": None}
    variance = test.standard_error ** 2
    half = confidence_sequence_halfwidth(variance, stats.n, alpha, tuning)
    preferred = None if test.preferred is None else names[0] if test.preferred == A else names[1]
    return {"units": stats.n, "mean": test.mean, "standard_error": test.standard_error,
            "mean_ci": list(normal_interval(test.mean, variance, alpha)),
            "mean_cs": [test.mean - half, test.mean + half],
            "p_value": test.p_value, "preferred": preferred}
